"""The rewrite of an mlx-whisper model: kernels.rewrite with one more table row, mlx-whisper's
hand-written MultiHeadAttention onto `WhisperAttention` (one SDPA op, the same parameters)."""

from __future__ import annotations

from typing import Iterable, Optional

from mlx_whisper import whisper as mw

from ..kernels import ops
from ..kernels.rewrite import Replacement, RewriteReport, rewrite, swap_to
from .attention import WhisperAttention

TABLE = (
    Replacement(WhisperAttention, "attention", swap_to(WhisperAttention)),
    Replacement(mw.MultiHeadAttention, "attention", swap_to(WhisperAttention), native="composed"),
)


def rewrite_whisper(model: mw.Whisper, word_timestamps: bool = False, mode: str = "fused",
                    only: Optional[Iterable[str]] = None, attention: Optional[str] = None) -> tuple[mw.Whisper, RewriteReport]:
    """`rewrite` for mlx-whisper models: a new Whisper (its class unchanged) and the report.
    With word timestamps, the cross-attention layers that hold alignment heads stay as built,
    since they must return their attention weights. attention: the SDPA op of every rewritten
    attention layer where it differs from `mode`'s ("rounded": as mlx-whisper's graph rounds).
    Which engine decodes the result is chosen per decode (whisperfast.decode.engine)."""
    keep = {}
    if word_timestamps:
        for layer in sorted({int(l) for l, _ in model.alignment_heads.tolist()}):
            keep[f"decoder.blocks.{layer}.cross_attn"] = "returns attention weights (qk) for word timestamps (alignment heads)"
    if attention is not None and not hasattr(ops, f"{attention}_scaled_dot_product_attention"):
        raise ValueError(f"unknown attention op {attention!r}")
    new, report = rewrite(model, only=only, mode=mode, keep=keep, table=TABLE)
    if attention is not None:
        for _, m in new.named_modules():
            if isinstance(m, WhisperAttention):
                m.attention = attention  # the copy's own layer: `model` is untouched
    return new, report
