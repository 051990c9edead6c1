"""The host's cost of recording each op of a chunk's log-mel on MLX's default device (a
chunk of 25 s of noise): each op alone on arrays already evaluated, medians of 30 calls, µs,
then the whole of mels.chunk_mel; one JSON line. (At 51ce68a it also timed chunk_mel with
stft's signal laid out on the host against mlx-whisper's ops: benchmarks/h100-session39/.) Where one op costs far more than the others
(mx.pad on CUDA: benchmarks/h100-session39/), a chunk's log-mel can do without it."""

import json
import statistics
import time

import whisperfast  # noqa: F401

import mlx.core as mx
import numpy as np
from mlx_whisper.audio import hanning, mel_filters

from whisperfast import mels

n = 400000
x_np = np.random.default_rng(0).standard_normal(n).astype(np.float32) * 0.1
x = mx.array(x_np)
frames = mx.as_strided(mx.pad(x, (0, 800)), shape=(2500, 400), strides=(160, 1))
spec = mx.fft.rfft(frames * hanning(400))
mags = spec.abs().square()
mel = mags @ mel_filters(80).T
zeros = mx.zeros((400,))
mx.eval(x, frames, spec, mags, mel, zeros)
cases = {
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
out = {}
for name, f in cases.items():
    ts = []
    for _ in range(31):
        t = time.perf_counter()
        a = f()
        ts.append(time.perf_counter() - t)
        mx.eval(a)
    out[name] = round(statistics.median(ts[1:]) * 1e6, 1)
print(json.dumps(out), flush=True)
