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

from .conftest import SAMPLES, needs_base, skip_without_c_step


def bits(a: mx.array) -> np.ndarray:
    return np.array(a.astype(mx.float32)).view(np.uint32)


@pytest.fixture
def on_cpu():
    skip_without_c_step("the C encoder is the CPU's, float32, where the library builds")


def counted(monkeypatch) -> list:
    """NativeEncoder.__call__ wrapped for the test: the calls that gave the blocks' output."""
    calls, original = [], NativeEncoder.__call__

    def call(self, x, bf16=False):
        out = original(self, x, bf16)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(NativeEncoder, "__call__", call)
    return calls


@pytest.mark.parametrize("name,files", [
    ("tiny.en", ("jfk.wav", "en_ljspeech_LJ050-0131.wav", "en_ldc93s1_timit_16k.wav")),
    pytest.param("base", ("jfk.wav", "zh_aishell1_BAC009S0724W0121.wav", "en_ljspeech_LJ050-0131.wav"),
                 marks=needs_base),
])
def test_c_encoder_blocks_are_stocks_encoder_bit_for_bit(on_cpu, monkeypatch, name, files):
    """Three windows of real speech through the fast engine's encoder (tiny.en: 4 blocks of 6
    heads; base: 6 of 8, 512 wide) in one C call give stock's features, every element bit for
    bit: three (a pair, one a thread, then one on both threads), two (a pair), one, and all
    three on one thread and on two whatever this machine's count."""
    calls = counted(monkeypatch)
    stock = load(name, dtype=mx.float32)
    fused = rewritten(stock)
    mels = mx.concatenate([first_window_mel(SAMPLES / f, mx.float32) for f in files])
    want = stock.whisper.encoder(mels)
    for at in range(3):
        assert np.array_equal(bits(encode(fused.whisper, mels[at:])), bits(want[at:])), at
    assert calls == [True] * 3
    encoder = fused.whisper.encoder
    for threads in (1, 2):  # whatever this machine's count: the team-less calls, then the pairs
        native = NativeEncoder(cpu_simd.chosen(mx.float32).threaded(threads), encoder)
        monkeypatch.setitem(encoder.__dict__, "_whisperfast_blocks", native)  # where native_encoder keeps it
        assert np.array_equal(bits(encode(fused.whisper, mels)), bits(want)), threads
    assert calls == [True] * 5


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


@pytest.mark.parametrize("name,files", [
    ("tiny.en", ("jfk.wav", "en_ljspeech_LJ050-0131.wav")),
    pytest.param("base", ("jfk.wav", "zh_aishell1_BAC009S0724W0121.wav"), marks=needs_base),
])
def test_c_cross_kv_is_mlx_cross_kv_bit_for_bit(on_cpu, monkeypatch, name, files):
    """Every decoder layer's cross keys and values of real windows' features, made in one C
    call (NativeCross), are the MLX ops' (WhisperAttention.cross_kv) bit for bit: for one
    audio, for two (one product over both audios' rows), and for three (one audio twice); with
    the keys packed for the decode step as wf_pack_heads packs them, handed over once."""
    from whisperfast.decode.cpu_encoder import NativeCross, native_cross
    from whisperfast.decode.flat import cross_kv

    fused = rewritten(load(name, dtype=mx.float32)).whisper
    native = native_cross(fused.decoder)
    assert isinstance(native, NativeCross) and native.reason == ""
    mels = mx.concatenate([first_window_mel(SAMPLES / f, mx.float32) for f in files])
    feats = encode(fused, mels)
    for xa in (feats[:1], feats, mx.concatenate([feats, feats[1:]])):
        got, want = native(xa), [b.cross_attn.cross_kv(xa) for b in fused.decoder.blocks]
        assert len(got) == len(want) == len(fused.decoder.blocks)
        for (gk, gv), (wk, wv) in zip(got, want):
            assert gk.shape == wk.shape == (xa.shape[0], fused.dims.n_text_head, xa.shape[1], wk.shape[-1])
            assert np.array_equal(bits(gk), bits(wk)) and np.array_equal(bits(gv), bits(wv))
        assert native.take_packed([k for k, _ in want]) is None  # not the keys it made
        packed = native.take_packed([k for k, _ in got])
        assert (packed is not None) == native.chains(xa.shape[1])
        for (keys, _), p in zip(got, packed or []):
            assert np.array_equal(p.view(np.uint32), native.kernels.pack_heads(keys).view(np.uint32))
        assert native.take_packed([k for k, _ in got]) is None  # handed over once
    made = []
    original = NativeCross.__call__
    monkeypatch.setattr(NativeCross, "__call__",
                        lambda self, xa, bf16=False: made.append(original(self, xa, bf16)) or made[-1])
    got = cross_kv(fused.decoder, feats)  # the engine's way in: the C call
    want = [b.cross_attn.cross_kv(feats) for b in fused.decoder.blocks]
    assert len(made) == 1 and made[0] is got
    assert all(np.array_equal(bits(a), bits(b)) for pair in zip(got, want) for a, b in zip(*pair))


@pytest.mark.parametrize("streams,threads", [(1, 2), (3, 2), (2, 1), (8, 2)])
def test_c_cross_kv_cuts_its_products_as_the_cpu_streams_do(on_cpu, monkeypatch, streams, threads):
    """However many CPU streams MLX's ops cut the products into, and however many threads the
    C call has, the keys and values are the MLX ops' bit for bit: the call makes the same BLAS
    call for each of the streams' pieces."""
    from whisperfast.decode.cpu_encoder import NativeCross
    from whisperfast.kernels import layers

    fused = rewritten(load("tiny.en", dtype=mx.float32)).whisper
    feats = encode(fused, first_window_mel(SAMPLES / "jfk.wav", mx.float32))
    xa = mx.concatenate([feats, feats])
    monkeypatch.setattr(layers._THIS_THREAD, "cpu_streams", tuple(mx.new_stream(mx.cpu) for _ in range(streams)),
                        raising=False)
    native = NativeCross(cpu_simd.chosen(mx.float32).threaded(threads), fused.decoder)
    got, want = native(xa), [b.cross_attn.cross_kv(xa) for b in fused.decoder.blocks]
    assert all(np.array_equal(bits(a), bits(b)) for pair in zip(got, want) for a, b in zip(*pair))


def test_c_cross_kv_packs_while_a_step_takes_the_keys(on_cpu):
    """Keys packed and never taken (a decode that reads them as made) turn the packing off for
    the next call; a step asking for packed keys turns it on again."""
    from whisperfast.decode.cpu_encoder import NativeCross

    fused = rewritten(load("tiny.en", dtype=mx.float32)).whisper
    feats = encode(fused, first_window_mel(SAMPLES / "jfk.wav", mx.float32))
    native = NativeCross(cpu_simd.chosen(mx.float32), fused.decoder)
    if not native.chains(feats.shape[1]):
        pytest.skip("this BLAS's cross scores are not the chains': nothing is packed")
    native(feats)  # packed, never taken
    second = native(feats)
    assert not native.packs and native.take_packed([k for k, _ in second]) is None
    assert native.packs  # asked for: the next keys come packed
    third = native(feats)
    assert native.take_packed([k for k, _ in third]) is not None


def test_c_cross_kv_stands_aside(on_cpu, knobs):
    """A float16 decoder and WHISPERFAST_CPU_STEP=0 keep MLX's ops for the cross K/V, which
    flat.cross_kv then makes: the same values as the C call's."""
    from whisperfast.decode.cpu_encoder import native_cross
    from whisperfast.decode.flat import cross_kv

    stock = load("tiny.en", dtype=mx.float32)
    feats = encode(rewritten(stock).whisper, first_window_mel(SAMPLES / "jfk.wav", mx.float32))
    want = cross_kv(rewritten(stock).whisper.decoder, feats)
    half = rewritten(load("tiny.en", dtype=mx.float16)).whisper.decoder
    assert native_cross(half) is None and half.__dict__["_whisperfast_cross"].reason == "not float32"
    knobs(WHISPERFAST_CPU_STEP="0")
    fused = rewritten(stock).whisper
    assert native_cross(fused.decoder) is None
    got = cross_kv(fused.decoder, feats)
    assert all(np.array_equal(bits(a), bits(b)) for g, w in zip(got, want) for a, b in zip(g, w))


def test_a_copied_module_gets_a_c_helper_of_its_own(on_cpu):
    """A decoder or encoder copied with its __dict__ (as a rewrite copies a module) carries the
    original's helper; it is made again for the copy, which reads the copy's own layers."""
    import copy

    from whisperfast.decode.cpu_encoder import native_cross

    fused = rewritten(load("tiny.en", dtype=mx.float32)).whisper
    for module, helper in ((fused.decoder, native_cross), (fused.encoder, native_encoder)):
        first = helper(module)
        twin = copy.copy(module)
        assert twin.__dict__ is not module.__dict__ and helper(twin) is not first
        assert helper(twin).owner is twin and helper(module) is first
