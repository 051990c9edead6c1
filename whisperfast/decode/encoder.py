"""The encoder's forward pass for the fast engine on a CPU of several cores: mlx-whisper's
AudioEncoder, op for op and bit for bit, with its two costliest ops shared out among CPU
streams (kernels/streams.py). Profiled on a 2-core x86 machine (benchmarks/cpu/profile.md),
softmax and GELU were 63-68 % of tiny.en's encoder, each on one core; attention's softmax and
its two matmuls now run by heads, and every GELU by rows, one piece a core. The matmuls of the
linear layers stay whole (a split one would sum in another order; see kernels/streams.py).

Elsewhere (a GPU, one core, the stock engine) the encoder runs as the model built it.

Shapes: mel (n_audio, N_FRAMES, n_mels) -> features (n_audio, n_audio_ctx, n_audio_state)."""

from __future__ import annotations

import os

import mlx.core as mx
import mlx.nn as nn
from mlx_whisper.whisper import AudioEncoder, Whisper

from ..kernels.streams import attention_by_heads, cpu_streams, split_elementwise
from .attention import supports_static_cache

MAX_STREAMS = 4  # attention splits by heads (tiny has 6): more streams would leave some idle


def encode(model: Whisper, mel: mx.array) -> mx.array:
    """The model's encoder on `mel`: split among CPU streams where `uses_streams` says so."""
    if not uses_streams(model):
        return model.encoder(mel)
    return streamed_forward(model.encoder, mel, _streams(model.encoder))


def uses_streams(model: Whisper) -> bool:
    """A fast (rewritten) model, on the CPU, with two cores or more."""
    return mx.default_device() == mx.cpu and supports_static_cache(model) and _cores() >= 2


def _cores() -> int:
    return min(os.cpu_count() or 1, MAX_STREAMS)


def _streams(encoder: AudioEncoder) -> list:
    # one per core, made once per encoder and kept on it (as flat.py keeps its step on the
    # decoder): each CPU stream starts a thread, which a stream per window would pile up
    if "_whisperfast_streams" not in encoder.__dict__:
        encoder.__dict__["_whisperfast_streams"] = cpu_streams(_cores())
    return encoder.__dict__["_whisperfast_streams"]


def streamed_forward(encoder: AudioEncoder, mel: mx.array, streams: list) -> mx.array:
    """AudioEncoder.__call__ and its blocks' (mlx-whisper 0.4.3), the same ops in the same
    order, with attention by heads and GELU by rows across `streams`."""
    gelu = lambda x: split_elementwise(nn.gelu, x, streams)  # noqa: E731
    x = gelu(encoder.conv1(mel))
    x = gelu(encoder.conv2(x))
    x = x + encoder._positional_embedding
    for block in encoder.blocks:
        x = x + _attention(block.attn, block.attn_ln(x), streams)
        x = x + block.mlp2(gelu(block.mlp1(block.mlp_ln(x))))
    return encoder.ln_post(x)


def _attention(attn, x: mx.array, streams: list) -> mx.array:
    """mlx-whisper's MultiHeadAttention on x alone (self-attention, no mask, no cache), its
    qkv_attention's scaling and layout: q and k each scaled by head_dim**-0.25 in the compute
    dtype, k transposed for the product."""
    q, k, v = attn.query(x), attn.key(x), attn.value(x)
    n_batch, n_ctx, n_state = q.shape
    scale = (n_state // attn.n_head) ** -0.25
    q = q.reshape(n_batch, n_ctx, attn.n_head, -1).transpose(0, 2, 1, 3) * scale
    k = k.reshape(n_batch, n_ctx, attn.n_head, -1).transpose(0, 2, 3, 1) * scale
    v = v.reshape(n_batch, n_ctx, attn.n_head, -1).transpose(0, 2, 1, 3)
    out = attention_by_heads(q, k, v, streams).transpose(0, 2, 1, 3)
    return attn.out(out.reshape(n_batch, n_ctx, n_state))
