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

from helpers import run_cli
from medrelease.pipeline.run import upstream_stale
from pipeline.test_release import recipe_for

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
    """A private copy of the released tree (recipe paths are relative to its folder), whose
    publication is its own copy of the export: the destination is an input of publish, so the
    copy publishes once to its own folder (identical files: nothing is written)."""
    src, target = released
    dst = tmp_path / "r"
    shutil.copytree(src, dst, symlinks=True)
    monkeypatch.chdir(dst)
    own = target.replace(str(src), str(dst))
    recipe = dst / "recipe.yaml"
    assert run_cli("publish", recipe, "--workdir", dst / "build", "--target", own) == 0
    return dst, own


def status(root: Path, *args: str) -> dict[str, dict]:
    from medrelease.commands.common import load
    from medrelease.pipeline.run import release_status

    sets = [a for a in args]
    run = release_status(load(root / "recipe.yaml", [], sets=sets), workdir=root / "build")
    return {s.name: {"state": s.state, "why": s.why} for s in run.steps}


def components(why: list[str]) -> list[str]:
    """The components a step's reasons name (each reason is `<component>: <what changed>`)."""
    return sorted({w.split(":")[0] for w in why})


def own_why(root: Path, step: str, *sets: str) -> list[str]:
    """One step's own reasons, whatever the steps before it say."""
    from medrelease.commands.common import load
    from medrelease.core.hashing import HashCache
    from medrelease.core.manifest import Manifest
    from medrelease.core.paths import ReleasePaths
    from medrelease.pipeline.run import step_state
    from medrelease.pipeline.steps import STEPS as DEFS

    loaded = load(root / "recipe.yaml", [], sets=list(sets))
    paths = ReleasePaths(root / "build", loaded.recipe.release.name)
    cache = HashCache(None)
    defn = next(d for d in DEFS if d.name == step)
    return step_state(defn, loaded, paths, Manifest.load(paths.root), cache).why


def direct(st: dict[str, dict]) -> dict[str, list[str]]:
    """step -> the components it is stale for (not merely downstream of a stale step), after
    checking that each step merely downstream names the steps it waits for."""
    own = {
        name: components(s["why"])
        for name, s in st.items()
        if s["state"] != "current" and not s["why"][0].startswith("upstream ")
    }
    for name, s in st.items():
        if s["state"] == "stale" and name not in own:
            before = [n for n in STEPS[: STEPS.index(name)] if n in own]
            assert s["why"] == [upstream_stale(before)], (name, s["why"])
    return own


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
        ("quantize.checks.reference=transformers", {"quantize": ["recipe"]}),
        ("card.stage_licenses.base=mit", {"card": ["recipe"]}),
        ("release.version=0.2.0", {"card": ["recipe"], "publish": ["recipe"]}),
        ("publish.tag=release-{version}", {"publish": ["recipe"]}),
    ],
)
def test_each_recipe_section_stales_exactly_its_steps(release, change, expected):
    root, _ = release
    assert direct(status(root, change)) == expected


def test_a_step_downstream_of_a_stale_one_names_it():
    assert upstream_stale(["merge"]) == "upstream merge is stale"
    assert upstream_stale(["merge", "quantize"]) == "upstream merge and quantize are stale"
    assert upstream_stale(["merge", "gate", "card"]) == "upstream merge, gate and card are stale"


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


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path below `folder` with its size and mtime: what a writer would change."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


@pytest.mark.slow
def test_reasons_name_the_key_the_stage_and_the_step(release, tmp_path):
    root, _ = release
    st = status(root, "merge.models.0.parameters.weight=0.4")
    assert st["merge"]["why"] == [
        "recipe: merge.models.0.parameters.weight 0.5 → 0.4 (--set on the command line)"
    ]
    # everything after it is stale because of it, and says which step
    assert st["gate"]["why"] == ["upstream merge is stale"]
    assert st["publish"]["why"] == ["upstream merge is stale"]

    # a value changed in the recipe file itself: no --set
    recipe = root / "recipe.yaml"
    data = yaml.safe_load(recipe.read_text())
    data["gates"]["batch_size"] = 2
    recipe.write_text(yaml.safe_dump(data, sort_keys=False))
    assert status(root)["gate"]["why"] == ["recipe: gates.batch_size 4 → 2"]
    data["gates"]["batch_size"] = 4

    # a stage whose content changed is named (a copy with one byte more)
    sft = tmp_path / "sft"
    shutil.copytree(data["stages"]["sft"]["path"], sft)
    (sft / "config.json").write_bytes((sft / "config.json").read_bytes() + b"\n")
    data["stages"]["sft"]["path"] = str(sft)
    recipe.write_text(yaml.safe_dump(data, sort_keys=False))
    assert status(root)["merge"]["why"] == ["stages: sft content changed"]


@pytest.mark.slow
def test_copied_stages_and_a_moved_build_skip_every_step(release, capsys, tmp_path):
    """The build was copied (the fixture) and its stage folders are copied elsewhere with the
    same bytes: nothing a step uses changed, so nothing runs."""
    root, target = release
    recipe = root / "recipe.yaml"
    data = yaml.safe_load(recipe.read_text())
    copies = tmp_path / "elsewhere"
    for name, spec in data["stages"].items():
        src = spec if isinstance(spec, str) else spec["path"]
        shutil.copytree(src, copies / name)
        if isinstance(spec, str):
            data["stages"][name] = str(copies / name)
        else:
            spec["path"] = str(copies / name)
    recipe.write_text(yaml.safe_dump(data, sort_keys=False))
    assert {k: v["state"] for k, v in status(root).items()} == dict.fromkeys(STEPS, "current")
    assert release_states(capsys, root, target) == dict.fromkeys(STEPS, "skipped")
    # the same copies given with --stage (the stand-in mechanism): the same checkpoints
    sets = [a for n in data["stages"] for a in ("--stage", f"{n}={copies / n}")]
    assert release_states(capsys, root, target, *sets) == dict.fromkeys(STEPS, "skipped")


@pytest.mark.slow
def test_gate_rerun_with_equal_numbers_leaves_quantize_current(release, capsys):
    """Quant evals compare with the gate's numbers: a gate re-evaluated from scratch that
    measures the same numbers (a new report file) does not re-quantize."""
    root, _ = release
    build = root / "build"
    evals = "quantize.checks.eval=true"
    assert run_cli("quantize", root / "recipe.yaml", "--workdir", build, "--set", evals) == 0
    report = build / "tiny-pipeline" / "gates" / "report.json"
    assert run_cli("gate", root / "recipe.yaml", "--workdir", build, "--no-cache") == 0
    assert status(root, evals)["quantize"]["state"] == "current"
    # a rule threshold changed: a new report (its rules differ), the same numbers
    before = report.read_bytes()
    rule = "gates.rules.0.min=-0.5"
    assert run_cli("gate", root / "recipe.yaml", "--workdir", build, "--set", rule) == 0
    assert report.read_bytes() != before
    st = status(root, evals, rule)
    assert st["gate"]["state"] == "current" and st["quantize"]["state"] == "current", st
    # a changed number does make it stale, and says so
    data = json.loads(report.read_text())
    metric = data["metrics"][0]
    metric["values"][data["candidate"]] += 0.25
    from medrelease.core.paths import ReleasePaths
    from medrelease.quantize.inputs import gate_numbers

    recorded = gate_numbers(ReleasePaths(build, "tiny-pipeline"))
    report.write_text(json.dumps(data))
    why = own_why(root, "quantize", evals, rule)  # (status: "upstream gate is stale")
    assert why[0].startswith(f"gate: {metric['metric']}.value "), why
    assert isinstance(recorded, dict) and metric["metric"] in recorded


@pytest.mark.slow
def test_release_to_a_new_target_publishes_there(release, capsys, tmp_path):
    root, _ = release
    other = tmp_path / "other-export"
    states = release_states(capsys, root, f"dir://{other}")
    assert states["publish"] == "ran", states
    assert {"merge", "gate", "quantize", "card"} <= {k for k, v in states.items() if v == "skipped"}
    exported = other / "medrelease-tests" / "tiny-pipeline"
    assert (exported / "README.md").is_file() and (exported / "model.safetensors").is_file()
    assert status(root)["publish"]["state"] == "current"  # judged at its recorded destination

    # the destination no longer holds the release: publish is stale, and says where
    (exported / "README.md").write_text("edited by hand\n")
    why = status(root)["publish"]["why"]
    assert why == ["remote: medrelease-tests/tiny-pipeline changed"] or why[0].startswith(
        "remote: medrelease-tests/tiny-pipeline "
    ), why
    shutil.rmtree(other)
    assert status(root)["publish"]["why"][0].startswith("remote: "), status(root)["publish"]
    assert release_states(capsys, root, f"dir://{other}")["publish"] == "ran"
    assert (exported / "README.md").read_text() != "edited by hand\n"


@pytest.mark.slow
def test_status_writes_nothing_into_the_build(release):
    root, _ = release
    build = root / "build"
    shutil.rmtree(build / "tiny-pipeline" / ".cache")  # so that status has hashes to compute
    before = snapshot(build)
    assert {k: v["state"] for k, v in status(root).items()} == dict.fromkeys(STEPS, "current")
    assert snapshot(build) == before


@pytest.mark.slow
def test_a_stand_in_build_is_refused_by_publish(release, capsys, tmp_path):
    """A build merged from a --stage stand-in is not the recipe's release: publishing it
    under the recipe's repos is refused, whoever asks and with or without --stage."""
    root, target = release
    recipe, build = root / "recipe.yaml", root / "build"
    data = yaml.safe_load(recipe.read_text())
    # a copy of the declared stage with the same bytes is the same checkpoint
    same = tmp_path / "sft-copy"
    shutil.copytree(data["stages"]["sft"]["path"], same)
    assert run_cli("merge", recipe, "--workdir", build, "--stage", f"sft={same}", "--force") == 0
    assert run_cli("publish", recipe, "--workdir", build, "--target", target) == 0

    # another checkpoint in its place is not
    standin = Path(data["stages"]["sft"]["path"]).parent / "dpo"  # the tiny family's dpo
    args = ("--workdir", build, "--stage", f"sft={standin}")
    assert run_cli("release", recipe, *args, "--no-publish") == 0
    export = tmp_path / "export"
    capsys.readouterr()
    assert run_cli("publish", recipe, "--workdir", build, "--target", f"dir://{export}") == 2
    err = capsys.readouterr().err
    assert "refusing to publish" in err and "sft" in err and "--allow-overridden-stages" in err
    assert not export.exists()
    # release says the same at its publish step
    assert run_cli("release", recipe, *args, "--target", f"dir://{export}") == 2
    assert not export.exists()

    # opted in: published, and every card and the manifest name the stage
    assert run_cli(
        "publish", recipe, "--workdir", build, "--target", f"dir://{export}",
        "--allow-overridden-stages",
    ) == 0  # fmt: skip
    from medrelease.stages.provenance import BANNER_MARKER

    for repo in ("tiny-pipeline", "tiny-pipeline-GGUF"):
        folder = export / "medrelease-tests" / repo
        card = (folder / "README.md").read_text()
        assert card.count(BANNER_MARKER) == 1 and "**sft**" in card, repo
        manifest = json.loads((folder / "manifest.json").read_text())
        assert [s["stage"] for s in manifest["publication"]["overridden_stages"]] == ["sft"]
        assert "NOT THE DECLARED CHECKPOINTS" in manifest["publication"]["warning"]


@pytest.mark.slow
def test_a_sweep_report_makes_the_card_stale(release):
    """The card's "How the merge was chosen" reads sweep/report.json: a new sweep report makes
    the card (and publish after it) stale, and nothing before it."""
    root, _ = release
    assert direct(status(root)) == {}
    build = next((root / "build").glob("*/manifest.json")).parent
    (build / "sweep").mkdir()
    (build / "sweep" / "report.json").write_text("{}")
    assert direct(status(root)) == {"card": ["sweep_report"]}
