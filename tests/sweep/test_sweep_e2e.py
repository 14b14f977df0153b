"""`medrelease sweep` end to end on tiny stages: trials, report, resume, adopt, byte-identical
merge of the adopted recipe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import run_cli
from sweep.sweephelpers import write_sweep_recipe

pytestmark = pytest.mark.slow


def test_sweep_runs_reports_resumes_and_adopts(
    tmp_path: Path,
    llama: dict[str, Path],
    capsys: pytest.CaptureFixture,
    wide_console: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import medrelease.sweep.study
    import medrelease.sweep.trial

    calls: list[str] = []  # the trials keep freed memory for reuse; the sweep gives it back
    keep = medrelease.sweep.trial.keep_freed_memory
    monkeypatch.setattr(
        medrelease.sweep.trial, "keep_freed_memory", lambda: calls.append("keep") or keep()
    )
    give_back = medrelease.sweep.study.give_back_freed_memory
    monkeypatch.setattr(
        medrelease.sweep.study,
        "give_back_freed_memory",
        lambda: calls.append("give back") or give_back(),
    )
    recipe = write_sweep_recipe(tmp_path, llama)
    workdir = tmp_path / "build"
    assert run_cli("sweep", recipe, "--workdir", workdir, "--json") == 0
    assert calls == ["keep"] * 3 + ["give back"]
    report = json.loads(capsys.readouterr().out)
    trials = report["trials"]
    assert [t["state"] for t in trials] == ["complete"] * 3
    for t in trials:
        assert set(t["params"]) == {"models.0.parameters.weight", "models.1.parameters.weight"}
        assert t["items"] == {"evaluated": 8, "total": 8, "saved": 0}
        assert t["weights_hash"].startswith("sha256:")
        assert t["metrics"]["demo_mcq/acc"]["value"] in [k / 8 for k in range(9)]
        assert t["feasible"] is True
        # where a trial's time went: the forward passes are a part of lm-eval's time
        assert 0 < t["forward_s"] <= t["lm_eval_s"] < t["duration_s"] - t["merge_s"]
    assert len({t["weights_hash"] for t in trials}) == 3
    assert report["best"] in report["front"]
    assert report["search"]["demo_mcq"] == {
        "text": "items 4–11", "form": "range", "split": None, "start": 4, "count": 8,
        "items": 8, "subtasks": 1, "gate_items": 4,
    }  # fmt: skip
    sweep = workdir / "tiny-sweep" / "sweep"
    assert (sweep / "front.png").read_bytes()[:4] == b"\x89PNG"
    assert not (workdir / "tiny-sweep" / "merged").exists()  # the release's merged/ untouched
    # the gate rules are the study's constraints, on each trial where TPE reads them
    import optuna

    study = optuna.load_study(study_name=report["study"], storage=f"sqlite:///{sweep / 'study.db'}")
    assert report["constraints"], report["constraints"]
    for t in study.trials:
        assert list(t.constraints.values()) == [0.0] * len(report["constraints"])

    # a re-run with a larger budget continues the same study: 3 more trials, none repeated
    assert run_cli("sweep", recipe, "--workdir", workdir, "--trials", "5", "--json") == 0
    again = json.loads(capsys.readouterr().out)
    assert [t["number"] for t in again["trials"]] == [0, 1, 2, 3, 4]
    assert again["trials"][:3] == trials
    params = [tuple(sorted(t["params"].items())) for t in again["trials"]]
    assert len(set(params)) == 5

    # --show prints the table again
    assert run_cli("sweep", recipe, "--workdir", workdir, "--show") == 0
    shown = capsys.readouterr().out
    assert "models.0.weight" in shown and "demo_mcq/acc" in shown

    # adopt the best: comments kept, values the trial's, same merged weights byte for byte
    best = again["best"]
    new = tmp_path / "adopted.yaml"
    assert run_cli("sweep", recipe, "--workdir", workdir, "--adopt", str(best), "-o", new) == 0
    capsys.readouterr()
    text = new.read_text()
    assert "# hand-set too" in text and "# A sweep test recipe" in text and "# the search" in text
    chosen = again["trials"][best]["params"]
    assert repr(chosen["models.0.parameters.weight"]) in text
    assert run_cli("validate", new) == 0
    capsys.readouterr()
    assert run_cli("merge", new, "--workdir", workdir, "--json") == 0
    merged = json.loads(capsys.readouterr().out)
    manifest = json.loads(Path(merged["manifest"]).read_text())
    from medrelease.core.hashing import weights_digest

    chosen_hash = again["trials"][best]["weights_hash"]
    assert weights_digest(manifest["steps"]["merge"]["outputs"]) == chosen_hash

    # the release gates on the held-out items (0..3) and its card says how the merge was chosen
    assert run_cli("gate", new, "--workdir", workdir, "--json") == 0
    gate = json.loads(capsys.readouterr().out)
    assert gate["tasks"]["demo_mcq"]["n_samples"] == 4
    assert run_cli("card", new, "--workdir", workdir) == 0
    capsys.readouterr()
    card = (workdir / "tiny-sweep" / "card" / "README.md").read_text()
    assert "### How the merge was chosen" in card
    assert f"This merge is trial {best} of a `medrelease sweep`" in card
    assert "`demo_mcq` items 4–11 (the gate reports items 0–3)" in card
    held = next(m for m in gate["metrics"] if m["metric"] == "demo_mcq/acc")["values"]["merged"]
    search = again["trials"][best]["metrics"]["demo_mcq/acc"]["value"]
    assert f"| demo_mcq/acc | {search:.4f} | {held:.4f} |" in card  # the card's 4 decimals
