"""llama.cpp runs in child processes: an abort becomes a rejected quant, never a dead release.

The regression case (issue 11): a byte-level BPE tokenizer.json whose model says
`byte_fallback: true` (as transformers writes when it converts a GGUF tokenizer) made llama.cpp's
converter write a SentencePiece-style vocabulary without byte tokens, and `llama_tokenize`
aborted (SIGABRT, std::out_of_range in byte_to_token), taking the release down with ~180 lines
of gdb backtrace and leaving `.lock` and `.mr-tmp-*` behind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers import run_cli
from medrelease.quantize.gguf.child import TEST_ABORT_ENV, LlamaChildError
from quantize.quanthelpers import RELEASE, quant_release, quantize_recorded

pytestmark = pytest.mark.slow

GDB_MARKS = ("gdb", "[New LWP", "#0 ", "Traceback (most recent call last)", "backtrace")


def _leftovers(workdir: Path) -> list[str]:
    """Temporaries left behind, and the release lock if it is still held.

    The `.lock` file itself stays by design (core/lock.py: an flock on it, released when its
    holder ends); what must not stay is a held lock."""
    from medrelease.core.lock import release_lock

    left = sorted(str(p.relative_to(workdir)) for p in workdir.rglob(".mr-tmp-*"))
    try:
        with release_lock(workdir / RELEASE):
            pass
    except Exception as exc:  # EnvironmentProblem: in use
        left.append(f"lock held: {exc}")
    return left


@pytest.fixture(scope="module")
def byte_fallback_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny llama with a byte-level BPE tokenizer.json that says byte_fallback: true."""
    from medrelease.testing.tiny import TinySpec, build_tiny_model

    folder = tmp_path_factory.mktemp("bf") / "llama-bpe"
    build_tiny_model(folder, TinySpec(arch="llama", tokenizer="bpe"))
    spec = json.loads((folder / "tokenizer.json").read_text())
    assert spec["model"]["type"] == "BPE" and '"ByteLevel"' in json.dumps(spec["pre_tokenizer"])
    spec["model"]["byte_fallback"] = True
    # transformers writes a Sequence decoder for converted tokenizers; one ByteLevel step inside
    # decodes exactly as before, and it is what makes the converter take the SentencePiece path
    spec["decoder"] = {"type": "Sequence", "decoders": [spec["decoder"]]}
    (folder / "tokenizer.json").write_text(json.dumps(spec))
    return folder


@pytest.fixture(scope="module")
def tiny_f32(tmp_path_factory: pytest.TempPathFactory, tiny_llama: Path) -> Path:
    from medrelease.quantize.gguf.build import convert

    (path,) = convert(tiny_llama, tmp_path_factory.mktemp("f32"), "f32", "f32", None)
    return path


def test_chunk_logits_come_back_equal_to_in_process_llama_cpp(tiny_f32: Path) -> None:
    from medrelease.quantize.gguf.child import gguf_chunk_logits
    from medrelease.testing.llama import open_gguf

    chunks = [[1, 5, 9, 13, 200, 17], [1, 40, 41, 42]]
    got = gguf_chunk_logits(tiny_f32, chunks, threads=2)
    llm = open_gguf(tiny_f32, 64, 2)
    try:
        n_vocab = llm.n_vocab()
        expected = []
        for chunk in chunks:  # each from a fresh state
            llm.reset()
            llm.eval(chunk)
            expected.append(np.array(llm.scores[: len(chunk)], dtype=np.float32))
    finally:
        llm.close()
    assert [a.shape for a in got] == [(6, n_vocab), (4, n_vocab)]
    assert all(a.dtype == np.float32 for a in got)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    # a fresh KV state per chunk: the second chunk does not see the first
    (alone,) = gguf_chunk_logits(tiny_f32, [chunks[1]], threads=2)
    np.testing.assert_allclose(alone, got[1], rtol=0, atol=1e-5)
    # only the scored rows (`first`): the LM head runs only at those positions, through
    # llama.cpp's batch API, and gives the same rows as the full evaluation
    scored = gguf_chunk_logits(tiny_f32, chunks, threads=2, first=2)
    assert [a.shape for a in scored] == [(3, n_vocab), (1, n_vocab)]
    for a, b, chunk in zip(scored, expected, chunks, strict=True):
        np.testing.assert_allclose(a, b[2 : len(chunk) - 1], rtol=0, atol=1e-5)


def test_an_abort_in_the_child_is_an_error_naming_the_signal(
    tiny_f32: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medrelease.quantize.gguf.child import gguf_chunk_logits

    monkeypatch.setenv(TEST_ABORT_ENV, "logits")
    with pytest.raises(LlamaChildError) as info:
        gguf_chunk_logits(tiny_f32, [[1, 2, 3]], threads=1)
    err = info.value
    assert err.signal_or_code == "SIGABRT" and err.signal == "SIGABRT"
    assert err.reason.startswith("llama.cpp logits on f32.gguf was killed by SIGABRT")
    assert "aborting in logits" in err.log_tail
    assert "\n" not in err.reason
    record = err.record()
    assert record["ok"] is False and record["signal"] == "SIGABRT"


def test_a_python_error_in_the_child_is_reported_with_its_message(tmp_path: Path) -> None:
    from medrelease.quantize.gguf.child import gguf_chunk_logits

    bad = tmp_path / "not-a-model.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(LlamaChildError) as info:
        gguf_chunk_logits(bad, [[1, 2]], threads=1)
    assert info.value.signal is None and info.value.signal_or_code == 3
    assert info.value.message and "Failed to load model" in info.value.message


def test_the_byte_fallback_gguf_really_aborts_llama_cpp_but_only_the_child(
    tmp_path: Path, byte_fallback_llama: Path
) -> None:
    """The crash of issue 11, reproduced: llama.cpp dies of SIGABRT in the child (no gdb)."""
    from gguf import GGUFReader

    from medrelease.quantize.gguf.build import convert
    from medrelease.quantize.gguf.child import gguf_tokenize_probes

    (path,) = convert(byte_fallback_llama, tmp_path, "x", "f32", None)
    reader = GGUFReader(path)
    model = reader.fields["tokenizer.ggml.model"]
    assert bytes(model.parts[model.data[0]]).decode() == "llama"  # taken for SentencePiece
    assert 6 not in set(int(t) for t in reader.fields["tokenizer.ggml.token_type"].contents())
    with pytest.raises(LlamaChildError) as info:
        gguf_tokenize_probes(path, {"odd": ("Température 37,5 °C — ok?", True)})
    err = info.value
    assert err.signal == "SIGABRT", err.reason
    assert "out_of_range" in err.log_tail
    assert not any(mark in err.log_tail for mark in GDB_MARKS[:3])


def test_quantize_rejects_the_byte_fallback_quant_with_the_fix(
    tmp_path: Path, byte_fallback_llama: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`medrelease quantize` on that model: exit 5, the quant rejected with the vocabulary
    problem and the fix, no traceback or gdb lines, nothing left behind."""
    recipe = quant_release(tmp_path, byte_fallback_llama, {"gguf": ["Q8_0"]}).recipe
    code = run_cli("quantize", recipe, "-w", tmp_path, "--json")
    out, err = capsys.readouterr()
    assert code == 5
    (q,) = json.loads(out)["quants"]
    assert q["accepted"] is False
    assert q["reason"].startswith(
        "vocabulary: the GGUF's tokenizer model is 'llama' but the merged tokenizer is a "
        "byte-level BPE (llama.cpp needs 'gpt2'): tokenizer.json's BPE model says "
        "byte_fallback: true"
    )
    # printable ASCII maps to itself in the byte-level alphabet: 94 bytes have a token
    assert (
        "the GGUF's SentencePiece vocabulary has a token for 94 of the 243 bytes UTF-8 text "
        "can contain: llama.cpp aborts (std::out_of_range in byte_to_token)"
    ) in q["reason"]
    assert "set model.byte_fallback to false" in q["reason"]
    assert "quantize.gguf.pre_tokenizer" in q["reason"]
    assert "tokenization" not in q["checks"]  # llama.cpp never ran on the broken vocabulary
    for mark in GDB_MARKS:
        assert mark not in out + err
    root = tmp_path / RELEASE
    assert _leftovers(tmp_path) == []
    assert list(q["files"]) == [f"quant/rejected/gguf/{RELEASE}-Q8_0.gguf"]
    assert not (root / "quant" / "gguf").exists()


def _run_with_abort(tmp_path: Path, model: Path, spec: str, monkeypatch: Any) -> dict[str, Any]:
    monkeypatch.setenv(TEST_ABORT_ENV, spec)
    # Q8_0 (the type crashed) is optional: the release goes on with Q4_K_M and the step is
    # done (a required one would stop it with exit 5: tests/quantize/test_rejected_rule.py)
    gguf = {"types": ["Q8_0", "Q4_K_M"], "optional": ["Q8_0"]}
    recipe = quant_release(tmp_path, model, {"gguf": gguf}).recipe
    result = quantize_recorded(recipe, workdir=tmp_path)
    return {q["type"]: q for q in result.record["quants"]}


@pytest.mark.parametrize(
    ("spec", "check"),
    [
        # one crash point in `make test`; the other two in the heavy tier (make test-heavy, CI)
        pytest.param("compare:Q8_0", "logits", marks=pytest.mark.heavy),
        ("quantize:Q8_0", "build"),
        pytest.param("tokenize:Q8_0", "tokenization", marks=pytest.mark.heavy),
    ],
)
def test_a_crashed_type_is_rejected_and_the_next_is_accepted(
    tmp_path: Path, tiny_llama: Path, monkeypatch: pytest.MonkeyPatch, spec: str, check: str
) -> None:
    quants = _run_with_abort(tmp_path, tiny_llama, spec, monkeypatch)
    bad, good = quants["Q8_0"], quants["Q4_K_M"]
    assert bad["accepted"] is False
    assert bad["checks"][check]["signal"] == "SIGABRT"
    assert (
        f"{check}: " in bad["reason"]
        and "was killed by SIGABRT (llama.cpp aborted)" in (bad["reason"])
    )
    assert good["accepted"] is True, good["reason"]
    assert good["checks"]["logits"]["ok"] and good["checks"]["tokenization"]["ok"]
    root = tmp_path / RELEASE
    assert sorted(p.name for p in (root / "quant" / "gguf").iterdir()) == [f"{RELEASE}-Q4_K_M.gguf"]
    if check == "build":  # a crashed quantizer leaves no half-written file anywhere
        assert bad["files"] == {}
        assert not (root / "quant" / "rejected").exists()
    assert _leftovers(tmp_path) == []
    record = json.loads((root / "manifest.json").read_text())["steps"]["quantize"]
    assert record["status"] == "done"


def test_the_fix_the_rejection_names_works(tmp_path: Path, byte_fallback_llama: Path) -> None:
    """byte_fallback: false (a clean tokenizer.json) plus quantize.gguf.pre_tokenizer: the
    converter writes a `gpt2` vocabulary and llama.cpp tokenizes like transformers."""
    import shutil

    from transformers import AutoTokenizer

    from medrelease.quantize.gguf.build import convert
    from medrelease.quantize.gguf.contents import check_gguf_files
    from medrelease.quantize.measure.tokenization import check_tokenization_gguf
    from medrelease.quantize.measure.tokenizer_facts import TokenizerFacts

    model = tmp_path / "clean"
    shutil.copytree(byte_fallback_llama, model)
    spec = json.loads((model / "tokenizer.json").read_text())
    spec["model"]["byte_fallback"] = False
    (model / "tokenizer.json").write_text(json.dumps(spec))
    files = convert(model, tmp_path / "out", "x", "f32", None, pre_tokenizer="qwen2")
    tokenizer = TokenizerFacts.of(AutoTokenizer.from_pretrained(str(model)))
    checks = check_gguf_files(files, model, "F32", tokenizer)
    assert checks["vocabulary"]["ok"] and checks["vocabulary"]["gguf_model"] == "gpt2"
    assert checks["contents"]["ok"], checks["contents"]
    result = check_tokenization_gguf(files[0], tokenizer)  # in a child; no abort this time
    assert result["ok"], result


def test_a_killed_converter_rejects_every_gguf_quant_once(
    tmp_path: Path, tiny_llama: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The converter killed (as the OOM killer would): each type is rejected with that reason,
    the conversion is not retried for every type, and nothing is left behind."""
    from medrelease.quantize.gguf import build as gguf

    runs = tmp_path / "runs.txt"
    killer = f"open({str(runs)!r}, 'a').write('x'); import os; os.kill(os.getpid(), 9)"
    monkeypatch.setattr(gguf, "CONVERTER", killer)
    recipe = quant_release(tmp_path, tiny_llama, {"gguf": ["Q8_0", "Q4_K_M"]}).recipe
    result = quantize_recorded(recipe, workdir=tmp_path)
    assert runs.read_text() == "x"
    for q in result.record["quants"]:
        assert q["accepted"] is False and q["files"] == {}
        assert q["checks"]["build"]["signal"] == "SIGKILL"
        assert q["reason"] == (
            "build: llama.cpp's converter was killed by SIGKILL (out of memory?)"
        )
    assert [p for p in (tmp_path / RELEASE / "quant").rglob("*") if p.is_file()] == []
    assert _leftovers(tmp_path) == []


def test_a_crashed_llama_imatrix_rejects_the_quants_that_need_it(
    tmp_path: Path, tiny_llama: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """llama-imatrix dying of SIGABRT (a stand-in tool that aborts): every quant of the
    recipe needs the matrix, so each is rejected naming the signal; the step completes."""
    from medrelease.quantize.gguf import tools as llama_tools

    tools = tmp_path / "tools"
    tools.mkdir()
    for name in llama_tools.TOOLS:
        script = tools / name
        script.write_text("#!/bin/sh\necho 'loading model' >&2\nkill -ABRT $$\n")
        script.chmod(0o755)
    monkeypatch.setattr(llama_tools, "tools_dir", lambda: tools)
    gguf_cfg = {"types": ["Q4_K_M"], "imatrix": {"calibration": "default"}}
    recipe = quant_release(tmp_path, tiny_llama, {"gguf": gguf_cfg}).recipe
    result = quantize_recorded(recipe, workdir=tmp_path)
    (q,) = result.record["quants"]
    assert q["accepted"] is False and q["checks"]["imatrix"]["signal"] == "SIGABRT"
    assert q["reason"] == (
        "imatrix: llama-imatrix was killed by SIGABRT (llama.cpp aborted); "
        "last log lines: loading model"
    )
    assert result.record["imatrix"] is None
    assert [p for p in (tmp_path / RELEASE / "quant").rglob("*") if p.is_file()] == []
    assert _leftovers(tmp_path) == []
