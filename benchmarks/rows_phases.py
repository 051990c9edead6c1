"""Where a step's time goes as rows are added: block 0's %globaltimer stamp at each grid
barrier of the decode-step kernel (decode_step.cu's Scratch::stamps), summed per phase over
the layers, for B = 1, 3, 5 rows (tiny.en JFK's first window repeated). Medians of 20 steps, µs.
With `forward`: the forward pass of beams and samples instead (no picks; B = 1, 5, 8 rows of
one audio, each step fed the rows' argmax), whose last phase is the logits alone. With `batched`:
that forward pass on rows of separate audio (batched mode's greedy batches past
config().kernel_pick_rows), B = 8, 16, 20 (the 600 s clip's chunks), 32.

    python benchmarks/rows_phases.py [MODEL] [DTYPE] [forward|batched]   (a CUDA machine; one JSON line per B)"""

import json
import sys

import whisperfast  # noqa: F401  (BLAS preload)

import mlx.core as mx
import numpy as np
from mlx_whisper.decoding import DecodingOptions

from whisperfast.audio import first_window_mel
from whisperfast.pipeline import load
from whisperfast.runtime import parse_dtype

from step_driver import advance, start  # (beside this script)

args = sys.argv[1:]
name, dtype = args[0] if args else "tiny.en", args[1] if len(args) > 1 else "float16"
separate = args[2:] == ["batched"]
forward = separate or args[2:] == ["forward"]
dt = parse_dtype(dtype)
model = load(name, dtype=dt, fast=True).whisper
options = DecodingOptions(language="en", fp16=dt == mx.float16)
n_layer = model.dims.n_text_layer
names = ["self_attention", "out", "cross_attention", "cross_out", "mlp1", "mlp2"]
features = model.encoder(first_window_mel("samples/jfk.wav", dt))
for rows in (8, 16, 20, 32) if separate else (1, 5, 8) if forward else (1, 3, 5):
    run, tokens, sums = start(model, features, options, rows, forward, separate)
    phases = []
    for _ in range(22):
        _, tokens, sums = advance(run, tokens, sums, forward)
        stamps = np.array(mx.view(run.state["scratch"][32:36 + 12 * n_layer], mx.uint32) + 0).view(np.uint64)
        phases.append(np.diff(stamps.astype(np.int64)) / 1e3)
    phases = np.array(phases[2:])
    report = {n: round(float(np.median(phases[:, k:6 * n_layer:6].sum(axis=1))), 1) for k, n in enumerate(names)}
    report["logits" if forward else "logits_filters_update"] = round(float(np.median(phases[:, -1])), 1)
    report["kernel"] = round(float(np.median(phases.sum(axis=1))), 1)
    print(json.dumps({"model": name, "dtype": dtype, "rows": rows, "forward": forward, "separate": separate, "phase_us": report}),
          flush=True)
