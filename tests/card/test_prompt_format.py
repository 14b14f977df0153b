"""The prompt format a GGUF card shows: the chat template run on placeholder messages."""

from __future__ import annotations

from medrelease.card.prompt_format import prompt_example, special_tokens

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
NO_SYSTEM = (
    "{{ bos_token }}{% for m in messages %}{% if m.role == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "[INST] {{ m.content }} [/INST]{% endfor %}"
)


def test_chatml_with_a_system_message():
    assert prompt_example(CHATML, {}) == (
        "<|im_start|>system\n{system_prompt}<|im_end|>\n<|im_start|>user\n{prompt}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_a_template_that_refuses_system_is_shown_without_it():
    assert prompt_example(NO_SYSTEM, {"bos_token": "<s>"}) == "<s>[INST] {prompt} [/INST]"


def test_no_template_or_one_that_cannot_render_gives_no_example():
    assert prompt_example(None, {}) is None
    assert prompt_example("{{ messages[0].content | no_such_filter }}", {}) is None
    assert prompt_example("{{ ''.__class__.__mro__ }}", {}) is None  # sandboxed


def test_special_tokens_as_tokenizer_config_states_them():
    config = {"bos_token": {"content": "<s>", "lstrip": False}, "eos_token": "</s>"}
    assert special_tokens(config) == {"bos_token": "<s>", "eos_token": "</s>"}
