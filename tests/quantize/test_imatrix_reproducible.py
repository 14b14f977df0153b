"""Importance-matrix quants are reproducible and carry no machine-local paths.

llama.cpp writes the file names it was given into the GGUF metadata (`imatrix.datasets` in the
matrix, `quantize.imatrix.file` / `quantize.imatrix.dataset` in each quant). Given temporary
or absolute paths, two runs of the same recipe gave different bytes and published a build
folder's path. Two runs in different work folders must give identical files, and no string in
their metadata may name a path on the machine that made them.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from medrelease.quantize.gguf import tools as llama_tools
from medrelease.quantize.gguf.imatrix import dataset_name
from quantize.quanthelpers import RELEASE, quant_release

needs_tools = pytest.mark.skipif(
    not llama_tools.tools_present(), reason="llama.cpp tools not built: run `medrelease setup`"
)


def _quantize(workdir: Path, model: Path, calibration: str) -> dict[str, Any]:
    from medrelease.core.console import Reporter
    from medrelease.pipeline.recipes import load_recipe
    from medrelease.quantize.step import quantize_release

    gguf = {"types": ["Q4_K_M"], "imatrix": {"calibration": calibration}}
    recipe = quant_release(workdir, model, {"gguf": gguf}).recipe
    if calibration != "default":  # a recipe-relative text: the packaged one, under a new name
        from medrelease.quantize.texts import load_text

        text = load_text("calibration", "default", workdir).text
        (workdir / calibration).parent.mkdir(parents=True, exist_ok=True)
        (workdir / calibration).write_text(text, encoding="utf-8")
    result = quantize_release(load_recipe(recipe), workdir=workdir, reporter=Reporter(quiet=True))
    return {"record": result.record, "root": workdir / RELEASE, "workdir": workdir}


def _strings(path: Path) -> dict[str, list[str]]:
    """Every string (and string-array) value in a GGUF's metadata, read with gguf-py."""
    from gguf import GGUFReader, GGUFValueType

    out: dict[str, list[str]] = {}
    for name, field in GGUFReader(path).fields.items():
        if field.types and field.types[-1] == GGUFValueType.STRING:
            value = field.contents()
            out[name] = list(value) if isinstance(value, list) else [value]
    return out


def _gguf_outputs(run: dict[str, Any]) -> dict[str, str]:
    outputs = run["record"]["outputs"]
    return {rel: rec["sha256"] for rel, rec in outputs.items() if rel.endswith(".gguf")}


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory, tiny_llama: Path) -> list[dict[str, Any]]:
    # different absolute paths (and depths) for the same recipe
    first = tmp_path_factory.mktemp("first")
    second = tmp_path_factory.mktemp("second") / "somewhere" / "else"
    second.mkdir(parents=True)
    return [_quantize(w, tiny_llama, "default") for w in (first, second)]


@pytest.mark.slow
@needs_tools
@pytest.mark.heavy  # the heavy tier (make test-heavy, in CI): two imatrix quantize runs
def test_two_runs_give_identical_imatrix_and_quants(two_runs):
    from medrelease.core.hashing import sha256_file_uncached

    a, b = two_runs
    files = _gguf_outputs(a)
    imatrix_rel = f"quant/gguf/{RELEASE}-imatrix.gguf"
    assert imatrix_rel in files and f"quant/gguf/{RELEASE}-Q4_K_M.gguf" in files
    assert files == _gguf_outputs(b)
    assert a["record"]["imatrix"] == b["record"]["imatrix"]
    # the recorded hashes are those of the files on disk
    for rel, sha in files.items():
        assert sha256_file_uncached(a["root"] / rel) == sha
        assert sha256_file_uncached(b["root"] / rel) == sha


@pytest.mark.slow
@needs_tools
@pytest.mark.heavy  # the heavy tier (make test-heavy, in CI): two imatrix quantize runs
def test_metadata_names_the_calibration_and_matrix_not_paths(two_runs):
    for run in two_runs:
        gguf_dir = run["root"] / "quant" / "gguf"
        imatrix = _strings(gguf_dir / f"{RELEASE}-imatrix.gguf")
        quant = _strings(gguf_dir / f"{RELEASE}-Q4_K_M.gguf")
        assert imatrix["imatrix.datasets"] == ["calibration/default.txt"]
        assert quant["quantize.imatrix.file"] == [f"{RELEASE}-imatrix.gguf"]
        assert quant["quantize.imatrix.dataset"] == ["calibration/default.txt"]
        for kvs in (imatrix, quant):
            for key, values in kvs.items():
                for s in values:
                    assert str(run["workdir"]) not in s, (key, s)
                    assert ".mr-tmp" not in s and "/tmp/" not in s, (key, s)
                    # a vocabulary may hold tokens such as "/": only names are paths
                    if not key.startswith("tokenizer.ggml."):
                        assert not PurePosixPath(s).is_absolute(), (key, s)
                        assert not s.startswith("~"), (key, s)


@pytest.mark.slow
@needs_tools
@pytest.mark.heavy  # the heavy tier (make test-heavy, in CI): another imatrix quantize run
def test_recipe_calibration_file_is_named_as_declared(tmp_path, tiny_llama):
    run = _quantize(tmp_path, tiny_llama, "texts/clinic.txt")
    gguf_dir = run["root"] / "quant" / "gguf"
    imatrix = _strings(gguf_dir / f"{RELEASE}-imatrix.gguf")
    quant = _strings(gguf_dir / f"{RELEASE}-Q4_K_M.gguf")
    assert imatrix["imatrix.datasets"] == ["texts/clinic.txt"]
    assert quant["quantize.imatrix.dataset"] == ["texts/clinic.txt"]


@pytest.mark.parametrize(
    ("declared", "name"),
    [
        ("default", "calibration/default.txt"),
        ("clinic.txt", "clinic.txt"),
        ("texts/clinic.txt", "texts/clinic.txt"),
        ("./texts//clinic.txt", "texts/clinic.txt"),
        # names that would say where the recipe lives on this machine keep only the file name
        ("/home/alice/texts/clinic.txt", "clinic.txt"),
        ("~/texts/clinic.txt", "clinic.txt"),
        ("../shared/clinic.txt", "clinic.txt"),
        ("texts/../clinic.txt", "clinic.txt"),
    ],
)
def test_dataset_name_is_relative_and_machine_independent(declared, name):
    assert dataset_name(declared) == name
