"""Whisper's attention for the decoding engines: mlx-whisper's MultiHeadAttention on one SDPA
op, and the preallocated self-attention cache the static-cache engines write in place
(mlx-lm's cache protocol: `update` returns the keys and values so far, and the mask)."""

from __future__ import annotations

from typing import Optional

import mlx.core as mx
import mlx.nn as nn
from mlx_whisper.whisper import Whisper

from ..kernels import cpu_simd, ops
from ..kernels.ops import on_cuda
from ..kernels.layers import (check_mode, cpu_streams, heads_across_cpu_streams, linear_across_cpu_streams, mode_op,
                              rounded_attention_across_cpu_streams)


class KVCache:
    """Self-attention keys and values, preallocated (B, n_head, n_ctx, head_dim) and written
    in place by slice, as mlx-lm's caches are: no concatenation per step, and the keys are
    slices of one fixed buffer, the layout MLX's fused decode kernels look for."""

    def __init__(self, n_ctx: int):
        self.n_ctx, self.offset = n_ctx, 0
        self.keys = self.values = None

    def update(self, k: mx.array, v: mx.array, causal: bool):
        """Append k, v (B, H, L, D); return the keys and values so far and the SDPA mask. From
        an empty cache (a whole prompt) those are k and v themselves, which stock's graph
        attends on: on the buffer's slices the BLAS (CPU, and cuBLAS) sums in another order
        from 9 positions on."""
        B, H, L, D = k.shape
        self.reserve(B, H, D, k.dtype)
        if self.offset + L > self.n_ctx:
            raise ValueError(f"KV cache full: {self.offset} + {L} > n_ctx {self.n_ctx}")
        self.keys[..., self.offset : self.offset + L, :] = k
        self.values[..., self.offset : self.offset + L, :] = v
        self.offset += L
        mask = "causal" if causal and L > 1 else None
        if self.offset == L:
            return k, v, mask
        return self.keys[..., : self.offset, :], self.values[..., : self.offset, :], mask

    def reserve(self, B: int, H: int, D: int, dtype: mx.Dtype):
        """The buffers, (B, H, n_ctx, D) zeros, where there are none yet: a step that writes
        them itself (the CPU's C step) may then start at position 0."""
        if self.keys is None:
            self.keys, self.values = mx.zeros((B, H, self.n_ctx, D), dtype), mx.zeros((B, H, self.n_ctx, D), dtype)

    def take(self, rows: mx.array):
        """Rows (B', source row indices) become the cache's rows: each takes its source's keys
        and values so far (beam search's rearrangement; a prompt run once per audio handed to
        its group). Lazy; only the written positions are gathered, into the buffer in place."""
        if self.keys is None or self.offset == 0:
            return
        t, keys, values = self.offset, self.keys, self.values
        if rows.shape[0] != keys.shape[0]:
            keys, values = mx.zeros((rows.shape[0], *keys.shape[1:]), keys.dtype), mx.zeros((rows.shape[0], *values.shape[1:]), values.dtype)
        keys[..., :t, :] = self.keys[rows, :, :t]
        values[..., :t, :] = self.values[rows, :, :t]
        self.keys, self.values = keys, values


class WhisperAttention(nn.Module):
    """mlx-whisper's MultiHeadAttention (same parameters, same call and return shape) on one
    SDPA op (on CUDA a decoder prompt's on mlx-whisper's own graph: `_attend`). It returns
    `qk = None`: no attention weights are materialized; word timestamps read theirs from a view
    with the alignment layers as mlx-whisper builds them (words.alignment_view).

    Caches: cross-attention keeps its K/V heads-first, computed once per window; a `KVCache`
    given for self-attention is written in place; a tuple cache keeps mlx-whisper's
    (B, S, n_state) layout, which its TextDecoder reads its position offset from."""

    # The SDPA op, where it differs from `mode`'s: "rounded" attends as mlx-whisper's graph
    # rounds (ops.rounded_scaled_dot_product_attention); None takes the op of `mode`.
    attention: Optional[str] = None

    def __init__(self, n_state: int, n_head: int, mode: str = "fused"):
        super().__init__()
        self.n_head, self.mode = n_head, check_mode(mode)
        self.query = nn.Linear(n_state, n_state)
        self.key = nn.Linear(n_state, n_state, bias=False)
        self.value = nn.Linear(n_state, n_state)
        self.out = nn.Linear(n_state, n_state)

    def __call__(self, x, xa=None, mask=None, kv_cache=None):
        q = self._linear(self.query, x)
        if xa is not None:
            if kv_cache is None:
                kv_cache = self.cross_kv(xa)
            return self.out(self._attend(q, *kv_cache, None, decoder=True)), kv_cache, None
        if isinstance(kv_cache, KVCache):
            k, v, attn_mask = kv_cache.update(self._heads(self.key(x)), self._heads(self.value(x)), mask is not None)
            return self.out(self._attend(q, k * self.qk_scale, v, attn_mask, decoder=True)), kv_cache, None
        k, v = self._linear(self.key, x), self._linear(self.value, x)
        if kv_cache is not None:
            k = mx.concatenate([kv_cache[0], k], axis=1)
            v = mx.concatenate([kv_cache[1], v], axis=1)
        wv, qk = self.qkv_attention(q, k, v, mask)
        return self._linear(self.out, wv), (k, v), qk

    def cross_kv(self, xa: mx.array):
        """The cross-attention's keys (scaled by qk_scale) and values, heads-first, from audio
        features xa (B, S, n_state): once a window, whoever asks (the layer at a prompt, or the
        fast engine right after the encoder, decode/engine.py)."""
        k, v = self._heads(self._linear(self.key, xa)) * self.qk_scale, self._heads(self._linear(self.value, xa))
        if mx.default_device() == mx.cpu:
            # heads-first views of (B, S, n_state): MLX's CPU matmul copies a strided operand
            # at every call, so every decode step copied all the cross K/V (2.8 against 1.1 ms
            # a layer for tiny.en); laid out once, the same bits
            k, v = mx.contiguous(k), mx.contiguous(v)
        return k, v

    @staticmethod
    def _linear(m: nn.Module, x: mx.array) -> mx.array:
        """m(x); on a CPU of several cores, for the audio's rows (the encoder's and the cross
        K/V's n_audio_ctx = 1500), its output features across the CPU streams: the same bits
        there (tests/test_streams.py), where at a decoder's few rows the sums can move."""
        if x.shape[-2] >= 1500 and isinstance(m, nn.Linear) and mx.default_device() == mx.cpu \
                and len(cpu_streams()) > 1:
            return linear_across_cpu_streams(m, x)
        return m(x)

    def _heads(self, x: mx.array) -> mx.array:
        """(B, S, n_state) -> (B, n_head, S, head_dim)"""
        B, S, n_state = x.shape
        return x.reshape(B, S, self.n_head, n_state // self.n_head).transpose(0, 2, 1, 3)

    @property
    def qk_scale(self) -> float:
        """mlx-whisper scales q and k each by head_dim**-0.25, in the compute dtype, and so
        does this layer: one head_dim**-0.5 inside the kernel rounds differently, and in fp16
        that moved a timestamp token on held-out audio."""
        return (self.query.weight.shape[0] // self.n_head) ** -0.25

    def _attend(self, q: mx.array, k: mx.array, v: mx.array, mask, decoder: bool = False) -> mx.array:
        """q (B, L, n_state); k, v heads-first, k already scaled by qk_scale; mask: None,
        "causal" or an additive array. `decoder`: the decoder's self- or cross-attention."""
        B, L, n_state = q.shape
        fn = self.sdpa
        if decoder and L > 1 and fn is ops.fused_scaled_dot_product_attention and on_cuda():
            # A prompt of the decoder (a window's previous text, L > 1) attends as mlx-whisper's
            # graph does: MLX's CUDA backend runs a fused SDPA of several queries on cuDNN,
            # which builds a graph for each new shape, once a process: 0.12-0.16 s for every
            # new prompt length of a long file (benchmarks/h200-session9/). The rounded graph
            # is matmuls and a softmax, stock's own arithmetic; the encoder's one shape keeps
            # the fused op, and single-token steps never come here.
            fn = ops.rounded_scaled_dot_product_attention
        args = (self._heads(q) * self.qk_scale, k, v, 1.0, mask)
        on_cpu = fn is ops.fused_scaled_dot_product_attention and L > 1 and mx.default_device() == mx.cpu
        # On the CPU mx.fast's SDPA is a fallback to the plain graph mlx-whisper writes, the
        # same bits, but slower than that graph itself (463 against 372 ms for tiny's encoder
        # layer on one stream, benchmarks/cpu/profile.md §7); so each stream runs the graph,
        # and its softmax runs on x86 vectors where it can (kernels/cpu_simd.py).
        simd = cpu_simd.chosen(q.dtype) if on_cpu and k.shape[1] == self.n_head else None
        if simd is not None:
            out = rounded_attention_across_cpu_streams(simd.softmax_, *args)
        elif on_cpu and len(cpu_streams()) > 1:
            out = heads_across_cpu_streams(ops.rounded_scaled_dot_product_attention, *args)
        else:
            out = fn(*args)
        return out.transpose(0, 2, 1, 3).reshape(B, L, n_state)

    @property
    def sdpa(self):
        """The attention op: q, k, v heads-first, scale, mask -> output heads-first."""
        return mode_op(self.attention or self.mode, "scaled_dot_product_attention")

    def qkv_attention(self, q, k, v, mask=None):
        """mlx-whisper's signature: q (B, L, n_state); k, v (B, S, n_state). Whisper's mask
        only ever says "causal", which the kernel builds itself (lower-right aligned, so
        cached keys stay visible); a single query needs none (MLX's CUDA decode kernel
        takes no array mask)."""
        causal = "causal" if mask is not None and q.shape[1] > 1 else None
        return self._attend(q, self._heads(k) * self.qk_scale, self._heads(v), causal, decoder=mask is not None), None


def supports_static_cache(model: Whisper) -> bool:
    """Whether every decoder self-attention layer is a WhisperAttention (the rewrite's), which
    the static-cache engines need."""
    return all(isinstance(b.attn, WhisperAttention) for b in model.decoder.blocks)
