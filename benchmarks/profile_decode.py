"""Where a fused decode step's time goes, stage by stage, with mx.eval boundaries (no nsys).
Usage: python benchmarks/profile_decode.py [model] [dtype]"""

import sys
import time

import whisperfast  # noqa: F401  (before mlx: the CPU BLAS preload)

import mlx.core as mx
from mlx_whisper.decoding import DecodingOptions

from whisperfast.audio import first_window_mel
from whisperfast.decode.task import StaticCacheTask
from whisperfast.pipeline import load, rewritten
from whisperfast.runtime import parse_dtype

name, dtype = (sys.argv[1:] + ["tiny.en", "float16"])[:2]
stock = load(name, dtype=parse_dtype(dtype))
fused = rewritten(stock).whisper
mel = first_window_mel("samples/jfk.wav", parse_dtype(dtype))
opts = DecodingOptions(language="en", fp16=dtype == "float16")


def ms(t0):
    return (time.perf_counter() - t0) * 1000


for rep in range(3):
    t0 = time.perf_counter()
    features = fused.encoder(mel)
    mx.eval(features)
    enc = ms(t0)
    t0 = time.perf_counter()
    r = StaticCacheTask(fused, opts).run(mel)[0]
    whole = ms(t0)
    # the same steps, each stage forced on its own
    task = StaticCacheTask(fused, opts)
    tokens = mx.array([task.initial_tokens])
    logits = task.inference.logits(tokens, features)
    mx.eval(logits)
    build, run_logits, filt, upd, n = 0.0, 0.0, 0.0, 0.0, len(r.tokens) + 1
    sum_lp = mx.zeros(1)
    for i in range(n):
        t0 = time.perf_counter()
        lg = task.inference.logits(tokens[:, -1:], features)
        build += ms(t0)
        t0 = time.perf_counter()
        mx.eval(lg)
        run_logits += ms(t0)
        t0 = time.perf_counter()
        lg = lg[:, -1]
        for f in task.logit_filters:
            lg = f.apply(lg, tokens)
        mx.eval(lg)
        filt += ms(t0)
        t0 = time.perf_counter()
        tokens, completed, sum_lp = task.decoder.update(tokens, lg, sum_lp)
        mx.eval(tokens, completed, sum_lp)
        upd += ms(t0)
    print(f"[{rep}] encode {enc:.2f} ms | decode run() {whole:.2f} ms for {n} steps = {whole / n:.2f} ms/step | "
          f"per step: build logits graph {build / n:.3f}, eval logits {run_logits / n:.3f}, "
          f"filters {filt / n:.3f}, greedy update {upd / n:.3f} ms")
