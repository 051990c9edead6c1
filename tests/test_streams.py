"""Work shared out among CPU streams (kernels/layers.py, decode/encoder.py) is the same
arithmetic as on one stream: every element bit for bit."""

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from whisperfast.audio import first_window_mel
from whisperfast.decode.encoder import cpu_forward, encode
from whisperfast.kernels.layers import (conv1d_across_cpu_streams, linear_across_cpu_streams,
                                       matmul_t_across_cpu_streams, rows_across_cpu_streams)
from whisperfast.pipeline import load, rewritten

from whisperfast.config import config
from whisperfast.kernels import cpu_simd

from .conftest import SAMPLES, cpu_simd_builds_here


def same_bits(a: mx.array, b: mx.array) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(np.array(a.astype(mx.float32)),
                                                                         np.array(b.astype(mx.float32)))


@pytest.mark.parametrize("dtype", [mx.float32, mx.float16])
@pytest.mark.parametrize("axis", [-2, 0])
def test_rows_across_cpu_streams(dtype, axis):
    x = mx.random.normal((3, 301, 40), key=mx.random.key(7)).astype(dtype)
    with mx.stream(mx.cpu):
        assert same_bits(rows_across_cpu_streams(nn.gelu, x, axis), nn.gelu(x))


@pytest.mark.parametrize("rows", [1, 2, 5])
@pytest.mark.parametrize("dtype", [mx.float32, mx.float16])
def test_matmul_t_across_cpu_streams(dtype, rows):
    """The decoder's logits (x @ embedding.T at tiny's 51864 x 384) cut by vocabulary rows
    across the streams: the same bits as one call, at the row counts of greedy and beams."""
    w = mx.random.normal((51864, 384), key=mx.random.key(3)).astype(dtype)
    x = mx.random.normal((rows, 1, 384), key=mx.random.key(4)).astype(dtype)
    with mx.stream(mx.cpu):
        assert same_bits(matmul_t_across_cpu_streams(x, w), x @ w.T)


@pytest.mark.parametrize("shape", [(384, 384, True), (384, 384, False), (1536, 384, True), (384, 1536, True),
                                   (2048, 512, True)], ids=str)
def test_linear_across_cpu_streams_at_the_audio_rows(shape):
    """An encoder's linear layers (tiny's and base's MLP), and its key (no bias), on 1500 rows
    cut by output features across the streams: nn.Linear's bits."""
    n_out, n_in, bias = shape
    m = nn.Linear(n_in, n_out, bias=bias)
    x = mx.random.normal((2, 1500, n_in), key=mx.random.key(5))
    with mx.stream(mx.cpu):
        assert same_bits(linear_across_cpu_streams(m, x), m(x))


@pytest.mark.parametrize("shape", [(80, 384, 1, 3000), (384, 384, 2, 3000), (128, 512, 1, 3000)], ids=str)
def test_conv1d_across_cpu_streams_at_the_audio_frames(shape):
    """An encoder's two convolutions (tiny's; base's first on 128 mels) cut by output channels
    across the streams: nn.Conv1d's bits."""
    n_in, n_out, stride, frames = shape
    m = nn.Conv1d(n_in, n_out, kernel_size=3, stride=stride, padding=1)
    x = mx.random.normal((1, frames, n_in), key=mx.random.key(6))
    with mx.stream(mx.cpu):
        assert same_bits(conv1d_across_cpu_streams(m, x), m(x))


@pytest.mark.parametrize("simd", ["1", "0"], ids=["cpu-simd", "mlx-ops"])
@pytest.mark.parametrize("dtype", [mx.float32, pytest.param(mx.float16, marks=pytest.mark.slow)])  # fp16: ~2 min on 2 cores
def test_cpu_encoder_is_stock_bit_for_bit(dtype, simd, knobs):
    """The fast engine's CPU encoder, with its softmax and GELUs on x86 vectors (float32, where
    the library builds) and without them: stock's features, bit for bit."""
    knobs(WHISPERFAST_CPU_SIMD=simd)
    if simd == "1" and dtype == mx.float32 and cpu_simd_builds_here():
        assert cpu_simd.chosen(dtype) is not None or "AVX2" in cpu_simd.status(config().cache / "kernels")
    stock = load("tiny.en", dtype=dtype)
    fused = rewritten(stock)
    mels = mx.concatenate([first_window_mel(SAMPLES / f, dtype) for f in ("jfk.wav", "en_ljspeech_LJ050-0131.wav")])
    with mx.stream(mx.cpu):  # the path exists for the CPU; on a GPU machine both run there too
        want = stock.whisper.encoder(mels)
        assert same_bits(cpu_forward(fused.whisper.encoder, mels), want)
    if mx.default_device() == mx.cpu:  # where the fast engine takes this path
        assert same_bits(encode(fused.whisper, mels), stock.whisper.encoder(mels))


def test_a_fused_model_transcribes_on_another_thread_after_this_one():
    """The CPU streams the fused lane spreads its work over are made per thread (an MLX stream
    belongs to the thread that made it): a model used here, then on another thread (the CLI's
    GPU thread, a user's worker), gives the same transcript on both."""
    import threading

    from whisperfast.pipeline import transcribe

    model = load("tiny.en", fast=True)
    here = transcribe(model, SAMPLES / "jfk.wav")
    there = {}
    worker = threading.Thread(target=lambda: there.update(t=transcribe(model, SAMPLES / "jfk.wav")))
    worker.start()
    worker.join()
    assert "t" in there, "the transcription on the other thread raised"
    assert there["t"].tokens == here.tokens and "ask not what your country" in here.text.lower()
