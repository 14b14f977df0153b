"""Which decoding settings `output.generation_config` may hold: transformers' GenerationConfig
names, nothing else (GenerationConfig keeps an unknown key as a plain attribute and every
generation ignores it, so a typo would ship silently).

One definition for the recipe check (config_check.check_output_block, at load time) and for
finalize_output (which applies the settings and may be called on settings no recipe check saw).
"""

from __future__ import annotations

from collections.abc import Iterable

GENERATION_HINT = (
    "use transformers GenerationConfig names (do_sample, temperature, top_p, "
    "repetition_penalty, no_repeat_ngram_size, max_new_tokens, ...)"
)


def unknown_generation_keys(keys: Iterable[str]) -> list[str]:
    """The keys GenerationConfig does not have, in the order given."""
    from transformers import GenerationConfig

    defaults = GenerationConfig()
    return [k for k in keys if not hasattr(defaults, k)]


def known_generation_keys() -> set[str]:
    """GenerationConfig's settings, for did-you-mean suggestions."""
    from transformers import GenerationConfig

    return set(GenerationConfig().to_dict())
