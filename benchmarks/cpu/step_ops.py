"""One fused decode step on the CPU, op by op (an mx.eval after each, 4 blocks summed): where
FlatStep's time goes (issue 16). tiny.en fp32, a 20-token prompt in the cache, random audio
features, medians over 20 steps; then the whole step, unbroken.

Usage: WHISPERFAST_BLAS=... python benchmarks/cpu/step_ops.py [MODEL]"""

import collections
import statistics
import sys
import time

import whisperfast  # noqa: F401  (the BLAS preload, before mlx)

import mlx.core as mx
import mlx.nn as nn

from whisperfast.decode.attention import KVCache
from whisperfast.decode.flat import FlatStep, decoder_forward
from whisperfast.kernels.layers import heads_across_cpu_streams, matmul_t_across_cpu_streams
from whisperfast.pipeline import load

N = 20
dec = load(sys.argv[1] if len(sys.argv) > 1 else "tiny.en", dtype=mx.float32, fast=True).whisper.decoder
D = dec.positional_embedding.shape[-1]
xa = mx.random.normal((1, 1500, D))
cache = [[KVCache(448), None] for _ in dec.blocks]
mx.eval(decoder_forward(dec, mx.array([[50257, 50362] + list(range(400, 418))]), xa, cache))
step = FlatStep(dec)
times = collections.defaultdict(lambda: [0.0] * N)  # op -> ms in each step
rep = 0


def ev(name, a):
    t = time.perf_counter()
    mx.eval(a)
    times[name][rep] += (time.perf_counter() - t) * 1000
    return a


for rep in range(N):
    for kv, _ in cache:
        kv.offset = 20
    H, s = step.n_head, step.scale
    heads = (1, H, 1, D // H)
    x = ev("embed", dec.token_embedding(mx.array([[500]])) + dec.positional_embedding[20:21])
    for (ln1, qkv, out, ln2, cq, co, ln3, fc1, fc2, sdpa, cross_sdpa), (kv, cross) in zip(step.layers, cache):
        q, k, v = ev("qkv", qkv(ev("ln", ln1(x))))
        k, v, mask = kv.update(k.reshape(heads), v.reshape(heads), False)
        ev("kv write", (k, v))
        a = ev("self attn", mx.softmax((q.reshape(heads) * s) @ (k.swapaxes(-1, -2) * s), axis=-1, precise=True) @ v
               if step.cpu else sdpa(q.reshape(heads) * s, k * s, v, 1.0, mask))
        x = ev("out", x + out(a.reshape(1, 1, D)))
        q = ev("cross q", cq(ev("ln", ln2(x))))
        o = ev("cross attn", heads_across_cpu_streams(cross_sdpa, q.reshape(heads) * s, *cross, 1.0, None)
               if step.across else cross_sdpa(q.reshape(heads) * s, *cross, 1.0, None))
        x = ev("cross out", x + co(o.reshape(1, 1, D)))
        h = ev("mlp1", fc1(ev("ln", ln3(x))))
        x = ev("mlp2", x + fc2(ev("gelu", nn.gelu(h))))
    y = ev("ln", dec.ln(x))
    ev("logits", matmul_t_across_cpu_streams(y, dec.token_embedding.weight) if step.across
       else dec.token_embedding.as_linear(y))

whole = []
for rep in range(N):
    for kv, _ in cache:
        kv.offset = 20
    t = time.perf_counter()
    mx.eval(step(mx.array([[500]]), cache))
    whole.append((time.perf_counter() - t) * 1000)
med = {k: statistics.median(v) for k, v in times.items()}
for k, v in sorted(med.items(), key=lambda kv: -kv[1]):
    print(f"{k:12s} {v:7.2f} ms")
print(f"sum of ops {sum(med.values()):.2f} ms; whole step, median {statistics.median(whole):.2f} ms")
