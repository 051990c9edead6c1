"""ptxas's registers and spills for the decode step, float and quantized (8-bit; 4-bit with an
8-bit vocabulary, groups of 32), at tiny.en's, base's and large-v3-turbo's widths, compiled for
sm_90a without a GPU (WHISPERFAST_TEST_CUDA_SITE as in tests/test_cuda_cache.py).

    WHISPERFAST_TEST_CUDA_SITE=SITE python benchmarks/h100-session37/ptxas_quant.py"""
import os, re, sys
sys.path.insert(0, os.getcwd())
from pathlib import Path
import mlx.core as mx
import tests.test_cuda_cache as t
from whisperfast.kernels import cuda_cache
from whisperfast.decode.cuda.launch import source as kernel_source
_, nv, options = t._toolchain()
options = (*options, "--ptxas-options=-v")
for name in ("decode_step", "decode_step_q8v8", "decode_step_q4v8"):
    inputs, outputs, call, template = t._KERNELS[name]
    for dims in ((384, 6, 4), (512, 8, 6), (1280, 20, 4)):
        tpl = [(k, {"D": dims[0], "H": dims[1], "NL": dims[2]}.get(k, v)) for k, v in template]
        if dims[0] != 384:
            tpl = [(k, 51865 if k == "NV" else v) for k, v in tpl]
        if name.endswith("q4v8"):
            tpl = [(k, 32 if k == "GS" else v) for k, v in tpl]
        func = cuda_cache.kernel_name(f"wf_{name}", tpl)
        src = cuda_cache.build_source(func, kernel_source(), call, inputs, outputs, tpl)
        nv.compile(src, options, cuda_cache.HEADERS, [f"mlx::core::cu::{func}"])
        log = nv.last_log
        m = re.findall(r"Used (\d+) registers|(\d+) bytes spill stores", log)
        print(name, dims, re.findall(r"Used \d+ registers", log), re.findall(r"\d+ bytes spill stores, \d+ bytes spill loads", log), flush=True)
