"""Exact match and Hamming score for multiple-answer multiple-choice questions.

FrenchMedMCQA / MedInjection-FR score a question whose correct answer is a *set* of letters
two ways: exact match (the predicted set equals the gold set) and the Hamming score
|gold ∩ pred| / |gold ∪ pred| (partial credit). Used by lm-eval tasks through
`process_results: !function utils.process_results`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

LETTERS = "ABCDEFGHIJ"
_LETTER_RE = re.compile(r"\b([A-J])\b")


def answer_set(value: Any) -> frozenset[str]:
    """Normalise a gold or predicted answer ("A,C", "AC", ["a", "c"], [0, 2]) to letters."""
    if value is None:
        return frozenset()
    if isinstance(value, str):
        text = value.upper()
        found = _LETTER_RE.findall(text)
        if not found and re.fullmatch(r"[A-J]+", text.strip()):
            found = list(text.strip())
        return frozenset(found)
    if isinstance(value, int):
        return frozenset(LETTERS[value])
    if isinstance(value, Iterable):
        out: set[str] = set()
        for item in value:
            out |= answer_set(item)
        return frozenset(out)
    raise TypeError(f"cannot read an answer set from {value!r}")


def exact_match(gold: Any, pred: Any) -> float:
    return float(answer_set(gold) == answer_set(pred))


def hamming_score(gold: Any, pred: Any) -> float:
    g, p = answer_set(gold), answer_set(pred)
    union = g | p
    if not union:  # nothing to choose and nothing chosen: agreement
        return 1.0
    return len(g & p) / len(union)


def parse_prediction(text: str) -> frozenset[str]:
    """Letters the model names in its first answer line (e.g. "A, C" or "Answer: B D")."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    line = re.sub(r"^(answer|réponse|reponse)\s*:?", "", line.strip(), flags=re.I)
    return answer_set(line)


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """lm-eval hook for a generation task whose docs carry `answers` (the gold set)."""
    pred = parse_prediction(results[0])
    gold = doc["answers"]
    return {"exact_match": exact_match(gold, pred), "hamming": hamming_score(gold, pred)}
