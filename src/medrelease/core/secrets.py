"""Keep Hub tokens out of everything we print or write.

Tokens come only from the environment or huggingface_hub's login; we never accept one on the
command line (it would land in shell history and CI logs).
"""

from __future__ import annotations

import os
import re

from medrelease.core.errors import MedreleaseError

TOKEN_ENV_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_TOKEN")
_HF_TOKEN_RE = re.compile(r"hf_[A-Za-z0-9]{20,}")
REDACTED = "***"


def known_tokens() -> list[str]:
    tokens = [os.environ[v] for v in TOKEN_ENV_VARS if os.environ.get(v)]
    try:  # a token saved by `hf auth login`, without importing huggingface_hub
        home = os.environ.get("HF_HOME") or os.path.expanduser("~/.cache/huggingface")
        with open(os.path.join(home, "token")) as fh:
            saved = fh.read().strip()
        if saved:
            tokens.append(saved)
    except OSError:
        pass
    return [t for t in tokens if len(t) >= 8]


def redact(text: str) -> str:
    for tok in known_tokens():
        text = text.replace(tok, REDACTED)
    return _HF_TOKEN_RE.sub(REDACTED, text)


def assert_no_secrets(text: str, *, what: str) -> None:
    """Refuse to write `text` if it contains a token: a bug upstream, never user error."""
    for tok in known_tokens():
        if tok in text:
            raise MedreleaseError(
                f"refusing to write {what}: it would contain the Hub token",
                hint="this is a medrelease bug; please report it (the token was not written)",
            )
