"""The demo's synthetic medical knowledge and the items built from it (training and evaluation).

Everything here is plain data and seeded `random.Random`, so the same items come out on every
machine. Three disjoint uses of the facts:

- MCQ knowledge (`demo_mcq`): a question per fact, the answer among 4 options of the same kind.
  The SFT stand-in is taught the facts in `SFT_FACTS`; the GRPO stand-in is taught all facts.
- instruction following (`demo_format`): a format rule ("put the answer in square brackets")
  on questions about facts in `FORMAT_EVAL_FACTS`, which no stage ever sees with the rule:
  the evaluation measures whether the format generalises, not whether items were memorised.
  SFT is taught the rule on the other facts (`FORMAT_TRAIN_FACTS`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Fact:
    kind: str  # which question template and which answer pool
    subject: str
    answer: str


QUESTIONS = {
    "organ": "Which organ does {s} affect?",
    "specialist": "Which specialist treats diseases of the {s}?",
    "drug": "Which condition is {s} used to treat?",
    "vitamin": "Which condition does a lack of {s} cause?",
    "function": "Which organ {s}?",
}

_FACTS: list[tuple[str, str, str]] = [
    ("organ", "hypertension", "heart"),
    ("organ", "hepatitis", "liver"),
    ("organ", "nephritis", "kidney"),
    ("organ", "pneumonia", "lung"),
    ("organ", "stroke", "brain"),
    ("organ", "gastritis", "stomach"),
    ("organ", "diabetes", "pancreas"),
    ("organ", "hypothyroidism", "thyroid"),
    ("organ", "asthma", "lung"),
    ("organ", "cirrhosis", "liver"),
    ("organ", "arrhythmia", "heart"),
    ("organ", "epilepsy", "brain"),
    ("organ", "goiter", "thyroid"),
    ("organ", "pancreatitis", "pancreas"),
    ("organ", "bronchitis", "lung"),
    ("organ", "angina", "heart"),
    ("organ", "meningitis", "brain"),
    ("organ", "peptic ulcer", "stomach"),
    ("specialist", "heart", "cardiologist"),
    ("specialist", "brain", "neurologist"),
    ("specialist", "kidney", "nephrologist"),
    ("specialist", "lung", "pulmonologist"),
    ("specialist", "liver", "hepatologist"),
    ("specialist", "stomach", "gastroenterologist"),
    ("specialist", "skin", "dermatologist"),
    ("specialist", "eye", "ophthalmologist"),
    ("drug", "insulin", "diabetes"),
    ("drug", "salbutamol", "asthma"),
    ("drug", "levothyroxine", "hypothyroidism"),
    ("drug", "lisinopril", "hypertension"),
    ("drug", "omeprazole", "gastritis"),
    ("drug", "amoxicillin", "pneumonia"),
    ("drug", "metformin", "diabetes"),
    ("drug", "warfarin", "stroke"),
    ("vitamin", "vitamin C", "scurvy"),
    ("vitamin", "vitamin D", "rickets"),
    ("vitamin", "vitamin B12", "anemia"),
    ("vitamin", "vitamin A", "night blindness"),
    ("vitamin", "iodine", "goiter"),
    ("vitamin", "iron", "anemia"),
    ("function", "pumps blood through the body", "heart"),
    ("function", "filters toxins and makes bile", "liver"),
    ("function", "filters blood and makes urine", "kidney"),
    ("function", "exchanges oxygen and carbon dioxide", "lung"),
    ("function", "controls thought and movement", "brain"),
    ("function", "digests food with acid", "stomach"),
    ("function", "makes insulin and digestive enzymes", "pancreas"),
    ("function", "makes hormones that control metabolism", "thyroid"),
]
FACTS: list[Fact] = [Fact(*f) for f in _FACTS]

# Answer pools: the distractors of a question are other answers of the same kind.
POOLS: dict[str, list[str]] = {}
for _f in FACTS:
    POOLS.setdefault(_f.kind, [])
    if _f.answer not in POOLS[_f.kind]:
        POOLS[_f.kind].append(_f.answer)
POOLS["vitamin"] += ["beriberi", "pellagra"]  # only 5 distinct answers otherwise

FORMAT_RULE = "Put the answer in square brackets."


def _split() -> tuple[list[Fact], list[Fact], list[Fact]]:
    """(SFT facts, facts only GRPO learns, facts whose questions test the format rule)."""
    rng = random.Random(7)
    order = list(FACTS)
    rng.shuffle(order)
    n_sft = len(order) // 2
    return order[:n_sft], order[n_sft:], order[: len(order) // 3] + order[n_sft:][::3]


SFT_FACTS, GRPO_ONLY_FACTS, FORMAT_EVAL_FACTS = _split()
FORMAT_TRAIN_FACTS = [f for f in FACTS if f not in FORMAT_EVAL_FACTS]


def question(fact: Fact) -> str:
    return QUESTIONS[fact.kind].format(s=fact.subject)


def qa_prompt(fact: Fact) -> str:
    """The plain question prompt: the exact context the MCQ task scores answers after."""
    return f"Question: {question(fact)}\nAnswer:"


def format_prompt(fact: Fact) -> str:
    """The question with the format instruction in front (the instruction-following task)."""
    return f"Instruction: {FORMAT_RULE}\nQuestion: {question(fact)}\nAnswer:"


def mcq_items(seed: int = 11) -> list[dict[str, object]]:
    """One 4-option item per fact, options shuffled with a fixed seed."""
    rng = random.Random(seed)
    items: list[dict[str, object]] = []
    for i, fact in enumerate(FACTS):
        distractors = [a for a in POOLS[fact.kind] if a != fact.answer]
        options = [fact.answer, *rng.sample(distractors, 3)]
        rng.shuffle(options)
        items.append(
            {
                "id": f"mcq-{i:03d}",
                "kind": fact.kind,
                "question": question(fact),
                "choices": options,
                "label": options.index(fact.answer),
            }
        )
    return items


def format_items() -> list[dict[str, object]]:
    """Held-out instruction-following items: the rule on questions never trained with it."""
    return [
        {
            "id": f"fmt-{i:03d}",
            "prompt": format_prompt(fact),
            "answer": fact.answer,
            "rule": "brackets",
        }
        for i, fact in enumerate(FORMAT_EVAL_FACTS)
    ]


@dataclass(frozen=True)
class Example:
    """A training pair: the loss is taken on `completion` only (as in SFT)."""

    prompt: str
    completion: str


def sft_examples() -> list[Example]:
    """SFT: plain answers to the SFT facts, and the format rule obeyed on its training facts."""
    out = [Example(qa_prompt(f), f" {f.answer}\n") for f in SFT_FACTS]
    out += [Example(format_prompt(f), f" [{f.answer}]\n") for f in FORMAT_TRAIN_FACTS]
    return out


def grpo_examples() -> list[Example]:
    """GRPO-CoT stand-in: rewarded on correct answers only, so it drills every fact in the
    plain question format and never sees the format rule again. Instruction following is
    lost as a side effect (forgetting), not taught against."""
    return [Example(qa_prompt(f), f" {f.answer}\n") for f in FACTS]
