"""The texts the quantize step feeds the models: calibration chats, held-out prose, probes.

Calibration is question/answer pairs so it can be rendered with the model's chat template
(the format the model sees in use). Held-out text is separate prose never used for
calibration, so a quant cannot look good by having been tuned on what it is scored on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medrelease.core.data import packaged
from medrelease.core.errors import InputError
from medrelease.core.hashing import sha256_bytes

DEFAULT = "default"
_DEFAULT_FILES = {"calibration": "medical_qa.txt", "heldout": "heldout.txt"}

# Fixed probes for tokenizer agreement: spacing, digits, units, accents, CJK, newlines, tabs.
PROBE_TEXTS: tuple[str, ...] = (
    "The patient presented with chest pain radiating to the left arm.",
    " leading space,  double  spaces and trailing space ",
    "Dosage: 2.5 mg/kg every 12 h (max 40 mg/day); HbA1c 7.2%.",
    "Unicode: café, naïve, 37 °C, 5 µg, β-blocker, 肺炎, emoji 🙂.",
    "Line one\nLine two\n\n\tTabbed line",
    "",
)

PROBE_CHAT: tuple[dict[str, str], ...] = (
    {"role": "user", "content": "What is a normal resting heart rate for an adult?"},
    {"role": "assistant", "content": "Usually between 60 and 100 beats per minute."},
    {"role": "user", "content": "And for a trained athlete?"},
)


@dataclass(frozen=True)
class TextSource:
    name: str  # "default" or the recipe-relative path as written
    text: str

    @property
    def sha256(self) -> str:
        return sha256_bytes(self.text.encode("utf-8"))


def load_text(kind: str, name: str, base_dir: Path) -> TextSource:
    """`kind` is calibration | heldout; `name` is "default" or a recipe-relative file."""
    if name == DEFAULT:
        ref = packaged("calibration", _DEFAULT_FILES[kind])
        return TextSource(name, ref.read_text(encoding="utf-8"))
    path = (base_dir / name).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(
            f"{kind} text {path} does not exist",
            hint=f"point quantize {kind} at a UTF-8 text file relative to the recipe, "
            "or use 'default'",
        ) from None
    except UnicodeDecodeError:
        raise InputError(f"{kind} text {path} is not UTF-8 text") from None
    if not text.strip():
        raise InputError(f"{kind} text {path} is empty")
    return TextSource(name, text)


def calibration_chats(text: str) -> list[list[dict[str, str]]]:
    """Split "Q: ...\\nA: ..." blocks into chats; blocks without Q/A become plain assistant text."""
    chats: list[list[dict[str, str]]] = []
    lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
    for block in "\n".join(lines).split("\n\n"):
        block = block.strip()
        if not block:
            continue
        if block.startswith("Q:") and "\nA:" in block:
            q, a = block[2:].split("\nA:", 1)
            chats.append(
                [
                    {"role": "user", "content": q.strip()},
                    {"role": "assistant", "content": a.strip()},
                ]
            )
        else:
            chats.append([{"role": "assistant", "content": block}])
    return chats


def render_calibration(
    tokenizer: object, chats: list[list[dict[str, str]]]
) -> tuple[list[str], bool]:
    """Each chat as the model would see it; plain text when the tokenizer has no template."""
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        return ["\n\n".join(m["content"] for m in chat) for chat in chats], False
    apply = tokenizer.apply_chat_template  # type: ignore[attr-defined]
    return [str(apply(chat, tokenize=False)) for chat in chats], True
