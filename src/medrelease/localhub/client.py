"""Point huggingface_hub (in this process) at a local Hub, for code that uses its defaults.

huggingface_hub reads HF_ENDPOINT and HF_HUB_OFFLINE once, at import; code that calls
`snapshot_download(repo)` without `endpoint=` (e.g. resolving a recipe's Hub stages) keeps
using the values from import time. This sets the environment *and* those constants for the
duration of a block, and restores both afterwards.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

ENV_KEYS = ("HF_ENDPOINT", "HF_HUB_OFFLINE", "HF_HUB_DISABLE_TELEMETRY")


@contextlib.contextmanager
def use_local_hub(url: str) -> Iterator[str]:
    from huggingface_hub import constants

    url = url.rstrip("/")
    saved_env = {k: os.environ.get(k) for k in ENV_KEYS}
    saved = {
        name: getattr(constants, name)
        for name in ("ENDPOINT", "HUGGINGFACE_CO_URL_TEMPLATE", "HF_HUB_OFFLINE")
    }
    os.environ["HF_ENDPOINT"] = url
    os.environ.pop("HF_HUB_OFFLINE", None)
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    constants.ENDPOINT = url
    constants.HUGGINGFACE_CO_URL_TEMPLATE = url + "/{repo_id}/resolve/{revision}/{filename}"
    constants.HF_HUB_OFFLINE = False
    try:
        yield url
    finally:
        for name, value in saved.items():
            setattr(constants, name, value)
        for key, old in saved_env.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
