"""The CPU's C encoder blocks (decode/cpu_encoder.py: NativeEncoder) on four windows of
tiny.en's width, float32: four calls of one window (each on both threads of the team) against
one call of four (two pairs, one window a thread: cpu_rows.c's Pair), alternated; asserts the
same bits. Prints each run's seconds as JSON lines."""

import json
import sys
import time

sys.path.insert(0, ".")

import whisperfast  # noqa: E402,F401  (BLAS before mlx)
import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

from whisperfast.decode.cpu_encoder import native_encoder  # noqa: E402
from whisperfast.pipeline import load  # noqa: E402

model = load(sys.argv[1] if len(sys.argv) > 1 else "tiny.en", fast=True)
native = native_encoder(model.whisper.encoder)
width = model.whisper.dims.n_audio_state
x = mx.array(np.random.default_rng(0).standard_normal((4, 1500, width)).astype(np.float32))


def one_a_call():
    return np.concatenate([np.array(native(x[i : i + 1])) for i in range(4)])


def four_a_call():
    return np.array(native(x))


assert np.array_equal(one_a_call().view(np.uint32), four_a_call().view(np.uint32))
for r in range(int(sys.argv[2]) if len(sys.argv) > 2 else 6):
    lanes = (("one_a_call", one_a_call), ("four_a_call", four_a_call))
    for name, f in lanes if r % 2 == 0 else lanes[::-1]:
        t = time.perf_counter()
        f()
        print(json.dumps({"round": r, "lane": name, "s": round(time.perf_counter() - t, 3)}))
