"""The release workflow's hosted dry run: the recipe end to end on tiny stand-ins, unpublished.

    python .github/scripts/standin_dry_run.py RECIPE OUT

builds tiny stand-ins of the recipe's stages (its `# standin-arch:` line) and a few rows of
data for its gate presets under OUT, then runs `medrelease release RECIPE` on them with the
recipe's stand-in overlay (tests/recipes/standins/<recipe file name>: few documents, opened-up
thresholds), `--dry-run` and a `dir://` target: merge, gate, quantize and card run for real on
a runner that cannot hold the real weights, and the publish plan is printed. What it catches
before the GPU runner is booked: a gate task that does not load, a rule on a metric no task
produces, a quant type llama.cpp refuses, a card template error. Exit code: medrelease's.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OVERLAYS = REPO / "tests" / "recipes" / "standins"


def dry_run_args(recipe: Path, out: Path) -> list[str]:
    from medrelease.testing.standins import standin_release_args

    overlay = OVERLAYS / recipe.name
    if not overlay.is_file():
        raise SystemExit(
            f"error: no stand-in overlay for {recipe.name} at {overlay}\n"
            "fix: add one (see the others there: limits and opened-up rules for tiny models)"
        )
    return [
        *standin_release_args(recipe, out),
        "--overlay", str(overlay),
        "--workdir", str(out / "build"),
        "--dry-run",
        "--target", f"dir://{out / 'export'}",
    ]  # fmt: skip


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: standin_dry_run.py RECIPE OUT", file=sys.stderr)
        return 2
    from medrelease.cli import main as medrelease

    return medrelease(dry_run_args(Path(argv[0]), Path(argv[1]).resolve()))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
