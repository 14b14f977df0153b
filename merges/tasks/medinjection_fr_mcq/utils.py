"""lm-eval hooks for the MedInjection-FR MCQ gate: keep MCQ rows, score with EM and Hamming.

The scoring itself is medrelease's shipped multiple-answer scorer (mcq_multi), so this task and
the built-in template agree on how "A, C" and "Réponse : AC" are read.
"""

from __future__ import annotations

from typing import Any

from medrelease.data.tasks.mcq_multi.utils import exact_match, hamming_score, parse_prediction

MCQ_TYPES = frozenset({"MCQ", "MCQU"})


def process_docs(dataset: Any) -> Any:
    """Only the multiple-choice rows: open-ended questions need another metric."""
    return dataset.filter(lambda doc: str(doc.get("type", "")).upper() in MCQ_TYPES)


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    pred = parse_prediction(results[0])
    gold = doc["answer"]
    return {"exact_match": exact_match(gold, pred), "hamming": hamming_score(gold, pred)}
