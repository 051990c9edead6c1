"""The decode-step kernel's outputs, bit for bit, to compare two trees whose kernels should
sum in the same order: for each case (model, dtype, rows, greedy picks or the forward pass of
beams, or of batched mode's rows of separate audio), 20 steps from JFK's first window; per
step a SHA-256 of the last position's float32 logits (forward) or of the tokens and summed
log probabilities (greedy). Run it in each tree and compare the lines (`diff`): any
difference is a change in the arithmetic.

    (cd TREE && PYTHONPATH=.:$PYTHONPATH python3 /path/to/benchmarks/step_bits.py) > bits.jsonl   (a CUDA machine)"""

import hashlib
import json
from pathlib import Path

import whisperfast  # noqa: F401  (BLAS preload)

import mlx.core as mx
import numpy as np
from mlx_whisper.decoding import DecodingOptions

from whisperfast.audio import first_window_mel
from whisperfast.pipeline import load

from step_driver import advance, start  # (beside this script)

JFK = str(Path(__file__).resolve().parents[1] / "samples" / "jfk.wav")  # (run from another tree too)
CASES = [("tiny.en", "float16", 1, False), ("tiny.en", "float16", 3, False), ("tiny.en", "float16", 5, True),
         ("tiny.en", "float16", 8, True), ("tiny.en", "float32", 5, True), ("base", "float16", 1, False),
         ("base", "float16", 5, True), ("base", "float16", 16, False)]
# the forward pass on rows of separate audio (batched mode's): each row its own history and cross K/V
SEPARATE = [("tiny.en", "float16", 20, True), ("tiny.en", "float32", 8, True), ("base", "float16", 20, True),
            ("tiny.en", "float16", 32, True)]


def digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.array(a).tobytes())
    return h.hexdigest()[:16]


models = {}
for name, dtype, rows, forward, separate in [c + (False,) for c in CASES] + [c + (True,) for c in SEPARATE]:
    dt = mx.float16 if dtype == "float16" else mx.float32
    if (name, dtype) not in models:
        model = load(name, dtype=dt, fast=True).whisper
        models[name, dtype] = model, model.encoder(first_window_mel(JFK, dt))
    model, features = models[name, dtype]
    options = DecodingOptions(language="en", fp16=dt == mx.float16)
    run, tokens, sums = start(model, features, options, rows, forward, separate)
    steps = []
    for _ in range(20):
        logits, tokens, sums = advance(run, tokens, sums, forward)
        steps.append(digest(logits.astype(mx.float32)) if forward else digest(tokens, sums.astype(mx.float32)))
    print(json.dumps({"model": name, "dtype": dtype, "rows": rows, "forward": forward, "separate": separate,
                      "launches": run.step.launches,
                      "steps": steps}), flush=True)
