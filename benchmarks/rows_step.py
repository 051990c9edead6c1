"""What a row costs the CUDA decode step (decode/cuda/decode_step.cu): per-step time for B = 1, 3,
5, 16, 32 rows, as a greedy decode steps them, warm, medians over 40 steps after 8 (the first
compiles). Every row decodes JFK's first window. Up to 3 rows the kernel picks the tokens
itself (groups of 3, each reading the weights again); past that it is the forward pass (groups
of up to 8), then the greedy launch (step.py's greedy_picks; before 210646e this script ran
the kernel's own picks at every B). Per B: step_ms, the host's wall time to build and evaluate
one step, both launches (evaluated one at a time); kernel_us, block 0's %globaltimer from the
step's launch's start to its end (decode_step.cu's stamps); and both per row.
Usage: python benchmarks/rows_step.py [model] [dtype]   (prints one JSON object)"""

import json
import sys
import time

import whisperfast  # noqa: F401

import mlx.core as mx
import numpy as np
from mlx_whisper.decoding import DecodingOptions

from whisperfast.audio import first_window_mel
from whisperfast.decode.task import StaticCacheTask
from whisperfast.decode.cuda import step as cs
from whisperfast.pipeline import load
from whisperfast.runtime import parse_dtype

cuda = getattr(mx, "cuda", None)
if cuda is None or not cuda.is_available():
    sys.exit("rows_step.py: needs MLX's CUDA backend")
name, dtype = (sys.argv[1:] + ["tiny.en", "float16"])[:2]
dt = parse_dtype(dtype)
model = load(name, dtype=dt, fast=True).whisper
task = StaticCacheTask(model, DecodingOptions(language="en", fp16=dt == mx.float16))
feats = task._get_audio_features(first_window_mel("samples/jfk.wav", dt))
n_layer = model.dims.n_text_layer
report = {"device": str(mx.default_device()), "model": name, "dtype": dtype, "blocks": cs.grid_blocks(), "rows": {}}
med = lambda xs: float(np.median(xs))  # noqa: E731
for B in (1, 3, 5, 16, 32):
    run = cs.cuda_step(task, B, feats.dtype)
    if run is None:
        report["rows"][B] = "the kernel declines"
        continue
    tokens, _, sums, _ = run.prompt(mx.array([list(task.initial_tokens)] * B), mx.repeat(feats, B, axis=0),
                                    task.sot_index)
    mx.eval(tokens, sums)
    walls, kernel = [], []
    for i in range(8 + 40):
        t0 = time.perf_counter()
        out = run(tokens, sums)
        mx.eval(out)
        wall = (time.perf_counter() - t0) * 1e3
        # copied on the device: reading the scratch itself would move its managed pages to the host
        stamps = np.array(mx.view(run.state["scratch"][32:36 + 12 * n_layer], mx.uint32) + 0).view(np.uint64)
        if i >= 8:
            walls.append(wall)
            kernel.append((int(stamps[-1]) - int(stamps[0])) / 1e3)
        tokens, _, sums = out
    report["rows"][B] = {"step_ms": round(med(walls), 4), "kernel_us": round(med(kernel), 1),
                         "step_ms_per_row": round(med(walls) / B, 4), "kernel_us_per_row": round(med(kernel) / B, 2)}
    print(B, report["rows"][B], file=sys.stderr, flush=True)
print(json.dumps(report))
