"""ptxas's registers and spills for the decode step, float and quantized (8-bit; 4-bit with an
8-bit vocabulary, groups of 32), at tiny.en's, base's and large-v3-turbo's widths, compiled for
sm_90a without a GPU (WHISPERFAST_TEST_CUDA_SITE as in tests/test_cuda_cache.py).

    WHISPERFAST_TEST_CUDA_SITE=SITE python benchmarks/h100-session37/ptxas_quant.py"""

import os
import re
import sys

sys.path.insert(0, os.getcwd())
import tests.test_cuda_cache as t  # noqa: E402
from whisperfast.decode.cuda.launch import source as kernel_source  # noqa: E402
from whisperfast.kernels import cuda_cache  # noqa: E402

_, nv, options = t._toolchain()
options = (*options, "--ptxas-options=-v")
for name in ("decode_step", "decode_step_q8v8", "decode_step_q4v8"):
    inputs, outputs, call, template = t._KERNELS[name]
    for D, H, NL in ((384, 6, 4), (512, 8, 6), (1280, 20, 4)):
        sizes = {"D": D, "H": H, "NL": NL, **({"NV": 51865} if D != 384 else {}),
                 **({"GS": 32} if name.endswith("q4v8") else {})}
        tpl = [(k, sizes.get(k, v)) for k, v in template]
        func = cuda_cache.kernel_name(f"wf_{name}", tpl)
        src = cuda_cache.build_source(func, kernel_source(), call, inputs, outputs, tpl)
        nv.compile(src, options, cuda_cache.HEADERS, [f"mlx::core::cu::{func}"])
        print(name, D, re.findall(r"Used \d+ registers", nv.last_log),
              re.findall(r"\d+ bytes spill stores, \d+ bytes spill loads", nv.last_log), flush=True)
