"""Batched mode's log-mels: each chunk's (N_FRAMES, n_mels) as sequential mode makes its last
window's (and faster-whisper's batched pipeline its chunks'): the chunk's own frames, then zeros
in the log-mel, not the log-mel of silence. Whisper reads a window padded with the log-mel of
silence otherwise: on a chunk of silence it heard "you" where sequential mode heard nothing.
The frames are sequential mode's for the same audio alone (one FFT window of zeros past its
end gives every frame its samples, as sequential mode's 30 s do; silence is never the maximum
the log-mel is clipped from), to float rounding.

Two ways to the same values (`Mels`, chosen once by the device):
- the CPU: each chunk's log-mel is queued on a stream of its own as the VAD cuts it
  (mlx-whisper's log_mel_spectrogram), so the CPU makes it while the host reads and cuts on
  (benchmarks/cpu/session35/);
- a GPU: ~25 ops a chunk cost the host ~0.7 ms a chunk to record there (13.7 of a 600 s
  clip's 17.9 ms, benchmarks/h100-session36/), so only each chunk's samples go to the device
  as it is cut, laid out as log_mel_spectrogram pads them (`row`: two ops), and a batch's
  log-mels are one graph (`batch_mels`). Laying those rows out on the host instead (38 MB for 20
  chunks, zeroed and filled) was slower than one graph a chunk (benchmarks/h100-session32/).

Shapes: a row (ROW,) float32; a batch's log-mels (N, N_FRAMES, n_mels)."""

from __future__ import annotations

import threading
import time
from typing import List, Sequence

import mlx.core as mx
import numpy as np
from mlx_whisper.audio import HOP_LENGTH, N_FFT, N_FRAMES, N_SAMPLES, hanning, log_mel_spectrogram, mel_filters, pad_or_trim

_REFLECT = N_FFT // 2  # stft's reflected padding on each side
ROW = _REFLECT + N_SAMPLES + N_FFT + _REFLECT  # a 30 s chunk as log_mel_spectrogram(padding=N_FFT) pads it
_ROW_FRAMES = (ROW - N_FFT + HOP_LENGTH) // HOP_LENGTH - 1  # stft's frames of a row, less the last (as there)


def chunk_mel(audio: np.ndarray, n_mels: int) -> mx.array:
    """One chunk's (N_FRAMES, n_mels) log-mel, lazily."""
    frames = log_mel_spectrogram(audio, n_mels=n_mels, padding=N_FFT)[: len(audio) // HOP_LENGTH]
    return pad_or_trim(frames, N_FRAMES, axis=-2)


def row(audio: np.ndarray) -> mx.array:
    """A chunk of at most N_SAMPLES as log_mel_spectrogram(padding=N_FFT) lays it out for its
    stft: its first samples reflected, the chunk, zeros (those it pads, the zeros stft reflects
    from them, and then to ROW), lazily. A chunk shorter than the reflection reflects its own
    padding's zeros."""
    head = audio[1 : _REFLECT + 1]
    if len(head) < _REFLECT:
        head = np.concatenate([head, np.zeros(_REFLECT - len(head), np.float32)])
    samples = mx.array(np.concatenate([head[::-1], np.asarray(audio, np.float32)]))
    return mx.pad(samples, (0, ROW - samples.shape[0]))


def batch_mels(rows: mx.array, lengths: Sequence[int], n_mels: int) -> mx.array:
    """rows (N, ROW) of chunks of `lengths` samples -> their chunk_mel (N, N_FRAMES, n_mels),
    lazily: one FFT, one product, each chunk's maximum over its own frames (those of its stft),
    zeros past its frames. An FFT or product over more frames at once may round a frame
    otherwise (MLX's CPU FFT did so for the first frame of a 201-sample chunk, by one ulp)."""
    n = rows.shape[0]
    frames = mx.as_strided(rows, shape=(n, _ROW_FRAMES, N_FFT), strides=(ROW, HOP_LENGTH, 1))
    magnitudes = mx.fft.rfft(frames * hanning(N_FFT)).abs().square()
    log_spec = mx.maximum(magnitudes @ mel_filters(n_mels).T, 1e-10).log10()
    index = mx.arange(_ROW_FRAMES)[None, :, None]
    # its stft's frames, less the last: (length + 2 * _REFLECT + N_FFT - N_FFT + HOP) // HOP - 1
    own = mx.array([(m + 2 * _REFLECT + HOP_LENGTH) // HOP_LENGTH - 1 for m in lengths])[:, None, None]
    top = mx.where(index < own, log_spec, -mx.inf).max(axis=(1, 2), keepdims=True)
    log_spec = (mx.maximum(log_spec, top - 8.0) + 4.0) / 4.0
    kept = mx.array([m // HOP_LENGTH for m in lengths])[:, None, None]
    return mx.where(index < kept, log_spec, 0.0)[:, :N_FRAMES]


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


class Mels:
    """The chunks' log-mels for a transcription: `queue` as each chunk is cut (its log-mel, or
    on a GPU its row, queued on `stream()` with mx.async_eval: the device works while the host
    reads and cuts on), `batch` for a batch's (N, N_FRAMES, n_mels), lazily. `whole`: one graph
    a batch (the GPU's way; None: chosen by the default device)."""

    def __init__(self, n_mels: int, whole: bool | None = None):
        self.n_mels = n_mels
        self.whole = mx.default_device() == mx.gpu if whole is None else whole
        self.stream = stream()

    def queue(self, audio: np.ndarray) -> tuple[mx.array, float]:
        """What `batch` takes of a chunk, queued; and the host's seconds doing so."""
        t = time.perf_counter()
        with mx.stream(self.stream):
            queued = row(audio) if self.whole else chunk_mel(audio, self.n_mels)
        mx.async_eval(queued)
        return queued, time.perf_counter() - t

    def batch(self, queued: List[mx.array], lengths: Sequence[int]) -> mx.array:
        """The log-mels of chunks of `lengths` samples from what `queue` gave for each."""
        stacked = mx.stack(queued)
        return batch_mels(stacked, lengths, self.n_mels) if self.whole else stacked
