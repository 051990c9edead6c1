"""What a batched chunk's log-mel costs the host (mels.queue) against one compiled graph of a
fixed shape: every chunk padded with zeros to 30 s and an FFT window, mx.compile'd once, the
frames past the chunk's end zeroed by a mask (so one traced graph serves every chunk length;
the FFT and its power outside the compiled part).
Chunks: 20 cuts of the 600 s clip, lengths 8-30 s. Per way: the host's µs a chunk (median),
the wall ms for all 20 queued then evaluated (median of 5 passes after 2), and the largest
difference from mels.chunk_mel's values.

    python benchmarks/mel_probe.py [clip] [n_mels]   (prints one JSON object)"""

import json
import statistics
import sys
import time

import whisperfast  # noqa: F401

import mlx.core as mx
import numpy as np
from mlx_whisper.audio import HOP_LENGTH, N_FFT, N_FRAMES, N_SAMPLES, hanning, mel_filters

from whisperfast import mels
from whisperfast.audio import load_audio

path, n_mels = (sys.argv[1:] + ["/tmp/clip600.wav", "80"][len(sys.argv) - 1:])[:2]
n_mels = int(n_mels)
audio = load_audio(path)
rng = np.random.default_rng(0)
lengths = rng.integers(8 * 16000, N_SAMPLES + 1, 20)
starts = np.cumsum(np.r_[0, lengths[:-1]]) % max(1, len(audio) - N_SAMPLES)
chunks = [np.ascontiguousarray(audio[s:s + n]) for s, n in zip(starts, lengths)]
on_device = [mx.array(c) for c in chunks]
mx.eval(on_device)
WIDTH = N_SAMPLES + N_FFT  # the longest chunk and its window of zeros


def _log_mel(magnitudes: mx.array, n_frames: mx.array) -> mx.array:
    """mlx-whisper's log-mel from the power spectrum on, its frames past n_frames zeroed"""
    log_spec = mx.maximum(magnitudes @ mel_filters(n_mels).T, 1e-10).log10()
    log_spec = (mx.maximum(log_spec, log_spec.max() - 8.0) + 4.0) / 4.0
    keep = mx.arange(N_FRAMES)[:, None] < n_frames
    return mx.where(keep, log_spec[:N_FRAMES], 0.0)


# (MLX 0.32.4's CUDA backend does not compile a fused graph with the complex abs in it:
# benchmarks/h100-session44/, so the FFT and its power stay outside the compiled part)
compiled = mx.compile(_log_mel)


def fixed(c: mx.array) -> mx.array:
    """The chunk padded with zeros to WIDTH: stft as mlx-whisper's, then the compiled rest"""
    padded, pad = mx.pad(c, (0, WIDTH - c.shape[0])), N_FFT // 2
    x = mx.concatenate([padded[1:pad + 1][::-1], padded, padded[-(pad + 1):-1][::-1]])
    t = (x.size - N_FFT + HOP_LENGTH) // HOP_LENGTH
    freqs = mx.fft.rfft(mx.as_strided(x, shape=[t, N_FFT], strides=[HOP_LENGTH, 1]) * hanning(N_FFT))
    return compiled(freqs[:-1, :].abs().square(), mx.array(c.shape[0] // HOP_LENGTH))


def plain_way(c):
    return mels.queue(c, n_mels)


def fixed_way(c):
    t = time.perf_counter()
    with mx.stream(mels.stream()):
        mel = fixed(c)
    mx.async_eval(mel)
    return mel, time.perf_counter() - t


report = {"device": str(mx.default_device()), "clip": path, "chunks": len(chunks)}
want = [mels.chunk_mel(c, n_mels) for c in on_device]
mx.eval(want)
for name, way in (("plain", plain_way), ("fixed", fixed_way)):
    walls, hosts = [], []
    for p in range(7):
        t0 = time.perf_counter()
        out = [way(c) for c in on_device]
        mx.eval([m for m, _ in out])
        if p >= 2:
            walls.append(time.perf_counter() - t0)
            hosts += [s for _, s in out]
    report[f"{name}_host_us"] = round(statistics.median(hosts) * 1e6, 1)
    report[f"{name}_wall_ms"] = round(statistics.median(walls) * 1e3, 2)
    report[f"{name}_max_diff"] = float(max(mx.abs(m - w).max().item() for (m, _), w in zip(out, want)))
print(json.dumps(report))
