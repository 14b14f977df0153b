"""The composite action's shape, and its shell steps run for real with a stand-in `medrelease`.

The steps that need a runner (setup-python, pip install) are not run here; the steps that decide
what `medrelease release` is called with, how a missing HF_TOKEN fails, where the gate report is
and what reaches the job summary are run with bash exactly as GitHub runs them (`set -e`, env
from the step's `env:`), with `${{ }}` expressions of the simple `a.b.c` form substituted.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from action.action_support import REPO, load_yaml_file

ACTION = load_yaml_file(REPO / "action.yml")
STEPS = ACTION["runs"]["steps"]
EXPR = re.compile(r"\$\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}")
SAMPLE = Path(__file__).with_name("sample_report.json")
VENV_BIN = Path(sys.executable).parent


def step(step_id_or_name: str) -> dict[str, Any]:
    for s in STEPS:
        if step_id_or_name in (s.get("id"), s.get("name")):
            return s
    raise KeyError(step_id_or_name)


def evaluate(text: str, ctx: dict[str, Any]) -> str:
    def lookup(m: re.Match[str]) -> str:
        node: Any = ctx
        for part in m.group(1).split("."):
            node = node[part]
        return str(node)

    return EXPR.sub(lookup, text)


class Runner:
    """Runs action steps in order, keeping step outputs like the runner does."""

    def __init__(self, tmp: Path, inputs: dict[str, str], path_dirs: list[Path]):
        self.tmp = tmp
        defaults = {k: str(v.get("default", "")) for k, v in ACTION["inputs"].items()}
        self.ctx: dict[str, Any] = {
            "inputs": {**defaults, **inputs},
            "github": {"action_path": str(REPO)},
            "steps": {},
        }
        self.summary = tmp / "summary.md"
        self.summary.touch()
        self.path = os.pathsep.join([*map(str, path_dirs), os.environ.get("PATH", "")])

    def run(self, s: dict[str, Any], extra_env: dict[str, str] | None = None):
        outputs = self.tmp / f"out-{s.get('id', 'x')}.txt"
        outputs.write_text("")
        env = {
            "PATH": self.path,
            "HOME": str(self.tmp),
            "HF_HUB_OFFLINE": "1",
            "GITHUB_OUTPUT": str(outputs),
            "GITHUB_STEP_SUMMARY": str(self.summary),
            "RUNNER_TEMP": str(self.tmp),
            **{k: evaluate(str(v), self.ctx) for k, v in (s.get("env") or {}).items()},
            **(extra_env or {}),
        }
        assert s["shell"] == "bash"
        proc = subprocess.run(
            ["bash", "--noprofile", "--norc", "-e", "-o", "pipefail", "-c", s["run"]],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        outs = dict(line.split("=", 1) for line in outputs.read_text().splitlines() if "=" in line)
        if "id" in s:
            self.ctx["steps"][s["id"]] = {"outputs": outs}
        return proc


@pytest.fixture
def fake_medrelease(tmp_path: Path) -> tuple[Path, Path]:
    """A `medrelease` that records its arguments and writes a gate report like the real one."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    script = bin_dir / "medrelease"
    script.write_text(
        "#!/usr/bin/env bash\n"
        f'printf "%s\\n" "$*" >> "{log}"\n'
        'workdir=""; prev=""\n'
        'for a in "$@"; do [ "$prev" = "--workdir" ] && workdir="$a"; prev="$a"; done\n'
        'mkdir -p "$workdir/med-advisor-4b/gates"\n'
        f'cp "{SAMPLE}" "$workdir/med-advisor-4b/gates/report.json"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return bin_dir, log


def test_action_shape():
    assert ACTION["runs"]["using"] == "composite"
    assert set(ACTION["inputs"]) >= {"recipe", "endpoint", "dry-run", "workdir", "python-version"}
    assert ACTION["inputs"]["recipe"]["required"] is True
    text = (REPO / "action.yml").read_text()
    used = set(re.findall(r"inputs\.([A-Za-z0-9_-]+)", text))
    assert used == set(ACTION["inputs"]), "every input is used and every used input declared"
    ids = {s.get("id") for s in STEPS}
    for out in ACTION["outputs"].values():
        ref = re.search(r"steps\.([A-Za-z0-9_-]+)\.outputs", out["value"])
        assert ref and ref.group(1) in ids
    for s in STEPS:
        if "run" in s:
            assert s.get("shell") == "bash", f"composite run steps need a shell: {s['name']}"
            assert "${{" not in s["run"], f"pass expressions through env, not inline: {s['name']}"
        else:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", s["uses"]), s["uses"]
    install = step("Install medrelease from the action's checkout")
    assert '"$ACTION_PATH"' in install["run"] and install["env"]["ACTION_PATH"].strip() == (
        "${{ github.action_path }}"
    )


@pytest.mark.slow  # runs the real `medrelease validate` in a subprocess (imports mergekit)
def test_release_step_runs_medrelease_release(tmp_path: Path, fake_medrelease):
    fake_bin, log = fake_medrelease
    workdir = tmp_path / "w"
    inputs = {
        "recipe": "merges/med-advisor-4b.yaml",
        "workdir": str(workdir),
        "endpoint": "http://127.0.0.1:9/hub",
    }
    # the paths step runs the real `medrelease validate` (no weights are loaded)
    runner = Runner(tmp_path, inputs, [VENV_BIN])
    paths = runner.run(step("paths"))
    assert paths.returncode == 0, paths.stderr
    release_dir = runner.ctx["steps"]["paths"]["outputs"]["release-dir"]
    assert release_dir == f"{workdir}/med-advisor-4b"

    runner.path = os.pathsep.join([str(fake_bin), runner.path])
    token = "hf_" + "x" * 20
    base = f"release merges/med-advisor-4b.yaml --workdir {workdir}"
    for dry_run, flag in (("true", " --dry-run"), ("false", "")):
        runner.ctx["inputs"]["dry-run"] = dry_run
        log.unlink(missing_ok=True)
        proc = runner.run(step("Run the release"), {"HF_TOKEN": token})
        assert proc.returncode == 0, proc.stderr
        assert log.read_text().splitlines() == [f"{base}{flag} --endpoint http://127.0.0.1:9/hub"]
        assert token not in proc.stdout + proc.stderr

    summary = runner.run(step("summary"))
    assert summary.returncode == 0, summary.stderr
    assert runner.ctx["steps"]["summary"]["outputs"]["report"] == (
        f"{release_dir}/gates/report.json"
    )
    md = runner.summary.read_text()
    assert md.startswith("## Gate FAILED") and "mmlu_medical/acc >= base - 0.01" in md


def test_publishing_without_a_token_fails_clearly(tmp_path: Path, fake_medrelease):
    fake_bin, log = fake_medrelease
    runner = Runner(tmp_path, {"recipe": "merges/med-advisor-4b.yaml"}, [fake_bin, VENV_BIN])
    env = {k: "" for k in ("HF_TOKEN",)}
    proc = runner.run(step("Run the release"), env)
    assert proc.returncode == 6
    assert "::error" in proc.stdout and "HF_TOKEN is not set" in proc.stdout
    assert not log.exists(), "medrelease must not run without a token"


def test_summary_without_a_report_says_the_gate_did_not_run(tmp_path: Path):
    runner = Runner(tmp_path, {}, [VENV_BIN])
    runner.ctx["steps"]["paths"] = {"outputs": {"release-dir": str(tmp_path / "none")}}
    proc = runner.run(step("summary"))
    assert proc.returncode == 0, proc.stderr
    assert runner.ctx["steps"]["summary"]["outputs"]["report"] == ""
    assert "gate step did not run" in runner.summary.read_text()


def test_release_workflow_policy():
    """validate and the dry run on the hosted runner; the real release on a self-hosted GPU
    runner (a 4B release does not fit a hosted one), with the token only there."""
    wf = load_yaml_file(REPO / ".github" / "workflows" / "release.yml")
    assert wf["on"]["push"]["tags"] == ["v*"]
    assert wf["permissions"] == {"contents": "read"}
    assert set(wf["jobs"]) == {"check", "release"}
    for job in wf["jobs"].values():
        assert "permissions" not in job, "no job widens the token's permissions"

    check = wf["jobs"]["check"]
    assert check["runs-on"] == "ubuntu-latest" and "environment" not in check
    runs = [s.get("run", "") for s in check["steps"]]
    assert any(r.startswith('.venv/bin/medrelease validate "$RECIPE"') for r in runs)
    dry = next(r for r in runs if "standin_dry_run.py" in r)
    assert '"$RECIPE"' in dry and (REPO / ".github" / "scripts" / "standin_dry_run.py").is_file()

    job = wf["jobs"]["release"]
    assert job["needs"] == "check", "the GPU runner is booked only for a recipe that passed"
    labels = job["runs-on"]
    assert labels[0] == "self-hosted" and "gpu" in labels and "ubuntu-latest" not in labels
    config = load_yaml_file(REPO / ".github" / "actionlint.yaml")
    assert set(labels) - {"self-hosted", "linux", "x64"} <= set(
        config["self-hosted-runner"]["labels"]
    )
    assert job["environment"] == "hub-release"
    assert "WORKDIR" in job["env"] and "actions/cache" not in str(job["steps"])
    steps = job["steps"]
    by_use = {s.get("uses", "").split("@")[0]: s for s in steps if "uses" in s}
    action_step = by_use["./"]
    assert action_step["env"] == {"HF_TOKEN": "${{ secrets.HF_TOKEN }}"}
    assert action_step["with"]["workdir"] == "${{ env.WORKDIR }}"
    text = (REPO / ".github" / "workflows" / "release.yml").read_text()
    assert text.count("secrets.") == 1, "the token reaches only the release step"
    upload = by_use["actions/upload-artifact"]
    assert upload["with"]["path"] == "${{ steps.release.outputs.report }}"
    assert action_step["id"] == "release"


def test_standin_dry_run_runs_the_recipe_with_its_overlay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hosted dry run: stand-ins for every stage, the recipe's overlay, --dry-run to a
    dir:// target (nothing published), and medrelease's exit code as its own."""
    import importlib.util

    from medrelease.testing import standins

    spec = importlib.util.spec_from_file_location(
        "standin_dry_run", REPO / ".github" / "scripts" / "standin_dry_run.py"
    )
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    # building the tiny models is tests/recipes' business; here: the command it composes
    monkeypatch.setattr(
        standins,
        "standin_overrides",
        lambda recipe, fam: {n: f"{fam.root}/{n}" for n in recipe.stages},
    )
    calls: list[list[str]] = []
    monkeypatch.setattr("medrelease.cli.main", lambda args: calls.append(args) or 4)
    recipe = REPO / "merges" / "qwen-4b-trad.yaml"
    assert script.main([str(recipe), str(tmp_path)]) == 4
    (args,) = calls
    assert args[:2] == ["release", str(recipe)]
    flags = list(itertools.pairwise(args))
    assert ("--overlay", str(REPO / "tests" / "recipes" / "standins" / recipe.name)) in flags
    assert ("--target", f"dir://{tmp_path / 'export'}") in flags and "--dry-run" in args
    assert {v.split("=")[0] for k, v in flags if k == "--stage"} == {"base", "trad"}

    with pytest.raises(SystemExit, match="no stand-in overlay"):
        script.main([str(tmp_path / "unknown.yaml"), str(tmp_path)])


def test_ci_workflow_runs_make_test():
    wf = load_yaml_file(REPO / ".github" / "workflows" / "ci.yml")
    assert wf["permissions"] == {"contents": "read"}
    runs = [s.get("run", "") for job in wf["jobs"].values() for s in job["steps"]]
    assert any(r.startswith("make test") for r in runs)


def test_bash_is_available():
    assert shutil.which("bash"), "the action's steps are bash scripts"
