"""Where a CUDA decode step's time goes (decode/cuda/step.py), without nsys:
1. per step, evaluated one at a time: host time to build the step, then to evaluate it;
2. inside the kernel: block 0's %globaltimer stamp at each grid barrier (decode_step.cu's
   Scratch), so each phase's µs, the wait for the slowest block included;
3. per call, 100 calls queued then evaluated at once: the step (chained), the filters + update kernel
   alone, and an `add` (MLX's floor per node);
4. a decode's steps as _main_loop queues them, the host waiting for `completed` every k-th
   step (k = 1: every step, as the loop does), in ms a step;
5. mel and encoder: host time to build each graph, then to evaluate it.
Usage: python benchmarks/cuda_step_profile.py [model] [dtype]   (prints one JSON object)"""

import json
import sys
import time
from pathlib import Path

import whisperfast  # noqa: F401

import mlx.core as mx
import numpy as np
from mlx_whisper.audio import N_SAMPLES, log_mel_spectrogram
from mlx_whisper.decoding import DecodingOptions

from whisperfast.audio import first_window_mel, load_audio
from whisperfast.decode.task import StaticCacheTask

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.test_cuda_step import greedy_update  # noqa: E402  (the kernel's filters + update alone: a test entry)
from whisperfast.decode.cuda import step as cs
from whisperfast.pipeline import load
from whisperfast.runtime import parse_dtype

name, dtype = (sys.argv[1:] + ["tiny.en", "float16"])[:2]
dt = parse_dtype(dtype)
model = load(name, dtype=dt, fast=True).whisper
mel = first_window_mel("samples/jfk.wav", dt)
options = DecodingOptions(language="en", fp16=dt == mx.float16)
StaticCacheTask(model, options).run(mel)  # compiles the kernel
n_layer = model.dims.n_text_layer
report = {"device": str(mx.default_device()), "model": name, "dtype": dtype, "blocks": cs.grid_blocks()}

task = StaticCacheTask(model, options)
feats = task._get_audio_features(mel)
tokens = mx.array([list(task.initial_tokens)])
run = cs.cuda_step(task, 1, feats.dtype)
prompt = tokens
tokens, _, sums, _ = run.prompt(tokens, feats, task.sot_index)
mx.eval(tokens, sums)
build, evals, phases = [], [], []
for _ in range(40):
    t0 = time.perf_counter()
    out = run(tokens, sums)
    t1 = time.perf_counter()
    mx.eval(out)
    build.append((t1 - t0) * 1e3)
    evals.append((time.perf_counter() - t1) * 1e3)
    # copied on the device: reading the scratch itself would move its managed pages to the host
    stamps = np.array(mx.view(run.state["scratch"][32:36 + 12 * n_layer], mx.uint32) + 0).view(np.uint64)
    stamps = stamps.astype(np.int64)
    phases.append(np.diff(stamps) / 1e3)
    tokens, _, sums = out
med = lambda xs: float(np.median(xs))  # noqa: E731
report["step_ms"] = {"build": med(build), "eval": med(evals)}
phases = np.array(phases)  # (steps, 6 * n_layer + 1) µs
names = ["self_attention", "out", "cross_attention", "cross_out", "mlp1", "mlp2"]
report["phase_us"] = {n: med(phases[:, k:6 * n_layer:6].sum(axis=1)) for k, n in enumerate(names)}
report["phase_us"]["logits_filters_update"] = med(phases[:, -1])
report["kernel_us"] = med(phases.sum(axis=1))

N = 100


def per_call(make):
    """µs per call to build, then to evaluate, N queued calls."""
    mx.eval(make())
    t0 = time.perf_counter()
    outs = [make() for _ in range(N)]
    t1 = time.perf_counter()
    mx.eval(outs)
    return {"build_us": (t1 - t0) / N * 1e6, "eval_us": (time.perf_counter() - t1) / N * 1e6}


x = mx.random.normal((1, model.dims.n_text_state)).astype(dt)
lg = mx.random.normal((1, model.dims.n_vocab)) * 8
mx.eval(x, lg)
rules = cs.timestamp_rules(task.tokenizer, task.sample_begin, True)


def chained():
    """Steps at the same position, each taking the last one's sums: MLX runs kernels that no
    data orders at once, and steps sharing one scratch must not overlap."""
    last = [sums]

    def step():
        out = run(tokens, last[0])
        last[0] = out[2]
        return out[0]
    return step


report["per_call"] = {
    "step (same position again)": per_call(chained()),
    "filters + update alone": per_call(lambda: greedy_update(lg, tokens, sums, mx.zeros(lg.shape[-1:]), rules)[0]),
    "add": per_call(lambda: x + x),
}


def loop(check: int, steps: int = 27) -> float:
    run = cs.cuda_step(task, 1, feats.dtype)
    tokens, completed, sums, _ = run.prompt(prompt, feats, task.sot_index)
    mx.eval(tokens, completed, sums)
    t0 = time.perf_counter()
    for i in range(1, steps + 1):
        queued = run(tokens, sums)
        mx.async_eval(*queued)
        if i % check == 0 and completed:
            pass
        tokens, completed, sums = queued
    mx.eval(tokens)
    return (time.perf_counter() - t0) / steps * 1e3


report["loop_ms_per_step"] = {f"check every {k}": med([loop(k) for _ in range(15)]) for k in (1, 2, 4, 8, 1000)}


def stage(build):
    """(host ms to build, ms to evaluate), medians of 15."""
    b, e = [], []
    for _ in range(16):
        t0 = time.perf_counter()
        out = build()
        t1 = time.perf_counter()
        mx.eval(out)
        b.append((t1 - t0) * 1e3)
        e.append((time.perf_counter() - t1) * 1e3)
    return {"build_ms": med(b[1:]), "eval_ms": med(e[1:])}


audio = load_audio("samples/jfk.wav")
report["stages"] = {"mel": stage(lambda: log_mel_spectrogram(audio, n_mels=model.dims.n_mels, padding=N_SAMPLES)),
                    "encoder": stage(lambda: model.encoder(mel))}
print(json.dumps(report, indent=1))
