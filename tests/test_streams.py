"""Work shared out among CPU streams (kernels/streams.py, decode/encoder.py) is the same
arithmetic as on one stream: every element bit for bit."""

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from whisperfast.audio import first_window_mel
from whisperfast.decode.encoder import encode, streamed_forward, uses_streams
from whisperfast.kernels.streams import attention_by_heads, cpu_streams, split_elementwise
from whisperfast.pipeline import load, rewritten

from .conftest import SAMPLES

STREAMS = {n: cpu_streams(n) for n in (2, 3)}


def same_bits(a: mx.array, b: mx.array) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(np.array(a.astype(mx.float32)),
                                                                         np.array(b.astype(mx.float32)))


@pytest.mark.parametrize("dtype", [mx.float32, mx.float16])
@pytest.mark.parametrize("n", [2, 3])
def test_split_elementwise_and_attention_by_heads(dtype, n):
    k1, k2, k3 = mx.random.split(mx.random.key(7), 3)
    x = mx.random.normal((2, 301, 40), key=k1).astype(dtype)
    with mx.stream(mx.cpu):
        assert same_bits(split_elementwise(nn.gelu, x, STREAMS[n]), nn.gelu(x))
        q = (mx.random.normal((2, 5, 97, 16), key=k2) * 0.3).astype(dtype)
        k_t = (mx.random.normal((2, 5, 16, 120), key=k3) * 0.3).astype(dtype)
        v = mx.random.normal((2, 5, 120, 16), key=k1).astype(dtype)
        one = mx.softmax(q @ k_t, axis=-1, precise=True) @ v
        assert same_bits(attention_by_heads(q, k_t, v, STREAMS[n]), one)


@pytest.mark.parametrize("dtype", [mx.float32, pytest.param(mx.float16, marks=pytest.mark.slow)])  # fp16: ~2 min on 2 cores
def test_streamed_encoder_is_stock_bit_for_bit(dtype):
    stock = load("tiny.en", dtype=dtype)
    fused = rewritten(stock)
    mels = mx.concatenate([first_window_mel(SAMPLES / f, dtype) for f in ("jfk.wav", "en_ljspeech_LJ050-0131.wav")])
    want = stock.whisper.encoder(mels)
    assert same_bits(streamed_forward(fused.whisper.encoder, mels, STREAMS[2]), want)
    if mx.default_device() == mx.cpu:  # where the fast engine takes this path
        assert uses_streams(fused.whisper) and not uses_streams(stock.whisper)
        assert same_bits(encode(fused.whisper, mels), want)
