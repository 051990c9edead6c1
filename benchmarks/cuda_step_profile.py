"""Where a CUDA decode step's time goes (kernels/cuda_step.py), without nsys:
1. per step: host time to build the step's graph, then time to evaluate it (synchronous);
2. per kernel kind, 100 calls queued then evaluated at once: build and run µs per call,
   against mx.addmm for the same gemv;
Usage: python benchmarks/cuda_step_profile.py [model] [dtype]   (prints one JSON object)"""

import json
import sys
import time

import whisperfast  # noqa: F401

import mlx.core as mx
from mlx_whisper.decoding import DecodingOptions

from whisperfast.audio import first_window_mel
from whisperfast.decoding import StaticCacheTask
from whisperfast.kernels import cuda_step as cs
from whisperfast.pipeline import load
from whisperfast.runtime import parse_dtype

name, dtype = (sys.argv[1:] + ["tiny.en", "float16"])[:2]
dt = parse_dtype(dtype)
model = load(name, dtype=dt, fast=True).whisper
mel = first_window_mel("samples/jfk.wav", dt)
options = DecodingOptions(language="en", fp16=dt == mx.float16)
StaticCacheTask(model, options).run(mel)  # compiles every kernel
report = {"device": str(mx.default_device()), "model": name, "dtype": dtype}

task = StaticCacheTask(model, options)
feats = task._get_audio_features(mel)
tokens = mx.array([list(task.initial_tokens)])
logits = task.inference.logits(tokens, feats)[:, -1]
for f in task.logit_filters:
    logits = f.apply(logits, tokens)
tokens, _, sums = task.decoder.update(tokens, logits, mx.zeros(1))
cache = task.inference.kv_cache
cache[:] = [(kv, tuple(mx.contiguous(a) for a in c)) for kv, c in cache]
mx.eval(tokens, sums, cache[0][1])
step = cs.cuda_step(task, 1, feats.dtype)
build, run = [], []
for _ in range(40):
    t0 = time.perf_counter()
    out = step(tokens, sums, cache)
    t1 = time.perf_counter()
    mx.eval(out)
    build.append((t1 - t0) * 1e3)
    run.append((time.perf_counter() - t1) * 1e3)
    tokens, _, sums = out
med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
report["step_ms"] = {"build": med(build), "eval": med(run)}

N = 100


def per_call(make):
    """µs per call to build, then to evaluate, N queued calls."""
    mx.eval(make())
    t0 = time.perf_counter()
    outs = [make() for _ in range(N)]
    t1 = time.perf_counter()
    mx.eval(outs)
    return {"build_us": (t1 - t0) / N * 1e6, "eval_us": (time.perf_counter() - t1) / N * 1e6}


cuda = model.decoder.__dict__["_whisperfast_cuda"]
p, (kv, (ck, cv)) = cuda.layers[0], cache[0]
x = mx.random.normal((1, p["wo"].shape[0])).astype(dt)
h = mx.random.normal((1, p["w1"].shape[0])).astype(dt)
mx.eval(x, h)
report["per_call"] = {
    "gemv_res D->D": per_call(lambda: cs._gemv(x, p["wo"], p["bo"], res=x)),
    "addmm D->D": per_call(lambda: mx.addmm(p["bo"], x, p["wo"].T)),
    "ln_gemv D->3D": per_call(lambda: cs._gemv(x, p["wqkv"], p["bqkv"], ln=p["ln1"])),
    "gemv_res 4D->D": per_call(lambda: cs._gemv(h, p["w2"], p["b2"], res=x)),
    "logits": per_call(lambda: cs._gemv(x, cuda.emb, None, ln=cuda.ln, out_dtype=mx.float32)),
    "cross_attention": per_call(lambda: cs._run(
        "cross_attention", ["q", "ck", "cv"], ["o"], "wf::cross_attention<T, B, H, HD, S>(q, ck, cv, o);",
        [x, ck, cv], [("T", dt), ("B", 1), ("H", cuda.n_head), ("HD", x.shape[1] // cuda.n_head),
                      ("S", ck.shape[2])], cuda.n_head, 256, [x.shape], [dt])[0]),
    "add": per_call(lambda: x + x),
}
lg = mx.random.normal((1, model.dims.n_vocab)) * 8
rules = cs.timestamp_rules(task.tokenizer, task.sample_begin, True)
report["per_call"]["greedy"] = per_call(lambda: cs.greedy_update(lg, tokens, sums, mx.zeros(lg.shape[-1:]), rules)[0])
print(json.dumps(report, indent=1))
