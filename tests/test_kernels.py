"""Op level: every fused kernel against its composed reference, across shapes, dtypes,
masks, offsets, head counts and GQA. On the CPU both paths compose ops inside MLX; the
same suite runs on the GPU, where the fused kernels are real (see benchmarks/README.md).

Tolerances: float32 1e-5. float16 5e-3 and bfloat16 4e-2: two or three units in the last
place at |x| ~ 1 (fp16 ulp 9.8e-4, bf16 7.8e-3), since each path rounds intermediate
results (q*scale, q k^T, normalized rows) to the input dtype at different points."""

import mlx.core as mx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from whisperfast.kernels import ops
from whisperfast.kernels.rope_scaling import STRATEGIES, rope_schedule

TOL = {mx.float32: 1e-5, mx.float16: 5e-3, mx.bfloat16: 4e-2}
DTYPES = st.sampled_from([mx.float32, mx.float16, mx.bfloat16])
SETTINGS = settings(max_examples=30, deadline=None)


def close(a, b, dtype, scale=1.0):
    a, b = np.array(a.astype(mx.float32)), np.array(b.astype(mx.float32))
    tol = TOL[dtype] * scale
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, atol=tol, rtol=tol)


def rand(shape, dtype, seed, scale=1.0):
    return (mx.random.normal(shape, key=mx.random.key(seed)) * scale).astype(dtype)


@SETTINGS
@given(rows=st.integers(1, 6), dims=st.integers(1, 300), dtype=DTYPES, affine=st.sampled_from(["both", "weight", "none"]),
       eps=st.sampled_from([1e-5, 1e-6]), seed=st.integers(0, 2**16))
def test_layer_norm(rows, dims, dtype, affine, eps, seed):
    x = rand((2, rows, dims), dtype, seed, scale=3.0) + 1.0
    w = rand((dims,), dtype, seed + 1) if affine != "none" else None
    b = rand((dims,), dtype, seed + 2) if affine == "both" else None
    close(ops.fused_layer_norm(x, w, b, eps), ops.composed_layer_norm(x, w, b, eps), dtype, scale=2)


@SETTINGS
@given(rows=st.integers(1, 6), dims=st.integers(1, 300), dtype=DTYPES, weight=st.booleans(), seed=st.integers(0, 2**16))
def test_rms_norm(rows, dims, dtype, weight, seed):
    x = rand((rows, dims), dtype, seed, scale=2.0)
    w = rand((dims,), dtype, seed + 1) if weight else None
    close(ops.fused_rms_norm(x, w, 1e-5), ops.composed_rms_norm(x, w, 1e-5), dtype, scale=2)


def rope_tol(offset, T):
    # The angle pos * theta is rounded in float32 by both paths in a different order, so the
    # error grows with the position: a few float32 ulps of the largest angle.
    return 1 + (offset + T) * 2.0**-23 * 8 / 1e-5


@SETTINGS
@given(heads=st.integers(1, 3), T=st.integers(1, 12), half=st.sampled_from([4, 8, 16, 32]), partial=st.booleans(),
       offset=st.integers(0, 600), base=st.sampled_from([10000.0, 500000.0]), scale=st.sampled_from([1.0, 0.25]),
       traditional=st.booleans(), dtype=DTYPES, seed=st.integers(0, 2**16))
def test_rope(heads, T, half, partial, offset, base, scale, traditional, dtype, seed):
    D = 2 * half
    dims = D // 2 if partial else D
    x = rand((1, heads, T, D), dtype, seed)
    close(ops.fused_rope(x, dims, offset, base, scale, traditional),
          ops.composed_rope(x, dims, offset, base, scale, traditional), dtype, scale=rope_tol(offset, T))


SCALINGS = {
    "default": None,
    "linear": {"type": "linear", "factor": 4.0},
    "llama3": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 64},
    "dynamic": {"type": "dynamic", "factor": 2.0, "original_max_position_embeddings": 64},
    "longrope": {"rope_type": "longrope", "original_max_position_embeddings": 64, "factor": 4.0,
                 "short_factor": [1.0] * 16, "long_factor": list(np.linspace(1, 8, 16))},
    "yarn": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64},
}


def test_every_strategy_has_a_case():
    assert set(SCALINGS) == set(STRATEGIES)


@pytest.mark.parametrize("name", list(SCALINGS))
@pytest.mark.parametrize("dtype", [mx.float32, mx.float16])
def test_rope_with_precomputed_frequencies(name, dtype):
    s = rope_schedule(32, 10000.0, SCALINGS[name], max_position=256)
    assert s.fallback is None and s.inv_freq.shape == (16,) and np.all(s.inv_freq > 0)
    x = rand((2, 4, 9, 32), dtype, 7)
    inv = mx.array(s.inv_freq)
    for offset in (0, 200):
        close(ops.fused_rope_inv_freq(x, 32, offset, inv, s.scale, False),
              ops.composed_rope_inv_freq(x, 32, offset, inv, s.scale, False), dtype, scale=rope_tol(offset, 9))


def test_rope_schedules_follow_their_definitions():
    base = rope_schedule(32, 10000.0).inv_freq
    assert np.allclose(base, 10000.0 ** (-np.arange(0, 32, 2) / 32))
    assert rope_schedule(32, 10000.0, SCALINGS["linear"]).scale == 0.25
    llama3 = rope_schedule(32, 10000.0, SCALINGS["llama3"]).inv_freq
    assert llama3[0] == base[0] and np.isclose(llama3[-1], base[-1] / 8)  # high freqs kept, low ones divided
    assert rope_schedule(32, 10000.0, SCALINGS["dynamic"], max_position=32).inv_freq == pytest.approx(base)
    assert np.all(rope_schedule(32, 10000.0, SCALINGS["dynamic"], max_position=256).inv_freq <= base + 1e-12)
    assert rope_schedule(32, 10000.0, SCALINGS["longrope"], max_position=256).mscale > 1
    assert "live sequence length" in rope_schedule(32, 10000.0, SCALINGS["dynamic"]).fallback
    with pytest.raises(ValueError, match="unknown RoPE scaling"):
        rope_schedule(32, 10000.0, {"type": "mystery"})


@st.composite
def attention_case(draw):
    B, H_kv, g = draw(st.integers(1, 2)), draw(st.integers(1, 4)), draw(st.sampled_from([1, 2, 4]))
    L, cached = draw(st.integers(1, 12)), draw(st.integers(0, 20))
    D = draw(st.sampled_from([32, 64, 128]))
    mask = draw(st.sampled_from([None, "causal", "additive", "bool"]))
    return B, H_kv * g, H_kv, L, L + cached, D, mask, draw(st.booleans()), draw(DTYPES), draw(st.integers(0, 2**16))


@settings(max_examples=60, deadline=None)
@given(case=attention_case())
def test_scaled_dot_product_attention(case):
    B, H, H_kv, L, S, D, mask, sinks, dtype, seed = case
    q, k, v = rand((B, H, L, D), dtype, seed), rand((B, H_kv, S, D), dtype, seed + 1), rand((B, H_kv, S, D), dtype, seed + 2)
    if mask == "additive":
        mask = rand((B, 1, L, S), dtype, seed + 3)
    elif mask == "bool":
        mask = mx.random.uniform(shape=(1, H, L, S), key=mx.random.key(seed + 4)) > 0.3
        mask[..., -1] = True  # every row sees at least one key
    s = rand((H,), dtype, seed + 5) if sinks else None
    scale = D**-0.5
    close(ops.fused_scaled_dot_product_attention(q, k, v, scale, mask, s),
          ops.composed_scaled_dot_product_attention(q, k, v, scale, mask, s), dtype, scale=2)
    if s is None:  # the rounded graph takes no sinks; it rounds scores and weights to dtype
        close(ops.rounded_scaled_dot_product_attention(q, k, v, scale, mask),
              ops.composed_scaled_dot_product_attention(q, k, v, scale, mask), dtype, scale=4)


@pytest.mark.parametrize("dtype", [mx.float16, mx.bfloat16, mx.float32])
def test_composed_gelu_is_the_compiled_one_bit_for_bit(dtype):
    """The encoder may take either (kernels.ops.composed_gelu on CUDA, where the compiled one
    costs an NVRTC compile on a machine's first run): the same bits, tails and zero included."""
    x = mx.concatenate([rand((1500, 384), dtype, 7, scale=4.0).reshape(-1),
                        mx.array([0.0, -0.0, 1e-3, -1e-3, 8.0, -8.0, 30.0, -30.0], dtype)])
    fused, composed = ops.fused_gelu(x), ops.composed_gelu(x)
    assert fused.dtype == composed.dtype == dtype
    assert mx.array_equal(fused, composed)
    assert not mx.array_equal(composed, x)  # GELU ran (it moves negative and small inputs)


def test_rounded_attention_is_the_plain_graph():
    """Bit for bit what a hand-written fp16 attention computes (mlx-whisper's: scores q @ k^T
    in fp16, softmax(precise) to fp16 weights, then @ v): the fused kernel is not."""
    q, k, v = (rand((1, 6, 1, 64), mx.float16, 1), rand((1, 6, 40, 64), mx.float16, 2), rand((1, 6, 40, 64), mx.float16, 3))
    plain = mx.softmax(q @ k.transpose(0, 1, 3, 2), axis=-1, precise=True) @ v
    assert mx.array_equal(ops.rounded_scaled_dot_product_attention(q, k, v, 1.0, None), plain)
    with pytest.raises(ValueError, match="sinks"):
        ops.rounded_scaled_dot_product_attention(q, k, v, 1.0, None, mx.zeros((6,)))


@pytest.mark.parametrize("impl", [ops.fused_scaled_dot_product_attention, ops.composed_scaled_dot_product_attention,
                                  ops.rounded_scaled_dot_product_attention])
def test_causal_is_lower_right_aligned_with_a_kv_cache(impl):
    """2 new queries after 3 cached keys: query i sees keys 0 .. 3 + i, not 0 .. i."""
    q, k, v = rand((1, 2, 2, 64), mx.float32, 1), rand((1, 2, 5, 64), mx.float32, 2), rand((1, 2, 5, 64), mx.float32, 3)
    visible = np.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], bool)
    additive = mx.array(np.where(visible, 0.0, -np.inf).astype(np.float32))
    close(impl(q, k, v, 0.125, "causal"), impl(q, k, v, 0.125, additive), mx.float32)
    upper_left = mx.array(np.where(np.tril(np.ones((2, 5), bool)), 0.0, -np.inf).astype(np.float32))
    assert not np.allclose(np.array(impl(q, k, v, 0.125, "causal")), np.array(impl(q, k, v, 0.125, upper_left)))


def test_sinks_take_probability_mass():
    q, k, v = rand((1, 1, 1, 32), mx.float32, 1), rand((1, 1, 4, 32), mx.float32, 2), mx.ones((1, 1, 4, 32))
    out = ops.composed_scaled_dot_product_attention(q, k, v, 32**-0.5, None, mx.array([50.0]))
    assert float(mx.abs(out).max()) < 1e-6  # a dominant sink leaves almost no weight for the values
