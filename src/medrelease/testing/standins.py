"""Run a real release recipe offline: tiny stand-in stages and tiny local data for its gates.

A seed recipe in merges/ names multi-GB Hub checkpoints and Hub datasets. To run it end to end
on a laptop or in CI, every stage is replaced (`--stage NAME=PATH`) by a tiny random model of
the same architecture family (the recipe's `# standin-arch:` line), and the gates read a few
rows per preset from a local folder (`--set gates.data_dir=...`) in each dataset's Hub schema:

    python -m medrelease.testing.standins merges/afm-4.5b-openmed.yaml ./standins

builds `./standins/<arch>/...` and `./standins/eval-data/`, and prints the release command.
Stand-ins use a SentencePiece tokenizer: llama.cpp's converter cannot identify a BPE tokenizer
trained from scratch, so a Qwen-style tokenizer stops the GGUF step. qwen2 is the exception:
transformers 5 ignores `tokenizer_class` for qwen2 folders and always loads Qwen2Tokenizer
(byte-level BPE), which garbles a SentencePiece vocabulary; a qwen2 stand-in therefore gets a
byte-level BPE tokenizer, which converts to GGUF when the recipe names its pre-tokenizer
(`--set quantize.gguf.pre_tokenizer=qwen2`; the quant's tokenization check verifies it).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ARCH_LINE = re.compile(r"^# standin-arch: (\S+)$", flags=re.M)
# see the module docstring: the only tokenizer kind transformers 5 loads intact beside qwen2
TOKENIZER_KIND = {"qwen2": "bpe"}


def standin_arch(recipe: Path) -> str:
    """The tiny architecture a recipe declares for its stand-ins (`# standin-arch: NAME`)."""
    found = ARCH_LINE.findall(Path(recipe).read_text(encoding="utf-8"))
    if len(found) != 1:
        raise ValueError(f"{recipe}: expected one '# standin-arch: <arch>' line, found {found}")
    return str(found[0])


class StandinFamily:
    """Tiny models of one architecture sharing one tokenizer, built on first use, kept on disk.

    `base()` is a random model; `variant(i)` is the base plus seeded noise (a "fine-tuned"
    stage); `adapter()` is a DoRA adapter on the base.
    """

    def __init__(self, root: Path, arch: str):
        self.root = Path(root)
        self.arch = arch
        self.tokenizer = TOKENIZER_KIND.get(arch, "sentencepiece")

    def base(self) -> Path:
        from medrelease.testing.tiny import TinySpec, build_tiny_model

        folder = self.root / "base"
        if not (folder / "config.json").is_file():
            build_tiny_model(folder, TinySpec(arch=self.arch, tokenizer=self.tokenizer, seed=1))
            _fit_embeddings_to_tokenizer(folder)
        return folder

    def variant(self, index: int) -> Path:
        from medrelease.testing.tiny import derive_stage

        folder = self.root / f"variant{index}"
        if not (folder / "config.json").is_file():
            derive_stage(self.base(), folder, seed=100 + index, scale=0.01 * index)
        return folder

    def adapter(self) -> Path:
        from medrelease.testing.tiny import make_adapter

        folder = self.root / "dora"
        if not (folder / "adapter_config.json").is_file():
            make_adapter(self.base(), folder, dora=True, seed=7)
        return folder


def _fit_embeddings_to_tokenizer(folder: Path) -> None:
    """Grow the embeddings when the saved folder loads a larger tokenizer than it was built with.

    transformers 5 loads a SentencePiece tokenizer beside a qwen2 config as Qwen2Tokenizer,
    which adds `<|endoftext|>` as a 513th token: without this, merge's preflight rightly
    refuses the stand-in (a token id beyond the embedding).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokens = len(AutoTokenizer.from_pretrained(str(folder)))
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    if tokens <= model.config.vocab_size:
        return
    model.resize_token_embeddings(tokens, mean_resizing=False)
    model.save_pretrained(str(folder))


def standin_overrides(recipe: Any, family: StandinFamily) -> dict[str, str]:
    """`--stage` overrides for every stage of `recipe` (a medrelease Recipe).

    The stage called `base`, and every adapter's base, gets the family's base (the adapter was
    built on it); adapter stages get the adapter; other stages get distinct variants.
    """
    from medrelease.recipe.stages import AdapterStage

    stages = recipe.stages
    adapter_bases = {s.base for s in stages.values() if isinstance(s, AdapterStage)}
    out: dict[str, str] = {}
    index = 0
    for name, spec in stages.items():
        if isinstance(spec, AdapterStage):
            out[name] = str(family.adapter())
        elif name == "base" or name in adapter_bases:
            out[name] = str(family.base())
        else:
            index += 1
            out[name] = str(family.variant(index))
    return out


# --- tiny local evaluation data, in each dataset's Hub schema -------------------------------

# (question, four options, index of the right one): a handful of easy medical facts
FACTS = [
    ("Which organ pumps blood through the body?", ["heart", "liver", "lung", "skin"], 0),
    ("Which organ makes insulin?", ["kidney", "pancreas", "brain", "spleen"], 1),
    ("Red blood cells mainly carry?", ["bile", "urine", "oxygen", "lymph"], 2),
    ("Which organ filters blood to make urine?", ["heart", "colon", "skin", "kidney"], 3),
    ("Antibiotics act against?", ["bacteria", "viruses", "prions", "allergies"], 0),
    ("Hypertension means high?", ["sugar", "blood pressure", "fever", "weight"], 1),
]
LETTERS = "ABCDEFGHIJ"

IFEVAL_ROWS = [
    {
        "key": 1,
        "prompt": "Describe what the heart does without using any commas.",
        "instruction_id_list": ["punctuation:no_comma"],
        "kwargs": [{}],
    },
    {
        "key": 2,
        "prompt": "Explain what a vaccine is in fewer than 40 words, all in lowercase letters.",
        "instruction_id_list": ["length_constraints:number_words", "change_case:english_lowercase"],
        "kwargs": [{"relation": "less than", "num_words": 40}, {}],
    },
    {
        "key": 3,
        "prompt": "List two symptoms of a cold. End your answer with the exact phrase 'Stay well.'",
        "instruction_id_list": ["startend:end_checker"],
        "kwargs": [{"end_phrase": "Stay well."}],
    },
]


def _write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _mmlu_medical(folder: Path) -> None:
    from medrelease.gate.presets import MMLU_MEDICAL_SUBJECTS

    for subject in MMLU_MEDICAL_SUBJECTS:
        rows = [{"question": q, "subject": subject, "choices": c, "answer": a} for q, c, a in FACTS]
        _write_jsonl(folder / subject / "test.jsonl", rows[:4])
        _write_jsonl(folder / subject / "dev.jsonl", rows[4:])


def _mmlu_pro(folder: Path) -> None:
    from medrelease.gate.presets import MMLU_PRO_SUBJECTS

    rows: list[dict[str, Any]] = []
    for subject in MMLU_PRO_SUBJECTS:  # every subtask filters the one file on `category`
        for q, c, a in FACTS[:2]:
            rows.append(
                {
                    "question_id": len(rows),
                    "question": q,
                    "options": c,
                    "answer": LETTERS[a],
                    "answer_index": a,
                    "cot_content": f"A: Let's think step by step. The answer is ({LETTERS[a]}).",
                    "category": subject.replace("_", " "),
                    "src": "standin",
                }
            )
    _write_jsonl(folder / "test.jsonl", rows)
    _write_jsonl(folder / "validation.jsonl", rows)


def _medmcqa(folder: Path) -> None:
    rows = [
        {
            "id": str(i),
            "question": q,
            **{f"op{k}": opt for k, opt in zip("abcd", c, strict=True)},
            "cop": a,
            "choice_type": "single",
            "exp": "",
            "subject_name": "Medicine",
            "topic_name": "",
        }
        for i, (q, c, a) in enumerate(FACTS)
    ]
    _write_jsonl(folder / "validation.jsonl", rows)
    _write_jsonl(folder / "train.jsonl", rows)


def _medqa(folder: Path) -> None:
    rows = [
        {"id": str(i), "sent1": q, "sent2": "", **{f"ending{k}": o for k, o in enumerate(c)}}
        | {"label": a}
        for i, (q, c, a) in enumerate(FACTS)
    ]
    for split in ("test", "validation", "train"):
        _write_jsonl(folder / f"{split}.jsonl", rows)


def _pubmedqa(folder: Path) -> None:
    decisions = ["yes", "no", "maybe"]
    rows = [
        {
            "QUESTION": q,
            "CONTEXTS": [f"The {c[a]} is the answer studied here.", "A small cohort study."],
            "LONG_ANSWER": f"The answer is {c[a]}.",
            "final_decision": decisions[i % 3],
        }
        for i, (q, c, a) in enumerate(FACTS)
    ]
    for split in ("test", "validation", "train"):
        _write_jsonl(folder / f"{split}.jsonl", rows)


WRITERS = {
    "ifeval": lambda folder: _write_jsonl(folder / "input_data.jsonl", IFEVAL_ROWS),
    "mmlu_medical": _mmlu_medical,
    "mmlu_pro": _mmlu_pro,
    "medmcqa": _medmcqa,
    "medqa": _medqa,
    "pubmedqa": _pubmedqa,
}


def write_eval_data(data_dir: Path, presets: Iterable[str] | None = None) -> Path:
    """Write `<data_dir>/<preset>/...` for the given presets (default: all that need data).

    `medical_safety` needs none: its prompts ship with medrelease.
    """
    data_dir = Path(data_dir)
    for preset in presets if presets is not None else WRITERS:
        if preset in WRITERS:
            WRITERS[preset](data_dir / preset)
    return data_dir


def recipe_presets(recipe: Any) -> list[str]:
    """The presets a recipe's gates use (custom task YAMLs bring their own data)."""
    gates = recipe.gates
    return [t.preset for t in gates.tasks if t.preset] if gates is not None else []


def standin_release_args(recipe_path: Path, out: Path) -> list[str]:
    """Build tiny stand-ins of every stage of `recipe_path` and the eval data its presets read,
    under `out`; return the `medrelease` arguments (`release RECIPE --stage ... --set ...`)
    that run the recipe on them. The caller adds an overlay (limits, relaxed rules)."""
    from medrelease.recipe.load import load_recipe

    recipe = load_recipe(recipe_path).recipe
    arch = standin_arch(recipe_path)
    overrides = standin_overrides(recipe, StandinFamily(out / arch, arch))
    presets = recipe_presets(recipe)
    data = write_eval_data(out / "eval-data", presets)
    args = ["release", str(recipe_path)]
    for name, path in overrides.items():
        args += ["--stage", f"{name}={path}"]
    if any(p in WRITERS for p in presets):  # else no data was written: no folder to point at
        args += ["--set", f"gates.data_dir={data}"]
    if TOKENIZER_KIND.get(arch) == "bpe" and recipe.quantize and recipe.quantize.gguf:
        # the stand-in's BPE is unknown to llama.cpp's converter; its rules are the family's
        args += ["--set", f"quantize.gguf.pre_tokenizer={arch}"]
    return args


def main(argv: list[str] | None = None) -> int:
    """`python -m medrelease.testing.standins RECIPE OUT`: stand-ins + eval data + the command."""
    import shlex

    from medrelease.core.errors import MedreleaseError

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m medrelease.testing.standins RECIPE OUT_FOLDER", file=sys.stderr)
        return 2
    try:
        cmd = standin_release_args(Path(args[0]), Path(args[1]).resolve())
    except (MedreleaseError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(shlex.join(["medrelease", *cmd]) + " --overlay <your overlay: limits, relaxed rules>")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
