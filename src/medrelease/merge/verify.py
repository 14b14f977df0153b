"""Post-merge verification: would a user get a working model from this folder?

Each check returns (ok, detail). The merge step refuses to move an output into place when
any check fails, so `merged/` only ever holds a model that passed.

A model whose weights would take more than half the available memory is verified without
loading it: transformers builds it on the "meta" device (its own loading report, the same
MISSING/UNEXPECTED/MISMATCH rules as a real load) and the forward pass streams each module's
tensors from the safetensors files (core/upcast.py). A 7B bf16 merge is then verified in
about the memory mergekit itself needed, instead of 15 GB more.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medrelease.core.errors import VerificationError
from medrelease.core.filecache import file_identity
from medrelease.core.hashing import HashCache

if TYPE_CHECKING:
    from medrelease.merge.completeness import LoadingInfo

ROUND_TRIP_TEXTS = (
    "The liver filters toxins and makes bile.",
    "Take 5 mg twice daily; call 112 in an emergency.",
    "Myocardial infarction (MI): troponin > 0.04 ng/mL.",
)
CHAT_PROBE = [{"role": "user", "content": "Which organ makes insulin?"}]


def _ids(v: Any) -> list[int]:
    if v is None:
        return []
    return [int(x) for x in v] if isinstance(v, list) else [int(v)]


class WeightsScan:
    """Hash and NaN/Inf-scan a model folder's safetensors in a background thread.

    Started as soon as mergekit has written the weights, it reads them (one pass, straight
    from the page cache) while the main thread finalizes the tokenizer and loads the model
    for verification; the digests go into `hashes`, so recording the outputs reads nothing.
    """

    def __init__(self, folder: Path, hashes: HashCache):
        self.folder = folder
        self.hashes = hashes
        self.files = sorted(folder.glob("*.safetensors"))
        self._result: dict[str, Any] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="mr-output-scan", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from medrelease.merge.weight_scan import scan_files

        try:
            idents = {p: file_identity(p)[1] for p in self.files}
            results = scan_files(self.files)
            bad: list[str] = []
            unscanned: list[str] = []
            for path, res in results.items():
                if isinstance(res, BaseException):
                    raise res
                if res.nonfinite is not None:
                    bad.append(f"{res.nonfinite[0]} ({res.nonfinite[1]} values, {path.name})")
                    continue
                unscanned += res.unscanned
                assert res.sha256 is not None
                # the release layer only: this staging path is renamed before anyone reuses it
                self.hashes.remember(path, res.sha256, idents[path], shared=False)
            self._result = {"bad": bad, "unscanned": unscanned}
        except BaseException as exc:
            self._error = exc

    def result(self) -> dict[str, Any] | None:
        """{"bad": [...], "unscanned": [...]}; None if the files could not be scanned."""
        self._thread.join()
        return None if self._error is not None or not self.files else self._result


class _Checks(dict[str, dict[str, Any]]):
    """name -> {"ok", "detail"[, "hint"]}, in the order the checks ran (the manifest's order)."""

    def add(self, name: str, ok: bool, detail: str, hint: str | None = None) -> None:
        self[name] = {"ok": bool(ok), "detail": detail}
        if hint and not ok:
            self[name]["hint"] = hint


def verify_model_folder(
    folder: Path,
    *,
    require_chat_template: bool = False,
    weights_scan: WeightsScan | None = None,
    references: dict[str, Path] | None = None,
    merge: dict[str, Any] | None = None,
    eos_from: dict[str, Path] | None = None,
    stop_check: Any = None,
) -> dict[str, Any]:
    """Load the folder as a user would and check it; `weights_scan` (if started) answers the
    finite-weights check from the files' bits instead of a second pass over the parameters.

    `references` (stage name -> folder): the stages whose tensor set the output must equal
    (the merge's base_model, or every model of a merge without one; none for `slices:`).
    `merge`: the recipe's mergekit block (expected dtype, likely causes). `eos_from`: the
    merged stages, whose declared EOS tokens the output must still declare (pass none when the
    recipe sets output.generation_config.eos_token_id: its list is then the release's choice)."""
    from medrelease.merge.completeness import header_problems

    checks = _Checks()
    merge = merge or {}
    # headers only (no tensor data): cheap, and it runs before the model is loaded
    gaps = header_problems(folder, references or {}, merge)
    tok, loaded = _load(folder)
    model = loaded.model
    checks.add("loads", True, loaded.describe())
    _check_completeness(checks, folder, gaps, loaded.info, merge)
    _check_finite(checks, tok, loaded, folder, weights_scan)
    _check_round_trip(checks, tok)
    _check_chat_template(checks, tok, require_chat_template)
    gen_eos, vocab = _check_special_tokens(checks, folder, tok)
    _check_stops(checks, tok, model, gen_eos, vocab, eos_from or {}, stop_check)
    return dict(checks)


@dataclass
class _Loaded:
    model: Any  # None: streamed, but a parameter is not in the files (see completeness)
    info: LoadingInfo  # transformers' loading report
    streamed: bool = False
    meta: Any = None  # streamed: the model on the "meta" device (parameter count, class)

    def describe(self) -> str:
        shown = self.model if self.model is not None else self.meta
        text = f"{type(shown).__name__}, {shown.num_parameters():,} parameters"
        return text + (" (verified streaming its weights from disk)" if self.streamed else "")


def _load(folder: Path) -> tuple[Any, _Loaded]:
    """(tokenizer, model); a folder that does not load is a verification failure, not a
    traceback. Streamed when the weights would take over MEMORY_SHARE of available memory."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medrelease.core.compute_dtype import MEMORY_SHARE, mem_available

    try:
        tok = AutoTokenizer.from_pretrained(str(folder))
    except Exception as exc:
        raise VerificationError(f"merged tokenizer does not load: {exc}") from None
    # loaded with dtype="auto", the weights take what their files take
    size = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    stream = size > MEMORY_SHARE * mem_available()
    try:
        # on "meta" transformers reads the headers only, with the loading report of a real load
        loaded: Any = AutoModelForCausalLM.from_pretrained(
            str(folder),
            dtype="auto",
            output_loading_info=True,
            **({"device_map": "meta"} if stream else {}),
        )
    except Exception as exc:
        raise VerificationError(f"merged model does not load in transformers: {exc}") from None
    model, info = loaded
    if not stream:
        return tok, _Loaded(model, info)
    import torch

    from medrelease.core.compute_dtype import weights_info
    from medrelease.core.upcast import streamed_from_disk

    # in the files' dtype, as the loading route computes (dtype="auto"): only finiteness and
    # shapes are judged, and a float32 upcast would triple the bytes each module moves
    dtype = getattr(torch, weights_info(folder).dtype)
    return tok, _Loaded(streamed_from_disk(folder, dtype), info, streamed=True, meta=model)


def _check_completeness(
    checks: _Checks, folder: Path, gaps: list[Any], info: LoadingInfo, merge: dict[str, Any]
) -> None:
    from medrelease.merge.completeness import loading_problems, read_config

    # transformers fills MISSING tensors at random and only logs it: its report is a check
    gaps = gaps + loading_problems(info, read_config(folder), merge, gaps)
    holes = [g for g in gaps if not g.warning]
    notes = [f"note: {g.detail} ({g.cause})" for g in gaps if g.warning]
    checks.add(
        "completeness",
        not holes,
        "; ".join(g.detail for g in holes)
        if holes
        else "; ".join(["every tensor present, with the expected shape and dtype", *notes]),
        holes[0].cause if holes else None,
    )


def _check_finite(
    checks: _Checks, tok: Any, loaded: _Loaded, folder: Path, weights_scan: WeightsScan | None
) -> None:
    import torch

    scan = weights_scan.result() if weights_scan is not None else None
    if scan is not None and not scan["unscanned"]:
        bad = scan["bad"]  # every tensor's bits were read once, while the model loaded
    elif loaded.streamed:  # no parameter is in memory: read each tensor from the files
        bad = _nonfinite_in_files(folder)
    else:  # no scan, or float formats without a bit rule: check the loaded parameters
        bad = [n for n, p in loaded.model.named_parameters() if not torch.isfinite(p).all()]
    checks.add(
        "finite_weights",
        not bad,
        "all weights finite" if not bad else f"NaN/Inf in {len(bad)} tensors, e.g. {bad[0]}",
    )
    if loaded.model is None:  # streamed, and some parameter has no tensor to stream
        checks.add("finite_logits", False, "not run: the files lack tensors the model needs")
        return
    with torch.no_grad():
        enc = tok(ROUND_TRIP_TEXTS[0], return_tensors="pt")
        logits = loaded.model(**enc).logits
    checks.add(
        "finite_logits", bool(torch.isfinite(logits).all()), f"logits shape {tuple(logits.shape)}"
    )


def _nonfinite_in_files(folder: Path) -> list[str]:
    """Names of the floating-point tensors holding a NaN or Inf, one tensor in memory at a time."""
    import torch
    from safetensors import safe_open

    bad = []
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                t = f.get_tensor(name)
                if t.is_floating_point() and not torch.isfinite(t).all():
                    bad.append(name)
    return bad


def _check_round_trip(checks: _Checks, tok: Any) -> None:
    failures = []
    for text in ROUND_TRIP_TEXTS:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        back = str(tok.decode(ids, skip_special_tokens=True))
        if back != text and back.strip() != text:
            failures.append(f"{text!r} -> {back!r}")
    checks.add(
        "tokenizer_round_trip",
        not failures,
        f"{len(ROUND_TRIP_TEXTS)} texts round-trip" if not failures else failures[0],
    )


def _check_chat_template(checks: _Checks, tok: Any, required: bool) -> None:
    if not getattr(tok, "chat_template", None):
        detail = "missing" if required else "none (base-model style prompts)"
        checks.add("chat_template", not required, detail)
        return
    try:
        rendered = tok.apply_chat_template(CHAT_PROBE, tokenize=False, add_generation_prompt=True)
    except Exception as exc:
        checks.add("chat_template", False, f"does not render: {exc}")
        return
    ok = isinstance(rendered, str) and CHAT_PROBE[0]["content"] in rendered
    checks.add("chat_template", ok, "renders" if ok else "rendered text lacks the message")


def _check_special_tokens(checks: _Checks, folder: Path, tok: Any) -> tuple[list[int], int]:
    """EOS/BOS/pad agree between tokenizer, generation_config and config; returns
    (generation_config's EOS ids, the embedding's vocab size or 0) for the stop checks."""
    from transformers import GenerationConfig

    cfg = json.loads((folder / "config.json").read_text())
    cfg = {**cfg, **cfg["text_config"]} if isinstance(cfg.get("text_config"), dict) else cfg
    gen = GenerationConfig.from_pretrained(str(folder))
    problems = []
    gen_eos = _ids(gen.eos_token_id)
    if tok.eos_token_id is None:
        problems.append("tokenizer has no EOS token")
    elif tok.eos_token_id not in gen_eos:
        problems.append(f"tokenizer EOS {tok.eos_token_id} not in generation_config {gen_eos}")
    cfg_eos = _ids(cfg.get("eos_token_id"))
    if cfg_eos and not set(cfg_eos) & set(gen_eos):
        problems.append(f"config EOS {cfg_eos} disagrees with generation_config {gen_eos}")
    for key in ("bos_token_id", "pad_token_id"):
        t, g, c = getattr(tok, key), getattr(gen, key), cfg.get(key)
        present = [v for v in (t, g, c) if v is not None]
        if len(set(present)) > 1:
            problems.append(f"{key}: tokenizer {t}, generation_config {g}, config {c}")
    vocab = int(cfg.get("vocab_size") or 0)
    if vocab and len(tok) > vocab:
        problems.append(f"tokenizer has {len(tok)} tokens but the embedding has {vocab} rows")
    checks.add(
        "special_tokens",
        not problems,
        "EOS/BOS/pad agree" if not problems else "; ".join(problems),
    )
    return gen_eos, vocab


def _check_stops(
    checks: _Checks,
    tok: Any,
    model: Any,
    gen_eos: list[int],
    vocab: int,
    eos_from: dict[str, Path],
    stop_check: Any,
) -> None:
    from medrelease.checks.stops import (
        STOP_HINT,
        declared_eos_tokens,
        stop_problems,
        stops_when_generating,
        transformers_generate,
    )

    stops = stop_problems(
        tok, gen_eos, vocab_size=vocab or None, required=declared_eos_tokens(eos_from)
    )
    checks.add(
        "stops",
        not stops,
        "; ".join(stops)
        if stops
        else f"EOS {gen_eos} declared, special, and ending the chat template's assistant turn",
        "keep every end-of-turn token in generation_config.eos_token_id (stages' "
        "generation_config.json, or output.generation_config.eos_token_id in the recipe)",
    )
    if stop_check is not None and model is None:  # streamed, and tensors are missing
        checks.add("stops_when_generating", False, "not run: the files lack tensors", STOP_HINT)
    elif stop_check is not None:  # opt-in (output.stop_check): it costs a generation
        entry = stops_when_generating(
            transformers_generate(model, gen_eos), tok, gen_eos, stop_check
        )
        checks.add("stops_when_generating", entry["ok"], entry["detail"], STOP_HINT)


def raise_on_failure(checks: dict[str, Any]) -> None:
    failed = {k: v for k, v in checks.items() if not v["ok"]}
    if failed:
        name, info = next(iter(failed.items()))
        hint = "nothing was moved into merged/; fix the recipe or inputs and re-run"
        raise VerificationError(
            f"merged model failed check {name!r}: {info['detail']}"
            + (f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""),
            hint=f"{info['hint']}; {hint}" if info.get("hint") else hint,
        )


def verification_inputs(
    merge: dict[str, Any],
    output_generation: dict[str, Any] | None,
    tokenizer_from: str | None,
    folders: dict[str, Path],
) -> tuple[dict[str, Path], dict[str, Path]]:
    """(references, eos_from) for `verify_model_folder` and `finalize_output`.

    references: the base_model's folder, or with no base_model every model's (their tensor
    sets must all equal the output's). eos_from: every stage the merge reads, plus the
    tokenizer's stage; none when the recipe sets its own eos_token_id list."""
    from medrelease.recipe.merge_refs import merge_stage_names

    base = merge.get("base_model")
    if isinstance(base, str):
        names = [base]
    else:
        names = [str(m["model"]) for m in merge.get("models") or [] if isinstance(m, dict)]
        for s in merge.get("slices") or []:
            for src in (s.get("sources") or []) if isinstance(s, dict) else []:
                if isinstance(src, dict) and str(src.get("model")) not in names:
                    names.append(str(src.get("model")))
    references = {n: folders[n] for n in names if n in folders}
    if output_generation and "eos_token_id" in output_generation:
        return references, {}
    eos_names = merge_stage_names(merge) + ([tokenizer_from] if tokenizer_from else [])
    return references, {n: folders[n] for n in eos_names if n in folders}
