"""Silero VAD's network on MLX, for a CUDA GPU: the ONNX model's own weights, its frame-by-frame
convolutions over a whole group of frames at once, its LSTM in one launch (kernels/lstm.py).

On the H200's host, onnxruntime took 1.35 s of a 1.65 s batched transcription of 600 s
(benchmarks/h200-decode/): a frame's convolutions and LSTM step are too small to use the
CPU's cores (benchmarks/batched/). Here the convolutions of every frame of a group are a few
batched matmuls, and only the LSTM's recurrence runs step by step, inside one kernel.

The network (`silero_vad_16k_sequence.onnx`), per 512-sample frame with the previous frame's
last 64 samples before it (576 samples):
- STFT: the 576 samples reflect-padded by 128 on each side, a (258, 256) basis at a hop of
  128; the first of the five columns dropped; magnitudes of 129 bins -> (4, 129);
- encoder: four convolutions of kernel 3, padding 1, strides 1, 2, 2, 1 (129 -> 128 -> 64 ->
  64 -> 128 channels), each followed by ReLU -> (1, 128);
- an LSTM of 128 over the frames (ONNX's gates i, o, f, c), its state carried from group to
  group; then ReLU, a 1x1 convolution to one channel and a sigmoid: the speech probability.

The weights are read from the ONNX file once per machine (with the onnx package) and kept as
.npz in the model's cache folder (vad.cache_folder, named by the file's hash). Sums run in other orders than onnxruntime's,
so probabilities agree to float rounding, not bit for bit (tests/test_silero.py bounds it)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Dict, Optional

import mlx.core as mx
import numpy as np

from . import _blas, silero_cuda
from .files import write_atomic
from .kernels import lstm as lstm_kernels

HOP, WINDOW = 128, 256  # the STFT's
FRAME = 4 * HOP  # samples a probability covers: the STFT's four columns kept
BINS = WINDOW // 2 + 1

# ONNX initializer -> its shape: the network this port knows; another export is declined
WEIGHTS = {"stft.forward_basis_buffer": (258, 1, 256), "encoder.0.weight": (128, 129, 3), "encoder.0.bias": (128,),
           "encoder.1.weight": (64, 128, 3), "encoder.1.bias": (64,), "encoder.2.weight": (64, 64, 3),
           "encoder.2.bias": (64,), "encoder.3.weight": (128, 64, 3), "encoder.3.bias": (128,),
           "output.weight": (1, 128, 1), "output.bias": (1,), "onnx::LSTM_209": (1, 512, 128),
           "onnx::LSTM_210": (1, 512, 128), "onnx::LSTM_211": (1, 1024)}
STRIDES = (1, 2, 2, 1)
WEIGHTS_FILE = "weights-1.npz"  # the initializers as ONNX stores them; a new name if that ever changes


def read_weights(model: bytes, folder: Path) -> Optional[Dict[str, np.ndarray]]:
    """The weights of the ONNX `model` by initializer name, from `folder` (the model's cache) or
    (once) from the model; None where the onnx package is missing or the graph is not the one
    this port knows."""
    cached = folder / WEIGHTS_FILE
    if cached.is_file():
        try:
            with np.load(cached) as f:
                weights = {name: f[name.replace(":", "_")] for name in WEIGHTS}
            if all(weights[n].shape == s for n, s in WEIGHTS.items()):
                return weights
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # torn or foreign: read the model again
            pass
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        return None
    graph = onnx.load_from_string(model).graph
    found = {t.name: numpy_helper.to_array(t) for t in graph.initializer if t.name in WEIGHTS}
    if set(found) != set(WEIGHTS) or any(found[n].shape != s for n, s in WEIGHTS.items()):
        return None
    weights = {n: np.ascontiguousarray(found[n], np.float32) for n in WEIGHTS}
    buffer = io.BytesIO()
    np.savez(buffer, **{n.replace(":", "_"): w for n, w in weights.items()})
    try:
        write_atomic(cached, buffer.getvalue())
    except OSError:  # a cache that cannot be written: read the model again next time
        pass
    return weights


class HostFrames:
    """The network's frame-by-frame part on the host: frames (n, 576) float32 -> the LSTM's input
    (n, 1, 128), vad.FEATURES, as the cut model's convolutions give it, for onnxruntime's LSTM.

    onnxruntime runs each of those convolutions a frame at a time: small products, 215 ms a
    thread for the 115 s clip's 3,594 frames (benchmarks/cpu/session30/). Here every one is
    one float32 product over a group's frames (the STFT's windows, and each convolution's
    taps laid side by side: `_taps`), 32 ms. Their sums run in other orders than
    onnxruntime's, so the features agree to float rounding, and the probabilities as the
    GPU port's do (tests/test_silero.py bounds both)."""

    def __init__(self, weights: Dict[str, np.ndarray]):
        _blas.limit_numpy_threads()  # its products' BLAS: its idle threads would spin beside MLX's
        self.basis = np.ascontiguousarray(weights["stft.forward_basis_buffer"][:, 0, :].T)  # (WINDOW, 2 * BINS)
        # a convolution of kernel 3 over steps t-1, t, t+1 is one product of those steps side by
        # side; stride 2 on 2 steps reads taps 1 and 2 only (tap 0 is padding), and the last
        # convolution, on one step, its middle tap only
        taps = (slice(None), slice(None), slice(1, 3), slice(1, 2))
        self.w = [self._taps(weights[f"encoder.{i}.weight"][:, :, t]) for i, t in enumerate(taps)]
        self.b = [weights[f"encoder.{i}.bias"] for i in range(4)]

    @staticmethod
    def _taps(w: np.ndarray) -> np.ndarray:
        """(out, in, taps) -> (taps * in, out): row j * in + i is input channel i at tap j."""
        return np.ascontiguousarray(w.transpose(2, 1, 0).reshape(-1, w.shape[0]))

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        from numpy.lib.stride_tricks import as_strided

        frames = np.asarray(frames, np.float32)
        n, f = frames.shape[0], np.dtype(np.float32).itemsize  # every buffer below is float32
        # the STFT's reflect padding: the right's only (the left's lies in its dropped first column)
        padded = np.empty((n, frames.shape[1] + HOP), np.float32)
        padded[:, : frames.shape[1]], padded[:, frames.shape[1] :] = frames, frames[:, -2 : -2 - HOP : -1]
        windows = as_strided(padded, (n, 4, WINDOW), (padded.shape[1] * f, HOP * f, f)).reshape(4 * n, WINDOW)
        spectrum = windows @ self.basis
        x = np.zeros((n, 6, BINS), np.float32)  # the magnitudes, a zero step either side
        x[:, 1:5] = np.sqrt(np.square(spectrum[:, :BINS]) + np.square(spectrum[:, BINS:])).reshape(n, 4, BINS)
        taps = as_strided(x, (n, 4, 3 * BINS), (6 * BINS * f, BINS * f, f)).reshape(4 * n, 3 * BINS)
        y = self._bias_relu(taps @ self.w[0], 0)
        z = np.zeros((n, 5, 128), np.float32)  # stride 2: steps -1..1 and 1..3
        z[:, 1:] = y.reshape(n, 4, 128)
        taps = as_strided(z, (n, 2, 3 * 128), (5 * 128 * f, 2 * 128 * f, f)).reshape(2 * n, 3 * 128)
        y = self._bias_relu(taps @ self.w[1], 1)
        y = self._bias_relu(y.reshape(n, 2 * 64) @ self.w[2], 2)
        return self._bias_relu(y @ self.w[3], 3).reshape(n, 1, 128)

    def _bias_relu(self, y: np.ndarray, i: int) -> np.ndarray:
        y += self.b[i]
        return np.maximum(y, 0, out=y)


class SileroNet:
    """The network on MLX's default device; `start` runs a group of vad.ProbStream's audio:
    its frames (n, 576: a frame's 512 samples after the previous frame's last 64) and the LSTM
    state -> (probabilities (n,), h, c), queued on the device."""

    def __init__(self, weights: Dict[str, np.ndarray]):
        w = {n: mx.array(a) for n, a in weights.items()}
        self.basis = w["stft.forward_basis_buffer"][:, 0, :].T  # (WINDOW, 2 * BINS)
        # MLX's conv1d weights are (out, kernel, in); ONNX's (out, in, kernel)
        self.convs = [(w[f"encoder.{i}.weight"].transpose(0, 2, 1), w[f"encoder.{i}.bias"], s)
                      for i, s in enumerate(STRIDES)]
        self.w_in = w["onnx::LSTM_209"][0].T  # (128, 4H)
        self.r = w["onnx::LSTM_210"][0]  # (4H, H)
        bias = w["onnx::LSTM_211"][0]
        self.bias = bias[: bias.shape[0] // 2] + bias[bias.shape[0] // 2 :]
        self.w_out, self.b_out = w["output.weight"][0, :, 0], w["output.bias"]
        self.hidden = self.r.shape[1]
        # on CUDA (chosen once), one kernel for the frames' part (silero_cuda.py) and the fused
        # LSTM, their weights laid out for them; elsewhere MLX's ops and the composed LSTM
        self.cuda = lstm_kernels.fused_available(self.hidden, mx.float32)
        self.cuda_weights = tuple(mx.contiguous(a) for a in (
            self.basis, *(x for i in range(4) for x in (w[f"encoder.{i}.weight"].transpose(1, 2, 0), w[f"encoder.{i}.bias"])),
            self.w_in, self.bias)) if self.cuda else ()
        self.ri = lstm_kernels.interleaved(self.r) if self.cuda else None  # the fused LSTM's layout of R
        mx.eval(self.basis, self.convs, self.w_in, self.r, self.bias, self.w_out, self.b_out, self.cuda_weights,
                *([self.ri] if self.cuda else []))

    def features(self, frames: mx.array) -> mx.array:
        """(n, 576) -> (n, 128): the convolutions, every frame at once."""
        n = frames.shape[0]
        # reflect padding on the right (the left's lies in the dropped first column)
        padded = mx.concatenate([frames, frames[:, -2 : -2 - HOP : -1]], axis=1)  # (n, 704)
        blocks = padded[:, : 5 * HOP].reshape(n, 5, HOP)
        windows = mx.concatenate([blocks[:, :4], blocks[:, 1:]], axis=2)  # (n, 4, WINDOW): columns 1..4
        spectrum = windows @ self.basis
        x = mx.sqrt(spectrum[..., :BINS] ** 2 + spectrum[..., BINS:] ** 2)  # (n, 4, BINS)
        for weight, bias, stride in self.convs:
            x = mx.maximum(mx.conv1d(x, weight, stride=stride, padding=1) + bias, 0)
        return x[:, 0, :]

    def probabilities(self, frames: mx.array, h: mx.array, c: mx.array):
        """frames (n, 576), state (H,) each -> (probabilities (n,), h, c), lazily."""
        if self.cuda:
            xw = silero_cuda.input_projection(frames, self.cuda_weights)
            hs, c = lstm_kernels.lstm_fused(xw, self.r, h, c, self.ri)
        else:
            hs, c = lstm_kernels.lstm_composed(self.features(frames) @ self.w_in + self.bias, self.r, h, c)
        # a sum, not a matrix product: MLX's float32 products may run in TF32 on a CUDA GPU
        probs = mx.sigmoid((mx.maximum(hs, 0) * self.w_out).sum(-1) + self.b_out)
        return probs, (hs[-1] if hs.shape[0] else h), c

    def start(self, audio, context, h, c):
        """A group's audio (n,) float32 (numpy's, or MLX's already on the device) after the
        previous group's (its last frame's CONTEXT samples `context`; zeros before the first)
        and the LSTM state -> (probabilities, h, c,
        context), lazy, and queued on the device (mx.async_eval): the caller reads them later,
        so that the host's next work overlaps the device's. The frames are made on the device
        (vad.model_frames' layout: each frame after the previous one's last CONTEXT samples,
        the last one zero-padded). State and context are as this returns them, or numpy to begin."""
        frame, ctx = FRAME, len(context)
        samples = audio if isinstance(audio, mx.array) else mx.array(np.asarray(audio, np.float32))
        if len(audio) % frame:  # only a group cut short (the audio's last)
            samples = mx.pad(samples, (0, -len(audio) % frame))
        padded = mx.concatenate([mx.array(context).reshape(ctx).astype(mx.float32), samples])
        frames = mx.as_strided(padded, (samples.shape[0] // frame, ctx + frame), (frame, 1))
        probs, h, c = self.probabilities(frames, mx.array(h).reshape(self.hidden), mx.array(c).reshape(self.hidden))
        context = samples[-ctx:]
        mx.async_eval(probs, h, c, context)
        return probs, h, c, context
