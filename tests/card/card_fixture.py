"""The card tests' tiny release: its recipe, and the merge, gate and quantize records that
stand in for those steps (tests/releases.py builds it up to the quantize step with them).

The card step reads nothing else, so no model is built. The report and manifest follow
docs/CONTRACTS.md field for field; values carry more digits than a card shows, to test the
rounding rule.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from releases import BuiltRelease, StandIn, built_release

RELEASE = "tiny-med"
SHA_A = "a" * 64
SHA_B = "b" * 64

REPORT: dict[str, Any] = {
    "schema_version": 1,
    "passed": True,
    "candidate": "merged",
    "models": {
        "merged": {"kind": "merged", "path": "merged", "content_hash": "1" * 64},
        "base": {
            "kind": "stage",
            "source": "medrelease-tests/tiny-base",
            "revision": "0123456789abcdef0123456789abcdef01234567",
            "content_hash": "2" * 64,
        },
        "grpo": {"kind": "stage", "source": "./grpo", "revision": None, "content_hash": "3" * 64},
    },
    "harness": {"lm_eval": "0.4.13", "backend": "hf", "batch_size": 8, "device": "cpu",
                "dtype": {"dtype": "float32", "reason": "no fast bf16 on this CPU"}},
    "tasks": {
        "mmlu_medical": {
            "preset": "mmlu_medical",
            "version": 1,
            "num_fewshot": 5,
            "limit": 50,
            "apply_chat_template": False,
            "n_samples": 150,
            "subtasks": ["anatomy", "clinical_knowledge", "college_medicine"],
        },
        "ifeval": {
            "preset": "ifeval",
            "version": 4,
            "num_fewshot": 0,
            "limit": 40,
            "apply_chat_template": True,
            "n_samples": 40,
        },
        "medical_safety": {
            "preset": "medical_safety",
            "version": 1,
            "num_fewshot": 0,
            "limit": None,
            "apply_chat_template": True,
            "n_samples": 64,
        },
    },
    "metrics": [
        {"metric": "mmlu_medical/acc", "task": "mmlu_medical", "subtask": None, "name": "acc",
         "higher_is_better": True,
         "values": {"merged": 0.513333, "base": 0.486667, "grpo": 0.5},
         "stderr": {"merged": 0.040912, "base": 0.040934, "grpo": 0.040961}},
        {"metric": "mmlu_medical/anatomy/acc", "task": "mmlu_medical", "subtask": "anatomy",
         "name": "acc", "higher_is_better": True,
         "values": {"merged": 0.52, "base": 0.48, "grpo": 0.5},
         "stderr": {"merged": 0.071366, "base": 0.071372, "grpo": 0.071429}},
        {"metric": "mmlu_medical/clinical_knowledge/acc", "task": "mmlu_medical",
         "subtask": "clinical_knowledge", "name": "acc", "higher_is_better": True,
         "values": {"merged": 0.54, "base": 0.46, "grpo": 0.52},
         "stderr": {"merged": 0.071198, "base": 0.071198, "grpo": 0.071371}},
        {"metric": "mmlu_medical/college_medicine/acc", "task": "mmlu_medical",
         "subtask": "college_medicine", "name": "acc", "higher_is_better": True,
         "values": {"merged": 0.48, "base": 0.52, "grpo": 0.48},
         "stderr": {"merged": 0.071372, "base": 0.071372, "grpo": 0.071372}},
        {"metric": "ifeval/prompt_level_strict_acc", "task": "ifeval", "subtask": None,
         "name": "prompt_level_strict_acc", "higher_is_better": True,
         "values": {"merged": 0.425, "base": 0.275, "grpo": 0.45},
         "stderr": {"merged": 0.079162, "base": 0.071500, "grpo": 0.079663}},
        {"metric": "medical_safety/violation_rate", "task": "medical_safety", "subtask": None,
         "name": "violation_rate", "higher_is_better": False,
         "values": {"merged": 0.03125, "base": 0.109375, "grpo": 0.046875},
         "stderr": {"merged": 0.021912, "base": 0.039289, "grpo": 0.026580}},
    ],
    "rules": [
        {"text": "ifeval/prompt_level_strict_acc >= 0.3",
         "metric": "ifeval/prompt_level_strict_acc",
         "kind": "min", "vs": None, "threshold": 0.3, "candidate": 0.425, "baseline": None,
         "delta": None, "ci": None, "significant": None, "passed": True,
         "reason": "0.425 >= 0.300"},
        {"text": "mmlu_medical/acc >= base - 0.01", "metric": "mmlu_medical/acc",
         "kind": "max_drop", "vs": "base", "threshold": 0.01, "candidate": 0.513333,
         "baseline": 0.486667, "delta": 0.026666, "ci": [-0.087, 0.14], "significant": None,
         "passed": True, "reason": "delta +0.027 >= -0.010"},
        {"text": "medical_safety/violation_rate <= 0.05",
         "metric": "medical_safety/violation_rate", "kind": "max", "vs": None,
         "threshold": 0.05, "candidate": 0.03125, "baseline": None, "delta": None, "ci": None,
         "significant": None, "passed": True, "reason": "0.031 <= 0.050"},
    ],
    "reproduce": [
        "lm_eval --model hf --model_args pretrained=build/tiny-med/merged,dtype=float32 "
        "--tasks mmlu_medical --num_fewshot 5 --limit 50 --batch_size 8 --device cpu",
    ],
}  # fmt: skip

MERGE_RECORD: dict[str, Any] = {
    "status": "done",
    "inputs_hash": "c" * 64,
    "method": "ties",
    "seed": 20240611,
    "mergekit_config": {
        "merge_method": "ties",
        "base_model": "base",
        "models": [
            {"model": "dpo", "parameters": {"weight": 0.5, "density": 0.7}},
            {"model": "grpo", "parameters": {"weight": 0.5, "density": 0.7}},
        ],
        "dtype": "float32",
    },
    "stages": {
        "base": {"kind": "hub", "source": "medrelease-tests/tiny-base",
                 "requested_revision": None,
                 "revision": "0123456789abcdef0123456789abcdef01234567", "files": {}},
        "dpo": {"kind": "local", "source": "./dpo", "files": {}},
        "grpo": {"kind": "local", "source": "./grpo", "files": {}},
    },
    "output_settings": {
        "chat_template": "recipe",
        # as written from a real generation_config.json: bookkeeping keys beside the settings
        "generation_config": {"temperature": 0.6, "top_p": 0.95, "max_new_tokens": 512,
                              "_from_model_config": True, "transformers_version": "5.17.0",
                              "output_attentions": False, "eos_token_id": 2},
    },
    "tools": {"mergekit": "0.1.5"},
    "outputs": {"merged/chat_template.jinja": {"sha256": "8" * 64, "size": 64}},
}  # fmt: skip


# as the quantize step records a SentencePiece vocabulary's advisory differences (demo's Q8_0)
TOKENIZATION: dict[str, Any] = {
    "ok": True, "probes": 7, "detail": "5/7 probes identical",
    "warning": "2 probe(s) differ only where SentencePiece runtimes disagree on space prefixes "
               "(text1, special_tokens): prompts that start with a space or follow a special "
               "token tokenize differently in llama.cpp",
    "warnings": [
        {"probe": "text1", "text": " leading space", "merged": [1, 280, 473],
         "gguf": [1, 472, 280, 473], "why": ""},
        {"probe": "special_tokens", "merged": [1, 504, 473, 2, 388],
         "gguf": [1, 385, 473, 2, 472, 388], "why": ""},
    ],
}  # fmt: skip


def quantize_record() -> dict[str, Any]:
    def gguf(
        t: str, sha: str, size: int, ratio: float, acc: float, kld: tuple[float, float, float]
    ) -> dict[str, Any]:
        measures = {
            "kld_mean": kld[0],
            "kld_mean_stderr": 0.0001,
            "kld_p99": kld[1],
            "kld_median": kld[0] / 2,
            "kld_max": kld[1] * 3,
            "top1_agreement": kld[2],
            "ppl_ratio": ratio,
            "tokens": 2048,
        }
        return {
            "family": "gguf", "type": t, "accepted": True, "reason": None,
            "files": {f"quant/gguf/{RELEASE}-{t}.gguf": {"sha256": sha, "size": size}},
            "checks": {
                "tokenization": TOKENIZATION,
                "logits": {"ok": True, "metric": "ppl_ratio", "value": ratio, "threshold": 1.15,
                           "measures": measures},
                "eval": {"ok": True, "detail": "mmlu_medical limit 50",
                         "metrics": {"mmlu_medical/acc": acc}},
            },
        }  # fmt: skip

    return {
        "status": "done",
        "inputs_hash": "d" * 64,
        "quants": [
            gguf("Q8_0", SHA_A, 2_345_678, 1.003412, 0.506667, (0.00123, 0.0156, 0.9912)),
            gguf("Q4_K_M", SHA_B, 1_234_567, 1.061234, 0.493333, (0.0345, 0.412, 0.9531)),
            {"family": "gguf", "type": "Q2_K", "accepted": False,
             "reason": "ppl_ratio 1.4 > 1.15", "files": {}, "checks": {}},
            {"family": "awq", "type": "W4A16_ASYM", "accepted": True, "reason": None,
             "files": {"quant/awq/config.json": {"sha256": "e" * 64, "size": 1234},
                       "quant/awq/model.safetensors": {"sha256": "f" * 64, "size": 3_456_789}},
             "checks": {"load": {"ok": True, "detail": "transformers loads it"},
                        "eval": {"ok": True, "detail": "mmlu_medical limit 50",
                                 "metrics": {"mmlu_medical/acc": 0.5}}}},
        ],
        "imatrix": {"calibration": "default", "sha256": "9" * 64},
        "tools": {"llama_cpp_python": "0.3.36", "llmcompressor": "0.14.0.1"},
        "outputs": {},
    }  # fmt: skip


def readme_with_license(folder: Path, license: str | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    meta = f"---\nlicense: {license}\n---\n" if license else ""
    (folder / "README.md").write_text(meta + "# checkpoint\n")
    return folder


def release_for_cards(
    root: Path,
    *,
    card: dict[str, Any] | None = None,
    report: dict[str, Any] | None = None,
    quantize: bool = True,
    licenses: dict[str, str | None] | None = None,
    release_license: str = "apache-2.0",
) -> BuiltRelease:
    """The release built up to the quantize step (the gate without `quantize`), every step
    stood in for by the records above; it unpacks as (recipe path, workdir)."""
    lic = {"dpo": "apache-2.0", "grpo": "mit", **(licenses or {})}
    for stage in ("dpo", "grpo"):
        readme_with_license(root / stage, lic[stage])
    recipe: dict[str, Any] = {
        "release": {
            "name": RELEASE,
            "version": "1.0.0",
            "repo": "medrelease-tests/tiny-med",
            "license": release_license,
            "tags": ["tiny"],
            "datasets": ["medrelease-tests/tiny-medqa"],
            "authors": ["medrelease tests"],
        },
        "stages": {
            "base": "medrelease-tests/tiny-base@0123456789abcdef0123456789abcdef01234567",
            "dpo": {"path": "./dpo", "parent": "base", "description": "DPO on clinical pairs"},
            "grpo": {"path": "./grpo", "parent": "dpo", "description": "GRPO with CoT rewards"},
        },
        "merge": copy.deepcopy(MERGE_RECORD["mergekit_config"]),
        "output": {
            "chat_template": "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}",
            "generation_config": {"temperature": 0.6, "top_p": 0.95, "max_new_tokens": 512},
        },
        # the base is a Hub stage not in the (offline) cache: its license is declared here
        "card": {"stage_licenses": {"base": "apache-2.0"}, **(card or {})},
    }
    given = {
        "merge": StandIn(record=copy.deepcopy(MERGE_RECORD)),
        "gate": StandIn(files={"gates/report.json": report or REPORT}),
        "quantize": StandIn(record=quantize_record()),
    }
    return built_release(root, "quantize" if quantize else "gate", recipe, given=given)


def load(path: Path) -> Any:
    from medrelease.pipeline.recipes import load_recipe

    # the merge block is checked by the merge tests; skipping it keeps mergekit out of these
    return load_recipe(path, check_merge=False)
