"""What getting audio onto the device costs the host, 30 s of samples at a time (medians of 30,
µs): mx.array of float32 (1.9 MB) alone, then evaluated; then an op on it (mx.pad), evaluated;
the same from int16 (0.96 MB, scaled on the device: the same values for a 16-bit file);
and numpy's copy for scale. One JSON line."""

import json
import statistics
import time

import whisperfast  # noqa: F401

import mlx.core as mx
import numpy as np

i16 = (np.random.default_rng(0).standard_normal(480000) * 3000).astype(np.int16)
f32 = i16.astype(np.float32) / 32768


def timed(f):
    ts = []
    for _ in range(31):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return round(statistics.median(ts[1:]) * 1e6, 1)


out = {
    "np.copy f32": timed(lambda: f32.copy()),
    "mx.array f32": timed(lambda: mx.array(f32)),
    "mx.array f32, eval": timed(lambda: mx.eval(mx.array(f32))),
    "mx.array f32, pad, eval": timed(lambda: mx.eval(mx.pad(mx.array(f32), (0, 400)))),
    "mx.array f32, +0, eval": timed(lambda: mx.eval(mx.array(f32) + 0)),
    "mx.array i16, scale, eval": timed(lambda: mx.eval(mx.array(i16).astype(mx.float32) * (1 / 32768))),
}
print(json.dumps(out), flush=True)
