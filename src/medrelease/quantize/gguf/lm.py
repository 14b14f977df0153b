"""An lm-eval `LM` over llama-cpp-python, in process: evaluate a GGUF quant with the gate tasks.

lm-eval's own `gguf` backend talks to a llama.cpp server whose API no longer returns prompt
logprobs, so loglikelihood tasks fail (lm-eval issues #1437, #2525, #4158). Here llama.cpp
scores the tokens directly: the same model file, no server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lm_eval.api.model import LM


class LlamaCppLM(LM):
    def __init__(self, llm: Any, path: Path, chat_tokenizer: Any = None):
        super().__init__()
        self.llm = llm  # llama_cpp.Llama opened with logits_all=True
        self.path = path
        self.chat_tokenizer = chat_tokenizer  # renders chat templates (same template as the GGUF)
        self.n_ctx = int(llm.n_ctx())

    # -- helpers --

    def _tokens(self, text: str, *, bos: bool) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=bos, special=True))

    def _logprobs(self, tokens: list[int]) -> Any:
        """log p(token_i | tokens_<i) for i >= 1, and whether each was the argmax."""
        import numpy as np

        self.llm.reset()
        self.llm.eval(tokens)
        logits = np.asarray(self.llm.scores[: len(tokens) - 1], dtype=np.float64)
        m = logits.max(axis=-1, keepdims=True)
        logz = m[:, 0] + np.log(np.exp(logits - m).sum(axis=-1))
        targets = np.asarray(tokens[1:])
        rows = np.arange(len(targets))
        return logits[rows, targets] - logz, logits.argmax(axis=-1) == targets

    # -- lm-eval API --

    def loglikelihood(
        self, requests: list[Any], disable_tqdm: bool = False
    ) -> list[tuple[float, bool]]:
        out: list[tuple[float, bool]] = []
        for req in requests:
            context, continuation = req.args
            ctx = self._tokens(context, bos=True)
            whole = self._tokens(context + continuation, bos=True)
            if whole[: len(ctx)] == ctx and len(whole) > len(ctx):
                cont = whole[len(ctx) :]
            else:  # the boundary merged into one token: score the continuation on its own
                cont = self._tokens(continuation, bos=False)
            tokens = (ctx + cont)[-self.n_ctx :]
            lp, greedy = self._logprobs(tokens)
            n = len(cont)
            out.append((float(lp[-n:].sum()), bool(greedy[-n:].all())))
        return out

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        out: list[float] = []
        for req in requests:
            (text,) = req.args
            tokens = self._tokens(text, bos=True)
            total, start = 0.0, 0
            while start < len(tokens) - 1:  # disjoint windows, each scored from its start
                window = tokens[start : start + self.n_ctx]
                lp, _ = self._logprobs(window)
                total += float(lp.sum())
                start += len(window) - 1
            out.append(total)
        return out

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        out: list[str] = []
        for req in requests:
            context, kwargs = req.args
            kwargs = dict(kwargs or {})
            until = kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            self.llm.reset()
            result = self.llm.create_completion(
                prompt=context,
                max_tokens=int(kwargs.get("max_gen_toks", 256)),
                temperature=float(kwargs.get("temperature", 0.0))
                if kwargs.get("do_sample")
                else 0.0,
                stop=until or None,
            )
            out.append(str(result["choices"][0]["text"]))
        return out

    def apply_chat_template(
        self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True
    ) -> str:
        if self.chat_tokenizer is None or not getattr(self.chat_tokenizer, "chat_template", None):
            raise ValueError("this model has no chat template")
        return str(
            self.chat_tokenizer.apply_chat_template(
                chat_history, tokenize=False, add_generation_prompt=add_generation_prompt
            )
        )

    @property
    def tokenizer_name(self) -> str:
        return f"llama.cpp:{self.path.name}"
