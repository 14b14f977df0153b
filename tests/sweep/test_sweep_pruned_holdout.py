"""Pruning on a task of several subtasks (lm-eval leaves) of different sizes, held out of the
gate's split: the trial's one run is watched item by item (medrelease.gate.live_items), only
search items are scored, and the items reported to the pruner during the run are lm-eval's own
values. An outcome with an item outside the asked ones stops the sweep."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import run_cli
from medrelease.core.errors import VerificationError
from medrelease.gate.presets import MMLU_MEDICAL_SUBJECTS
from medrelease.sweep.evaluate import _require_items, item_scores
from sweep.sweephelpers import write_sweep_recipe


def test_an_item_outside_the_asked_ones_is_refused() -> None:
    outcome = {"samples": {"t/acc": {"a:1": [1.0, 1.0], "a:4": [0.0, 1.0]}}}
    _require_items(outcome, {"a": [1, 4]}, "t")
    with pytest.raises(VerificationError, match="outside the search split"):
        _require_items(outcome, {"a": [1]}, "t")


def _mmlu_data(root: Path, sizes: dict[str, int]) -> None:
    """The mmlu_medical preset's local layout with `sizes[subject]` test items."""
    for subject in MMLU_MEDICAL_SUBJECTS:
        folder = root / "eval-data" / "mmlu_medical" / subject
        folder.mkdir(parents=True)
        for split, n in (("test", sizes[subject]), ("dev", 1), ("validation", 1)):
            rows = [
                {
                    "question": f"{subject} {split} question {i}?",
                    "subject": subject,
                    "choices": ["alpha", "beta", "gamma", "delta"],
                    "answer": i % 4,
                }
                for i in range(n)
            ]
            (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _recipe(root: Path, llama: dict[str, Path], sizes: dict[str, int], trials: int) -> Path:
    _mmlu_data(root, sizes)
    sweep = {
        "space": [{"path": "models.0.parameters.weight", "low": 0.1, "high": 0.9}],
        "objectives": [{"metric": "mmlu_medical/acc"}],
        "search": {"mmlu_medical": {"holdout": {"fraction": 0.5, "seed": 1}}},
        "pruning": {"increment": 5, "p_threshold": 0.1},
        "trials": trials,
        "sampler": "random",
        "seed": 3,
    }
    return write_sweep_recipe(
        root,
        llama,
        sweep,
        data_dir="eval-data",
        tasks=[{"preset": "mmlu_medical", "num_fewshot": 0}],
        rules=[{"metric": "mmlu_medical/acc", "min": 0.0}],
    )


def test_a_subject_too_small_to_hold_out_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    fake = {n: Path(f"/nonexistent/{n}") for n in ("base", "sft", "dpo")}
    sizes = {s: 4 for s in MMLU_MEDICAL_SUBJECTS} | {"anatomy": 1}
    recipe = _recipe(tmp_path, fake, sizes, trials=1)
    assert run_cli("validate", recipe) == 2
    err = capsys.readouterr().err
    assert "subtask mmlu_anatomy has 1 document(s)" in err and f"{recipe}:" in err


@pytest.mark.slow
def test_a_pruned_holdout_sweep_scores_only_search_items(
    tmp_path: Path, llama: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    from medrelease.gate.documents import holdout_documents

    sizes = dict(zip(MMLU_MEDICAL_SUBJECTS, (4, 5, 6, 7, 8, 9), strict=True))
    recipe = _recipe(tmp_path, llama, sizes, trials=1)
    assert run_cli("sweep", recipe, "--workdir", tmp_path / "build", "--json") == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["pruning"]["increment"] == 5  # a check every 5 items of the one run
    searched = {f"mmlu_{s}": holdout_documents(f"mmlu_{s}", n, 0.5, 1)[0] for s, n in sizes.items()}
    (trial,) = report["trials"]
    assert trial["state"] == "complete"
    assert trial["items"]["total"] == sum(map(len, searched.values())) == 19
    # every outcome the sweep cached scored only search items (no gate item leaked in);
    # one lm-eval run per model
    cached = [p for p in (tmp_path / "build").rglob("*.json") if p.parent.name == "gates"]
    assert len(cached) == 2  # the baseline and the trial
    scored: set[str] = set()
    for path in cached:
        entry = json.loads(path.read_text())
        assert entry["key"]["sweep"]
        for per in entry["outcome"]["samples"].values():
            scored |= set(per)
    assert scored and scored <= {f"{leaf}:{d}" for leaf, ix in searched.items() for d in ix}
    # the trial reported every item to the pruner (three checks during lm-eval's run, the
    # rest after it), each with the value lm-eval logged for it
    import optuna

    db = tmp_path / "build" / "tiny-sweep" / "sweep" / "study.db"
    study = optuna.load_study(study_name=report["study"], storage=f"sqlite:///{db}")
    reported = study.trials[0].intermediate_values
    assert len(reported) == 19
    outcomes = [json.loads(p.read_text())["outcome"] for p in cached]
    assert any(item_scores(o, "mmlu_medical/acc", list(searched)) == reported for o in outcomes)
