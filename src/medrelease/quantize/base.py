"""What every quantization backend hands the step: files made, how to load them, and checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medrelease.records.quantize import QuantCheck

if TYPE_CHECKING:
    from medrelease.quantize.measure.tokenizer_facts import TokenizerFacts


@dataclass
class QuantArtifact:
    family: str  # gguf | awq
    type: str  # Q4_K_M, F16, W4A16_ASYM, ...
    files: list[Path]  # every file of this quant (in its final or staging folder)
    entry: Path  # what a runtime opens: the (first) .gguf file or the AWQ folder
    notes: list[str] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)
    accepted: bool = False
    reason: str | None = None
    # wall seconds of making it ("build") and of its checks ("check"), for the step's timings
    seconds: dict[str, float] = field(default_factory=dict)

    def judge(self) -> None:
        """Accept only if every check ran and passed; the reason names each failed check."""
        failed = [
            f"{name}: {c.get('detail', 'failed')}"
            for name, c in self.checks.items()
            if not c.get("ok")
        ]
        self.accepted = bool(self.checks) and not failed
        self.reason = None if self.accepted else ("; ".join(failed) or "no checks ran")


@dataclass
class QuantContext:
    """What every backend needs: the merged model, its tokenizer and reference logits."""

    merged: Path
    release: str
    base_dir: Path  # recipe folder (relative calibration files)
    tokenizer: Any  # the merged model's HF tokenizer, when loaded (see hf_tokenizer)
    heldout_ids: list[int]
    reference_logits: Any  # a measure.logits.Reference: the merged model's scored logits
    threads: int
    seed: int
    eval: EvalPlan | None = None
    # output.stop_check (a StopCheck) and the EOS ids the release declares: when set, every
    # quant must end a greedy chat answer with one of them (checks/stops.py)
    stop_check: Any = None
    eos_ids: list[int] = field(default_factory=list)
    # with a GGUF reference (quantize.checks.reference): the GGUF intermediate against
    # transformers on one chunk; every GGUF quant carries it (quantize/measure/reference.py)
    conversion: QuantCheck | None = None
    # the folder the reference is saved in (measure/reference.py), once it is complete
    reference_dir: Path | None = None
    # what the GGUF checks need of the merged tokenizer (measure/tokenizer_facts.py): from
    # the child that tokenized the held-out text, else taken from `tokenizer` on first use
    facts: TokenizerFacts | None = None

    def hf_tokenizer(self) -> Any:
        """The merged transformers tokenizer, loaded on first use: it imports torch, which
        only the AWQ checks and the importance matrix's calibration need."""
        if self.tokenizer is None:
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(str(self.merged))
        return self.tokenizer

    def tokenizer_facts(self) -> TokenizerFacts:
        if self.facts is None:
            from medrelease.quantize.measure.tokenizer_facts import TokenizerFacts

            prompt = self.stop_check.prompt if self.stop_check is not None else None
            self.facts = TokenizerFacts.of(self.hf_tokenizer(), prompt)
        return self.facts


@dataclass
class EvalPlan:
    """Run the recipe's gate tasks on each quant; compare with the merged model's report."""

    loaded: Any  # LoadedRecipe
    parent: dict[str, tuple[float, bool]]  # metric -> (merged value, higher is better)
    min_recovery: float

    def run(self, lm: Any) -> dict[str, Any]:
        from medrelease.gate.evaluate import evaluate_lm
        from medrelease.quantize.measure.recovery import judge_recovery

        return judge_recovery(evaluate_lm(lm, self.loaded), self.parent, self.min_recovery)
