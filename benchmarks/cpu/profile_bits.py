"""Bit checks (and two timings) for the fixes profile.md ranks: is a candidate the same
arithmetic as stock's op? tiny.en fp32 weights, random inputs with fixed keys.
Usage: OPENBLAS_NUM_THREADS=1 python benchmarks/cpu/profile_bits.py OUT.npy  (prints JSON)
Run it again with OPENBLAS_NUM_THREADS=2 and compare the two OUT.npy (encoder mlp1 output)."""
import json
import sys
import time

import whisperfast  # noqa: F401  (before mlx: the CPU BLAS preload)

import mlx.core as mx
import numpy as np

from whisperfast.pipeline import load


def med(fn, reps=30):
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return round(float(np.median(ts)) * 1000, 4)


m = load("tiny.en", dtype=mx.float32).whisper
emb = m.decoder.token_embedding.weight
W, b = m.decoder.blocks[0].mlp1.weight, m.decoder.blocks[0].mlp1.bias
x = mx.random.normal((1, 1, 384), key=mx.random.key(1))
X = mx.random.normal((1, 1500, 384), key=mx.random.key(2))
Ec, Wc = mx.contiguous(emb.T), mx.contiguous(W.T)  # weights laid out once, (in, out) row-major
mx.eval(Ec, Wc, x, X)
r = {"OPENBLAS_NUM_THREADS": __import__("os").environ.get("OPENBLAS_NUM_THREADS")}
r["logits: x @ emb.T == x @ contiguous(emb.T)"] = mx.array_equal(x @ emb.T, x @ Ec).item()
r["mlp1: nn.Linear(x) == addmm(b, x, contiguous(W.T))"] = mx.array_equal(m.decoder.blocks[0].mlp1(x), mx.addmm(b, x, Wc)).item()
ln, gn = np.array(x @ emb.T).reshape(-1), np.array(emb) @ np.array(x).reshape(-1)
r["logits: mlx sgemm == numpy sgemv"] = bool(np.array_equal(ln, gn))
r["logits: max |mlx - numpy sgemv|"] = float(np.abs(ln - gn).max())
q = mx.random.normal((1, 6, 1500, 64), key=mx.random.key(3))
k = mx.random.normal((1, 6, 1500, 64), key=mx.random.key(4))
r["encoder scores: q @ k.swapaxes (view) == q @ contiguous copy"] = mx.array_equal(
    q @ mx.contiguous(k.swapaxes(-1, -2)), q @ k.swapaxes(-1, -2)).item()
r["ms logits x @ emb.T"] = med(lambda: mx.eval(x @ emb.T))
r["ms logits x @ contiguous(emb.T)"] = med(lambda: mx.eval(x @ Ec))
r["ms mlp1 nn.Linear (x @ W.T + b)"] = med(lambda: mx.eval(m.decoder.blocks[0].mlp1(x)), 200)
r["ms mlp1 addmm(b, x, contiguous(W.T))"] = med(lambda: mx.eval(mx.addmm(b, x, Wc)), 200)
y = m.encoder.blocks[0].mlp1(X)
mx.eval(y)
np.save(sys.argv[1], np.array(y))
print(json.dumps(r, indent=1))
