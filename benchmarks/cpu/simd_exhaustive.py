"""Every float32 bit pattern (all 2^32) through kernels/cpu_simd's exp and GELU against MLX's own
mx.exp, mlx.nn.gelu (compiled) and the composed GELU the fast engine ran before
(kernels.ops.composed_gelu): how many results differ (two NaNs count as equal; the library does
not promise a NaN's sign). ~8 min on one core of the 2-core machine.

Usage: python benchmarks/cpu/simd_exhaustive.py > benchmarks/cpu/session17/exhaustive.json"""

import json
import sys
import tempfile
import time
from pathlib import Path

import whisperfast  # noqa: F401  (the BLAS preload, before mlx)

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from whisperfast.files import write_atomic
from whisperfast.kernels import cpu_simd
from whisperfast.kernels.ops import composed_gelu

CHUNK = 1 << 24


def differ(a: mx.array, b: mx.array) -> int:
    a, b = np.asarray(a), np.asarray(b)
    return int((~((a.view(np.uint32) == b.view(np.uint32)) | (np.isnan(a) & np.isnan(b)))).sum())


found = cpu_simd.load(Path(tempfile.mkdtemp()), write_atomic, threads=1)
if found.kernels is None:
    sys.exit(f"cpu_simd: {found.how}")
k = found.kernels
bad = {"exp vs mx.exp": 0, "gelu vs nn.gelu": 0, "gelu vs composed_gelu": 0, "vectors vs one lane": 0}
start = time.time()
for first in range(0, 1 << 32, CHUNK):
    x = np.arange(first, first + CHUNK, dtype=np.uint64).astype(np.uint32).view(np.float32)
    bad["exp vs mx.exp"] += differ(k.exp_(mx.array(x)), mx.exp(mx.array(x)))
    ours = k.gelu_(mx.array(x))
    bad["gelu vs nn.gelu"] += differ(ours, nn.gelu(mx.array(x)))
    bad["gelu vs composed_gelu"] += differ(ours, composed_gelu(mx.array(x)))
    bad["vectors vs one lane"] += k.check(first, 1, CHUNK)
print(json.dumps({"patterns": 1 << 32, "differing": bad, "seconds": round(time.time() - start, 1),
                  "mlx": mx.__version__, "library": found.how}, indent=1))
