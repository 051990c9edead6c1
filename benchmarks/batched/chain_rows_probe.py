"""The packed chains (cpu_simd.chain_matmul, cpu_products.c) on tiny.en's vocabulary, float32
model, at 1, 2, 3, 4 and 8 rows, in the tree it is run from: [min, median] ms of 40 calls a row
count, as JSON; asserts each row count's outputs are each row's alone, bit for bit. For
alternating two trees (git archives):

    (cd /tmp/ab/before && python /path/to/chain_rows_probe.py); (cd /tmp/ab/head && python ...)
"""

import json
import sys
import time

sys.path.insert(0, ".")  # the tree it is run from, not the installed one

import whisperfast  # noqa: E402,F401  (BLAS before mlx)
import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

from whisperfast.kernels import cpu_simd  # noqa: E402
from whisperfast.pipeline import load  # noqa: E402

kernels = cpu_simd.chosen(mx.float32)
w = load("tiny.en", dtype=mx.float32).whisper.decoder.token_embedding.weight
panels = kernels.pack(w)
rng = np.random.default_rng(1)
out = {}
for rows in (1, 2, 3, 4, 8):
    x = mx.array(rng.standard_normal((rows, w.shape[1])).astype(np.float32))
    times = []
    for _ in range(40):
        t = time.perf_counter()
        got = kernels.chain_matmul(x, panels)
        mx.eval(got)
        times.append(time.perf_counter() - t)
    alone = np.concatenate([np.array(kernels.chain_matmul(x[i : i + 1], panels)) for i in range(rows)])
    assert np.array_equal(np.array(got).view(np.uint32), alone.view(np.uint32)), rows
    out[rows] = [round(min(times) * 1e3, 3), round(sorted(times)[20] * 1e3, 3)]
print(json.dumps(out))
