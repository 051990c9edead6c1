"""Drop-in layers whose math runs through `ops`, fused or composed. Parameter names match
the layers they replace, so the same weights load into either graph."""

from __future__ import annotations

import os
import threading
from typing import Optional

import mlx.core as mx
import mlx.nn as nn

from . import ops
from .rope_scaling import rope_schedule

MODES = ("fused", "composed")


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    return mode


def mode_op(mode: str, name: str):
    """ops.fused_<name> or ops.composed_<name>: the two share one signature."""
    return getattr(ops, f"{mode}_{name}")


class LayerNorm(nn.Module):
    def __init__(self, dims: int, eps: float = 1e-5, affine: bool = True, bias: bool = True, mode: str = "fused"):
        super().__init__()
        if affine:
            self.weight = mx.ones((dims,))
            if bias:
                self.bias = mx.zeros((dims,))
        self.dims, self.eps, self.mode = dims, eps, check_mode(mode)

    def __call__(self, x):
        return mode_op(self.mode, "layer_norm")(x, self.get("weight"), self.get("bias"), self.eps)


class RMSNorm(nn.Module):
    def __init__(self, dims: int, eps: float = 1e-5, mode: str = "fused"):
        super().__init__()
        self.weight = mx.ones((dims,))
        self.eps, self.mode = eps, check_mode(mode)

    def __call__(self, x):
        return mode_op(self.mode, "rms_norm")(x, self["weight"], self.eps)


class RoPE(nn.Module):
    """nn.RoPE's interface plus Hugging Face style `scaling` (see rope_scaling.py)."""

    def __init__(self, dims: int, traditional: bool = False, base: float = 10000, scale: float = 1.0,
                 scaling: Optional[dict] = None, max_position: Optional[int] = None, mode: str = "fused"):
        super().__init__()
        self.dims, self.traditional, self.base, self.scale = dims, traditional, base, scale
        self._scaling, self._schedule = scaling, rope_schedule(dims, base, scaling, max_position)
        self._inv_freq = mx.array(self._schedule.inv_freq)
        # A schedule that cannot be precomputed runs composed, whatever the mode.
        self.mode = check_mode(mode) if self._schedule.fallback is None else "composed"

    @property
    def fallback(self) -> Optional[str]:
        return self._schedule.fallback

    def __call__(self, x, offset: int = 0):
        s = self._schedule
        if s.fallback is not None:  # dynamic NTK: the schedule follows the live length
            s = rope_schedule(self.dims, self.base, self._scaling, offset + x.shape[-2])
            inv_freq = mx.array(s.inv_freq)
        else:
            inv_freq = self._inv_freq
        if s.mscale != 1.0:  # longrope / yarn magnitude correction
            x = mx.concatenate([x[..., : self.dims] * s.mscale, x[..., self.dims :]], axis=-1)
        scale = self.scale * s.scale
        if self._scaling is None:  # nn.RoPE's own schedule, from the base
            return mode_op(self.mode, "rope")(x, self.dims, offset, self.base, scale, self.traditional)
        return mode_op(self.mode, "rope_inv_freq")(x, self.dims, offset, inv_freq, scale, self.traditional)


class MultiHeadAttention(nn.MultiHeadAttention):
    """nn.MultiHeadAttention (same parameters) with the attention op chosen by mode."""

    def __init__(self, *args, mode: str = "fused", **kwargs):
        super().__init__(*args, **kwargs)
        self.mode = check_mode(mode)

    def __call__(self, queries, keys, values, mask=None):
        q = mx.unflatten(self.query_proj(queries), -1, (self.num_heads, -1)).transpose(0, 2, 1, 3)
        k = mx.unflatten(self.key_proj(keys), -1, (self.num_heads, -1)).transpose(0, 2, 1, 3)
        v = mx.unflatten(self.value_proj(values), -1, (self.num_heads, -1)).transpose(0, 2, 1, 3)
        out = mode_op(self.mode, "scaled_dot_product_attention")(q, k, v, ops.attention_scale(q.shape[-1]), mask)
        return self.out_proj(out.transpose(0, 2, 1, 3).flatten(-2, -1))


_THIS_THREAD = threading.local()


def cpu_streams() -> tuple:
    """One CPU stream per core (at most 8), made once per thread: an MLX stream belongs to the
    thread that made it (another thread's use raises), and a model may run on several."""
    streams = getattr(_THIS_THREAD, "cpu_streams", None)
    if streams is None:
        streams = _THIS_THREAD.cpu_streams = tuple(mx.new_stream(mx.cpu) for _ in range(min(os.cpu_count() or 1, 8)))
    return streams


def heads_across_cpu_streams(fn, q, k, v, scale, mask):
    """On the CPU, mx.fast's attention falls back to composed ops whose softmax runs on one
    thread, while MLX gives each CPU stream a thread of its own: splitting the heads across
    streams puts every core to work (1.6x for tiny's encoder attention on 2 cores). Each
    head goes through the same op, so the result is the same, bit for bit. Masks here are
    None, "causal" or shared by all heads."""
    return _across_cpu_streams(q.shape[1], 1, lambda a, b: fn(q[:, a:b], k[:, a:b], v[:, a:b], scale, mask))


def rounded_attention_across_cpu_streams(softmax_, q, k, v, scale, mask):
    """ops.rounded_scaled_dot_product_attention with the softmax `softmax_(scores)`, which writes
    the weights over the scores (kernels/cpu_simd.py). The heads' scores are made across the
    CPU streams and evaluated together, each stream's softmaxed (on the softmax's own threads),
    then multiplied by v across the streams again: every head through the same ops as the
    graph's, the same bits. q, k, v (B, H, L or S, D), k and v with q's heads."""
    pieces = _pieces(q.shape[1])
    scores = []
    for s, a, b in pieces:
        with mx.stream(s):
            scores.append(ops.rounded_scores(q[:, a:b], k[:, a:b], scale, mask))
    mx.eval(scores)
    outs = []
    for (s, a, b), qk in zip(pieces, scores):
        with mx.stream(s):
            outs.append(softmax_(qk) @ v[:, a:b])
    return mx.concatenate(outs, axis=1) if len(outs) > 1 else outs[0]


def rows_across_cpu_streams(fn, x: mx.array, axis: int = -2) -> mx.array:
    """fn(x) for an elementwise fn (GELU), x cut along `axis` into one piece a CPU stream, so
    that every core runs its piece: the same op on every element, bit for bit. (Rows of a
    matmul are not split so: OpenBLAS sums a row in another order when the row count changes.)"""
    def piece(a: int, b: int) -> mx.array:
        index = [slice(None)] * x.ndim
        index[axis] = slice(a, b)
        return fn(x[tuple(index)])

    return _across_cpu_streams(x.shape[axis], axis, piece)


def matmul_t_across_cpu_streams(x: mx.array, w: mx.array) -> mx.array:
    """x @ w.T, w (N, K) cut by rows (the product's columns) into one piece a CPU stream: each
    piece is the same BLAS call on a slice of the same layout, and a column's sum does not
    depend on how many columns the call has at large N (the vocabulary projection's 51864;
    tests/test_streams.py checks the bits). A one-row product is all reading, which one BLAS
    thread does more slowly than two (benchmarks/cpu/profile.md §9)."""
    return _across_cpu_streams(w.shape[0], -1, lambda a, b: x @ w[a:b].T)


def linear_across_cpu_streams(m: nn.Linear, x: mx.array) -> mx.array:
    """m(x) for an nn.Linear, its output features cut into one piece a CPU stream: addmm on
    slices of the same bias and weight layout. At many rows (the encoder's 1500) a column's
    sum does not depend on the piece's width; at one row it can, so the decoder's small
    layers stay whole (tests/test_streams.py checks the encoder's bits)."""
    w = m.weight
    if "bias" not in m:
        return matmul_t_across_cpu_streams(x, w)
    b = m.bias
    return _across_cpu_streams(w.shape[0], -1, lambda i, j: mx.addmm(b[i:j], x, w[i:j].T))


def conv1d_across_cpu_streams(m: nn.Conv1d, x: mx.array) -> mx.array:
    """m(x) for an nn.Conv1d, its output channels cut into one piece a CPU stream: the same
    conv1d and bias add on slices of the same weight and bias. MLX's CPU convolution is a
    product over the unfolded input, and at many rows (the encoder's 3000 and 1500 frames) a
    channel's sum does not depend on the piece's width (tests/test_streams.py checks the bits)."""
    w, b = m.weight, m.bias if "bias" in m else None

    def piece(i: int, j: int) -> mx.array:
        y = mx.conv1d(x, w[i:j], m.stride, m.padding, m.dilation, m.groups)
        return y if b is None else y + b[i:j]

    return _across_cpu_streams(w.shape[0], -1, piece)


def _across_cpu_streams(n: int, axis: int, piece) -> mx.array:
    """piece(a, b) for [0, n) cut into one range a CPU stream, each run on its stream, the
    results concatenated along `axis`."""
    outs = []
    for s, a, b in _pieces(n):
        with mx.stream(s):
            outs.append(piece(a, b))
    return mx.concatenate(outs, axis=axis)


def piece_bounds(n: int) -> list:
    """The bounds [0, ..., n] of the pieces the CPU streams take of [0, n) (_across_cpu_streams)."""
    pieces = _pieces(n)
    return [a for _, a, _ in pieces] + [pieces[-1][2]]


def _pieces(n: int) -> list:
    """[0, n) cut into one range a CPU stream: (stream, start, end) for each."""
    streams = cpu_streams()[:n]
    bounds = [round(i * n / len(streams)) for i in range(len(streams) + 1)]
    return list(zip(streams, bounds, bounds[1:]))
