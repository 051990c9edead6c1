"""The CUDA decode step by the size of its grid: WHISPERFAST_STEP_BLOCKS (read once a process)
gives the blocks, so run one process per grid size. Per model, float and `--quantize 8|4`, and
B rows (1: a window's greedy decode; 20: the 600 s clip's batch), every row on JFK's first
window: queued_us, the step's time with 100 steps queued back to back (each taking the last
one's sums, as a decode does), median of 5; kernel_us and phase_us, block 0's %globaltimer
stamps at each grid barrier (decode_step.cu's Scratch), steps evaluated one at a time, median
of 30 after 8.
Usage: WHISPERFAST_STEP_BLOCKS=G python benchmarks/grid_sweep.py [MODELS] [BITS] [ROWS]
       (defaults tiny.en,base  float,8,4  1,20; prints a JSON line per case)"""

import json
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

cuda = getattr(mx, "cuda", None)
if cuda is None or not cuda.is_available():
    sys.exit("grid_sweep.py: needs MLX's CUDA backend")
args = sys.argv[1:] + [None] * 3
models = (args[0] or "tiny.en,base").split(",")
bits_list = [None if b == "float" else int(b) for b in (args[1] or "float,8,4").split(",")]
rows_list = [int(b) for b in (args[2] or "1,20").split(",")]
med = lambda xs: float(np.median(xs))  # noqa: E731
names = ["self_attention", "out", "cross_attention", "cross_out", "mlp1", "mlp2"]
for name in models:
    for bits in bits_list:
        model = load(name, dtype=mx.float16, fast=True, quantize=bits).whisper
        task = StaticCacheTask(model, DecodingOptions(language="en", fp16=True))
        feats = task._get_audio_features(first_window_mel("samples/jfk.wav", mx.float16))
        n_layer = model.dims.n_text_layer
        for B in rows_list:
            run = cs.cuda_step(task, B, feats.dtype)
            row = {"model": name, "bits": bits or "float", "rows": B, "blocks": cs.grid_blocks()}
            if run is None:
                print(json.dumps(dict(row, declined=True)), flush=True)
                continue
            tokens, _, sums, _ = run.prompt(mx.array([list(task.initial_tokens)] * B), mx.repeat(feats, B, axis=0),
                                            task.sot_index)
            mx.eval(tokens, sums)
            start = (tokens, sums)
            kernel, phases = [], []
            for i in range(8 + 30):
                out = run(tokens, sums)
                mx.eval(out)
                # copied on the device: reading the scratch itself would move its managed pages to the host
                stamps = np.array(mx.view(run.state["scratch"][32:36 + 12 * n_layer], mx.uint32) + 0).view(np.uint64)
                stamps = stamps.astype(np.int64)
                if i >= 8:
                    kernel.append((stamps[-1] - stamps[0]) / 1e3)
                    phases.append(np.diff(stamps) / 1e3)
                tokens, _, sums = out
            phases = np.array(phases)
            queued = []
            for _ in range(5):
                tokens, sums = start
                mx.eval(run(tokens, sums))
                t0 = time.perf_counter()
                for _ in range(100):
                    tokens, _, sums = run(tokens, sums)
                mx.eval(tokens, sums)
                queued.append((time.perf_counter() - t0) / 100 * 1e6)
            row.update(queued_us=round(med(queued), 1), kernel_us=round(med(kernel), 1),
                       phase_us={n: round(med(phases[:, k:6 * n_layer:6].sum(axis=1)), 1) for k, n in enumerate(names)}
                       | {"logits": round(med(phases[:, -1]), 1)})
            print(json.dumps(row), flush=True)
        del model, task
