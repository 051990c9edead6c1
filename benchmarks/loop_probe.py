"""Where a wide greedy decode's time goes between the CUDA kernel's steps: B rows (JFK's first
window's features, every row the same audio), the steps queued as decode/task.py's _main_loop
queues them, in four ways, µs a step (medians of 3 passes of 60 steps after 8):
- `sync`: each step evaluated before the next is built (rows_step.py's way);
- `loop`: the next step queued, then the last step's `completed` read (the loop's way);
- `every4`: `completed` read every 4th step only;
- `queued`: 60 steps queued, then one wait (the GPU's own pace: launches and gaps, no host);
and the host's µs a step in `loop`: building the step, `async_eval`, waiting on `completed`.
kernel_us: the forward kernel's own span (decode_step.cu's stamps), one step evaluated alone.
Run it with and without MLX_USE_CUDA_GRAPHS=0 to see what MLX's CUDA graphs cost.

    python benchmarks/loop_probe.py [model] [dtype] [rows]   (prints one JSON object)"""

import json
import os
import statistics
import sys
import time

import whisperfast  # noqa: F401

import mlx.core as mx
import numpy as np
from mlx_whisper.decoding import DecodingOptions

from whisperfast.audio import first_window_mel
from whisperfast.decode.cuda import step as cs
from whisperfast.decode.task import StaticCacheTask
from whisperfast.pipeline import load
from whisperfast.runtime import parse_dtype

cuda = getattr(mx, "cuda", None)
if cuda is None or not cuda.is_available():
    sys.exit("loop_probe.py: needs MLX's CUDA backend")
name, dtype, rows = (sys.argv[1:] + ["tiny.en", "float16", "20"][len(sys.argv) - 1:])[:3]
B, dt = int(rows), parse_dtype(dtype)
model = load(name, dtype=dt, fast=True).whisper
task = StaticCacheTask(model, DecodingOptions(language="en", fp16=dt == mx.float16))
feats = task._get_audio_features(first_window_mel("samples/jfk.wav", dt))
n_layer = model.dims.n_text_layer
run = cs.cuda_step(task, B, feats.dtype)
if run is None:
    sys.exit(f"loop_probe.py: the kernel declines {B} rows")
STEPS, WARM = 60, 8


def start():
    tokens, _, sums, _ = run.prompt(mx.array([list(task.initial_tokens)] * B), mx.repeat(feats, B, axis=0), task.sot_index)
    mx.eval(tokens, sums)
    return tokens, sums


def sync():
    tokens, sums = start()
    walls = []
    for i in range(WARM + STEPS):
        t0 = time.perf_counter()
        tokens, completed, sums = run(tokens, sums)
        mx.eval(tokens, completed, sums)
        if i >= WARM:
            walls.append(time.perf_counter() - t0)
    return statistics.median(walls) * 1e6, {}


def loop(every: int):
    tokens, sums = start()
    completed = mx.array(False)
    build, queue, wait = [], [], []
    for i in range(WARM):
        queued = run(tokens, sums)
        mx.async_eval(*queued)
        bool(completed)
        tokens, completed, sums = queued
    t_start = time.perf_counter()
    for i in range(STEPS):
        t0 = time.perf_counter()
        queued = run(tokens, sums)
        t1 = time.perf_counter()
        mx.async_eval(*queued)
        t2 = time.perf_counter()
        if i % every == 0:
            bool(completed)  # never True here: a JFK row ends after ~30 tokens, and the step only counts
        t3 = time.perf_counter()
        build.append(t1 - t0), queue.append(t2 - t1), wait.append(t3 - t2)
        tokens, completed, sums = queued
    mx.eval(tokens, sums)
    per = (time.perf_counter() - t_start) / STEPS * 1e6
    return per, {"build_us": statistics.median(build) * 1e6, "async_eval_us": statistics.median(queue) * 1e6,
                 "wait_us": statistics.mean(wait) * 1e6}


def queued():
    tokens, sums = start()
    for _ in range(WARM):
        tokens, _, sums = run(tokens, sums)
    mx.eval(tokens, sums)
    t0 = time.perf_counter()
    for _ in range(STEPS):
        tokens, completed, sums = run(tokens, sums)
        mx.async_eval(tokens, completed, sums)
    mx.eval(tokens, sums)
    return (time.perf_counter() - t0) / STEPS * 1e6, {}


def kernel_us():
    tokens, sums = start()
    spans = []
    for _ in range(12):
        tokens, completed, sums = run(tokens, sums)
        mx.eval(tokens, completed, sums)
        stamps = np.array(mx.view(run.state["scratch"][32:36 + 12 * n_layer], mx.uint32) + 0).view(np.uint64)
        spans.append((int(stamps[-1]) - int(stamps[0])) / 1e3)
    return statistics.median(spans[4:])


report = {"device": str(mx.default_device()), "model": name, "dtype": dtype, "rows": B,
          "cuda_graphs": os.environ.get("MLX_USE_CUDA_GRAPHS", "default"), "picks_in_kernel": run.picks,
          "kernel_us": round(kernel_us(), 1)}
ways = {"sync": sync, "loop": lambda: loop(1), "every4": lambda: loop(4), "queued": queued}
results = {k: [] for k in ways}
for _ in range(3):
    for k, f in ways.items():
        results[k].append(f())
for k, runs in results.items():
    report[k + "_us"] = round(statistics.median(r[0] for r in runs), 1)
    for part in runs[0][1]:
        report[f"{k}_{part}"] = round(statistics.median(r[1][part] for r in runs), 1)
print(json.dumps(report))
