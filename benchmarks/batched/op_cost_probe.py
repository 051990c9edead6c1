"""What a chunk's log-mel costs the host on MLX's default device, medians of 30 calls, µs, one
JSON line:
- `ops`: each op of it recorded alone on arrays already evaluated (a chunk of 25 s of noise),
  then the whole of mels.chunk_mel. (At 51ce68a it also timed chunk_mel with stft's signal laid
  out on the host against mlx-whisper's ops: benchmarks/h100-session39/.)
- `uploads`: 30 s of samples put on the device and evaluated: float32 (1.9 MB) alone, then with
  an op on it; from int16 (0.96 MB) scaled on the device (a 16-bit file's same values:
  audio._read's scaling); numpy's copy for scale. On CUDA the first op on a new array cost the
  host far more than the op (benchmarks/h100-session39/): the samples' way to the device."""

import json
import statistics
import time

import whisperfast  # noqa: F401

import mlx.core as mx
import numpy as np
from mlx_whisper.audio import hanning, mel_filters

from whisperfast import mels


def timed(f, evaluated: bool = False) -> float:
    """f's host time (with `evaluated`, its result's evaluation too), the first call left out."""
    ts = []
    for _ in range(31):
        t = time.perf_counter()
        a = f()
        if evaluated:
            mx.eval(a)
        ts.append(time.perf_counter() - t)
        mx.eval(a)
    return round(statistics.median(ts[1:]) * 1e6, 1)


x_np = np.random.default_rng(0).standard_normal(400000).astype(np.float32) * 0.1
x = mx.array(x_np)
frames = mx.as_strided(mx.pad(x, (0, 800)), shape=(2500, 400), strides=(160, 1))
spec = mx.fft.rfft(frames * hanning(400))
mags = spec.abs().square()
mel = mags @ mel_filters(80).T
zeros = mx.zeros((400,))
mx.eval(x, frames, spec, mags, mel, zeros)
ops = {
    "mx.array(np 1.6 MB)": lambda: mx.array(x_np),
    "mx.pad": lambda: mx.pad(x, (0, 400)),
    "mx.pad of a new mx.array": lambda: mx.pad(mx.array(x_np), (0, 400)),
    "mx.concatenate zeros": lambda: mx.concatenate([x, zeros]),
    "mx.concatenate new zeros": lambda: mx.concatenate([x, mx.zeros((400,))]),
    "slice": lambda: x[1:201],
    "reverse": lambda: x[1:201][::-1],
    "as_strided": lambda: mx.as_strided(x, shape=(2400, 400), strides=(160, 1)),
    "multiply window": lambda: frames * hanning(400),
    "rfft": lambda: mx.fft.rfft(frames),
    "abs": lambda: spec.abs(),
    "square": lambda: mags.square(),
    "matmul": lambda: mags @ mel_filters(80).T,
    "maximum scalar": lambda: mx.maximum(mel, 1e-10),
    "log10": lambda: mel.log10(),
    "max": lambda: mel.max(),
    "slice rows": lambda: mel[:2000],
    "chunk_mel": lambda: mels.chunk_mel(x_np, 80),
}
i16 = (np.random.default_rng(0).standard_normal(480000) * 3000).astype(np.int16)
f32 = i16.astype(np.float32) / 32768
uploads = {
    "np.copy f32": lambda: mx.array(f32.copy()[:1]),
    "mx.array f32, eval": lambda: mx.array(f32),
    "mx.array f32, pad, eval": lambda: mx.pad(mx.array(f32), (0, 400)),
    "mx.array f32, +0, eval": lambda: mx.array(f32) + 0,
    "mx.array i16, scale, eval": lambda: mx.array(i16).astype(mx.float32) * (1 / 32768),
}
print(json.dumps({"ops": {k: timed(f) for k, f in ops.items()}, "uploads": {k: timed(f, True) for k, f in uploads.items()}}),
      flush=True)
