"""The search split's other two forms: another split of the task's dataset (`split:`), and a
seeded hold-out of the gate's documents (`holdout:`), the gate then evaluating the rest.
Overlap with the gate's items exits 2 with the file and line; the sweeps run real tiny merges."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from gate.gatehelpers import DEMO_MCQ
from helpers import run_cli
from sweep.sweephelpers import write_sweep_recipe

FAKE = {"base": Path("/nonexistent/base"), "sft": Path("/nonexistent/sft"),
        "dpo": Path("/nonexistent/dpo")}  # fmt: skip
# new questions for the dev file (none of them a test record)
DEV = [
    ("Which organ produces bile?", ["liver", "kidney", "lung", "heart"], 0),
    ("Which vitamin deficiency causes scurvy?", ["A", "B12", "C", "D"], 2),
    ("Which blood cells carry oxygen?", ["platelets", "red cells", "white cells", "plasma"], 1),
    ("Which hormone lowers blood glucose?", ["glucagon", "cortisol", "adrenaline", "insulin"], 3),
    ("Where is the tibia?", ["arm", "leg", "skull", "chest"], 1),
    ("Which gland makes thyroxine?", ["thyroid", "adrenal", "pituitary", "pancreas"], 0),
]


def _sweep(search: dict[str, Any], trials: int = 2) -> dict[str, Any]:
    return {
        "space": [{"path": "models.0.parameters.weight", "low": 0.1, "high": 0.9}],
        "objectives": [{"metric": "demo_mcq/acc"}],
        "search": {"demo_mcq": search},
        "trials": trials,
        "sampler": "random",
        "seed": 3,
    }


def _with_dev(recipe: Path, rows: list[tuple[str, list[str], int]], name: str = "dev") -> Path:
    """A `validation` split for the recipe's demo_mcq task: `rows` in tasks/<name>.jsonl."""
    tasks = recipe.parent / "tasks"
    data = tasks / f"{name}.jsonl"
    data.write_text(
        "".join(json.dumps({"question": q, "choices": c, "answer": a}) + "\n" for q, c, a in rows)
    )
    task = tasks / "demo_mcq.yaml"
    cfg = yaml.safe_load(task.read_text())
    cfg["dataset_kwargs"]["data_files"]["validation"] = data.name
    task.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return data


def _line_of(err: str, recipe: Path) -> str:
    where = f"{recipe}:"
    assert where in err, err
    line = int(err.split(where, 1)[1].split(":", 1)[0])
    return recipe.read_text().splitlines()[line - 1]


@pytest.mark.parametrize(
    ("search", "dev", "message", "key"),
    [
        ({"split": "test"}, None, "is the split the gate evaluates", "split"),
        ({"split": "validation"}, None, "has no 'validation' split", "split"),
        # the dev file holds the gate's item 2 (the gate reports items 0..3): refused
        ({"split": "validation"}, [DEV[0], DEMO_MCQ[2]], "line 2 is the same record", "split"),
        ({"split": "validation", "count": 9}, DEV, "has 6 item(s)", "demo_mcq"),
        ({"holdout": {"fraction": 0.3, "seed": 7}}, None, "remove gates.tasks.0.limit", "holdout"),
    ],
)
def test_split_and_holdout_overlap_exits_2_with_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    search: dict[str, Any],
    dev: list[Any] | None,
    message: str,
    key: str,
) -> None:
    recipe = write_sweep_recipe(tmp_path, FAKE, _sweep(search))
    if dev is not None:
        _with_dev(recipe, dev)
    assert run_cli("sweep", recipe, "--workdir", tmp_path / "build") == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert key in _line_of(err, recipe)
    assert not (tmp_path / "build" / "tiny-sweep" / "sweep" / "scratch").exists()


def test_the_dev_file_being_the_test_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    recipe = write_sweep_recipe(tmp_path, FAKE, _sweep({"split": "validation"}))
    task = tmp_path / "tasks" / "demo_mcq.yaml"
    cfg = yaml.safe_load(task.read_text())
    cfg["dataset_kwargs"]["data_files"]["validation"] = cfg["dataset_kwargs"]["data_files"]["test"]
    task.write_text(yaml.safe_dump(cfg, sort_keys=False))
    assert run_cli("sweep", recipe, "--workdir", tmp_path / "build") == 2
    assert "are the same file" in capsys.readouterr().err


def test_holdout_takes_no_range(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    search = {"holdout": {"fraction": 0.5}, "start": 4, "count": 2}
    recipe = write_sweep_recipe(tmp_path, FAKE, _sweep(search))
    assert run_cli("validate", recipe) == 2
    assert "a holdout takes no start, count or split" in capsys.readouterr().err


def test_holdout_documents_are_a_seeded_partition() -> None:
    from medrelease.gate.documents import holdout_documents

    search, gate = holdout_documents("demo_mcq", 12, 0.3, 7)
    assert len(search) == 4 and len(gate) == 8  # round(0.3 * 12)
    assert sorted(search + gate) == list(range(12))
    assert (search, gate) == holdout_documents("demo_mcq", 12, 0.3, 7)  # same draw every run
    assert holdout_documents("demo_mcq", 12, 0.3, 8) != (search, gate)  # the seed matters
    assert holdout_documents("x", 2, 0.99, 0)[1] and holdout_documents("x", 2, 0.01, 0)[0]


def _json(*args: Any) -> dict[str, Any]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = run_cli(*args)
    assert code == 0, buf.getvalue()[-3000:]
    return json.loads(buf.getvalue())


@pytest.mark.slow
def test_sweep_on_the_dev_split(tmp_path: Path, llama: dict[str, Path]) -> None:
    recipe = write_sweep_recipe(tmp_path, llama, _sweep({"split": "validation"}))
    _with_dev(recipe, DEV)
    report = _json("sweep", recipe, "--workdir", tmp_path / "build", "--json")
    assert [t["state"] for t in report["trials"]] == ["complete", "complete"]
    assert all(t["items"]["total"] == 6 for t in report["trials"])  # every dev item
    search = report["search"]["demo_mcq"]
    assert search["form"] == "split" and search["split"] == "validation"
    assert search["items"] == 6
    assert "`validation` split" in search["text"] and "`test` split" in search["text"]


@pytest.mark.slow
def test_holdout_sweep_and_the_gate_on_the_rest(tmp_path: Path, llama: dict[str, Path]) -> None:
    from medrelease.gate.documents import holdout_documents

    sweep = _sweep({"holdout": {"fraction": 0.5, "seed": 7}})
    tasks = [{"name": "demo_mcq", "task_yaml": "tasks/demo_mcq.yaml"}]  # no limit: the rest
    recipe = write_sweep_recipe(tmp_path, llama, sweep, tasks=tasks)
    work = tmp_path / "build"
    report = _json("sweep", recipe, "--workdir", work, "--json")
    assert all(t["items"]["total"] == 6 for t in report["trials"])
    assert report["search"]["demo_mcq"]["form"] == "holdout"
    searched, rest = holdout_documents("demo_mcq", len(DEMO_MCQ), 0.5, 7)

    _json("merge", recipe, "--workdir", work, "--json")
    gate = _json("gate", recipe, "--workdir", work, "--json")
    task = gate["tasks"]["demo_mcq"]
    assert task["samples"] == {"demo_mcq": rest}  # the gate evaluates the others only
    assert task["n_samples"] == 6
    assert not set(rest) & set(searched)


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        (  # a report of the first schema (no `form`) still renders as a range
            {"start": 4, "count": 8, "subtasks": 1, "gate_items": 4},
            "`t` items 4–11 (the gate reports items 0–3)",
        ),
        (
            {
                "form": "split",
                "text": "all 6 items of the `validation` split (the gate reports the `test` split)",
                "start": None,
                "count": None,
                "subtasks": 1,
            },
            "`t` all 6 items of the `validation` split (the gate reports the `test` split)",
        ),
    ],
)
def test_the_card_names_the_search_split(search: dict[str, Any], expected: str) -> None:
    import jinja2

    from medrelease.card.templates import shipped_dir

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(shipped_dir())),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = str
    sweep = {
        "chosen": None, "trials": 1, "states": {"complete": 1}, "sampler": "tpe", "seed": 0,
        "items_saved": 0, "objectives": [{"direction": "maximize", "metric": "t/acc"}],
        "constraints": [], "search": {"t": search}, "rows": [], "front": [],
    }  # fmt: skip
    text = env.get_template("_sweep.md.j2").render(sweep=sweep)
    assert f"Search split (disjoint from the gate's items): {expected}." in text
