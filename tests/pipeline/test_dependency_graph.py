"""The dependency graph, pinned: change one input at a time and check exactly which steps go
stale, through `status`, through `release`, and after a standalone step run with --set.

Every step declares its inputs once (`<step>/inputs.py`) and records them in its own manifest
record, so `release`, `status` and the standalone commands cannot disagree. The first test
replays the bug that made this necessary: a standalone `quantize --set` changed the quants,
and the next `release` called quantize current and would have published the wrong quants.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from test_release import recipe_for

from helpers import run_cli

STEPS = ("merge", "gate", "quantize", "card", "publish")


@pytest.fixture(scope="module")
def released(tmp_path_factory, tiny_families):
    """One complete release (published to a folder), copied afresh for each test."""
    root = tmp_path_factory.mktemp("graph")
    recipe = recipe_for(root, tiny_families("llama"))
    data = yaml.safe_load(recipe.read_text())
    data["quantize"] = {"gguf": {"types": ["Q8_0", "Q4_K_M"]}}
    recipe.write_text(yaml.safe_dump(data, sort_keys=False))
    target = f"dir://{root / 'published'}"
    assert run_cli("release", recipe, "--workdir", root / "build", "--target", target) == 0
    return root, target


@pytest.fixture
def release(released, tmp_path, monkeypatch):
    """A private copy of the released tree (recipe paths are relative to its folder)."""
    src, target = released
    dst = tmp_path / "r"
    shutil.copytree(src, dst, symlinks=True)
    monkeypatch.chdir(dst)
    return dst, target.replace(str(src), str(dst))


def status(root: Path, *args: str) -> dict[str, dict]:
    from medrelease.commands.common import load
    from medrelease.pipeline.run import release_status

    sets = [a for a in args]
    run = release_status(load(root / "recipe.yaml", [], sets=sets), workdir=root / "build")
    return {s.name: {"state": s.state, "why": s.why} for s in run.steps}


def direct(st: dict[str, dict]) -> dict[str, list[str]]:
    """step -> its own reasons for being stale (not merely downstream of a stale step)."""
    return {
        name: s["why"]
        for name, s in st.items()
        if s["state"] != "current" and s["why"] != ["an earlier step is stale"]
    }


def release_states(capsys, root: Path, target: str, *args: str) -> dict[str, str]:
    capsys.readouterr()
    code = run_cli(
        "release", root / "recipe.yaml", "--workdir", root / "build", "--target", target,
        "--json", *args,
    )  # fmt: skip
    assert code == 0
    return {s["step"]: s["state"] for s in json.loads(capsys.readouterr().out)["steps"]}


@pytest.mark.slow
def test_standalone_quantize_with_set_is_not_mistaken_for_the_recipe(release, capsys):
    root, target = release
    assert {k: v["state"] for k, v in status(root).items()} == dict.fromkeys(STEPS, "current")

    # the sequence from the bug report: quantize alone with fewer types...
    only_q4 = 'quantize.gguf.types=["Q4_K_M"]'
    assert run_cli("quantize", root / "recipe.yaml", "--workdir", root / "build", "--set",
                   only_q4) == 0  # fmt: skip
    gguf = root / "build" / "tiny-pipeline" / "quant" / "gguf"
    assert sorted(p.name for p in gguf.glob("*.gguf")) == ["tiny-pipeline-Q4_K_M.gguf"]

    # ...is recorded as what it was: the plain recipe now finds quantize stale
    # (card and publish were made from the old quants: stale by their upstream)
    downstream = {"card": ["upstream"], "publish": ["upstream"]}
    assert direct(status(root)) == {"quantize": ["recipe"], **downstream}
    # and the same recipe with the same --set finds it current (one record, one definition)
    assert direct(status(root, only_q4)) == downstream

    # release re-quantizes to what the recipe asks; the quants come out byte-identical to the
    # ones the card and the publication were made from, so those two are current again
    states = release_states(capsys, root, target)
    assert states == {
        "merge": "skipped",
        "gate": "skipped",
        "quantize": "ran",
        "card": "skipped",
        "publish": "skipped",
    }, states
    assert sorted(p.name for p in gguf.glob("*.gguf")) == [
        "tiny-pipeline-Q4_K_M.gguf",
        "tiny-pipeline-Q8_0.gguf",
    ]
    card = (root / "build" / "tiny-pipeline" / "card" / "gguf" / "README.md").read_text()
    assert "Q8_0" in card and "Q4_K_M" in card
    published = root / "published" / "medrelease-tests" / "tiny-pipeline-GGUF"
    assert {p.name for p in published.glob("*.gguf")} == {
        "tiny-pipeline-Q4_K_M.gguf",
        "tiny-pipeline-Q8_0.gguf",
    }
    assert {k: v["state"] for k, v in status(root).items()} == dict.fromkeys(STEPS, "current")
    # a standalone quantize of the plain recipe agrees that there is nothing to do
    capsys.readouterr()
    assert run_cli("quantize", root / "recipe.yaml", "--workdir", root / "build", "--json") == 0
    assert json.loads(capsys.readouterr().out)["status"] == "skipped"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("merge.models.0.parameters.weight=0.4", {"merge": ["recipe"]}),
        ("seed=7", {"merge": ["recipe"], "quantize": ["recipe"]}),
        (
            "output.generation_config.repetition_penalty=1.2",
            {"merge": ["recipe"], "card": ["recipe"]},
        ),
        ("gates.batch_size=2", {"gate": ["recipe"]}),
        ('quantize.gguf.types=["Q8_0"]', {"quantize": ["recipe"]}),
        ("card.stage_licenses.base=mit", {"card": ["recipe"]}),
        ("release.version=0.2.0", {"card": ["recipe"], "publish": ["recipe"]}),
        ("publish.tag=release-{version}", {"publish": ["recipe"]}),
    ],
)
def test_each_recipe_section_stales_exactly_its_steps(release, change, expected):
    root, _ = release
    assert direct(status(root, change)) == expected


@pytest.mark.slow
def test_files_stages_outputs_and_tools_stale_exactly_their_steps(release, monkeypatch):
    root, _ = release
    rel = root / "build" / "tiny-pipeline"

    def changed(path: Path, expected: dict[str, list[str]]) -> None:
        before = path.read_bytes()
        path.write_bytes(before + b"\n")
        try:
            assert direct(status(root)) == expected, path
        finally:
            path.write_bytes(before)
        assert direct(status(root)) == {}

    recipe = yaml.safe_load((root / "recipe.yaml").read_text())
    changed(root / "card.md.j2", {"card": ["files", "templates"]})  # the recipe's template
    # a custom task: the gate runs it, the card ships it as eval/
    changed(root / "tasks" / "demo_mcq.yaml", {"gate": ["files"], "card": ["eval_files"]})
    # a stage's files (the shared fixture's stage, restored byte for byte afterwards)
    changed(Path(recipe["stages"]["sft"]["path"]) / "config.json", {"merge": ["stages"]})
    changed(Path(recipe["stages"]["base"]) / "config.json", {"gate": ["baselines"]})

    # an upstream artifact edited on disk: that step is stale, everything after it too
    changed(rel / "merged" / "config.json", {"merge": ["outputs changed or missing on disk"]})
    changed(rel / "gates" / "report.json", {"gate": ["outputs changed or missing on disk"]})
    changed(
        rel / "quant" / "gguf" / "tiny-pipeline-Q8_0.gguf",
        {"quantize": ["outputs changed or missing on disk"]},
    )

    # a tool upgrade: a fake jinja2 distribution earlier on sys.path stales only the card
    fake = root / "fake-dists"
    info = fake / "jinja2-99.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: jinja2\nVersion: 99.0\n")
    monkeypatch.syspath_prepend(str(fake))
    assert direct(status(root)) == {"card": ["tools"]}
