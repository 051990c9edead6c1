"""Batched mode's log-mels: each chunk's (N_FRAMES, n_mels) as sequential mode makes its last
window's (and faster-whisper's batched pipeline its chunks'): the chunk's own frames, then zeros
in the log-mel, not the log-mel of silence. Whisper reads a window padded with the log-mel of
silence otherwise: on a chunk of silence it heard "you" where sequential mode heard nothing.
The frames are sequential mode's for the same audio alone (one FFT window of zeros past its
end gives every frame its samples, as sequential mode's 30 s do; silence is never the maximum
the log-mel is clipped from), to float rounding.

Each chunk's log-mel is queued on a stream of its own as the VAD cuts it (`queue`), so the
device makes it while the host reads and cuts on (benchmarks/cpu/session35/). On a CUDA GPU a
chunk's samples are already there (cut from the blocks chunker.Chunker put there as they were
read): its samples going to the device had been nearly all of the ~0.7 ms a chunk's log-mel
cost the host (benchmarks/h100-session39/); a batch's log-mels in one graph (the samples laid
out on the host, benchmarks/h100-session32/, or on the device) and stft's signal laid out on
the host were no faster."""

from __future__ import annotations

import threading
import time

import mlx.core as mx
import numpy as np
from mlx_whisper.audio import HOP_LENGTH, N_FFT, N_FRAMES, log_mel_spectrogram, pad_or_trim


def chunk_mel(audio: np.ndarray | mx.array, n_mels: int) -> mx.array:
    """One chunk's (N_FRAMES, n_mels) log-mel, lazily: mlx-whisper's log_mel_spectrogram with
    an FFT window of zeros past the chunk, its frames up to the chunk's end, then zeros."""
    frames = log_mel_spectrogram(audio, n_mels=n_mels, padding=N_FFT)[: len(audio) // HOP_LENGTH]
    return pad_or_trim(frames, N_FRAMES, axis=-2)


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


def queue(audio: np.ndarray | mx.array, n_mels: int) -> tuple[mx.array, float]:
    """A chunk's log-mel queued on `stream()` (mx.async_eval), and the host's seconds doing so."""
    t = time.perf_counter()
    with mx.stream(stream()):
        mel = chunk_mel(audio, n_mels)
    mx.async_eval(mel)
    return mel, time.perf_counter() - t
