"""How a decode-step kernel's weight loads lie in its SASS: compiles decode_step.cu for sm_90a as
MLX's JIT would (no GPU: NVRTC and MLX's headers, WHISPERFAST_TEST_CUDA_SITE as in
tests/test_cuda_cache.py), disassembles it (NVDISASM: nvdisasm from the nvidia-cuda-nvdisasm
wheel) and counts the weight loads (LDG .128/.64) that lie within 4 instructions of the one
before (issued together) and those more than 40 after it (each after the previous one's sums).

    WHISPERFAST_TEST_CUDA_SITE=SITE NVDISASM=.../nvdisasm python benchmarks/h100-session37/sass_loads.py \\
        KERNEL D H NL   (KERNEL: decode_step, decode_step_q8v8 or decode_step_q4v8 of tests/test_cuda_cache.py)"""

import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.getcwd())
import tests.test_cuda_cache as t  # noqa: E402
from whisperfast.decode.cuda.launch import source as kernel_source  # noqa: E402
from whisperfast.kernels import cuda_cache  # noqa: E402

_, nv, options = t._toolchain()
name, D, H, NL = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
inputs, outputs, call, template = t._KERNELS[name]
sizes = {"D": D, "H": H, "NL": NL}
if D != 384:
    sizes["NV"] = 51865
if name.endswith("q4v8"):
    sizes["GS"] = 32
tpl = [(k, sizes.get(k, v)) for k, v in template]
func = cuda_cache.kernel_name(f"wf_{name}", tpl)
src = cuda_cache.build_source(func, kernel_source(), call, inputs, outputs, tpl)
binary, _ = nv.compile(src, options, cuda_cache.HEADERS, [f"mlx::core::cu::{func}"])
with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
    f.write(binary)
    f.flush()
    sass = subprocess.run([os.environ.get("NVDISASM", "nvdisasm"), "-c", f.name], capture_output=True, text=True).stdout
lines = [line for line in sass.splitlines() if re.search(r"/\*[0-9a-f]{4,}\*/\s", line)]
loads = [i for i, line in enumerate(lines) if re.search(r"LDG\.E(\.EF)?(\.STRONG\.GPU)?\.(128|64)", line)]
gaps = [b - a for a, b in zip(loads, loads[1:])]
print(f"{name} D={D}: {len(lines)} instructions, {len(loads)} weight loads, "
      f"{sum(g <= 4 for g in gaps)} within 4 of the one before, {sum(g > 40 for g in gaps)} more than 40 after")
