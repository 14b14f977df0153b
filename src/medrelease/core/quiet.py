"""Silence the libraries' own chatter (progress bars, deprecation notices) during our steps.

Our Reporter shows progress; transformers' and datasets' bars would interleave with it and
bury the one line a user needs. `--debug` keeps everything.
"""

from __future__ import annotations

import logging
import os
import warnings

UNACTIONABLE_LOGGERS = ("torch.fx._symbolic_trace",)


def quiet_libraries() -> None:
    if os.environ.get("MEDRELEASE_DEBUG"):
        return
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*torch_dtype.*")
    try:
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:
        pass
    try:
        import datasets

        datasets.utils.logging.set_verbosity_error()
        datasets.disable_progress_bars()
    except ImportError:
        pass
    for name in ("mergekit", "accelerate", "peft", "lm-eval", "lm_eval", "llmcompressor"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # Warnings about the libraries' own code, which a user cannot act on: torch.fx's notice
    # that `is_fx_tracing` also covers torch.export (hit by AWQ's calibration tracing).
    for name in UNACTIONABLE_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
