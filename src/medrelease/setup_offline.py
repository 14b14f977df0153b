"""Offline data the evaluation stack needs, installed by `medrelease setup`.

Each provider returns a line describing what it did. Steps that need data register here,
so one command (run by `make install`) prepares a machine for air-gapped use.
"""

from __future__ import annotations

from collections.abc import Callable

PROVIDERS: list[Callable[[], str]] = []


def _punkt_tab_for_ifeval() -> str:  # gate step: IFEval needs NLTK punkt_tab offline
    from medrelease.gate.nltk_data import provide_punkt_tab

    return provide_punkt_tab()


PROVIDERS.append(_punkt_tab_for_ifeval)


def prepare_offline_data() -> list[str]:
    return [provider() for provider in PROVIDERS]


def _llama_cpp_tools_for_imatrix() -> str:  # quantize step: llama-imatrix + llama-quantize
    from medrelease.quantize.gguf.tools import provide_llama_tools

    return provide_llama_tools()


PROVIDERS.append(_llama_cpp_tools_for_imatrix)
