"""Files that travel with the main card: `eval/` (task files) and `eval_results/` (Hub results).

Paths are relative to `<release>/card/`; the publish step ships `card/eval/**` as `eval/**` and
`card/eval_results/*` as `.eval_results/*` of the main repo (publish/plan.py).
"""

from __future__ import annotations

from medrelease.card.datasets import TaskData
from medrelease.card.eval_bundle import EVAL_DIR, EvalBundle
from medrelease.card.hub_results import FOLDER, check_eval_result_files, eval_result_files
from medrelease.core.errors import VerificationError
from medrelease.records.gate_report import GateReport


def card_extras(
    report: GateReport,
    datasets: dict[str, TaskData],
    bundle: EvalBundle,
    hub_benchmarks: dict[str, str],
) -> tuple[dict[str, bytes], list[str]]:
    """({card-relative path: bytes}, warnings)."""
    files = {f"{EVAL_DIR}/{rel}": data for rel, data in bundle.files.items()}
    results, skipped = eval_result_files(report, datasets, hub_benchmarks)
    try:
        check_eval_result_files(results)
    except ValueError as exc:
        raise VerificationError(
            f"eval results are invalid: {exc}", where=f"card/{FOLDER}/"
        ) from None
    files.update({f"{FOLDER}/{name}": text.encode() for name, text in results.items()})
    return files, [*bundle.warnings, *skipped]
