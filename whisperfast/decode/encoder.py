"""The encoder's forward pass for the fast engine: mlx-whisper's AudioEncoder, op for op and
bit for bit, written out where the fast engine runs it otherwise than the model would.

- Its GELU is `fast_gelu()`'s: kernels.ops.composed_gelu on CUDA and the CPU, the same bits as
  mlx.nn's compiled GELU, which MLX compiles the first time a machine meets it (CUDA: NVRTC,
  several seconds; the CPU: g++, 0.37 s on this project's 2-core machine; benchmarks/h200-session10/)
  where the composed ops cost about the same (~0.1 ms a window on the H200, +1 % of a GELU's
  56 ms on the CPU, whose scalar erf is the time).
- On the CPU, float32, its GELUs and its attention's softmax run on x86 vectors
  (kernels/cpu_simd.py): MLX's own arithmetic, element by element, but eight at a time, where
  MLX's x86 backend takes one (those two ops were 63-68 % of tiny.en's window,
  benchmarks/cpu/profile.md §2). Without that library, on a CPU of several cores, every GELU
  is shared out by rows among one CPU stream per core (kernels/layers.rows_across_cpu_streams),
  as its attention shares its heads (WhisperAttention). The MLP's matmuls are shared out by
  output features too, as whisperfast keeps OpenBLAS at one thread on small machines
  (kernels/layers.linear_across_cpu_streams).

Elsewhere (Metal, the stock engine) the encoder runs as the model built it.

Shapes: mel (n_audio, N_FRAMES, n_mels) -> features (n_audio, n_audio_ctx, n_audio_state)."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
from mlx_whisper.whisper import AudioEncoder, Whisper

from ..kernels import cpu_simd
from ..kernels.layers import (conv1d_across_cpu_streams, cpu_streams, linear_across_cpu_streams,
                              rows_across_cpu_streams)
from ..kernels.ops import composed_gelu
from .attention import supports_static_cache
from .cpu_encoder import native_encoder


def encode(model: Whisper, mel: mx.array, bf16: bool = False) -> mx.array:
    """The model's encoder on `mel`: for a fast model on the CPU, `cpu_forward` (`bf16`: its
    blocks' products in bfloat16 where the CPU has AMX tiles, not stock's bits: batched mode's);
    elsewhere with `fast_gelu()` for a fast model."""
    if supports_static_cache(model) and mx.default_device() == mx.cpu \
            and (_simd(model.encoder, mel) is not None or len(cpu_streams()) > 1):
        return cpu_forward(model.encoder, mel, bf16)
    if supports_static_cache(model) and fast_gelu() is composed_gelu:
        return forward(model.encoder, mel, composed_gelu, _call)
    return model.encoder(mel)


def windows_per_call(model: Whisper) -> int:
    """How many windows a CPU encoder call takes best: two where the C blocks run on two
    threads (NativeEncoder runs them one a thread, ~5-7 % sooner than each on both), else one:
    MLX's ops take as long for N windows as for N calls of one, while holding N windows'
    activations (benchmarks/batched/README.md)."""
    if not (supports_static_cache(model) and mx.default_device() == mx.cpu
            and model.encoder.conv1.weight.dtype == mx.float32):  # NativeEncoder's dtype
        return 1
    native = native_encoder(model.encoder)
    return 2 if native is not None and native.kernels.threads > 1 else 1


def fast_gelu():
    """The fast engine's GELU (the module's docstring says why): composed but on Metal."""
    return nn.gelu if mx.default_device() == mx.gpu and mx.metal.is_available() else composed_gelu


def cpu_forward(encoder: AudioEncoder, mel: mx.array, bf16: bool = False) -> mx.array:
    """The residual blocks in one C call where it runs (decode/cpu_encoder.py); else the GELUs
    on x86 vectors (kernels/cpu_simd.py: each writes over the layer output it is given, which
    nothing else holds) or else by rows across the CPU streams; the layer norms
    on the library's threads (MLX's fallback arithmetic, row for row); the MLP's matmuls and
    the convolutions by output features across the streams where there are several. (The
    attention layers make the same choice for their softmax: WhisperAttention._attend.)"""
    simd, native = _simd(encoder, mel), native_encoder(encoder)
    bf16 = bf16 and native is not None and native.bf16_ready  # the convolutions' GELUs then 16 lanes too
    gelu = (simd.gelu16_ if bf16 else simd.gelu_) if simd is not None \
        else (lambda x: rows_across_cpu_streams(composed_gelu, x))
    norm = simd.layer_norm if simd is not None else _call
    across = len(cpu_streams()) > 1
    return forward(encoder, mel, gelu, linear_across_cpu_streams if across else _call,
                   norm, conv1d_across_cpu_streams if across else _call,
                   None if native is None else (lambda x: native(x, bf16)))


def _simd(encoder: AudioEncoder, mel: mx.array):
    """The CPU vector code for this encoder, or None: its layer norms take float32 weights too
    (a bfloat16 model's encoder computes in float32, from the float32 mel, with bfloat16 weights)."""
    return cpu_simd.chosen(mel.dtype) if encoder.conv1.weight.dtype == mx.float32 else None


def _call(layer: nn.Module, x: mx.array) -> mx.array:
    return layer(x)


def forward(encoder: AudioEncoder, mel: mx.array, gelu, linear, norm=_call, conv=_call, blocks=None) -> mx.array:
    """AudioEncoder.__call__ and its blocks' (mlx-whisper 0.4.3), the same ops in the same
    order, with gelu(x) for its GELUs, and linear(layer, x), norm(layer, x) and conv(layer, x)
    for its MLP's layers, its layer norms and its convolutions; blocks(x), where given, for
    all its residual blocks (the CPU's C: decode/cpu_encoder.py; None where it declines)."""
    x = gelu(conv(encoder.conv1, mel))
    x = gelu(conv(encoder.conv2, x))
    x = x + encoder._positional_embedding
    out = blocks(x) if blocks is not None else None
    if out is not None:
        return norm(encoder.ln_post, out)
    for block in encoder.blocks:
        x = x + block.attn(norm(block.attn_ln, x))[0]
        h = gelu(linear(block.mlp1, norm(block.mlp_ln, x)))
        x = x + linear(block.mlp2, h)
    return norm(encoder.ln_post, x)
