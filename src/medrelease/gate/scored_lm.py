"""lm-eval's `hf` model, computing the LM head only at the positions a request scores.

lm-eval's HFLM turns every position of every sequence of a batch into float32 log-probabilities
over the whole vocabulary (`log_softmax` over `[batch, length, vocab]`), then keeps the few
positions of each continuation. At a 152k vocabulary (Qwen) with batch 8 and 5-shot MMLU
prompts (~1,000 tokens) that is two 5 GB tensors (the logits and their log-softmax) on top of
the model. Here the transformer runs over every position as before, but the LM head and the
log-softmax run only at the positions a continuation is scored at (transformers'
`logits_to_keep`, given as the indices to keep): for a multiple-choice task that is one position
per request. Everything else (ordering, batching, the one-token-continuation cache, the
greedy check) is lm-eval's own loop, so the numbers are the stock backend's (tested to 1e-6
in tests/gate/test_scored_lm.py) and `lm_eval --model hf` reproduces them.

Models whose forward does not take `logits_to_keep`, and seq2seq models, use lm-eval's loop.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lm_eval.models.huggingface import HFLM
from lm_eval.models.utils import Collator
from lm_eval.models.utils_hf import pad_and_concat
from tqdm import tqdm

from medrelease.gate.prompt_cache import ENCODINGS

Request = tuple[tuple[str, str], list[int], list[int]]


def takes_logits_to_keep(model: Any) -> bool:
    """Whether the transformers model (or the one under a PEFT wrapper) can skip the head."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        return "logits_to_keep" in inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return False


def scored_positions(spans: list[tuple[int, int]]) -> tuple[list[int], dict[int, int]]:
    """The sorted union of the positions the rows score (each `[start, end)` in the padded
    batch), and where each position lands in that union."""
    keep = sorted({p for start, end in spans for p in range(start, end)})
    return keep, {p: i for i, p in enumerate(keep)}


class ScoredHFLM(HFLM):
    """HFLM whose log-likelihood requests compute the head at scored positions only, and whose
    encodings are kept per tokenizer content (medrelease.gate.prompt_cache)."""

    encodings_key: str | None = None  # set by make_lm: the tokenizer's content, where known
    _encoding_setup: tuple[Any, ...] | None = None

    def __init__(self, *args: Any, network_key: str | None = None, **kwargs: Any):
        # medrelease.gate.kept_network: a network of this key given back earlier takes this
        # folder's weights instead of being built again; set before HFLM builds the model
        self.network_key = network_key
        self.network_reused = False
        super().__init__(*args, **kwargs)

    def _create_model(self, pretrained: str, **kwargs: Any) -> None:
        from medrelease.gate.kept_network import NETWORKS, load_weights_into

        network = NETWORKS.take(self.network_key)
        # any other kept network is not for this model: free it before building one (two
        # 7B networks at once would not fit where one does)
        NETWORKS.clear()
        if network is not None and load_weights_into(network, Path(pretrained)):
            self._model = network
            self.network_reused = True
            return
        del network  # files that do not fit it: freed too, before the new one is built
        super()._create_model(pretrained, **kwargs)

    def give_back_network(self) -> None:
        """Offer the network to the next model of the same key (this LM is done with it)."""
        from medrelease.gate.kept_network import NETWORKS

        if self.network_key is not None and isinstance(self._model, torch.nn.Module):
            NETWORKS.give_back(self.network_key, self._model)
        self.network_key = None

    def tok_encode(
        self,
        string: str,
        add_special_tokens: bool | None = None,
        left_truncate_len: int | None = None,
        **kwargs: Any,
    ) -> list[int]:
        plain = super().tok_encode
        if self.encodings_key is None or kwargs:
            return list(plain(string, add_special_tokens, left_truncate_len, **kwargs))
        if self._encoding_setup is None:  # fixed at init (prefix_token_id is slow to read)
            self._encoding_setup = (self.encodings_key, self.add_bos_token, self.prefix_token_id)
        # everything lm-eval's tok_encode reads besides the text and the tokenizer
        key = (*self._encoding_setup, add_special_tokens, left_truncate_len)
        return ENCODINGS.get_or_encode(
            key, string, lambda: plain(string, add_special_tokens, left_truncate_len)
        )

    def _loglikelihood_tokens(
        self,
        requests: list[Request],
        disable_tqdm: bool = False,
        override_bs: int | None = None,
    ) -> list[tuple[float, bool]]:
        if self.backend != "causal" or not takes_logits_to_keep(self.model):
            return list(super()._loglikelihood_tokens(requests, disable_tqdm, override_bs))
        # From here to the end: lm-eval 0.4's HFLM._loglikelihood_tokens for causal models,
        # with the head computed at the scored positions only (marked "differs").
        re_ord = Collator(
            requests,
            sort_fn=lambda req: (-len(req[1] + req[2]), tuple(req[1] + req[2])),
            group_by="contexts" if self.logits_cache else None,
            group_fn=lambda req: req[-2] + req[-1][:-1],
        )
        auto = self.batch_size == "auto"
        batch_size = self.batch_size if not auto else override_bs if override_bs is not None else 0
        batch_fn = self._batch_scheduler if auto and len(re_ord) > 0 and not override_bs else None
        if batch_fn is not None:
            self.batch_sizes: dict[int, int] = {}  # as lm-eval: detect them anew
        pbar = tqdm(
            total=len(requests),
            disable=(disable_tqdm or (self.rank != 0)),
            desc="Running loglikelihood requests",
        )
        res: list[tuple[float, bool]] = []
        for chunk in re_ord.get_batched(n=batch_size, batch_fn=batch_fn):
            inps, spans, cont_toks_list = [], [], []
            for _, context_enc, continuation_enc in chunk:
                assert len(context_enc) > 0 and len(continuation_enc) > 0
                assert len(continuation_enc) <= self.max_length
                # left truncation to the model's window, as lm-eval (its warning included)
                total_length = len(context_enc) + len(continuation_enc)
                if total_length > self.max_length + 1:
                    from lm_eval.models.huggingface import eval_logger

                    eval_logger.warning(
                        f"Combined length of context ({len(context_enc)}) and continuation "
                        f"({len(continuation_enc)}) exceeds model's maximum length "
                        f"({self.max_length}). Truncating "
                        f"{total_length - self.max_length + 1} tokens from the left."
                    )
                inp = torch.tensor(
                    (context_enc + continuation_enc)[-(self.max_length + 1) :][:-1],
                    dtype=torch.long,
                    device=self.device,
                )
                inplen = inp.shape[0]
                inps.append(inp)
                # the logits at positions [inplen - contlen, inplen) predict the continuation
                spans.append((inplen - len(continuation_enc), inplen))
                cont_toks_list.append(continuation_enc)
            padding_len = max(inp.shape[0] for inp in inps)
            batched_inps = pad_and_concat(padding_len, inps, padding_side="right")
            keep, column = scored_positions(spans)  # differs: the head at these positions only
            multi_logits = F.log_softmax(
                self._scored_call(batched_inps, keep), dim=-1, dtype=self.softmax_dtype
            )  # [batch, len(keep), vocab]

            for (request_str, ctx_tokens, _), logits_row, (start, end), cont_toks in zip(
                chunk, multi_logits, spans, cont_toks_list, strict=True
            ):
                # differs: the continuation's rows of the kept positions
                cols = torch.tensor([column[p] for p in range(start, end)], device=self.device)
                logits = logits_row.index_select(0, cols).unsqueeze(0)  # [1, contlen, vocab]
                greedy_tokens = logits.argmax(dim=-1)
                for request_str_, cont_toks_, logits_ in re_ord.get_cache(
                    req_str=request_str, cxt_toks=ctx_tokens, cont_toks=cont_toks, logits=logits
                ):
                    cont = torch.tensor(cont_toks_, dtype=torch.long, device=self.device).unsqueeze(
                        0
                    )  # [1, seq]
                    max_equal = (greedy_tokens[:, -cont.shape[1] :] == cont).all()
                    scored = torch.gather(logits_, 2, cont.unsqueeze(-1)).squeeze(-1)
                    answer = (float(scored.sum()), bool(max_equal))
                    res.append(answer)
                    if request_str_ is not None:
                        self.cache_hook.add_partial("loglikelihood", request_str_, answer)
                    pbar.update(1)
        pbar.close()
        return list(re_ord.get_original(res))

    def _scored_call(self, inps: torch.Tensor, keep: list[int]) -> torch.Tensor:
        """`_model_call` (same no-grad and autocast) with the head at `keep` only."""
        with (
            torch.no_grad(),
            torch.autocast(
                device_type=self.device.type,
                dtype=self.mixed_precision_dtype,
                enabled=self.mixed_precision_dtype is not None,
            ),
        ):
            index = torch.tensor(keep, dtype=torch.long, device=inps.device)
            return self.model(inps, logits_to_keep=index).logits
