"""A Hub stage is downloaded over HTTP (the local Hub server, the real huggingface_hub client)
at the exact commit preflight saw, with a progress row that accounts for every byte."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from helpers import HUB_TOKEN, write_recipe
from medrelease.core.console import Reporter
from medrelease.pipeline.recipes import load_recipe
from medrelease.stages.sources import fetch_weights, locate_stage


@pytest.fixture
def hub_with_model(hub_default: Any, llama: dict[str, Path]) -> str:
    """The local Hub as the default endpoint, holding the tiny base as alice/tiny-base."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub_default.url, token=HUB_TOKEN)
    api.create_repo("alice/tiny-base")
    commit = api.upload_folder(repo_id="alice/tiny-base", folder_path=llama["base"])
    return commit.oid


def test_hub_stage_downloads_with_byte_progress(
    tmp_path: Path, llama: dict[str, Path], hub_with_model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rich.progress import Progress

    recipe = write_recipe(
        tmp_path / "r.yaml",
        {"base": "alice/tiny-base", "sft": str(llama["sft"])},
        {"merge_method": "linear", "models": [{"model": "base"}, {"model": "sft"}],
         "parameters": {"weight": 1.0}},
    )  # fmt: skip
    stage = locate_stage(load_recipe(recipe), "base")
    # preflight reads metadata only: the weights are not there yet
    assert stage.revision == hub_with_model and not stage.weights_ready
    assert not list(stage.path.glob("*.safetensors"))

    seen: list[Progress] = []
    add_task = Progress.add_task

    def record(self: Progress, *args: Any, **kwargs: Any) -> Any:
        seen.append(self)
        return add_task(self, *args, **kwargs)

    monkeypatch.setattr(Progress, "add_task", record)
    fetch_weights(stage, Reporter())

    weights = sorted(stage.path.glob("*.safetensors"))
    assert [w.name for w in weights] == ["model.safetensors"]
    assert weights[0].read_bytes() == (llama["base"] / "model.safetensors").read_bytes()
    assert stage.weights_ready and stage.revision == hub_with_model
    rows = [t for p in dict.fromkeys(seen) for t in p.tasks]
    assert [t.description for t in rows] == ["downloading alice/tiny-base"]
    size = weights[0].stat().st_size
    assert rows[0].total == size and rows[0].completed == size
