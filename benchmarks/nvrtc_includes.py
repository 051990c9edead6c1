"""Where an NVRTC compile of a custom kernel goes (issue 13's first run): a kernel of one line
compiled with each set of includes, then the decode step's MLX source (tiny.en, fp16) with
kernels/cuda_cache.py's stand-in headers. NVRTC runs for sm_90a as MLX's JIT would; no GPU is
needed, only NVRTC and MLX's headers (the installed CUDA wheels, or WHISPERFAST_TEST_CUDA_SITE:
a site-packages folder holding mlx/include and nvidia/cu13). One warm-up compile first (the
library's own start), then each case REPEATS times.

    python benchmarks/nvrtc_includes.py [REPEATS]   (one JSON line a case: seconds each run)"""

import json
import os
import sys
import time
from pathlib import Path

import mlx.core as mx

from whisperfast.decode.cuda.launch import source as kernel_source
from whisperfast.decode.cuda.step import _CALL
from whisperfast.kernels import cuda_cache, nvrtc

repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 2
site = os.environ.get("WHISPERFAST_TEST_CUDA_SITE")
toolchain = nvrtc.Toolchain.beside(Path(site) / "mlx") if site else nvrtc.Toolchain.installed()
nv, options = nvrtc.load(toolchain), nvrtc.options(toolchain, 9, 0)

ONE_LINE = 'extern "C" __global__ void k(float* o) { o[0] = 1.0f; }\n'
CASES = {
    "nothing": "",
    "config.h": '#include "mlx/backend/cuda/device/config.h"\n',
    "cuda_fp16.h": "#include <cuda_fp16.h>\n",
    "cuda_bf16.h": "#include <cuda_bf16.h>\n",
    "cuda/std/array": "#include <cuda/std/array>\n",
    "cuda/std/limits": "#include <cuda/std/limits>\n",
    "cuda/std/tuple": "#include <cuda/std/tuple>\n",
    "cooperative_groups.h": "#include <cooperative_groups.h>\n",
}


def timed(source, headers=None, names=()):
    t0 = time.perf_counter()
    nv.compile(source, options, headers or {}, names)
    return round(time.perf_counter() - t0, 3)


timed(ONE_LINE)
for label, include in CASES.items():
    print(json.dumps({"case": label, "s": [timed(include + ONE_LINE) for _ in range(repeats)]}), flush=True)

header = kernel_source()  # the decode kernels, as launch.py reads them
F16, F32, I32 = mx.float16, mx.float32, mx.int32
inputs = [("tokens", I32, 2), ("meta", I32, 1), ("emb", F16, 2), ("pos", F16, 2), ("lnf", F16, 1), ("lw", F16, 2),
          ("kc", F16, 5), ("vc", F16, 5), ("path", I32, 3), ("cross", F16, 3), ("sum_in", F32, 1), ("suppress", F32, 1),
          ("scratch", F32, 1)]
outputs = [("tokens_out", I32), ("sum_out", F32), ("completed", mx.bool_), ("logits", F32)]
call = _CALL  # the step's, as cuda/step.py launches it
template = [("T", F16), ("B", 1), ("D", 384), ("H", 6), ("NL", 4), ("CTX", 448), ("S", 1500), ("CC", 8), ("NV", 51864),
            ("TS", 50363), ("EOT", 50256), ("NO_TS", 50362), ("RULES", True), ("PICK", True), ("PA", 1),
            ("SHARE", False)]
func = cuda_cache.kernel_name("wf_decode_step", template)
source = cuda_cache.build_source(func, header, call, inputs, outputs, template)
print(json.dumps({"case": "decode_step (tiny.en fp16), cuda_cache.HEADERS",
                  "s": [timed(source, cuda_cache.HEADERS, [f"mlx::core::cu::{func}"]) for _ in range(repeats)]}), flush=True)
