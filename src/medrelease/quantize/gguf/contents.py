"""What a GGUF must contain, read from its bytes before llama.cpp ever runs on it.

A GGUF that loads can still be wrong: llama.cpp's converter reads a byte-level BPE
`tokenizer.json` that says `byte_fallback: true` as a SentencePiece vocabulary and writes it
without byte tokens (llama.cpp then aborts in `byte_to_token` on the first unknown byte); a
tensor can be missing or stored coarser than its type promises; the context length or rope
settings can differ from the merged model's. These checks read the GGUF with the `gguf`
module that ships with llama.cpp's converter (pure Python, safe in this process) and compare
with the merged folder:

* vocabulary: llama.cpp's tokenizer model (`tokenizer.ggml.model`) fits the HF tokenizer's
  kind (byte-level BPE -> `gpt2`, SentencePiece -> `llama`, WordPiece -> `bert`); byte tokens
  are where the HF vocabulary has them; BOS/EOS (and every end-of-sequence id of
  generation_config.json) have the same ids and texts.
* contents: every weight of the merged model is in the GGUF under the converter's name
  (`gguf.get_tensor_name_map`, the table the converter itself uses), with the same shape
  (GGUF stores dimensions innermost first) and a tensor type at least as precise as the quant
  type's floor; the context length, rope base and rope scaling equal the merged config's.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medrelease.checks.stops import release_eos_ids
from medrelease.core.safetensors_header import safetensors_headers
from medrelease.quantize.measure.tokenizer_facts import TokenizerFacts

MAX_SHOWN = 5

# The least precise tensor type llama.cpp's quantizer may choose for each medrelease type:
# llama_ftype_get_default_type() in llama.cpp's src/llama-quant.cpp, lowered where
# llama_tensor_get_type_impl() picks a smaller type for some tensors (IQ3_XS: IQ3_XXS for
# attn_q/attn_k and the middle ffn_gate/ffn_up; IQ3_XXS: IQ2_S for attn_q/attn_k). Every other
# deviation llama.cpp makes is towards more bits (output/token_embd at Q6_K or Q8_0, attn_v
# and ffn_down bumped, k-quant rows not divisible by 256 falling back to Q5_0/Q5_1/Q8_0/
# IQ4_NL, 1-D tensors kept in F32), so "at least as many bits per weight as the floor" admits
# exactly llama.cpp's documented choices and rejects a weight stored coarser than promised.
FLOOR_TYPE = {
    "F32": "F32",
    "F16": "F16",
    "BF16": "BF16",
    "Q8_0": "Q8_0",
    "Q6_K": "Q6_K",
    "Q5_K_M": "Q5_K",
    "Q5_K_S": "Q5_K",
    "Q5_1": "Q5_1",
    "Q5_0": "Q5_0",
    "Q4_K_M": "Q4_K",
    "Q4_K_S": "Q4_K",
    "Q4_1": "Q4_1",
    "Q4_0": "Q4_0",
    "IQ4_XS": "IQ4_XS",
    "IQ4_NL": "IQ4_NL",
    "Q3_K_L": "Q3_K",
    "Q3_K_M": "Q3_K",
    "Q3_K_S": "Q3_K",
    "IQ3_M": "IQ3_S",
    "IQ3_S": "IQ3_S",
    "IQ3_XS": "IQ3_XXS",
    "IQ3_XXS": "IQ2_S",
    "Q2_K": "Q2_K",
    "Q2_K_S": "Q2_K",
    "IQ2_M": "IQ2_S",
    "IQ2_S": "IQ2_XS",
    "IQ2_XS": "IQ2_XS",
    "IQ2_XXS": "IQ2_XXS",
    "IQ1_M": "IQ1_M",
    "IQ1_S": "IQ1_S",
}

# llama.cpp's tokenizer models (tokenizer.ggml.model) and the HF tokenizer kinds they implement
KIND_TO_GGUF = {
    "byte-level BPE": ("gpt2",),
    "SentencePiece BPE": ("llama",),
    "SentencePiece Unigram": ("llama", "t5"),
    "WordPiece": ("bert",),
}
TOKEN_TYPE_BYTE = 6  # gguf.TokenType.BYTE
UTF8_BYTES = [b for b in range(256) if b not in (0xC0, 0xC1) and b < 0xF5]


@dataclass
class GgufView:
    """The parts of a (possibly split) GGUF the checks read."""

    fields: dict[str, Any]
    tensors: dict[str, tuple[tuple[int, ...], str]]  # name -> (shape in HF order, type name)
    tokens: list[str] = field(default_factory=list)
    token_types: list[int] = field(default_factory=list)

    @property
    def arch(self) -> str:
        return str(self.fields.get("general.architecture", ""))

    def arch_key(self, key: str) -> Any:
        return self.fields.get(key.format(arch=self.arch))


def _value(f: Any) -> Any:
    """A field's value; strings decoded leniently (a vocabulary may hold odd bytes)."""
    from gguf import GGUFValueType

    if not f.types:
        return None
    if f.types[0] == GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8", errors="replace")
    if f.types[0] == GGUFValueType.ARRAY and f.types[-1] == GGUFValueType.STRING:
        return [bytes(f.parts[i]).decode("utf-8", errors="replace") for i in f.data]
    return f.contents()


def gguf_reader(path: Path) -> Any:
    """gguf-py's `GGUFReader` on `path`, with the same fields, tensors and parts, parsed faster.

    * Over a plain ndarray view of its memory map: the reader slices its `numpy.memmap` two
      to four times per vocabulary entry, and every slice of a memmap runs memmap's
      Python-level `__getitem__` and `__array_finalize__` (the view keeps the map alive).
    * Arrays (the vocabulary, its token types, its merges) without the reader's generic
      path, which re-dispatches on the item type and sizes a dtype for every item.

    For a 49k vocabulary with its merges: 1.7 s with gguf-py's reader, 0.6 s over the plain
    view, 0.1 s with both (tests/quantize/test_gguf_contents.py checks every part)."""
    import numpy as np
    from gguf import GGUFReader, GGUFValueType

    array, string = int(GGUFValueType.ARRAY), int(GGUFValueType.STRING)

    class FastReader(GGUFReader):
        @property
        def data(self) -> Any:
            return self._plain

        @data.setter
        def data(self, mapped: Any) -> None:  # GGUFReader.__init__ assigns its memmap here
            self._plain = mapped.view(np.ndarray)

        def _get_field_parts(self, orig_offs: int, raw_type: int) -> Any:
            """An array of strings or scalars as gguf-py builds it: its item type, its
            length, then each item's parts (a string: its length and its bytes; a scalar:
            a one-element array), with the indices of the items' data parts."""
            if raw_type != array:
                return super()._get_field_parts(orig_offs, raw_type)
            itype = self._get(orig_offs, np.uint32)
            item = int(itype[0])
            scalar = self.gguf_scalar_to_np.get(GGUFValueType(item))
            if item != string and scalar is None:  # an array of arrays: gguf-py's own path
                return super()._get_field_parts(orig_offs, raw_type)
            alen = self._get(orig_offs + 4, np.uint64)
            count = int(alen[0])
            parts: list[Any] = [itype, alen]
            offs = orig_offs + 12
            if item == string:
                data, length = self._plain, alen.dtype  # uint64 in the file's byte order
                for _ in range(count):
                    slen = data[offs : offs + 8].view(length)
                    end = offs + 8 + int(slen[0])
                    parts += (slen, data[offs + 8 : end])
                    offs = end
                idxs = list(range(3, len(parts), 2))
            else:
                assert scalar is not None
                values = self._get(offs, scalar, count)
                parts += [values[i : i + 1] for i in range(count)]
                offs += int(values.nbytes)
                idxs = list(range(2, len(parts)))
            types = [GGUFValueType.ARRAY] + ([GGUFValueType(item)] if count else [])
            return offs - orig_offs, parts, idxs, types

    return FastReader(path)


def read_gguf(files: list[Path]) -> GgufView:
    """Metadata of the first shard, tensors of every shard (llama.cpp's split format)."""
    fields: dict[str, Any] = {}
    tensors: dict[str, tuple[tuple[int, ...], str]] = {}
    tokens: list[str] = []
    types: list[int] = []
    for i, path in enumerate(files):
        reader = gguf_reader(path)
        if i == 0:
            for name, f in reader.fields.items():
                if name == "tokenizer.ggml.tokens":
                    tokens = _value(f)
                elif name == "tokenizer.ggml.token_type":
                    types = [int(t) for t in f.contents()]
                elif not name.startswith("GGUF.") and name != "tokenizer.ggml.merges":
                    fields[name] = _value(f)
        for t in reader.tensors:
            shape = tuple(int(d) for d in reversed(list(t.shape)))  # ggml: innermost first
            tensors[t.name] = (shape, t.tensor_type.name)
    return GgufView(fields, tensors, tokens, types)


def _result(problems: list[str], ok_detail: str, **extra: Any) -> dict[str, Any]:
    if not problems:
        return {"ok": True, "detail": ok_detail, **extra}
    return {"ok": False, "detail": "; ".join(problems), "problems": problems, **extra}


def _shown(items: list[str]) -> str:
    more = f" and {len(items) - MAX_SHOWN} more" if len(items) > MAX_SHOWN else ""
    return ", ".join(items[:MAX_SHOWN]) + more


# ---------- vocabulary ----------


def tokenizer_spec(merged: Path, facts: TokenizerFacts | None = None) -> dict[str, Any] | None:
    """The merged folder's tokenizer.json (or the fast tokenizer's, from its facts), parsed."""
    path = merged / "tokenizer.json"
    if path.is_file():
        return dict(json.loads(path.read_text(encoding="utf-8")))
    return dict(json.loads(facts.spec)) if facts is not None and facts.spec else None


def _has_type(node: Any, kind: str) -> bool:
    """Whether a tokenizers component (possibly a Sequence) contains a `kind` step."""
    if isinstance(node, dict):
        if node.get("type") == kind:
            return True
        return any(_has_type(v, kind) for v in node.values() if isinstance(v, dict | list))
    if isinstance(node, list):
        return any(_has_type(v, kind) for v in node)
    return False


def tokenizer_kind(spec: dict[str, Any] | None, merged: Path) -> str | None:
    """'byte-level BPE', 'SentencePiece BPE', ... or None when no rule applies."""
    if spec is None:
        return "SentencePiece Unigram" if (merged / "tokenizer.model").is_file() else None
    model = spec.get("model") or {}
    kind = model.get("type")
    if kind == "BPE":
        if _has_type(spec.get("pre_tokenizer"), "ByteLevel") or _has_type(
            spec.get("decoder"), "ByteLevel"
        ):
            return "byte-level BPE"
        if model.get("byte_fallback"):
            return "SentencePiece BPE"
        return None
    if kind == "Unigram":
        return "SentencePiece Unigram"
    if kind == "WordPiece":
        return "WordPiece"
    return None


def _hf_vocab(spec: dict[str, Any] | None, facts: TokenizerFacts | None) -> dict[str, int]:
    if facts is not None:
        return dict(facts.vocab)
    vocab = dict((spec or {}).get("model", {}).get("vocab") or {})
    for added in (spec or {}).get("added_tokens") or []:
        vocab[added["content"]] = int(added["id"])
    return vocab


def check_vocabulary(
    view: GgufView, merged: Path, facts: TokenizerFacts | None = None
) -> dict[str, Any]:
    """llama.cpp's vocabulary in the GGUF against the merged HF tokenizer (see module doc).

    Three independent questions, each its own function, asked in the order their problems are
    reported: does llama.cpp's tokenizer model fit the HF kind, are the byte tokens where the
    HF vocabulary has them, do the special tokens keep their ids and texts.
    """
    spec = tokenizer_spec(merged, facts)
    kind = tokenizer_kind(spec, merged)
    model = str(view.fields.get("tokenizer.ggml.model"))
    vocab = _hf_vocab(spec, facts)
    problems, hints = _tokenizer_model_problems(spec, kind, model)
    problems += _byte_token_problems(view, vocab, kind, model)
    problems += _special_token_problems(view, vocab, merged, facts)
    detail = (
        f"tokenizer model {model!r} fits the merged {kind or 'tokenizer'}; "
        f"{_byte_note(vocab, kind)} in place; BOS/EOS ids and texts agree"
    )
    result = _result(problems, detail, gguf_model=model, hf_kind=kind)
    if hints:
        result["hint"] = " ".join(hints)
        result["detail"] += f" (fix: {result['hint']})"
    return result


def _tokenizer_model_problems(
    spec: dict[str, Any] | None, kind: str | None, model: str
) -> tuple[list[str], list[str]]:
    """(problems, hints) when the GGUF's tokenizer.ggml.model does not implement the HF kind."""
    expected = KIND_TO_GGUF.get(kind or "")
    if not expected or model in expected:
        return [], []
    problem = (
        f"the GGUF's tokenizer model is {model!r} but the merged tokenizer is a {kind} "
        f"(llama.cpp needs {' or '.join(map(repr, expected))})"
    )
    byte_fallback = bool(((spec or {}).get("model") or {}).get("byte_fallback"))
    if kind == "byte-level BPE" and byte_fallback:
        # the known way this happens, so the message names it and the fix is specific
        problem += (
            ": tokenizer.json's BPE model says byte_fallback: true (as transformers writes "
            "when it converts a GGUF tokenizer), so llama.cpp's converter read it as a "
            "SentencePiece vocabulary"
        )
        hint = (
            "write a clean tokenizer.json: set model.byte_fallback to false in the "
            "merged tokenizer (byte-level BPE never falls back to <0x..> tokens), or take "
            "the tokenizer from a stage whose tokenizer.json is the original (recipe "
            "output.tokenizer_from); if the converter then cannot identify the "
            "pre-tokenizer, name it with quantize.gguf.pre_tokenizer"
        )
    else:
        hint = (
            "check which tokenizer file the converter used (tokenizer.model is preferred "
            "over tokenizer.json) and ship one consistent tokenizer in merged/"
        )
    return [problem], [hint]


def _gguf_text(tokens: list[str], i: int) -> str | None:
    """The GGUF's token text at id `i`, None past the end of its vocabulary."""
    return tokens[i] if 0 <= i < len(tokens) else None


def _hf_byte_tokens(vocab: dict[str, int]) -> dict[str, int]:
    """The HF vocabulary's SentencePiece byte-fallback tokens (<0x00>..<0xFF>) and their ids."""
    byte_names = {f"<0x{b:02X}>" for b in range(256)}
    return {t: i for t, i in vocab.items() if t in byte_names}


def _byte_token_problems(
    view: GgufView, vocab: dict[str, int], kind: str | None, model: str
) -> list[str]:
    """Byte tokens: <0xXX> (SentencePiece byte fallback) and the 256 byte-level characters
    must sit at the HF ids in the GGUF, and <0xXX> ones be typed as byte tokens."""
    tokens, types = view.tokens, view.token_types
    hf_bytes = _hf_byte_tokens(vocab)
    missing = [
        t for t, i in sorted(hf_bytes.items(), key=lambda x: x[1]) if _gguf_text(tokens, i) != t
    ]
    untyped = [
        t
        for t, i in hf_bytes.items()
        if _gguf_text(tokens, i) == t and i < len(types) and types[i] != TOKEN_TYPE_BYTE
    ]
    problems = _sentencepiece_byte_coverage(tokens) if model == "llama" else []
    if kind == "byte-level BPE":
        from tokenizers.pre_tokenizers import ByteLevel

        alphabet = set(ByteLevel.alphabet())
        missing += [
            t
            for t, i in sorted(vocab.items(), key=lambda x: x[1])
            if t in alphabet and _gguf_text(tokens, i) != t
        ]
    if missing:
        problems.append(
            f"{len(missing)} byte token(s) of the merged vocabulary are not in the "
            f"GGUF at their ids: {_shown(missing)}"
        )
    if untyped:
        problems.append(
            f"{len(untyped)} byte token(s) are not marked as byte tokens in the GGUF: "
            f"{_shown(sorted(untyped))}"
        )
    return problems


def _sentencepiece_byte_coverage(tokens: list[str]) -> list[str]:
    """llama.cpp's SentencePiece tokenizer falls back to one token per byte for text its pieces
    do not cover and aborts (std::out_of_range in byte_to_token, src/llama-vocab.cpp) when
    that byte has no <0xXX> token (nor, for ASCII, a one-character one). Only bytes UTF-8 text
    can contain count (not 0xC0, 0xC1, 0xF5-0xFF). llama.cpp's BPE tokenizer drops a byte it
    has no token for instead, as the merged tokenizer does, so only `llama` models need this;
    the others are compared by id in `_byte_token_problems`."""
    token_set = set(tokens)
    covered = sum(
        1 for b in UTF8_BYTES if f"<0x{b:02X}>" in token_set or (b < 128 and chr(b) in token_set)
    )
    if covered == len(UTF8_BYTES):
        return []
    return [
        f"the GGUF's SentencePiece vocabulary has a token for {covered} of the "
        f"{len(UTF8_BYTES)} bytes UTF-8 text can contain: llama.cpp aborts "
        "(std::out_of_range in byte_to_token) on text with the others"
    ]


def _special_token_problems(
    view: GgufView, vocab: dict[str, int], merged: Path, facts: TokenizerFacts | None
) -> list[str]:
    """BOS/EOS ids equal to the tokenizer's, and every BOS/EOS id (generation_config's EOS list
    included: generation must stop on each of them) spelled the same in the GGUF."""
    problems: list[str] = []
    specials: dict[str, int | None] = {}
    if facts is not None:
        specials = {"bos": facts.bos_token_id, "eos": facts.eos_token_id}
    for name, hf_id in specials.items():
        gguf_id = view.fields.get(f"tokenizer.ggml.{name}_token_id")
        if hf_id is not None and gguf_id is not None and int(gguf_id) != int(hf_id):
            problems.append(f"{name.upper()} id differs: merged {hf_id}, GGUF {gguf_id}")
    id_to_token = {i: t for t, i in vocab.items()}
    checked = {i for i in specials.values() if i is not None} | set(release_eos_ids(merged))
    wrong = []
    for i in sorted(checked):
        want = id_to_token.get(i)
        if want is not None and _gguf_text(view.tokens, i) != want:
            wrong.append(f"{i} {want!r} vs {_gguf_text(view.tokens, i)!r}")
    if wrong:
        problems.append(f"special token texts differ (id merged vs GGUF): {_shown(wrong)}")
    return problems


def _byte_note(vocab: dict[str, int], kind: str | None) -> str:
    """Which byte tokens the passing detail says were compared."""
    hf_bytes = _hf_byte_tokens(vocab)
    if hf_bytes:
        return f"{len(hf_bytes)} <0x..> byte tokens"
    if kind == "byte-level BPE":
        return "the byte-level alphabet"
    return "no byte tokens to compare"


# ---------- tensors and metadata ----------


def merged_tensors(merged: Path) -> dict[str, tuple[int, ...]]:
    """name -> shape of every tensor in the merged safetensors (headers only, read the one way
    core/safetensors_header.py defines)."""
    out: dict[str, tuple[int, ...]] = {}
    for header in safetensors_headers(merged).values():
        for name, entry in header.items():
            if name != "__metadata__":
                out[name] = tuple(int(d) for d in entry["shape"])
    return out


def bits_per_weight(type_name: str) -> float:
    """From ggml's block layout (gguf.GGML_QUANT_SIZES: elements per block, bytes per block)."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    block, size = GGML_QUANT_SIZES[GGMLQuantizationType[type_name]]
    return 8.0 * size / block


def _tensor_map(view: GgufView) -> Any:
    from gguf import MODEL_ARCH_NAMES, get_tensor_name_map

    arch = next((a for a, n in MODEL_ARCH_NAMES.items() if n == view.arch), None)
    if arch is None:
        return None
    return get_tensor_name_map(arch, int(view.arch_key("{arch}.block_count") or 0))


def check_tensors(
    view: GgufView, merged: Path, quant_type: str, config: dict[str, Any]
) -> list[str]:
    """Problems with the GGUF's weights: missing, reshaped, or coarser than the type allows."""
    tmap = _tensor_map(view)
    if tmap is None:
        return [f"gguf does not know the architecture {view.arch!r}: cannot map tensor names"]
    floor = FLOOR_TYPE.get(quant_type)
    floor_bpw = bits_per_weight(floor) if floor else 0.0
    tied = bool(config.get("tie_word_embeddings", False))
    missing, reshaped, coarse = [], [], []
    for name, shape in sorted(merged_tensors(merged).items()):
        gname = tmap.get_name(name, try_suffixes=(".weight", ".bias"))
        if gname is None:
            continue  # the converter refuses tensors it cannot map, so it dropped these itself
        if gname not in view.tensors:
            if gname == "output.weight" and tied and "token_embd.weight" in view.tensors:
                continue  # tied: llama.cpp uses the token embedding as the output layer
            missing.append(f"{gname} ({name})")
            continue
        gshape, gtype = view.tensors[gname]
        if _squeeze(gshape) != _squeeze(shape):
            reshaped.append(f"{gname} {list(gshape)} vs {list(shape)}")
        if floor and bits_per_weight(gtype) < floor_bpw:
            coarse.append(f"{gname} {gtype}")
    problems = []
    if missing:
        problems.append(f"{len(missing)} weight(s) of the merged model missing: {_shown(missing)}")
    if reshaped:
        problems.append(f"{len(reshaped)} weight(s) with another shape: {_shown(reshaped)}")
    if coarse:
        problems.append(
            f"{len(coarse)} weight(s) stored less precisely than {quant_type} allows "
            f"(floor {floor}): {_shown(coarse)}"
        )
    return problems


def _squeeze(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(d for d in shape if d != 1)


def _rope(config: dict[str, Any]) -> dict[str, Any]:
    """Rope settings as transformers 5 (rope_parameters) or 4 (rope_theta, rope_scaling) say."""
    params = dict(config.get("rope_parameters") or config.get("rope_scaling") or {})
    params = dict(params.get("full_attention", params))
    if "rope_theta" not in params and config.get("rope_theta") is not None:
        params["rope_theta"] = config["rope_theta"]
    params.setdefault("rope_type", params.get("type"))
    return params


def check_metadata(view: GgufView, config: dict[str, Any]) -> list[str]:
    """Context length, rope base and rope scaling: GGUF vs the merged config."""
    problems = []
    n_ctx = config.get("max_position_embeddings")
    got = view.arch_key("{arch}.context_length")
    if n_ctx is not None and (got is None or int(got) != int(n_ctx)):
        problems.append(f"context length {got} differs from the merged config's {n_ctx}")
    rope = _rope(config)
    theta = rope.get("rope_theta")
    base = view.arch_key("{arch}.rope.freq_base")
    if theta is not None and base is not None and not math.isclose(base, theta, rel_tol=1e-6):
        problems.append(f"rope freq base {base:g} differs from the merged config's {theta:g}")
    if theta is not None and base is None and not math.isclose(theta, 10000.0):
        problems.append(f"rope freq base missing (llama.cpp assumes 10000, merged: {theta:g})")
    rope_type, factor = rope.get("rope_type"), rope.get("factor")
    scaling = view.arch_key("{arch}.rope.scaling.type")
    gfactor = view.arch_key("{arch}.rope.scaling.factor")
    if rope_type in ("linear", "yarn") and factor is not None:
        if scaling != rope_type or gfactor is None or not math.isclose(gfactor, factor):
            problems.append(
                f"rope scaling {scaling} x{gfactor} differs from the merged config's "
                f"{rope_type} x{factor}"
            )
    elif rope_type in (None, "default") and scaling not in (None, "none"):
        problems.append(f"rope scaling {scaling} x{gfactor}, the merged config has none")
    return problems


def check_contents(view: GgufView, merged: Path, quant_type: str) -> dict[str, Any]:
    """Tensors and metadata of the GGUF against the merged model."""
    config = json.loads((merged / "config.json").read_text(encoding="utf-8"))
    config = {**(config.get("text_config") or {}), **config}
    problems = check_tensors(view, merged, quant_type, config) + check_metadata(view, config)
    kinds = sorted({t for _, t in view.tensors.values()})
    detail = (
        f"{len(view.tensors)} tensors ({', '.join(kinds)}) cover every merged weight; "
        "context length and rope agree"
    )
    return _result(problems, detail)


def check_gguf_files(
    files: list[Path], merged: Path, quant_type: str, facts: TokenizerFacts | None = None
) -> dict[str, dict[str, Any]]:
    """{"vocabulary": ..., "contents": ...} check records for one GGUF quant."""
    view = read_gguf(files)
    return {
        "vocabulary": check_vocabulary(view, merged, facts),
        "contents": check_contents(view, merged, quant_type),
    }
