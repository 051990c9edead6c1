"""Work split across CPU streams, bit for bit what one stream computes.

MLX's CPU backend runs each op on one thread, and each CPU stream has a thread of its own; so
ops that are independent row by row can run on several cores at once if their rows are handed
to several streams. Only splits that leave every element's arithmetic unchanged are offered:
- an elementwise op (GELU) over slices of rows;
- attention's softmax(q k) v by heads: every head is its own pair of matmuls and its own rows
  of softmax, with the same shapes whichever stream runs it.
Rows of a matmul are not split: OpenBLAS sums a row of an (M, K) x (K, N) product in another
order when M changes (measured: 750 of 1500 rows of a 384 x 1536 product differ in the last
bits), so a split matmul would not be the same arithmetic.

On a GPU one stream already uses the whole device; these are for the CPU."""

from __future__ import annotations

from typing import Callable, Sequence

import mlx.core as mx


def cpu_streams(n: int) -> list:
    """n new CPU streams (each with a thread of its own in MLX's scheduler)."""
    return [mx.new_stream(mx.cpu) for _ in range(n)]


def _pieces(size: int, n: int) -> list:
    step = -(-size // n)
    return [slice(i, min(i + step, size)) for i in range(0, size, step)]


def split_elementwise(fn: Callable[[mx.array], mx.array], x: mx.array, streams: Sequence, axis: int = -2) -> mx.array:
    """fn(x) for an elementwise fn, x cut along `axis` into one piece a stream."""
    parts = []
    for s, piece in zip(streams, _pieces(x.shape[axis], len(streams))):
        index = [slice(None)] * x.ndim
        index[axis] = piece
        with mx.stream(s):
            parts.append(fn(x[tuple(index)]))
    return mx.concatenate(parts, axis=axis)


def attention_by_heads(q: mx.array, k_t: mx.array, v: mx.array, streams: Sequence) -> mx.array:
    """softmax(q @ k_t, precise) @ v, its heads (axis 1) shared out among the streams.
    q (B, H, L, D) and k_t (B, H, D, S) already scaled; v (B, H, S, D) -> (B, H, L, D)."""
    parts = []
    for s, heads in zip(streams, _pieces(q.shape[1], len(streams))):
        with mx.stream(s):
            parts.append(mx.softmax(q[:, heads] @ k_t[:, heads], axis=-1, precise=True) @ v[:, heads])
    return mx.concatenate(parts, axis=1)
