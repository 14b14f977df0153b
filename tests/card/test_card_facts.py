"""The cards state facts a reader can use, consistently, and nothing of the machine.

Chat usage only with a chat template; links on the endpoint the release goes to; rule texts
as a reader writes them; the gate's dtype reason without its internal key or memory figures;
default prose marked; the model's size, architecture and context length given.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from card.card_fixture import REPORT, load, release_for_cards
from medrelease.card.step import CARD_FILES, card_release
from medrelease.core.console import Reporter


def _render(recipe: Path, workdir: Path) -> dict[str, str]:
    card_release(load(recipe), workdir=workdir, reporter=Reporter(quiet=True))
    folder = workdir / "tiny-med" / "card"
    return {
        n: (folder / rel).read_text() for n, rel in CARD_FILES.items() if (folder / rel).is_file()
    }


def _merged_without_template(workdir: Path) -> None:
    merged = workdir / "tiny-med" / "merged"
    merged.mkdir(parents=True)
    (merged / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 512}))
    (merged / "config.json").write_text(
        json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                    "max_position_embeddings": 2048, "vocab_size": 512})
    )  # fmt: skip
    # a safetensors header of two tensors (256x512 + 512): 131,584 parameters
    header = json.dumps({
        "a": {"dtype": "F32", "shape": [256, 512], "data_offsets": [0, 524288]},
        "b": {"dtype": "F32", "shape": [512], "data_offsets": [524288, 526336]},
    }).encode()  # fmt: skip
    (merged / "model.safetensors").write_bytes(
        len(header).to_bytes(8, "little") + header + b"\0" * 526336
    )


def test_no_chat_template_means_no_chat_commands_anywhere(tmp_path, monkeypatch):
    recipe, workdir = release_for_cards(tmp_path)
    data = __import__("yaml").safe_load(recipe.read_text())
    del data["output"]["chat_template"]
    recipe.write_text(__import__("yaml").safe_dump(data, sort_keys=False))
    _merged_without_template(workdir)
    manifest = json.loads((workdir / "tiny-med" / "manifest.json").read_text())
    manifest["steps"]["merge"]["output_settings"].pop("chat_template")
    (workdir / "tiny-med" / "manifest.json").write_text(json.dumps(manifest))
    cards = _render(recipe, workdir)
    assert "This release has no chat template" in cards["model"]
    assert "apply_chat_template(messages" not in cards["model"]
    for name in ("gguf", "awq"):
        assert "-cnv" not in cards[name] and "apply_chat_template(messages" not in cards[name]
    assert "This model has no chat template: give it plain text" in cards["gguf"]
    assert 'llama-cli -hf medrelease-tests/tiny-med-GGUF:Q4_K_M -p "Question:' in cards["gguf"]
    # the model's facts, from merged/config.json and the safetensors headers
    facts = (
        "132K parameters, architecture `LlamaForCausalLM`, context length 2048 tokens, "
        "vocabulary of 512 tokens"
    )
    assert f"Model: {facts}." in cards["model"]
    assert f"({facts})" in cards["gguf"]


def test_with_a_chat_template_the_quant_cards_chat(rendered):
    assert "llama-cli -hf medrelease-tests/tiny-med-GGUF:Q4_K_M -cnv" in rendered["gguf"]
    assert "The chat template ships inside each GGUF" in rendered["gguf"]
    assert "apply_chat_template(messages" in rendered["awq"]


def test_links_use_the_endpoint_the_release_is_published_to(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.example.org/")
    recipe, workdir = release_for_cards(tmp_path)
    cards = _render(recipe, workdir)
    for name, text in cards.items():
        assert "huggingface.co" not in text, name
        assert "hf.co/" not in text, name
    assert (
        "[medrelease-tests/tiny-med](https://hub.example.org/medrelease-tests/tiny-med)"
        in (cards["gguf"])
    )
    assert "export HF_ENDPOINT=https://hub.example.org" in cards["gguf"]
    assert 'echo "FROM ./tiny-med-Q4_K_M.gguf" > Modelfile' in cards["gguf"]
    assert "\\url{https://hub.example.org/medrelease-tests/tiny-med}" in cards["model"]


def test_public_hub_commands(rendered):
    gguf = rendered["gguf"]
    assert 'hf download medrelease-tests/tiny-med-GGUF --include "*Q4_K_M*"' in gguf
    assert "ollama run hf.co/medrelease-tests/tiny-med-GGUF:Q4_K_M" in gguf
    assert "lms get medrelease-tests/tiny-med-GGUF" in gguf
    assert "quantized_by: medrelease tests" in gguf
    assert "llama.cpp: as vendored by llama-cpp-python 0.3.36." in gguf
    assert "Importance matrix: computed on medrelease's shipped calibration text." in gguf


def test_a_differing_tokenization_probe_is_disclosed_with_its_text(rendered):
    gguf = rendered["gguf"]
    assert "tokenization: pass\n" not in gguf and "| tokenization | pass |" not in gguf
    assert "| Q8_0 | tokenization | pass, with differences | 5/7 probes identical |" in gguf
    assert "**Q8_0, tokenization: pass, with differences.** 2 probe(s) differ" in gguf
    assert "| text1 | ` leading space` | `1 280 473` | `1 472 280 473` | – |" in gguf


def test_awq_scheme_is_listed_once_with_its_files_and_checks(rendered):
    awq = rendered["awq"]
    row = "| W4A16_ASYM | `config.json`<br>`model.safetensors` | 3.3 MB | load: pass; eval: pass |"
    assert row in awq
    assert awq.count("| W4A16_ASYM | `") == 1


def test_rule_text_reads_as_written_and_dtype_reason_is_prose(tmp_path):
    report = copy.deepcopy(REPORT)
    report["rules"][1]["text"] = "mmlu_medical/acc >= base + -1"
    report["harness"]["dtype"] = "float32"
    report["harness"]["dtype_reason"] = (
        "bfloat16 weights, no fast bfloat16 on this CPU, float32 copy (3.2 GiB) < 60% of "
        "available memory (12.0 GiB)"
    )
    recipe, workdir = release_for_cards(tmp_path, report=report)
    model = _render(recipe, workdir)["model"]
    assert "`mmlu_medical/acc >= base - 1`" in model
    assert "+ -" not in model
    assert "dtype_reason" not in model
    assert "GiB" not in model
    assert (
        "Weights evaluated in `float32` (bfloat16 weights, no fast bfloat16 on this CPU, "
        "float32 copy fits in the memory available)." in model
    )


@pytest.mark.parametrize("written", [False, True])
def test_default_prose_is_marked_as_default(tmp_path, written):
    card = {"intended_use": "Clinical QA research.", "out_of_scope": "Bedside use."}
    recipe, workdir = release_for_cards(tmp_path, card=card if written else None)
    model = _render(recipe, workdir)["model"]
    marked = "_(medrelease's default text: the publisher of this release did not write one.)_"
    assert (marked in model) is not written
    if written:
        assert "Clinical QA research." in model and "Bedside use." in model


def test_a_new_endpoint_makes_the_cards_stale(tmp_path, monkeypatch):
    from medrelease.card.inputs import INPUTS
    from medrelease.core.hashing import HashCache
    from medrelease.core.manifest import Manifest
    from medrelease.core.paths import ReleasePaths

    recipe, workdir = release_for_cards(tmp_path)
    loaded = load(recipe)
    paths = ReleasePaths(workdir, "tiny-med")
    cache = HashCache(paths.hash_cache)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    card_release(loaded, workdir=workdir, reporter=Reporter(quiet=True))
    manifest = Manifest.load(paths.root)
    record = manifest.data["steps"]["card"]
    assert INPUTS.compute(loaded, paths, manifest, cache) == record["components"]
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.example.org")
    now = INPUTS.compute(loaded, paths, manifest, cache)
    assert [k for k in now if now[k] != record["components"][k]] == ["endpoint"]


def test_probe_differences_are_shown_as_tokens_and_text_from_the_merged_tokenizer(tmp_path):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    from card.card_fixture import quantize_record

    recipe, workdir = release_for_cards(tmp_path)
    merged = workdir / "tiny-med" / "merged"
    merged.mkdir(parents=True)
    vocab = {"<unk>": 0, "<s>": 1, "▁leading": 2, "▁space": 3, "▁": 4}
    Tokenizer(WordLevel(vocab, unk_token="<unk>")).save(str(merged / "tokenizer.json"))
    manifest = json.loads((workdir / "tiny-med" / "manifest.json").read_text())
    record = quantize_record()
    for q in record["quants"]:
        if "tokenization" in q["checks"]:
            q["checks"]["tokenization"] = copy.deepcopy(q["checks"]["tokenization"])
            (first, _) = q["checks"]["tokenization"]["warnings"]
            first.update(merged=[1, 2, 3], gguf=[1, 4, 2, 3])
            first.pop("text")  # as the quantize step records it: ids only
    manifest["steps"]["quantize"] = record
    (workdir / "tiny-med" / "manifest.json").write_text(json.dumps(manifest))
    gguf = _render(recipe, workdir)["gguf"]
    assert (
        "| text1 | `<s> ▁leading ▁space` | `<s> ▁leading ▁space` | `<s> ▁ ▁leading ▁space` |"
        in gguf
    )
