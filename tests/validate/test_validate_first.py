"""`medrelease validate` fails first: each bad-input family of issue 20 is refused by `validate`
(exit 2, the file:line or `--set` it came from, a fix), and the step that used to fail later
(after merging, after evaluating, at the Hub) now refuses it with the same first line, before
it writes anything. Tiny llama stages; the later steps stop at their start, so this is cheap.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from gate.gatehelpers import gate_recipe, write_demo_task, write_gate_recipe
from helpers import run_cli
from releases import built_release

GATES: dict[str, Any] = {
    "baselines": ["base"],
    "batch_size": 4,
    "device": "cpu",
    "tasks": [{"name": "demo_mcq", "task_yaml": "tasks/demo_mcq.yaml"}],
    "rules": [{"metric": "demo_mcq/acc", "min": 0.0}],
}


@dataclass
class Setup:
    root: Path
    llama: dict[str, Path]
    built: Path  # a workdir holding merged/: the gate would evaluate it

    def recipe(self, name: str, edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
        path = write_gate_recipe(self.root, self.llama, copy.deepcopy(GATES), name)
        if edit is not None:
            data = yaml.safe_load(path.read_text())
            edit(data)
            path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, llama: dict[str, Path]) -> Setup:
    root = tmp_path_factory.mktemp("validate-first")
    write_demo_task(root / "tasks", relative=True)
    built = root / "built"
    built_release(root, "merge", gate_recipe(llama, GATES), workdir=built, merged=llama["base"])
    return Setup(root, llama, built)


def _cli(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str]:
    code = run_cli(*args)
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, err
    return code, err


def _first_error(err: str) -> str:
    return next(line for line in err.splitlines() if line.startswith("error:"))


def _tree(folder: Path) -> dict[str, float]:
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.stat().st_mtime for p in sorted(folder.rglob("*"))}


@dataclass
class Family:
    edit: Callable[[dict[str, Any]], None] | None
    sets: list[str]
    step: str  # the step that failed later before
    expected: str  # in the message
    where: str  # "recipe" (a line of the recipe file) or the --set
    extra: list[str] = field(default_factory=list)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        node = data
        parts = path.split(".")
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[parts[-1]] = value

    return edit


FAMILIES: dict[str, Family] = {
    # gate exit 2 after building models, before: a baseline that is not a stage
    "baseline_not_a_stage": Family(
        _set("gates.baselines", ["base", "bsae"]),
        [],
        "gate",
        "'bsae' is not a stage of this recipe; did you mean 'base'?",
        "recipe",
    ),
    # gate exit 2 after evaluating every model, before
    "metric_no_task_computes": Family(
        _set("gates.rules", [{"metric": "demo_mcq/accuracy", "min": 0.5}]),
        [],
        "gate",
        "task 'demo_mcq' computes no metric 'demo_mcq/accuracy'",
        "recipe",
    ),
    # gate exit 1 (ValueError from lm-eval), before
    "batch_size_not_a_number": Family(
        None, ["gates.batch_size=abc"], "gate", "'abc' is not a batch size", "--set"
    ),
    "limit_zero": Family(
        None, ["gates.tasks.0.limit=0"], "gate", "limit: Input should be greater than 0", "--set"
    ),
    "limit_negative": Family(
        _set("gates.tasks.0.limit", -3),
        [],
        "gate",
        "limit: Input should be greater than 0",
        "recipe",
    ),
    # merge exit 5 after merging ("NaN/Inf"), before
    "weights_sum_to_zero": Family(
        _set("merge.models.1.parameters.weight", -0.5),
        [],
        "merge",
        "the weights of merge method 'linear' sum to 0 (sft 0.5, dpo -0.5)",
        "recipe",
    ),
    # the real Hub refused it at push, before; the local Hub accepted it
    "license_not_a_hub_id": Family(
        _set("release.license", "apache2"),
        [],
        "publish",
        "'apache2' is not a Hub license id; did you mean 'apache-2.0'?",
        "recipe",
    ),
    "license_other_without_name": Family(
        _set("release.license", "other"), [], "publish", "license_name and license_link", "recipe"
    ),
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_validate_fails_first(
    setup: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str], family: str
) -> None:
    f = FAMILIES[family]
    recipe = setup.recipe(f"{family}.yaml", f.edit)
    sets = [a for s in f.sets for a in ("--set", s)]
    fresh = tmp_path / "never-written"
    code, err = _cli(capsys, "validate", recipe, "--workdir", fresh, *sets)
    assert code == 2, err
    assert f.expected in err, err
    where = f"{recipe}:" if f.where == "recipe" else f"--set {f.sets[0]}"
    assert where in _first_error(err) and "fix:" in err, err
    assert not fresh.exists()  # validate writes nothing

    if f.step == "gate":
        before = _tree(setup.built)
        later = ("gate", recipe, "--workdir", setup.built)
    elif f.step == "merge":
        later = ("merge", recipe, "--workdir", fresh)
    else:
        later = ("publish", recipe, "--workdir", fresh, "--target", f"dir://{tmp_path / 'out'}")
    code_later, err_later = _cli(capsys, *later, *sets)
    assert code_later == 2, err_later
    assert _first_error(err_later) == _first_error(err)  # the same diagnosis, at the start
    if f.step == "gate":  # nothing evaluated, nothing cached, no report
        assert _tree(setup.built) == before
    else:
        assert not fresh.exists() and not (tmp_path / "out").exists()


def test_a_byte_that_is_not_utf8_is_located(
    setup: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = setup.recipe("latin1.yaml", _set("release.description", "MARK"))
    lines = recipe.read_bytes().split(b"\n")
    line = next(i for i, text in enumerate(lines, 1) if b"MARK" in text)
    recipe.write_bytes(recipe.read_bytes().replace(b"MARK", b"caf\xe9 au lait"))
    code, err = _cli(capsys, "validate", recipe)
    assert code == 2
    assert f"{recipe}:{line}: byte(s) e9 at column" in err and "not UTF-8" in err, err
    assert "fix:" in err
    # before: decoded with U+FFFD and merged; now the merge refuses it before any weights move
    code, err_merge = _cli(capsys, "merge", recipe, "--workdir", tmp_path / "w")
    assert code == 2 and _first_error(err_merge) == _first_error(err)
    assert not (tmp_path / "w").exists()


def test_gate_limit_option_must_be_positive(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = setup.recipe("limit-option.yaml")
    before = _tree(setup.built)
    for bad in ("0", "-3"):
        code, err = _cli(capsys, "gate", recipe, "--workdir", setup.built, "--limit", bad)
        assert code == 2 and "must be above 0" in err and "fix:" in err, err
    assert _tree(setup.built) == before


def test_the_good_recipe_passes(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    """The families above are one edit away from a recipe validate accepts."""
    code = run_cli("validate", setup.recipe("good.yaml"), "--json")
    out = capsys.readouterr().out
    assert code == 0 and json.loads(out)["valid"] is True


def test_several_problems_are_all_listed_with_where_and_fix(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["release"]["licence"] = "mit"  # a typo: unknown key
        data["release"]["license"] = "apache2"
        data["gates"]["batch_size"] = 0

    recipe = setup.recipe("several.yaml", edit)
    args = ("validate", recipe, "--set", "gates.tasks.0.limit=-1")
    code, err = _cli(capsys, *args)
    assert code == 2
    lines = err.splitlines()
    assert lines[0] == f"error: 4 problems in {recipe}", err
    items = [line for line in lines if line.startswith("  - ")]
    assert len(items) == 4, err
    assert "unknown key 'release.licence'; did you mean 'license'?" in items[0]  # typo first
    assert all(f"{recipe}:" in i or "--set gates.tasks.0.limit=-1:" in i for i in items), err
    assert "more)" not in err
    assert lines[-1].startswith("fix: ")

    code = run_cli(*args, "--json")
    out = json.loads(capsys.readouterr().out)
    assert code == 2 and out["exit_code"] == 2 and out["error"] == "recipe"
    assert len(out["problems"]) == 4
    for p in out["problems"]:
        assert p["where"] and p["message"] and p["hint"], p
    assert {p["where"].rsplit(":", 1)[0] for p in out["problems"]} == {
        str(recipe),
        "--set gates.tasks.0.limit=-1",
    }


@pytest.mark.parametrize(
    "case, expected",
    [
        ("bad_set_index", "gates.tasks.5 is not an index of a list of 1 item(s)"),
        ("folder", "is a folder, not a recipe file"),
        ("empty", "the recipe is empty"),
        ("not_a_mapping", "the recipe is a YAML list"),
    ],
)
def test_every_error_has_its_fix_line(
    setup: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, expected: str
) -> None:
    args: list[Any]
    if case == "bad_set_index":
        args = [setup.recipe("idx.yaml"), "--set", "gates.tasks.5.limit=3"]
    elif case == "folder":
        args = [setup.root / "tasks"]
    else:
        path = tmp_path / "r.yaml"
        path.write_text("" if case == "empty" else "- release\n")
        args = [path]
    code, err = _cli(capsys, "validate", *args)
    assert code == 2 and expected in err, err
    fix = [line for line in err.splitlines() if line.startswith("fix: ")]
    assert len(fix) == 1 and len(fix[0]) > len("fix: ") + 10, err
    code = run_cli("validate", *args, "--json")
    out = json.loads(capsys.readouterr().out)
    assert code == 2 and out["hint"] and out["problems"][0]["hint"] == out["hint"]


def test_validate_takes_workdir_and_never_writes_there(
    setup: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = setup.recipe("wd.yaml")
    before = _tree(setup.built)
    assert run_cli("validate", recipe, "--workdir", setup.built, "--json") == 0
    state = json.loads(capsys.readouterr().out)["workdir"]
    assert state["state"] == "exists" and state["release_folder"].endswith("tiny-gate")
    assert _tree(setup.built) == before
    missing = tmp_path / "a" / "b"
    assert run_cli("validate", recipe, "--workdir", missing, "--json") == 0
    assert json.loads(capsys.readouterr().out)["workdir"]["state"] == "will be created"
    assert not (tmp_path / "a").exists()
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert run_cli("validate", recipe, "--workdir", a_file) == 0
    out = capsys.readouterr().out
    assert "cannot be written" in out and "--workdir" in out


def test_values_from_an_overlay_are_located_in_the_overlay(
    setup: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = setup.recipe("ov.yaml")
    overlay = tmp_path / "ci.yaml"
    overlay.write_text("gates:\n  device: cpu\n  batch_size: lots\n")
    code, err = _cli(capsys, "validate", recipe, "--overlay", overlay)
    assert code == 2 and f"error: {overlay}:3: gates.batch_size: 'lots'" in err, err
    # a --set given after the overlay wins, and is named as the origin
    code, err = _cli(
        capsys, "validate", recipe, "--overlay", overlay, "--set", "gates.batch_size=0"
    )
    assert code == 2 and "error: --set gates.batch_size=0: gates.batch_size: 0 is not" in err, err


def test_license_other_with_name_and_link_reaches_the_card_metadata(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["release"].update(license="other", license_name="tiny-license", license_link="LICENSE")

    assert run_cli("validate", setup.recipe("other.yaml", edit)) == 0
    capsys.readouterr()
    from medrelease.card.metadata import card_data

    meta = card_data(
        base_model=[],
        relation="merge",
        license="other",
        license_name="tiny-license",
        license_link="LICENSE",
        language=["en"],
        tags=[],
        datasets=[],
        pipeline_tag="text-generation",
        library_name="transformers",
    ).to_dict()
    assert meta["license_name"] == "tiny-license" and meta["license_link"] == "LICENSE"


def test_files_the_recipe_names_are_found_before_any_work(
    setup: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["output"] = {"chat_template": {"file": "templates/nowhere.jinja"}}
        data["card"] = {"template": "cards/nowhere.md.j2"}

    recipe = setup.recipe("files.yaml", edit)
    code, err = _cli(capsys, "validate", recipe)
    assert code == 2 and "error: 2 problems" in err, err
    assert "the chat template" in err and "templates/nowhere.jinja does not exist" in err
    assert "the card template" in err and "cards/nowhere.md.j2 does not exist" in err
    # before, the merge found the chat template missing only after merging the weights
    code, err_merge = _cli(capsys, "merge", recipe, "--workdir", tmp_path / "w")
    assert code == 2 and _first_error(err_merge) == _first_error(err)
    assert not (tmp_path / "w").exists()
