"""What a prompt looks like once the chat template has run: the "Prompt format" GGUF readers
copy into runtimes that take a raw prompt.

The template is rendered as transformers renders it (Jinja2, sandboxed, `raise_exception`,
`add_generation_prompt`), with `{system_prompt}` and `{prompt}` as the message texts. A
template that refuses a system message is rendered without one; one that cannot be rendered
outside transformers gives no example, and the card shows the template itself.
"""

from __future__ import annotations

from typing import Any

SYSTEM, USER = "{system_prompt}", "{prompt}"


def prompt_example(template: str | None, special: dict[str, str]) -> str | None:
    if not template:
        return None
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise jinja2.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    for messages in (
        [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}],
        [{"role": "user", "content": USER}],
    ):
        try:
            text = env.from_string(template).render(
                messages=messages, add_generation_prompt=True, **special
            )
        except Exception:  # any template error: try without a system message, then give up
            continue
        if USER in text:
            return text
    return None


def special_tokens(config: dict[str, Any]) -> dict[str, str]:
    """bos_token / eos_token as a tokenizer_config.json states them (a str or an AddedToken)."""
    out = {}
    for key in ("bos_token", "eos_token"):
        value = config.get(key)
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str):
            out[key] = value
    return out
