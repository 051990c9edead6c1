"""The ops, each twice with one signature: `fused_*` calls `mx.fast`, `composed_*` is the
textbook formula in plain mlx ops and is the reference the fused one is tested against.

On MLX's CPU backend every `mx.fast` op itself falls back to composed ops, so the two
paths cost the same there; fusion pays only on a GPU (Metal, CUDA).
"""

from __future__ import annotations

import math
from typing import Optional, Union

import mlx.core as mx
import mlx.nn as nn

Mask = Union[None, str, mx.array]


# -- layer norm, rms norm: over the last axis ------------------------------------------------

def fused_layer_norm(x: mx.array, weight: Optional[mx.array], bias: Optional[mx.array], eps: float) -> mx.array:
    return mx.fast.layer_norm(x, weight, bias, eps)


def composed_layer_norm(x: mx.array, weight: Optional[mx.array], bias: Optional[mx.array], eps: float) -> mx.array:
    # Statistics in float32, as the fused kernel accumulates: fp16 variance of wide rows overflows.
    xf = x.astype(mx.float32)
    mean = xf.mean(axis=-1, keepdims=True)
    var = mx.square(xf - mean).mean(axis=-1, keepdims=True)
    y = ((xf - mean) * mx.rsqrt(var + eps)).astype(x.dtype)
    if weight is not None:
        y = y * weight
    return y + bias if bias is not None else y


def fused_rms_norm(x: mx.array, weight: Optional[mx.array], eps: float) -> mx.array:
    return mx.fast.rms_norm(x, weight, eps)


def composed_rms_norm(x: mx.array, weight: Optional[mx.array], eps: float) -> mx.array:
    xf = x.astype(mx.float32)
    y = (xf * mx.rsqrt(mx.square(xf).mean(axis=-1, keepdims=True) + eps)).astype(x.dtype)
    return y * weight if weight is not None else y


# -- GELU (erf form), elementwise --------------------------------------------------------------

def fused_gelu(x: mx.array) -> mx.array:
    """mlx.nn's GELU: `mx.compile`d, one kernel. On CUDA, MLX's JIT compiles that kernel with
    NVRTC the first time a machine meets it (its PTX cache in the temp folder keeps it)."""
    return nn.gelu(x)


def composed_gelu(x: mx.array) -> mx.array:
    """The same formula as separate ops, each a kernel MLX ships compiled. Every op rounds to
    x's dtype as the fused kernel's steps do, so the two agree bit for bit."""
    return x * (1 + mx.erf(x / math.sqrt(2))) / 2


# -- rotary position embedding: x is (B, *, T, D), the first `dims` features rotate -----------

def default_inv_freq(dims: int, base: float) -> mx.array:
    """theta_i = base^(-2i/dims), i < dims/2 (float32)."""
    return mx.power(base, -mx.arange(0, dims, 2, dtype=mx.float32) / dims)


def fused_rope(x: mx.array, dims: int, offset: int, base: float, scale: float, traditional: bool) -> mx.array:
    return mx.fast.rope(x, dims, traditional=traditional, base=base, scale=scale, offset=offset)


def composed_rope(x: mx.array, dims: int, offset: int, base: float, scale: float, traditional: bool) -> mx.array:
    return composed_rope_inv_freq(x, dims, offset, default_inv_freq(dims, base), scale, traditional)


def fused_rope_inv_freq(x: mx.array, dims: int, offset: int, inv_freq: mx.array, scale: float, traditional: bool) -> mx.array:
    # mx.fast.rope takes periods (1 / inverse frequency) as `freqs`.
    return mx.fast.rope(x, dims, traditional=traditional, base=None, scale=scale, offset=offset, freqs=1.0 / inv_freq)


def composed_rope_inv_freq(x: mx.array, dims: int, offset: int, inv_freq: mx.array, scale: float, traditional: bool) -> mx.array:
    T = x.shape[-2]
    positions = (mx.arange(T, dtype=mx.float32) + offset) * scale
    angles = positions[:, None] * inv_freq[None, :]  # (T, dims/2)
    cos, sin = mx.cos(angles), mx.sin(angles)
    xf = x[..., :dims].astype(mx.float32)
    if traditional:  # rotate consecutive pairs (x0, x1), (x2, x3), ...
        x1, x2 = xf[..., 0::2], xf[..., 1::2]
        rotated = mx.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1).reshape(xf.shape)
    else:  # rotate (x_i, x_{i + dims/2})
        x1, x2 = xf[..., : dims // 2], xf[..., dims // 2 :]
        rotated = mx.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)
    rotated = rotated.astype(x.dtype)
    return mx.concatenate([rotated, x[..., dims:]], axis=-1) if dims < x.shape[-1] else rotated


# -- attention: q (B, H, L, D); k, v (B, H_kv, S, D), H a multiple of H_kv --------------------

def fused_scaled_dot_product_attention(q: mx.array, k: mx.array, v: mx.array, scale: float, mask: Mask = None,
                                       sinks: Optional[mx.array] = None) -> mx.array:
    return mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=mask, sinks=sinks)


def composed_scaled_dot_product_attention(q: mx.array, k: mx.array, v: mx.array, scale: float, mask: Mask = None,
                                          sinks: Optional[mx.array] = None) -> mx.array:
    """softmax(q k^T * scale + mask) v, with softmax in float32 (as the fused kernel does).

    mask: None, "causal" (lower-right aligned: the last query sees every key, as when a KV
    cache holds S - L earlier positions), a boolean array (True = attend) or an additive one,
    broadcastable to (B, H, L, S). sinks: (H,) logits that join each row's softmax
    denominator but carry no value."""
    B, H, L, D = q.shape
    H_kv, S = k.shape[1], k.shape[2]
    g = H // H_kv  # query heads per KV head (grouped-query attention)
    q = q.reshape(B, H_kv, g, L, D)
    scores = ((q * scale) @ k[:, :, None].swapaxes(-1, -2)).astype(mx.float32)  # (B, H_kv, g, L, S)
    if isinstance(mask, str):
        if mask != "causal":
            raise ValueError(f"unknown mask {mask!r}")
        visible = (mx.arange(L)[:, None] + (S - L)) >= mx.arange(S)[None, :]
        scores = mx.where(visible, scores, -mx.inf)
    elif mask is not None:
        m = _split_heads(mask, H_kv, g)
        scores = mx.where(m, scores, -mx.inf) if m.dtype == mx.bool_ else scores + m.astype(mx.float32)
    if sinks is not None:
        sink = mx.broadcast_to(sinks.astype(mx.float32).reshape(1, H_kv, g, 1, 1), (B, H_kv, g, L, 1))
        weights = mx.softmax(mx.concatenate([scores, sink], axis=-1), axis=-1)[..., :S]
    else:
        weights = mx.softmax(scores, axis=-1)
    out = weights.astype(v.dtype) @ v[:, :, None]  # (B, H_kv, g, L, D)
    return out.reshape(B, H, L, D)


def rounded_scaled_dot_product_attention(q: mx.array, k: mx.array, v: mx.array, scale: float, mask: Mask = None,
                                          sinks: Optional[mx.array] = None) -> mx.array:
    """softmax(q k^T * scale + mask) v as a plain MLX graph writes it, heads not grouped: the
    scores and the softmax weights are arrays of q's dtype (the softmax computes in float32
    inside, `precise`). In fp16 and bf16 that rounds twice where the fused kernel (and
    `composed_...`, which keeps float32 scores) does not; a model written as such a graph is
    matched bit for bit only by this. mask: None, "causal" or additive; sinks: not taken."""
    if sinks is not None:
        raise ValueError("rounded attention takes no sinks")
    if k.shape[1] != q.shape[1]:
        k, v = (mx.repeat(a, q.shape[1] // k.shape[1], axis=1) for a in (k, v))
    return mx.softmax(rounded_scores(q, k, scale, mask), axis=-1, precise=True) @ v


def rounded_scores(q: mx.array, k: mx.array, scale: float, mask: Mask = None) -> mx.array:
    """The masked scores q k^T * scale of `rounded_scaled_dot_product_attention`, k with q's
    heads: (B, H, L, S) in q's dtype."""
    qk = (q * scale if scale != 1.0 else q) @ k.swapaxes(-1, -2)
    if isinstance(mask, str):
        if mask != "causal":
            raise ValueError(f"unknown mask {mask!r}")
        L, S = qk.shape[-2:]
        visible = (mx.arange(L)[:, None] + (S - L)) >= mx.arange(S)[None, :]
        qk = mx.where(visible, qk, mx.array(-mx.inf, qk.dtype))
    elif mask is not None:
        qk = mx.where(mask, qk, mx.array(-mx.inf, qk.dtype)) if mask.dtype == mx.bool_ else qk + mask.astype(qk.dtype)
    return qk


def _split_heads(mask: mx.array, H_kv: int, g: int) -> mx.array:
    """A mask broadcastable to (B, H, L, S) -> broadcastable to (B, H_kv, g, L, S)."""
    while mask.ndim < 4:
        mask = mask[None]
    if mask.shape[1] == 1:
        return mask[:, :, None]
    return mask.reshape(mask.shape[0], H_kv, g, *mask.shape[2:])


def attention_scale(head_dim: int) -> float:
    return 1.0 / math.sqrt(head_dim)


def on_cuda() -> bool:
    """Whether MLX computes on a CUDA GPU."""
    cuda = getattr(mx, "cuda", None)
    return mx.default_device() == mx.gpu and cuda is not None and cuda.is_available()
