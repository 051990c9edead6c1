"""The CPU's one-row decode step: decode/cpu_step.py's C step against FlatStep's MLX step, on a
model's real weights (float32) over random audio features, after a 20-token prompt. Checks
the two give the same logits at 60 positions in a row (each stepped by both), then times each
at position 40, medians of 30, and prints one JSON line.

Usage: python benchmarks/cpu/native_step.py [MODEL] [THREADS]"""

import json
import statistics
import sys
import time

import whisperfast  # noqa: F401  (the BLAS preload, before mlx)

import mlx.core as mx

from whisperfast.decode.attention import KVCache
from whisperfast.decode.flat import FlatStep, decoder_forward
from whisperfast.kernels import cpu_simd
from whisperfast.pipeline import load

name = sys.argv[1] if len(sys.argv) > 1 else "tiny.en"
dec = load(name, dtype=mx.float32, fast=True).whisper.decoder
D = dec.positional_embedding.shape[-1]
cache = [[KVCache(448), None] for _ in dec.blocks]
mx.eval(decoder_forward(dec, mx.array([[50257, 50362] + list(range(400, 418))]), mx.random.normal((1, 1500, D)), cache))
step = FlatStep(dec)
if len(sys.argv) > 2:
    step.native.kernels = step.native.kernels.threaded(int(sys.argv[2]))
mx.eval(step(mx.array([[500]]), cache))  # MLX's step, then the C step's check
differ = 0
for i in range(60):
    tok, t = mx.array([[400 + 7 * i]]), cache[0][0].offset
    ours = step.native(tok, cache)
    for kv, _ in cache:
        kv.offset = t
    differ += not cpu_simd.same_bits(ours, step._mlx_step(tok, cache))
times = {}
for lane, fn in (("native", step.native), ("mlx", step._mlx_step)):
    ts = []
    for _ in range(30):
        for kv, _ in cache:
            kv.offset = 40
        t0 = time.perf_counter()
        mx.eval(fn(mx.array([[500]]), cache))
        ts.append(time.perf_counter() - t0)
    times[lane] = round(statistics.median(ts) * 1000, 3)
print(json.dumps({"model": name, "threads": step.native.kernels.threads, "reason": step.native.reason,
                  "positions_differing": differ, "native_ms": times["native"], "mlx_ms": times["mlx"]}))
