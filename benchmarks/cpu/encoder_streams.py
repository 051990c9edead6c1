"""The fused lane's encoder on the CPU as the model runs it (`model.encoder`: attention's heads
already across CPU streams) against the same encoder with its GELUs by rows across the
streams too (`whisperfast.decode.encoder.streamed_forward`), on JFK's first window: the same
bits, and seconds per window, alternated run by run after one warm-up each.

    WHISPERFAST_BLAS=... python benchmarks/cpu/encoder_streams.py [MODEL] [RUNS]   (one JSON line)"""

import json
import os
import statistics
import sys
import time

import whisperfast  # noqa: F401  (BLAS preload)

import mlx.core as mx

from whisperfast.audio import first_window_mel
from whisperfast.decode.encoder import streamed_forward
from whisperfast.pipeline import load, rewritten

name, runs = (sys.argv[1] if len(sys.argv) > 1 else "tiny.en"), int(sys.argv[2]) if len(sys.argv) > 2 else 5
mx.set_default_device(mx.cpu)
fused = rewritten(load(name, dtype=mx.float32)).whisper
mel = first_window_mel(os.path.join(os.path.dirname(__file__), "..", "..", "samples", "jfk.wav"))
lanes = {"model.encoder": lambda: fused.encoder(mel), "GELU across streams too": lambda: streamed_forward(fused.encoder, mel)}
outs = {k: f() for k, f in lanes.items()}
mx.eval(*outs.values())
same = mx.array_equal(*outs.values()).item()
times = {k: [] for k in lanes}
for _ in range(runs):
    for k, f in lanes.items():
        t = time.perf_counter()
        mx.eval(f())
        times[k].append(round(time.perf_counter() - t, 4))
print(json.dumps({"model": name, "same_bits": same, "cpus": os.cpu_count(), "load_average": os.getloadavg(),
                  "seconds": times, "median": {k: statistics.median(v) for k, v in times.items()}}))
