"""Every seed recipe in merges/ runs end to end on tiny stand-ins, offline, in-process.

For each recipe: tiny random stages of its architecture family replace the Hub checkpoints
(`--stage NAME=PATH`, the adapter stage stays an adapter), an overlay from
tests/recipes/standins/ shrinks the gates (few documents, few generated tokens, opened-up
thresholds on the recipe's own rule shapes) and AWQ calibration, `--set gates.data_dir=...`
points the presets at a few rows in each dataset's Hub schema, and `medrelease release` runs
merge -> gate -> quantize -> card -> publish to a local Hub server.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from helpers import HUB_TOKEN, run_cli
from medrelease.core.hashing import sha256_file
from medrelease.testing.standins import (
    StandinFamily,
    recipe_presets,
    standin_arch,
    standin_overrides,
    write_eval_data,
)

REPO = Path(__file__).resolve().parents[2]
MERGES = REPO / "merges"
OVERLAYS = Path(__file__).resolve().parent / "standins"
TOKEN = HUB_TOKEN  # tests/real/test_real_release.py imports it from here
STEPS = ["merge", "gate", "quantize", "card", "publish"]
# Quant families an overlay removes, and why (see the overlay's comment); nothing else may go.
DROPPED: dict[str, set[str]] = {}
RECIPES = sorted(MERGES.glob("*.yaml"))


@pytest.fixture(scope="session")
def standin_families(tmp_path_factory: pytest.TempPathFactory):
    """arch -> StandinFamily; models are built on first use and shared by every recipe."""
    cache: dict[str, StandinFamily] = {}

    def get(arch: str) -> StandinFamily:
        if arch not in cache:
            cache[arch] = StandinFamily(tmp_path_factory.mktemp(f"standin-{arch}"), arch)
        return cache[arch]

    return get


@pytest.fixture(scope="session")
def punkt_tab(tmp_path_factory: pytest.TempPathFactory) -> None:
    """IFEval needs NLTK's punkt_tab offline; install it (as `medrelease setup` does) if absent."""
    import nltk

    from medrelease.gate.nltk_data import install_punkt_tab, punkt_tab_available

    if not punkt_tab_available():
        root = tmp_path_factory.mktemp("nltk_data")
        install_punkt_tab(root)
        nltk.data.path.append(str(root))


def test_every_recipe_has_an_overlay():
    recipes = sorted(p.name for p in MERGES.glob("*.yaml"))
    assert sorted(p.name for p in OVERLAYS.glob("*.yaml")) == recipes


@pytest.mark.slow
@pytest.mark.heavy  # minutes on 2 cores: the heavy tier (make test-heavy, in CI)
@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_runs_end_to_end_on_standins(
    recipe: Path,
    tmp_path: Path,
    standin_families: Any,
    punkt_tab: None,
    hub_default: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # the Hub is reachable, but the gate's data sets are the stand-ins' local files
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    release_on_standins(recipe, tmp_path, standin_families, hub_default, capsys)


def release_on_standins(
    recipe: Path,
    tmp_path: Path,
    standin_families: Any,
    hub: Any,
    capsys: pytest.CaptureFixture[str],
    sets: list[str] | None = None,
) -> None:
    from medrelease.pipeline.recipes import load_recipe
    from medrelease.recipe.stages import AdapterStage

    sets = sets or []
    original = load_recipe(recipe, check_merge=False)
    effective = load_recipe(recipe, check_merge=False, overlays=[OVERLAYS / recipe.name], sets=sets)
    family = standin_families(standin_arch(recipe))
    overrides = standin_overrides(original.recipe, family)
    data_dir = write_eval_data(tmp_path / "eval-data", recipe_presets(original.recipe))
    workdir = tmp_path / "build"
    args = ["release", recipe, "--workdir", workdir, "--overlay", OVERLAYS / recipe.name]
    for name, path in overrides.items():
        args += ["--stage", f"{name}={path}"]
    for assignment in [f"gates.data_dir={data_dir}", *sets]:
        args += ["--set", assignment]
    # stand-ins are not the recipe's checkpoints: publishing them under the recipe's repos
    # needs the opt-in, and every card and manifest.json then name them (issue 20)
    args += ["--allow-overridden-stages", "--json"]

    assert run_cli(*args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert [(s["step"], s["state"]) for s in summary["steps"]] == [(s, "ran") for s in STEPS]

    release = original.recipe.release
    root = workdir / release.name
    manifest = json.loads((root / "manifest.json").read_text())

    # the manifest says this ran on stand-ins, and with which overlay and data
    assert manifest["recipe"]["overrides"] == overrides
    from medrelease.stages.provenance import BANNER_MARKER

    named = [s["stage"] for s in manifest["steps"]["publish"]["overridden_stages"]]
    assert set(named) <= set(overrides) and named, named
    card = (root / "card" / "README.md").read_text()
    assert card.count(BANNER_MARKER) == 1 and all(f"**{n}**" in card for n in named)
    changes = manifest["recipe"]["changes"]
    assert changes[0].startswith(f"overlay {recipe.name} sha256:")
    assert changes[1] == f"set gates.data_dir={data_dir}"
    stages = manifest["steps"]["merge"]["stages"]
    for name in _merged_stage_names(original):  # merged from the stand-ins, adapters as adapters
        assert stages[name]["source"] == overrides[name], name
        adapter = isinstance(original.recipe.stages[name], AdapterStage)
        assert stages[name]["kind"] == ("adapter" if adapter else "local"), name

    _check_gate_report(root, original)
    gates = original.recipe.gates
    evaluated = (1 + len(gates.baselines)) * len(gates.tasks)  # every model x task, none cached
    assert manifest["steps"]["gate"]["evaluations"] == {"run": evaluated, "cached": 0}
    _check_quants(root, manifest, effective)
    dropped = DROPPED.get(recipe.stem, set()) | ({"awq"} if "quantize.awq=null" in sets else set())
    assert _families(original) - _families(effective) == dropped
    for card in _expected_cards(manifest):
        assert (root / card).is_file(), card
        assert card in manifest["steps"]["card"]["outputs"]
    _check_hub(hub, manifest, release)


def _merged_stage_names(loaded: Any) -> set[str]:
    from medrelease.recipe.stages import AdapterStage

    names = {m["model"] for m in loaded.recipe.merge["models"]}
    names |= {loaded.recipe.merge.get("base_model")} - {None}
    stages = loaded.recipe.stages
    return names | {stages[n].base for n in list(names) if isinstance(stages[n], AdapterStage)}


def _check_gate_report(root: Path, original: Any) -> None:
    """Every task of the recipe (not only of the overlay) was evaluated, with numbers."""
    report = json.loads((root / "gates" / "report.json").read_text())
    gates = original.recipe.gates
    labels = [t.label for t in gates.tasks]
    assert sorted(report["tasks"]) == sorted(labels)
    assert report["passed"] is True
    evaluated = {"merged", *gates.baselines}
    for label in labels:
        metrics = [m for m in report["metrics"] if m["task"] == label]
        assert metrics, f"no metrics for {label}"
        for m in metrics:
            assert set(m["values"]) == evaluated, m["metric"]
            assert all(isinstance(v, float) for v in m["values"].values()), m
    # the recipe's rules were judged on real values (thresholds opened up by the overlay)
    judged = {(r["metric"], r.get("vs")) for r in report["rules"]}
    assert {(r.metric, r.vs) for r in gates.rules} <= judged
    assert all(r["passed"] and r["candidate"] is not None for r in report["rules"])


def _families(loaded: Any) -> set[str]:
    quant = loaded.recipe.quantize
    return {f for f in ("gguf", "awq") if getattr(quant, f) is not None}


def _check_quants(root: Path, manifest: dict[str, Any], effective: Any) -> None:
    """Every quant the (overlaid) recipe asks for was accepted; files match their sha256."""
    quant = effective.recipe.quantize
    quants = manifest["steps"]["quantize"]["quants"]
    expected = [("gguf", t) for t in quant.gguf.types] if quant.gguf else []
    expected += [("awq", quant.awq.scheme)] if quant.awq else []
    assert [(q["family"], q["type"]) for q in quants] == expected
    for q in quants:
        assert q["accepted"], f"{q['family']} {q['type']} rejected: {q['reason']}"
        assert q["files"]
        for rel, rec in q["files"].items():
            assert (root / rel).is_file(), rel
            assert sha256_file(root / rel) == rec["sha256"], rel
        if q["family"] == "gguf":
            assert q["checks"]["logits"]["ok"] is True


def _expected_cards(manifest: dict[str, Any]) -> list[str]:
    families = {q["family"] for q in manifest["steps"]["quantize"]["quants"] if q["accepted"]}
    return ["card/README.md", "card/metrics.png", *(f"card/{f}/README.md" for f in families)]


def _check_hub(hub: Any, manifest: dict[str, Any], release: Any) -> None:
    """Every repo was committed and tagged; the GGUF repo holds the accepted files."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub.url, token=TOKEN)
    tag = f"v{release.version}"
    repos = {r["role"]: r for r in manifest["steps"]["publish"]["repos"]}
    families = {q["family"] for q in manifest["steps"]["quantize"]["quants"] if q["accepted"]}
    assert set(repos) == {"main", *families}, repos
    assert repos["main"]["repo"] == release.repo
    for entry in repos.values():
        assert entry["status"] == "committed" and entry["tag"] == tag
        refs = api.list_repo_refs(entry["repo"])
        assert [t.name for t in refs.tags] == [tag], entry["repo"]
        files = set(api.list_repo_files(entry["repo"], revision=tag))
        assert {"README.md", "manifest.json"} <= files
    main_files = set(api.list_repo_files(release.repo, revision=tag))
    assert {"config.json", "model.safetensors", "metrics.png"} <= main_files
    gguf = [
        (Path(rel).name, rec["sha256"])
        for q in manifest["steps"]["quantize"]["quants"]
        if q["family"] == "gguf"
        for rel, rec in q["files"].items()
    ]
    if not gguf:
        return
    infos = api.get_paths_info(repos["gguf"]["repo"], [n for n, _ in gguf], revision=tag)
    remote = sorted((i.path, getattr(getattr(i, "lfs", None), "sha256", None)) for i in infos)
    assert remote == sorted(gguf)


def test_standin_overrides_and_the_printed_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m medrelease.testing.standins` maps every stage (adapters stay adapters)."""
    import shlex

    from medrelease.testing import standins

    for method in ("base", "adapter"):
        monkeypatch.setattr(
            standins.StandinFamily, method, lambda self, m=method: self.root / m
        )  # no model build: this checks the mapping and the command line only
    monkeypatch.setattr(standins.StandinFamily, "variant", lambda self, i: self.root / f"v{i}")
    assert standins.main([str(MERGES / "qwen-4b-trad.yaml"), str(tmp_path)]) == 0
    cmd = shlex.split(capsys.readouterr().out.split(" --overlay <")[0])
    assert cmd[:3] == ["medrelease", "release", str(MERGES / "qwen-4b-trad.yaml")]
    stages = _stage_flags(cmd)
    assert stages == {
        "base": str(tmp_path / "qwen3" / "base"),
        "trad": str(tmp_path / "qwen3" / "adapter"),
    }
    # its gate is a custom task YAML with its own data: no preset data written, no folder named
    assert not any(c.startswith("gates.data_dir=") for c in cmd)
    assert not any("pre_tokenizer" in c for c in cmd)  # qwen3 stand-ins use SentencePiece

    # the qwen2 stand-in's BPE needs its pre-tokenizer named for llama.cpp's converter
    assert standins.main([str(MERGES / "meditron3-qwen2.5-7b.yaml"), str(tmp_path)]) == 0
    cmd = shlex.split(capsys.readouterr().out.split(" --overlay <")[0])
    assert "quantize.gguf.pre_tokenizer=qwen2" in cmd

    assert standins.main([str(MERGES / "med-advisor-4b.yaml"), str(tmp_path)]) == 0
    cmd = shlex.split(capsys.readouterr().out.split(" --overlay <")[0])
    stages = _stage_flags(cmd)
    assert stages == {
        "base": str(tmp_path / "qwen3" / "base"),
        "instruct": str(tmp_path / "qwen3" / "v1"),
        "phase3": str(tmp_path / "qwen3" / "v2"),
    }
    # the tiny data is in each dataset's layout: mmlu_medical has one folder per subject
    assert (tmp_path / "eval-data" / "mmlu_medical" / "anatomy" / "test.jsonl").is_file()


def _stage_flags(cmd: list[str]) -> dict[str, str]:
    from itertools import pairwise

    return dict(v.split("=", 1) for k, v in pairwise(cmd) if k == "--stage")


def test_standin_arch_is_read_from_the_recipe_header(tmp_path: Path) -> None:
    assert standin_arch(MERGES / "medswin-7b-sft.yaml") == "llama"
    bad = tmp_path / "r.yaml"
    bad.write_text("release: {}\n")
    with pytest.raises(ValueError, match="standin-arch"):
        standin_arch(bad)
