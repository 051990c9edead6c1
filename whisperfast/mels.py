"""Batched mode's log-mels: each chunk's (N_FRAMES, n_mels) as sequential mode makes its last
window's (and faster-whisper's batched pipeline its chunks'): the chunk's own frames, then zeros
in the log-mel, not the log-mel of silence. Whisper reads a window padded with the log-mel of
silence otherwise: on a chunk of silence it heard "you" where sequential mode heard nothing.
The frames are sequential mode's for the same audio alone (one FFT window of zeros past its
end gives every frame its samples, as sequential mode's 30 s do; silence is never the maximum
the log-mel is clipped from), to float rounding.

Each chunk's log-mel is queued on a stream of its own as the VAD cuts it (`queue`), so the
device makes it while the host reads and cuts on (benchmarks/cpu/session35/). A batch's
log-mels in one graph were no faster on a GPU, the chunks' samples laid out on the host
(benchmarks/h100-session32/) or on the device (benchmarks/h100-session39/)."""

from __future__ import annotations

import threading
import time

import mlx.core as mx
import numpy as np
from mlx_whisper.audio import HOP_LENGTH, N_FFT, N_FRAMES, hanning, mel_filters, pad_or_trim

_REFLECT = N_FFT // 2  # stft's reflected padding on each side


def chunk_mel(audio: np.ndarray, n_mels: int) -> mx.array:
    """One chunk's (N_FRAMES, n_mels) log-mel, lazily: mlx-whisper's
    log_mel_spectrogram(audio, padding=N_FFT), its ops and values, but for the signal its stft
    takes, laid out on the host (the chunk's first samples reflected, the chunk, the N_FFT zeros
    it pads and the zeros stft reflects from them) where MLX made it in five ops; then its
    frames up to the chunk's end, and zeros to N_FRAMES."""
    audio = np.asarray(audio, np.float32)
    head = audio[1 : _REFLECT + 1]  # a chunk shorter than the reflection reflects its padding's zeros
    signal = np.concatenate([np.zeros(_REFLECT - len(head), np.float32), head[::-1], audio,
                             np.zeros(N_FFT + _REFLECT, np.float32)])
    count = (len(signal) - N_FFT + HOP_LENGTH) // HOP_LENGTH  # stft's frames
    frames = mx.as_strided(mx.array(signal), shape=(count, N_FFT), strides=(HOP_LENGTH, 1))
    magnitudes = mx.fft.rfft(frames * hanning(N_FFT))[:-1, :].abs().square()
    log_spec = mx.maximum(magnitudes @ mel_filters(n_mels).T, 1e-10).log10()
    log_spec = (mx.maximum(log_spec, log_spec.max() - 8.0) + 4.0) / 4.0
    return pad_or_trim(log_spec[: len(audio) // HOP_LENGTH], N_FRAMES, axis=-2)


_THIS_THREAD = threading.local()


def stream() -> mx.Stream:
    """A stream of its own for the chunks' mels on the default device, made once per thread
    and device: an MLX stream belongs to the thread that made it (the CLI runs MLX on a thread
    of its own), and each one made is kept for good (on the CPU, a thread)."""
    streams = _THIS_THREAD.__dict__.setdefault("mel_streams", {})
    device = mx.default_device()
    key = str(device)  # mx.Device compares equal but hashes as an object, and each call gives a new one
    if key not in streams:
        streams[key] = mx.new_stream(device)
    return streams[key]


def queue(audio: np.ndarray, n_mels: int) -> tuple[mx.array, float]:
    """A chunk's log-mel queued on `stream()` (mx.async_eval), and the host's seconds doing so."""
    t = time.perf_counter()
    with mx.stream(stream()):
        mel = chunk_mel(audio, n_mels)
    mx.async_eval(mel)
    return mel, time.perf_counter() - t
