"""The fast engine's encoder blocks in one C call on the CPU (decode/cpu_encoder.py,
kernels/cpu_rows.c): stock's features bit for bit, on real audio and real weights."""

import mlx.core as mx
import numpy as np
import pytest

from whisperfast.audio import first_window_mel
from whisperfast.decode.cpu_encoder import NativeEncoder, native_encoder
from whisperfast.decode.encoder import encode
from whisperfast.kernels import cpu_simd
from whisperfast.pipeline import load, rewritten

from .conftest import SAMPLES, needs_base


def bits(a: mx.array) -> np.ndarray:
    return np.array(a.astype(mx.float32)).view(np.uint32)


@pytest.fixture
def on_cpu():
    if mx.default_device() != mx.cpu or cpu_simd.chosen(mx.float32) is None:
        pytest.skip("the C encoder is the CPU's, float32, where the library builds")


def counted(monkeypatch) -> list:
    """NativeEncoder.__call__ wrapped for the test: the calls that gave the blocks' output."""
    calls, original = [], NativeEncoder.__call__

    def call(self, x):
        out = original(self, x)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(NativeEncoder, "__call__", call)
    return calls


@pytest.mark.parametrize("name,files", [
    ("tiny.en", ("jfk.wav", "en_ljspeech_LJ050-0131.wav")),
    pytest.param("base", ("jfk.wav", "zh_aishell1_BAC009S0724W0121.wav"), marks=needs_base),
])
def test_c_encoder_blocks_are_stocks_encoder_bit_for_bit(on_cpu, monkeypatch, name, files):
    """Two windows of real speech through the fast engine's encoder (tiny.en: 4 blocks of 6
    heads; base: 6 of 8, 512 wide) run as one C call an audio, and give stock's features,
    every element bit for bit, batched or one at a time."""
    calls = counted(monkeypatch)
    stock = load(name, dtype=mx.float32)
    fused = rewritten(stock)
    mels = mx.concatenate([first_window_mel(SAMPLES / f, mx.float32) for f in files])
    want = stock.whisper.encoder(mels)
    assert np.array_equal(bits(encode(fused.whisper, mels)), bits(want))
    assert np.array_equal(bits(encode(fused.whisper, mels[1:])), bits(want[1:]))
    assert calls == [True, True]


def test_c_encoder_stands_aside(on_cpu, knobs, monkeypatch):
    """WHISPERFAST_CPU_STEP=0 keeps MLX's ops for the encoder too, and a model rewritten with
    composed ops gets a reason: both still give stock's features."""
    stock = load("tiny.en", dtype=mx.float32)
    mel = first_window_mel(SAMPLES / "jfk.wav", mx.float32)
    want = bits(stock.whisper.encoder(mel))
    composed = rewritten(stock, mode="composed").whisper.encoder
    assert native_encoder(composed) is None
    assert composed.__dict__["_whisperfast_blocks"].reason == "an attention other than the fused one"
    knobs(WHISPERFAST_CPU_STEP="0")
    calls = counted(monkeypatch)
    fused = rewritten(stock).whisper
    assert native_encoder(fused.encoder) is None
    assert np.array_equal(bits(encode(fused, mel)), want) and calls == []
