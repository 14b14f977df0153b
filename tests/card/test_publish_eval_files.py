"""The task files (`eval/`) and Hub results (`.eval_results/`) reach the main repo, as recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from helpers import HUB_TOKEN
from medrelease.core.console import Reporter
from publish.pubhelpers import REPO, release_for_publish
from releases import BuiltRelease

EVAL_YAML = "task: demo_mcq\ndataset_path: json\n"
RESULTS_YAML = "- dataset:\n    id: TIGER-Lab/MMLU-Pro\n    task_id: mmlu_pro\n  value: 0.41\n"


def add_card_extras(release: BuiltRelease) -> None:
    """What the card step writes beside the main card, recorded as its outputs."""
    from medrelease.core.hashing import file_record

    card = release.root / "card"
    files = {"eval/tasks/demo_mcq.yaml": EVAL_YAML, "eval_results/mmlu_pro.yaml": RESULTS_YAML}
    data = release.manifest()
    for rel, text in files.items():
        (card / rel).parent.mkdir(parents=True, exist_ok=True)
        (card / rel).write_text(text)
        data["steps"]["card"]["outputs"][f"card/{rel}"] = file_record(card / rel)
    release.write_manifest(data)


@pytest.fixture
def release_with_extras(tmp_path: Path, tiny_model: Path) -> BuiltRelease:
    release = release_for_publish(tmp_path, tiny_model)
    add_card_extras(release)
    return release


def test_plan_maps_card_extras_into_the_main_repo(release_with_extras):
    from medrelease.core.paths import ReleasePaths
    from medrelease.publish.plan import build_plan

    r = release_with_extras
    plan = build_plan(r.load(), ReleasePaths(r.workdir, r.root.name))
    by_role = {p.role: {f.path_in_repo: f.origin for f in p.files} for p in plan.repos}
    assert by_role["main"]["eval/tasks/demo_mcq.yaml"] == "card/eval/tasks/demo_mcq.yaml"
    assert by_role["main"][".eval_results/mmlu_pro.yaml"] == "card/eval_results/mmlu_pro.yaml"
    for role in ("gguf", "awq"):  # results and task files describe the main model only
        assert not any(p.startswith(("eval/", ".eval_results/")) for p in by_role[role])


@pytest.mark.slow
def test_extras_are_published_with_their_bytes(release_with_extras, hub):
    from huggingface_hub import HfApi, hf_hub_download

    from medrelease.publish.step import publish_release

    r = release_with_extras
    publish_release(
        r.load(), workdir=r.workdir, reporter=Reporter(quiet=True), endpoint=hub.url,
        backoff_s=0.0,
    )  # fmt: skip
    api: Any = HfApi(endpoint=hub.url, token=HUB_TOKEN)
    files = set(api.list_repo_files(REPO))
    assert {"eval/tasks/demo_mcq.yaml", ".eval_results/mmlu_pro.yaml"} <= files
    got = hf_hub_download(
        REPO, ".eval_results/mmlu_pro.yaml", endpoint=hub.url, token=HUB_TOKEN,
        cache_dir=str(r.workdir / "dl"),
    )  # fmt: skip
    assert Path(got).read_text() == RESULTS_YAML
