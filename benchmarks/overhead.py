"""Where per-token time goes on this MLX device, without nsys:
1. the dispatch floor: µs per primitive in a chain of tiny ops, evaluated at once;
2. the primitives in one fused decode step (forward, filters, greedy update);
3. a greedy loop with no host read per token (each step queued with mx.async_eval): the
   module graph as rewritten against decoding.FlatStep over the same weights;
4. the whole decoding task per token, by how often it reads the end of text back.
Usage: python benchmarks/overhead.py [model] [dtype]   (prints one JSON object)"""

import io
import json
import re
import sys
import time
from collections import Counter

import whisperfast  # noqa: F401  (before mlx: the CPU BLAS preload)

import mlx.core as mx
from mlx_whisper.decoding import DecodingOptions

from whisperfast.audio import first_window_mel
from whisperfast.decode.flat import FlatStep, decoder_forward
from whisperfast.decode.task import StaticCacheTask
from whisperfast.decode.attention import KVCache
from whisperfast.pipeline import load, rewritten
from whisperfast.runtime import parse_dtype

name, dtype = (sys.argv[1:] + ["tiny.en", "float16"])[:2]
dt = parse_dtype(dtype)
report = {"device": str(mx.default_device()), "model": name, "dtype": dtype}


def best_ms(fn, reps=7):
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return min(times)


# 1. dispatch floor
def chain(n, kind):
    x = mx.ones((1, 384), dt)
    w = mx.ones((384, 384), dt) / 384
    mx.eval(x, w)

    def run():
        y = x
        for _ in range(n):
            y = y + 1 if kind == "add" else y @ w
        mx.eval(y)
    return run


floor = {}
for kind in ("add", "matmul"):
    for n in (10, 100, 400):
        ms = best_ms(chain(n, kind))
        floor[f"{kind} x{n}"] = {"ms": round(ms, 3), "us_per_op": round(ms * 1000 / n, 2)}
report["floor"] = floor

# 2. one fused step's primitives
stock = load(name, dtype=dt)
fused = rewritten(stock).whisper
mel = first_window_mel("samples/jfk.wav", dt)
xa = fused.encoder(mel)
mx.eval(xa)
task = StaticCacheTask(fused, DecodingOptions(language="en", fp16=dtype == "float16"))
tokens = mx.array([task.initial_tokens])
mx.eval(task.inference.logits(tokens, xa))
logits = task.inference.logits(tokens[:, -1:], xa)[:, -1]
for f in task.logit_filters:
    logits = f.apply(logits, tokens)
outs = task.decoder.update(tokens, logits, mx.zeros(1))
buf = io.StringIO()
mx.export_to_dot(buf, *outs)
prims = Counter(re.findall(r'label ="(\w+)', buf.getvalue()))
report["step_primitives"] = {"total": sum(prims.values()), "by_name": dict(prims.most_common())}


# 3. step variants in a greedy loop with no host read per token
def loop(variant, n_steps=28, reps=5):
    dec = fused.decoder
    prompt = mx.array([task.initial_tokens])
    flat = FlatStep(dec)

    def run():
        cache = [[KVCache(fused.dims.n_text_ctx), None] for _ in dec.blocks]
        nxt = decoder_forward(dec, prompt, xa, cache)[:, -1].argmax(-1)[:, None]
        toks = [nxt]
        mx.async_eval(nxt)
        for _ in range(n_steps):
            logits = decoder_forward(dec, nxt, xa, cache) if variant == "modules" else flat(nxt, cache)
            nxt = logits[:, -1].argmax(-1)[:, None]
            mx.async_eval(nxt)
            toks.append(nxt)
        return mx.concatenate(toks, axis=1).tolist()[0]

    first = run()
    ms = best_ms(run, reps)
    return first, {"ms_per_step": round(ms / (n_steps + 1), 3)}


loops, ref = {}, None
for variant in ("modules", "flat"):
    toks, row = loop(variant)
    ref = ref or toks
    row["tokens_equal_modules"] = toks == ref
    loops[variant] = row
report["greedy_loop"] = loops

# 4. the whole decoding task (filters, timestamp rules, fallback checks), per token, by
#    how often the end of text is read back
opts = DecodingOptions(language="en", fp16=dtype == "float16")
for check in (1, 2, 4, 8):
    def run_task():
        t = StaticCacheTask(fused, opts)
        t.eot_check = check
        return t.run(mel)[0]
    r = run_task()
    ms = best_ms(run_task)
    report[f"task eot_check={check}"] = {"ms": round(ms, 2), "ms_per_token": round(ms / (len(r.tokens) + 1), 3),
                                         "tokens": len(r.tokens)}
print(json.dumps(report, indent=1))
