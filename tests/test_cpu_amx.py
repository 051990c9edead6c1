"""kernels/cpu_amx.c: cblas_sgemm's interface in bfloat16 on AMX tiles, and batched mode's CPU
encoder on it. Its products are those of the operands rounded to bfloat16, summed in float32:
checked against float64 sums of the same rounded values, for the encoder's shapes and for
tails of every size; then on tiny.en's real weights and real speech, the encoder's features
stay close to float32's and batched mode's words as close to the reference."""

import ctypes

import mlx.core as mx
import numpy as np
import pytest

from whisperfast.kernels import cpu_simd

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112
SGEMM = ctypes.CFUNCTYPE(None, *[ctypes.c_int] * 6, ctypes.c_float, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p,
                         ctypes.c_int, ctypes.c_float, ctypes.c_void_p, ctypes.c_int)


@pytest.fixture(scope="module")
def sgemm():
    kernels = cpu_simd.chosen(mx.float32)
    if kernels is None:
        pytest.skip("no CPU C library here")
    address = kernels.bf16_sgemm()
    if address is None:
        pytest.skip("this CPU (or its OS) has no AMX bfloat16 tiles")
    return SGEMM(address)


def bf16(x: np.ndarray) -> np.ndarray:
    """x rounded to bfloat16 (to nearest, ties to even), as float64"""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return u.astype(np.uint32).view(np.float32).astype(np.float64)


@pytest.mark.parametrize("m, n, k, trans", [(1500, 1152, 384, True), (1500, 384, 1536, True), (1500, 1500, 64, True),
                                            (1500, 64, 1500, False), (1, 1, 1, False), (7, 5, 3, True),
                                            (33, 17, 40, False), (48, 50, 97, True), (16, 32, 32, False),
                                            (20, 48, 64, True), (5, 16, 0, True), (5, 32, 0, False)])
def test_products_are_the_bfloat16_operands_summed_in_float32(sgemm, m, n, k, trans):
    # (k = 0 after a call that leaves NaNs in the thread's packing memory: none may leak in)
    junk, junk_out = np.full((64, 64), np.nan, np.float32), np.empty((64, 64), np.float32)
    sgemm(ROW_MAJOR, NO_TRANS, TRANS, 64, 64, 64, 1.0, junk.ctypes.data, 64, junk.ctypes.data, 64, 0.0,
          junk_out.ctypes.data, 64)
    rng = np.random.default_rng(m * 7 + n * 3 + k)
    a = rng.standard_normal((m, k + 3)).astype(np.float32)[:, :k]  # lda > k
    b = rng.standard_normal((n, k) if trans else (k, n)).astype(np.float32)
    ldc = n + 5  # C's columns past n stay as they were
    c = rng.standard_normal((m, ldc)).astype(np.float32)
    before = c.copy()
    alpha, beta = 0.75, 0.5
    sgemm(ROW_MAJOR, NO_TRANS, TRANS if trans else NO_TRANS, m, n, k, alpha, a.ctypes.data, k + 3, b.ctypes.data,
          k if trans else n, beta, c.ctypes.data, ldc)
    op_b = bf16(b).T if trans else bf16(b)
    want = alpha * (bf16(a) @ op_b) + beta * before[:, :n].astype(np.float64)
    # float32 sums of exact products: each add rounds by at most 2^-24 of what it holds
    bound = (np.abs(bf16(a)) @ np.abs(op_b)) * (k + 2) * 2.0**-24 * alpha + 1e-6
    assert np.all(np.abs(c[:, :n] - want) <= bound)
    assert np.array_equal(c[:, n:], before[:, n:])
    # bfloat16 keeps 8 bits: the products differ from float32's by far more than float32 rounding
    exact = alpha * (a.astype(np.float64) @ (b.T if trans else b)) + beta * before[:, :n]
    if k >= 32:
        assert np.abs(c[:, :n] - exact).max() > 1e-4


def test_beta_zero_never_reads_c(sgemm):
    """beta = 0 writes C without reading it, as cblas_sgemm does: NaNs there do not leak in."""
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((40, 64)).astype(np.float32), rng.standard_normal((33, 64)).astype(np.float32)
    c = np.full((40, 33), np.nan, np.float32)
    sgemm(ROW_MAJOR, NO_TRANS, TRANS, 40, 33, 64, 1.0, a.ctypes.data, 64, b.ctypes.data, 64, 0.0, c.ctypes.data, 33)
    assert np.isfinite(c).all()


@pytest.mark.parametrize("L, hd", [(1, 64), (31, 64), (33, 40), (1500, 64)])
def test_one_heads_attention_is_its_bfloat16_products_and_softmax(sgemm, L, hd):
    """wf_attend_bf16 (the encoder's self-attention in bfloat16, 32 queries at a time) against
    float64 on the same roundings: scores of the bfloat16 q and k, their softmax's weights
    rounded to bfloat16, times the bfloat16 values. A weight may round to the other side of a
    bfloat16 step where float32's sums or the 16-lane exp put it: one step (2^-7 of it) at most."""
    lib = cpu_simd.chosen(mx.float32).lib
    lib.wf_attend_bf16.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_long] * 3 + [ctypes.c_void_p]
    rng = np.random.default_rng(L + hd)
    q, k, v = (rng.standard_normal((L, hd)).astype(np.float32) * 1.5 for _ in range(3))
    kt = np.ascontiguousarray(k.T)
    out = np.full((L, hd), np.nan, np.float32)
    assert lib.wf_attend_bf16(q.ctypes.data, kt.ctypes.data, v.ctypes.data, L, L, hd, out.ctypes.data) == 1
    scores = bf16(q) @ bf16(kt)
    p = np.exp(scores - scores.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    want, weighted = bf16(p) @ bf16(v), p @ np.abs(bf16(v))
    assert np.all(np.abs(out - want) <= weighted * 2.0**-7 + 1e-5)
    if L > 1:  # and not float32's attention
        exact = p @ v.astype(np.float64)
        assert np.abs(out - exact).max() > 1e-4


def test_gelu16_is_gelu_to_float32_rounding(sgemm):
    """The 16-lane GELU (bfloat16 mode's) against float64's, over the range activations take,
    tails of every length: within a few float32 roundings of the value."""
    from math import erf, sqrt

    kernels = cpu_simd.chosen(mx.float32)
    x = np.concatenate([np.linspace(-12, 12, 20011), [0.0, -0.0, 1e-30, -1e-30, 40.0, -40.0]]).astype(np.float32)
    want = np.array([v * (1 + erf(v / sqrt(2))) / 2 for v in x.astype(np.float64)])
    for n in (len(x), 17, 16, 15, 1):
        got = np.asarray(kernels.gelu16_(mx.array(x[:n]) + 0))  # its own array: written over
        err = np.abs(got - want[:n])
        assert np.all(err <= 4e-7 * np.maximum(np.abs(want[:n]), 1.0)), (n, err.max())


@pytest.fixture(scope="module")
def fast_tiny():
    from whisperfast.pipeline import load

    from .conftest import skip_without_c_step

    skip_without_c_step()
    return load("tiny.en", dtype=mx.float32, fast=True)


def test_the_encoder_in_bfloat16_runs_on_the_tiles_and_stays_near_float32(sgemm, fast_tiny):
    """The fast engine's CPU encoder on two windows of real speech: with bf16 its blocks ran on
    the tiles (counted), their features differ from float32's (not the same path) by little."""
    from mlx_whisper.audio import N_SAMPLES

    from whisperfast.decode.cpu_encoder import native_encoder
    from whisperfast.decode.encoder import encode
    from whisperfast.mels import chunk_mel

    from .test_transcribe import long_clip

    audio, _ = long_clip(60.0)
    mel = mx.stack([chunk_mel(audio[i * N_SAMPLES:(i + 1) * N_SAMPLES], 80) for i in range(2)])
    native = native_encoder(fast_tiny.whisper.encoder)
    assert native is not None
    calls = native.bf16_calls
    full = np.asarray(encode(fast_tiny.whisper, mel))
    half = np.asarray(encode(fast_tiny.whisper, mel, bf16=True))
    assert native.bf16_calls == calls + 1
    rel = np.sqrt(np.mean((half - full) ** 2) / np.mean(full ** 2))
    assert 1e-5 < rel < 0.02, rel


def test_only_batched_modes_greedy_batch_makes_its_cross_kv_in_bfloat16(sgemm, fast_tiny):
    """A greedy decode of two windows' rows makes its cross keys and values with float32
    products unless batched mode asks (decode_window's bf16), and then in bfloat16."""
    from mlx_whisper.audio import N_SAMPLES
    from mlx_whisper.decoding import DecodingOptions

    from whisperfast.decode import decode_window
    from whisperfast.decode.cpu_encoder import native_cross
    from whisperfast.decode.encoder import encode
    from whisperfast.mels import chunk_mel

    from .test_transcribe import long_clip

    audio, _ = long_clip(60.0)
    mel = mx.stack([chunk_mel(audio[i * N_SAMPLES:(i + 1) * N_SAMPLES], 80) for i in range(2)])
    features = encode(fast_tiny.whisper, mel)
    options = DecodingOptions(language="en", fp16=False)
    plain = decode_window(fast_tiny.whisper, features, options)
    cross = native_cross(fast_tiny.whisper.decoder)
    calls = cross.bf16_calls
    assert decode_window(fast_tiny.whisper, features, options)[0].text == plain[0].text
    assert cross.bf16_calls == calls
    batched = decode_window(fast_tiny.whisper, features, options, bf16=True)
    assert cross.bf16_calls == calls + 1
    assert all(len(r.text) > 100 for r in batched)


def test_batched_modes_words_with_the_encoder_in_bfloat16(sgemm, fast_tiny, knobs):
    """Batched mode's default on the CPU (the encoder's products, and the greedy batch's cross
    keys' and values', in bfloat16) against float32 products (WHISPERFAST_CPU_AMX=0), on a 95 s clip of real speech: the same chunks' words are as
    close to the clip's reference (WER within a point, issue 15's bound)."""
    from whisperfast.batched import BatchOptions, transcribe_batched
    from whisperfast.decode.cpu_encoder import native_cross, native_encoder

    from .test_transcribe import long_clip
    from .text import error_rate

    audio, reference = long_clip(95.0)
    transcribe_batched(fast_tiny, [audio], batch=BatchOptions(8))  # the cross products built
    native, cross = native_encoder(fast_tiny.whisper.encoder), native_cross(fast_tiny.whisper.decoder)
    knobs(WHISPERFAST_CPU_AMX="0")
    calls = native.bf16_calls, cross.bf16_calls
    full = transcribe_batched(fast_tiny, [audio], batch=BatchOptions(8))[0]
    assert (native.bf16_calls, cross.bf16_calls) == calls
    knobs(WHISPERFAST_CPU_AMX="1")
    half = transcribe_batched(fast_tiny, [audio], batch=BatchOptions(8))[0]
    # the encoder's calls and the greedy batch's cross keys and values
    assert native.bf16_calls > calls[0] and cross.bf16_calls > calls[1]
    # issue 15's accuracy bound for batched mode: within one point
    wer_full, wer_half = error_rate(reference, full.text), error_rate(reference, half.text)
    assert wer_full < 0.15 and abs(wer_half - wer_full) <= 0.01, (wer_full, wer_half)
