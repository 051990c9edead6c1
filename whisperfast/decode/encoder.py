"""The encoder's forward pass for the fast engine on a CPU of several cores: mlx-whisper's
AudioEncoder, op for op and bit for bit, with every GELU shared out by rows among one CPU
stream per core (kernels/layers.rows_across_cpu_streams). Its attention already spreads its
heads so (WhisperAttention); the GELUs are the other scalar-`exp` op of the profile
(benchmarks/cpu/profile.md), and mlx-whisper calls them inline, so this pass writes the
block out. The MLP's matmuls are shared out by output features too, as whisperfast keeps
OpenBLAS at one thread on small machines (kernels/layers.linear_across_cpu_streams).

Elsewhere (a GPU, one core, the stock engine) the encoder runs as the model built it.

Shapes: mel (n_audio, N_FRAMES, n_mels) -> features (n_audio, n_audio_ctx, n_audio_state)."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
from mlx_whisper.whisper import AudioEncoder, Whisper

from ..kernels.layers import cpu_streams, linear_across_cpu_streams, rows_across_cpu_streams
from .attention import supports_static_cache


def encode(model: Whisper, mel: mx.array) -> mx.array:
    """The model's encoder on `mel`, its GELUs across CPU streams where `uses_streams` says so."""
    return streamed_forward(model.encoder, mel) if uses_streams(model) else model.encoder(mel)


def uses_streams(model: Whisper) -> bool:
    """A fast (rewritten) model, on the CPU, with two cores or more."""
    return mx.default_device() == mx.cpu and supports_static_cache(model) and len(cpu_streams()) > 1


def streamed_forward(encoder: AudioEncoder, mel: mx.array) -> mx.array:
    """AudioEncoder.__call__ and its blocks' (mlx-whisper 0.4.3), the same ops in the same
    order, the GELUs by rows and the MLP's matmuls by columns across CPU streams."""
    def gelu(x):
        return rows_across_cpu_streams(nn.gelu, x)

    x = gelu(encoder.conv1(mel))
    x = gelu(encoder.conv2(x))
    x = x + encoder._positional_embedding
    for block in encoder.blocks:
        x = x + block.attn(block.attn_ln(x))[0]
        h = gelu(linear_across_cpu_streams(block.mlp1, block.mlp_ln(x)))
        x = x + linear_across_cpu_streams(block.mlp2, h)
    return encoder.ln_post(x)
