"""Importance-matrix quants through llama.cpp's llama-imatrix / llama-quantize (built by setup).

The tools come from `medrelease setup` (make install); without them these tests cannot run, and
the missing-tools error is tested on its own with an empty tools folder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from helpers import run_cli
from medrelease.core.hashing import sha256_file_uncached
from medrelease.quantize.gguf import tools as llama_tools
from medrelease.quantize.texts import load_text
from quantize.quanthelpers import RELEASE, quant_release, quantize_recorded

pytestmark = pytest.mark.slow

needs_tools = pytest.mark.skipif(
    not llama_tools.tools_present(), reason="llama.cpp tools not built: run `medrelease setup`"
)
# IQ3_XXS and IQ2_XS are types llama.cpp refuses to make without an importance matrix
TYPES = ["Q4_K_M", "IQ3_XXS", "IQ2_XS"]
IQ_TYPES = ["IQ3_XXS", "IQ2_XS"]


def _quantize(workdir: Path, model: Path, gguf: dict[str, Any]) -> dict[str, Any]:
    recipe = quant_release(workdir, model, {"gguf": gguf}).recipe
    result = quantize_recorded(recipe, workdir=workdir)
    return {"record": result.record, "root": workdir / RELEASE, "recipe": recipe}


@pytest.fixture(scope="module")
def with_imatrix(tmp_path_factory: pytest.TempPathFactory, tiny_llama: Path) -> dict[str, Any]:
    gguf = {"types": TYPES, "imatrix": {"calibration": "default"}}
    run = _quantize(tmp_path_factory.mktemp("imatrix"), tiny_llama, gguf)
    run["quants"] = {q["type"]: q for q in run["record"]["quants"]}
    return run


@pytest.fixture(scope="module")
def without_imatrix(tmp_path_factory: pytest.TempPathFactory, tiny_llama: Path) -> dict[str, Any]:
    run = _quantize(tmp_path_factory.mktemp("plain"), tiny_llama, {"types": ["Q4_K_M"]})
    run["quants"] = {q["type"]: q for q in run["record"]["quants"]}
    return run


@needs_tools
def test_imatrix_is_recorded_and_matches_the_file(with_imatrix):
    root, record = with_imatrix["root"], with_imatrix["record"]
    imatrix = record["imatrix"]
    path = root / imatrix["file"]
    assert imatrix["file"] == f"quant/gguf/{RELEASE}-imatrix.gguf"
    assert imatrix["sha256"] == sha256_file_uncached(path)
    assert imatrix["calibration"] == "default"
    calibration = load_text("calibration", "default", root)
    assert imatrix["calibration_sha256"] == calibration.sha256
    assert imatrix["tool"].startswith("llama-imatrix llama-cpp-python==")
    # built from the sdist by `medrelease setup`, or into llama-cpp-python's wheel by `make`
    assert re.search(r"(sdist|source tree) sha256 [0-9a-f]{64}", imatrix["tool"])
    assert record["outputs"][imatrix["file"]]["sha256"] == imatrix["sha256"]
    # the manifest on disk says the same as the returned record
    on_disk = json.loads((root / "manifest.json").read_text())["steps"]["quantize"]
    assert on_disk["imatrix"] == imatrix
    from medrelease.quantize.report import quant_table

    assert imatrix["file"] in str(quant_table(record).caption)


@needs_tools
def test_imatrix_file_is_llama_cpp_gguf_with_the_recorded_chunks(with_imatrix):
    """Read independently with gguf-py: llama.cpp's imatrix GGUF layout and chunk count."""
    from gguf import GGUFReader

    imatrix = with_imatrix["record"]["imatrix"]
    reader = GGUFReader(with_imatrix["root"] / imatrix["file"])
    fields = {name: reader.fields[name].contents() for name in reader.fields}
    assert fields["general.type"] == "imatrix"
    assert imatrix["chunks"] >= 2 and fields["imatrix.chunk_count"] == imatrix["chunks"]
    assert fields["imatrix.chunk_size"] == imatrix["context"]
    names = {t.name for t in reader.tensors}
    assert "blk.0.ffn_down.weight.in_sum2" in names and "blk.0.ffn_down.weight.counts" in names


@needs_tools
def test_imatrix_q4_k_m_passes_the_checks(with_imatrix, without_imatrix):
    q = with_imatrix["quants"]["Q4_K_M"]
    assert q["accepted"], q["reason"]
    assert q["checks"]["tokenization"]["ok"] and q["checks"]["logits"]["ok"]
    plain = without_imatrix["quants"]["Q4_K_M"]
    assert plain["accepted"], plain["reason"]
    # the importance matrix really changed the quantization (same model, same type)
    (with_file,) = q["files"].values()
    (plain_file,) = plain["files"].values()
    assert with_file["sha256"] != plain_file["sha256"]
    ratio_with = q["checks"]["logits"]["value"]
    ratio_plain = plain["checks"]["logits"]["value"]
    print(f"Q4_K_M ppl ratio: with imatrix {ratio_with:.5f}, without {ratio_plain:.5f}")
    assert 0.9 < ratio_with < 1.08 and 0.9 < ratio_plain < 1.08


@needs_tools
@pytest.mark.parametrize("qtype", IQ_TYPES)
def test_types_that_need_an_imatrix_are_made_and_judged(with_imatrix, qtype):
    """Impossible without an imatrix; with one they are produced and checked like any quant."""
    q = with_imatrix["quants"][qtype]
    assert q["checks"]["tokenization"]["ok"]
    logits = q["checks"]["logits"]
    assert logits["metric"] == "ppl_ratio" and logits["value"] > 0
    (rel,) = q["files"]
    if q["accepted"]:
        assert logits["value"] <= logits["threshold"]
        assert rel == f"quant/gguf/{RELEASE}-{qtype}.gguf"
    else:  # a low-bit quant of a tiny random model may lose too much: kept out with a reason
        assert "ppl" in q["reason"] and rel.startswith("quant/rejected/")
    assert q["size"] < with_imatrix["quants"]["Q4_K_M"]["size"]


@pytest.fixture(scope="module")
def f16_gguf(tmp_path_factory: pytest.TempPathFactory, tiny_llama: Path) -> Path:
    from medrelease.quantize.gguf.build import convert

    (path,) = convert(tiny_llama, tmp_path_factory.mktemp("f16"), "tiny", "f16", None)
    return path


def test_imatrix_flags_match_what_llama_cpp_refuses(f16_gguf, tmp_path):
    """Every type through the bindings without an imatrix: exactly the flagged ones fail."""
    from medrelease.quantize.gguf.build import quantize
    from medrelease.quantize.gguf.child import LlamaChildError
    from medrelease.quantize.gguf.quant_types import TYPES as ALL_TYPES

    refused = []
    for t in ALL_TYPES.values():
        if t.is_float:
            continue
        try:
            quantize([f16_gguf], tmp_path, t.name, t, 2)
        except LlamaChildError as exc:  # a refusal of this type: the quant is rejected
            assert exc.signal is None and "requires an imatrix" in exc.reason, exc.reason
            refused.append(t.name)
            assert not list(tmp_path.glob(f"{t.name}*.gguf"))  # nothing half-written kept
    assert refused == [t.name for t in ALL_TYPES.values() if t.imatrix]


@needs_tools
def test_quantize_binary_equals_the_bindings(f16_gguf, tmp_path):
    """The built llama-quantize is the same code as llama-cpp-python's: identical bytes."""
    import subprocess

    from medrelease.quantize.gguf.build import quantize
    from medrelease.quantize.gguf.quant_types import gguf_type

    (api,) = quantize([f16_gguf], tmp_path, "api", gguf_type("Q4_K_M"), 2)
    binary = tmp_path / "binary.gguf"
    cmd = [str(llama_tools.tool_path("llama-quantize")), str(f16_gguf), str(binary), "Q4_K_M"]
    subprocess.run(cmd, capture_output=True, check=True)
    assert sha256_file_uncached(binary) == sha256_file_uncached(api)


@needs_tools
def test_rerun_is_skipped_and_imatrix_kept(with_imatrix, capsys):
    code = run_cli("quantize", with_imatrix["recipe"], "-w", with_imatrix["root"].parent, "--json")
    capsys.readouterr()
    assert code == 0
    record = json.loads((with_imatrix["root"] / "manifest.json").read_text())["steps"]["quantize"]
    assert record["imatrix"] == with_imatrix["record"]["imatrix"]


def test_missing_tools_give_the_setup_hint(tmp_path, tiny_llama, capsys, monkeypatch):
    empty = tmp_path / "no-tools"
    empty.mkdir()
    monkeypatch.setattr(llama_tools, "tools_dir", lambda: empty)
    gguf = {"types": ["Q4_K_M"], "imatrix": {"calibration": "default"}}
    recipe = quant_release(tmp_path, tiny_llama, {"gguf": gguf}).recipe
    assert run_cli("quantize", recipe, "-w", tmp_path, "--json") == 7
    out = json.loads(capsys.readouterr().out)
    assert out["error"] == "environment" and "llama-imatrix" in out["message"]
    assert "run `medrelease setup`" in out["hint"]
    assert not (tmp_path / RELEASE / "quant").exists()  # refused before any work


@needs_tools
def test_too_short_calibration_text_is_explained(tmp_path, tiny_llama, capsys):
    gguf = {"types": ["Q4_K_M"], "imatrix": {"calibration": "short.txt"}}
    recipe = quant_release(tmp_path, tiny_llama, {"gguf": gguf}).recipe
    (tmp_path / "short.txt").write_text("The patient has a fever and a cough.\n")
    assert run_cli("quantize", recipe, "-w", tmp_path, "--json") == 3
    out = json.loads(capsys.readouterr().out)
    assert "calibration text 'short.txt' is too short" in out["message"]
    assert "at least 256 tokens" in out["message"] and "longer" in out["hint"]
    assert "(it has " in out["message"]  # counted by us before llama-imatrix runs
    assert not (tmp_path / RELEASE / "quant" / "gguf").exists()  # nothing half-written
