"""Prompts built once per process (medrelease.gate.prompt_cache): lm-eval's templates compiled
once render the same strings; kept tokenizers and encodings are the ones a model's own files
give, shared only between folders whose tokenizer files are the same."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow  # lm-eval's hf module takes seconds to import

MMLU_DOC = {
    "question": "  A 45-year-old woman has fatigue and pallor. Which test comes first?  ",
    "choices": ["Serum ferritin", "Bone marrow biopsy", "Hb electrophoresis", "Coombs test"],
    "answer": 0,
}


def _mmlu_template() -> str:
    import lm_eval

    path = Path(lm_eval.__file__).parent / "tasks/mmlu/default/_default_template_yaml"
    return str(yaml.safe_load(path.read_text())["doc_to_text"])


def test_compiled_templates_render_lm_evals_strings() -> None:
    import lm_eval.utils as lm_utils

    from medrelease.gate.prompt_cache import compile_templates_once

    templates = [_mmlu_template(), "{{question}} ({{ choices | join(', ') }})", "{{answer}}"]
    stock = lm_utils.apply_template
    if getattr(stock, "medrelease_compiled", False):  # installed by an earlier test: compile anew
        stock = lambda t, d: lm_utils.env.from_string(t).render(**d)  # noqa: E731
    expected = [stock(t, MMLU_DOC) for t in templates]
    compile_templates_once()
    compile_templates_once()  # idempotent: one wrapper
    patched = lm_utils.apply_template
    assert getattr(patched, "medrelease_compiled", False)
    for _ in range(2):  # compiled, then from the kept template
        assert [patched(t, MMLU_DOC) for t in templates] == expected
    assert expected[0].startswith("A 45-year-old")
    assert expected[0].endswith("D. Coombs test\nAnswer:")
    with pytest.raises(Exception, match="undefined"):  # lm-eval's StrictUndefined is kept
        patched("{{missing}}", MMLU_DOC)


def test_encodings_are_bounded_and_fresh() -> None:
    from medrelease.gate.prompt_cache import Encodings

    calls: list[str] = []

    def enc(text: str) -> list[int]:
        calls.append(text)
        return [ord(c) for c in text]

    memo = Encodings(limit=8)
    first = memo.get_or_encode(("k",), "abcde", lambda: enc("abcde"))
    first.append(0)  # a caller changing its list does not change the kept ids
    assert memo.get_or_encode(("k",), "abcde", lambda: enc("abcde")) == [97, 98, 99, 100, 101]
    assert calls == ["abcde"]
    assert memo.get_or_encode(("other",), "abcde", lambda: enc("abcde")) == first[:5]
    assert calls == ["abcde", "abcde"]  # another key: encoded again
    memo.get_or_encode(("k",), "fghij", lambda: enc("fghij"))  # over the limit: not kept
    memo.get_or_encode(("k",), "fghij", lambda: enc("fghij"))
    assert calls.count("fghij") == 2


@pytest.mark.parametrize("arch", ["llama", "qwen3"])  # SentencePiece with BOS; byte-level BPE
def test_kept_encodings_equal_the_stock_backend(tmp_path: Path, arch: str) -> None:
    from lm_eval.models.huggingface import HFLM

    from medrelease.gate.prompt_cache import ENCODINGS, tokenizer_content_key
    from medrelease.gate.runner import make_lm
    from medrelease.testing.tiny import TinySpec, build_tiny_model

    folder = build_tiny_model(tmp_path / arch, TinySpec(arch=arch, seed=3))
    twin = tmp_path / "twin"  # the same tokenizer files beside other weights: a sweep trial
    shutil.copytree(folder, twin)
    stock = HFLM(pretrained=str(folder), device="cpu", batch_size=1)
    texts = [
        "Question: Which organ pumps blood?\nAnswer:",
        "Question: Which organ pumps blood?\nAnswer: heart",
        " Insulin  is made in the  pancreas ",
        _mmlu_template(),
    ]
    lm = make_lm("hf", folder, {}, 1, "cpu")
    assert lm.encodings_key == tokenizer_content_key(folder, {}) is not None
    for text in texts:
        for trunc in (None, 5):
            want = stock.tok_encode(text, left_truncate_len=trunc)
            assert lm.tok_encode(text, left_truncate_len=trunc) == want
            assert lm.tok_encode(text, left_truncate_len=trunc) == want  # kept
    lm2 = make_lm("hf", twin, {}, 1, "cpu")
    assert lm2.encodings_key == lm.encodings_key
    assert lm2.tokenizer is lm.tokenizer  # built once for both
    kept = len(ENCODINGS._ids)
    assert [lm2.tok_encode(t) for t in texts] == [stock.tok_encode(t) for t in texts]
    assert len(ENCODINGS._ids) == kept  # served from what the first model's tokenizer gave

    # another tokenizer setting, another key; a tokenizer named in model_args: nothing shared
    cfg = twin / "tokenizer_config.json"
    cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "model_max_length": 77}))
    assert tokenizer_content_key(twin, {}) != lm.encodings_key
    lm3 = make_lm("hf", twin, {}, 1, "cpu")
    assert lm3.tokenizer is not lm.tokenizer and lm3.tokenizer.model_max_length == 77
    assert tokenizer_content_key(folder, {"add_bos_token": True}) != lm.encodings_key
    assert tokenizer_content_key(folder, {"tokenizer": str(twin)}) is None
