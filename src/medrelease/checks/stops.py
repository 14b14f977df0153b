""" "It stops": a model released for chat must be able to end its answer.

A merge easily loses an end-of-turn token: mergekit copies the base model's
generation_config, whose EOS list names the pretraining `<|endoftext|>` but not the chat
model's `<|im_end|>` / `<|eot_id|>` (arcee-ai/mergekit #275); greedy decoding then runs to
max_new_tokens. What can be checked without trusting the weights (declarative):

1. every EOS id the release declares (generation_config.eos_token_id, a list or one id) is a
   token of the vocabulary, and a special one (text never spells it by accident);
2. the chat template, rendering a 2-turn chat, follows the assistant's message with a special
   token, and that token is one generation stops at (it is in generation_config's list);
3. every EOS id the inputs declared (the merged stages' generation_configs, matched by token
   text) is still declared: a multi-token list survives merge, finalize and quantization.

What needs the weights (behavioural, `stops_when_generating`): with the chat template and
greedy decoding, a short answer ends with a declared EOS id. Random-weight stand-ins never
stop, and a 7B model costs tens of seconds on a CPU, so this runs only when the recipe asks for
it (`output.stop_check`): on the merged model (a verification failure) and on every quant (a
rejection), each through its own runtime (transformers, llama.cpp in a child process).

Reuse (quantize's GGUF and AWQ checks): call `stop_problems(tokenizer, eos_ids, ...)` with
the quant's declared EOS list (GGUF: `tokenizer.ggml.eos_token_id` plus
`tokenizer.ggml.eot_token_id`; AWQ: its generation_config.json) and, for the list the merged
model declares, `required=declared_eos_tokens(merged_folder)`; `generation_stops` takes any
`generate(prompt_ids, max_new_tokens) -> new ids` callable (llama-cpp-python or transformers).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# an answer the template must put between the assistant's turn markers
ANSWER = "The pancreas makes insulin."
STOP_HINT = (
    "the model does not end its answer: check the stages' chat training and EOS tokens, or "
    "drop output.stop_check for models that are not chat models"
)
TWO_TURNS = [
    {"role": "user", "content": "Which organ makes insulin?"},
    {"role": "assistant", "content": ANSWER},
]


def as_ids(value: Any) -> list[int]:
    """generation_config's eos_token_id: one id, a list, or absent."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [int(v) for v in value]
    return [int(value)]


def generation_eos_ids(folder: Path) -> list[int]:
    """The EOS ids a model folder's generation_config.json declares (read as JSON, no torch)."""
    path = folder / "generation_config.json"
    if not path.is_file():
        return []
    try:
        return as_ids(json.loads(path.read_text()).get("eos_token_id"))
    except (ValueError, TypeError, AttributeError):
        return []


def release_eos_ids(folder: Path) -> list[int]:
    """The EOS ids a model folder declares for generation: generation_config.json's list,
    else config.json's eos_token_id."""
    ids = generation_eos_ids(folder)
    if ids:
        return ids
    try:
        return as_ids(json.loads((folder / "config.json").read_text()).get("eos_token_id"))
    except (OSError, ValueError, TypeError, AttributeError):
        return []


def token_texts(folder: Path) -> dict[int, str]:
    """id -> text of the special/added tokens of a folder's tokenizer, from tokenizer.json
    (cheap: no tokenizer is built). Falls back to loading the tokenizer when absent."""
    path = folder / "tokenizer.json"
    texts: dict[int, str] = {}
    if path.is_file():
        try:
            for entry in _added_tokens(path):
                texts[int(entry["id"])] = str(entry["content"])
            return texts
        except (ValueError, KeyError, TypeError):
            pass
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    return {int(i): str(t.content) for i, t in tok.added_tokens_decoder.items()}


def _added_tokens(path: Path) -> list[dict[str, Any]]:
    """tokenizer.json's "added_tokens" array. The tokenizers library writes it before the
    vocabulary, so only the file's head is read and that array decoded (a Qwen tokenizer.json
    is 11 MB); any other layout is decoded whole."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 20).decode("utf-8", errors="ignore")
    key = head.find('"added_tokens"')
    if key >= 0:
        start = head.find("[", key)
        if start >= 0 and not head[key + len('"added_tokens"') : start].strip(" \t\r\n:"):
            try:
                value, _ = json.JSONDecoder().raw_decode(head, start)
                if isinstance(value, list):
                    return value
            except ValueError:
                pass  # the array runs past the head: decode the whole file
    data = json.loads(path.read_text(encoding="utf-8"))
    return list(data.get("added_tokens") or []) if isinstance(data, dict) else []


@dataclass(frozen=True)
class DeclaredEos:
    """An EOS token some input declared: its text, and where it came from."""

    text: str
    source: str
    source_id: int


def declared_eos_tokens(folders: dict[str, Path]) -> list[DeclaredEos]:
    """Every EOS token the given folders' generation_configs declare, as token text, so it
    can be found again in a tokenizer with other ids."""
    out: list[DeclaredEos] = []
    for name, folder in folders.items():
        ids = generation_eos_ids(folder)
        if not ids:
            continue
        texts = token_texts(folder)
        for i in ids:
            if i in texts and all(d.text != texts[i] for d in out):
                out.append(DeclaredEos(texts[i], name, i))
    return out


def end_of_turn(tok: Any) -> tuple[str, int | None] | None:
    """The first special token the chat template puts after an assistant message.

    Returns None without a template; ("", None) when nothing special follows the answer."""
    if not getattr(tok, "chat_template", None):
        return None
    rendered = tok.apply_chat_template(TWO_TURNS, tokenize=False)
    if not isinstance(rendered, str) or ANSWER not in rendered:
        return ("", None)
    tail = rendered[rendered.rindex(ANSWER) + len(ANSWER) :]
    if not tail:
        return ("", None)
    ids = tok(tail, add_special_tokens=False)["input_ids"]
    special = set(tok.all_special_ids) | {
        int(i) for i, t in tok.added_tokens_decoder.items() if getattr(t, "special", False)
    }
    for i in ids:
        if int(i) in special:
            return (str(tok.convert_ids_to_tokens(int(i))), int(i))
    return ("", None)


def token_id(tok: Any, text: str) -> int | None:
    """The id of token `text` in `tok`, or None (added tokens first: EOS tokens are those,
    and the full vocabulary of a 150k-token tokenizer is slow to build)."""
    found = tok.get_added_vocab().get(text)
    if found is None:
        found = tok.get_vocab().get(text)
    return None if found is None else int(found)


def is_special(tok: Any, i: int) -> bool:
    if i in set(tok.all_special_ids):
        return True
    added = tok.added_tokens_decoder.get(i)
    return bool(added is not None and getattr(added, "special", False))


def stop_problems(
    tok: Any,
    eos_ids: Sequence[int],
    *,
    vocab_size: int | None = None,
    required: Sequence[DeclaredEos] = (),
    where: str = "generation_config.eos_token_id",
) -> list[str]:
    """Declarative "it stops" checks (see the module docstring); [] when all hold."""
    problems: list[str] = []
    declared = [int(i) for i in eos_ids]
    if not declared:
        return [f"{where} is empty: generation has no token to stop at"]
    size = len(tok)
    for i in declared:
        if i < 0 or i >= size or (vocab_size and i >= vocab_size):
            problems.append(
                f"{where} {declared} holds {i}, which is not a token "
                f"(vocabulary {vocab_size or size})"
            )
        elif not is_special(tok, i):
            problems.append(
                f"{where} {declared} holds {i} ({tok.convert_ids_to_tokens(i)!r}), which is "
                "not a special token: ordinary text would end generation"
            )
    try:
        eot = end_of_turn(tok)
    except Exception as exc:  # a template that cannot render two turns
        problems.append(f"the chat template cannot render a 2-turn chat: {exc}")
        eot = None
    if eot is not None:
        text, eot_id = eot
        if eot_id is None:
            problems.append(
                "the chat template puts no special token after an assistant message: a model "
                "tuned on it has no end-of-turn token to stop at"
            )
        elif eot_id not in declared:
            problems.append(
                f"the chat template ends an assistant turn with {text!r} (id {eot_id}), which "
                f"{where} {declared} does not contain: generation would not stop there"
            )
    for d in required:
        new_id = token_id(tok, d.text)
        if new_id is None:
            problems.append(
                f"stage {d.source!r} declares EOS {d.text!r} (id {d.source_id}), which the "
                "shipped tokenizer does not have"
            )
        elif int(new_id) not in declared:
            problems.append(
                f"{where} {declared} lacks {int(new_id)} ({d.text!r}), which stage "
                f"{d.source!r} declares as EOS"
            )
    return problems


def generation_stops(
    generate: Callable[[list[int], int], list[int]],
    prompt_ids: list[int],
    eos_ids: Sequence[int],
    *,
    max_new_tokens: int,
) -> tuple[bool, list[int]]:
    """Behavioural check: greedy-decode from `prompt_ids`; True when it ends with a declared
    EOS id within max_new_tokens. `generate` returns the new ids (it may stop early on EOS)."""
    new = [int(i) for i in generate(prompt_ids, max_new_tokens)]
    stop = set(int(i) for i in eos_ids)
    return any(i in stop for i in new), new


def chat_prompt_ids(tok: Any, prompt: str) -> list[int]:
    """The user's `prompt` as the chat template renders it, ready for the assistant's answer."""
    if getattr(tok, "chat_template", None):
        text = tok.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        return [int(i) for i in tok(text, add_special_tokens=False)["input_ids"]]
    return [int(i) for i in tok(prompt)["input_ids"]]


def stops_when_generating(
    generate: Callable[[list[int], int], list[int]],
    tok: Any,
    eos_ids: Sequence[int],
    settings: Any,
) -> dict[str, Any]:
    """The behavioural check as a check entry ({"ok", "detail"}), for any runtime's `generate`;
    `tok` a transformers tokenizer, `settings` the recipe's StopCheck (prompt, max_new_tokens)."""
    prompt_ids = chat_prompt_ids(tok, settings.prompt)
    return stops_after(generate, prompt_ids, lambda ids: str(tok.decode(ids)), eos_ids, settings)


def stops_after(
    generate: Callable[[list[int], int], list[int]],
    prompt_ids: list[int],
    decode: Callable[[list[int]], str],
    eos_ids: Sequence[int],
    settings: Any,
) -> dict[str, Any]:
    """`stops_when_generating` with the prompt already rendered (`chat_prompt_ids`) and a
    `decode` for the message: where no transformers tokenizer is loaded (the GGUF checks)."""
    eos = [int(i) for i in eos_ids]
    ok, new = generation_stops(generate, prompt_ids, eos, max_new_tokens=settings.max_new_tokens)
    if ok:
        return {
            "ok": True,
            "detail": f"greedy answer ended with EOS {new[-1]} after {len(new)} token(s)",
        }
    tail = decode(new[-12:])
    return {
        "ok": False,
        "detail": f"greedy decoding of {settings.prompt!r} with the chat template gave "
        f"{settings.max_new_tokens} tokens without an EOS of {eos} (ends {tail!r})",
    }


def transformers_generate(
    model: Any, eos_ids: Sequence[int]
) -> Callable[[list[int], int], list[int]]:
    """A `generate` for `generation_stops` over a transformers model (greedy, no sampling)."""

    def run(prompt_ids: list[int], max_new_tokens: int) -> list[int]:
        import torch

        with torch.no_grad():
            out = model.generate(
                torch.tensor([prompt_ids]),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=list(eos_ids),
                pad_token_id=int(next(iter(eos_ids))),
            )
        return [int(i) for i in out[0][len(prompt_ids) :]]

    return run


def eos_kept(reference: Path, folder: Path) -> list[str]:
    """Every EOS id the reference model folder declares is still declared by `folder` (a
    quant), for the same token text; [] when all are kept."""
    want, got = generation_eos_ids(reference), generation_eos_ids(folder)
    ref_texts, texts = token_texts(reference), token_texts(folder)
    problems = []
    for i in want:
        if i not in got:
            problems.append(
                f"EOS id {i} ({ref_texts.get(i)!r}) of the merged model is not in the quant's "
                f"generation_config.eos_token_id {got}: generation would not stop there"
            )
        elif ref_texts.get(i) != texts.get(i):
            problems.append(
                f"EOS id {i} is {texts.get(i)!r} in the quant but {ref_texts.get(i)!r} in the "
                "merged model"
            )
    return problems
