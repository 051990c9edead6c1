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


def rewrite_whisper(model: mw.Whisper, mode: str = "fused", only: Optional[Iterable[str]] = None,
                    attention: Optional[str] = None) -> tuple[mw.Whisper, RewriteReport]:
    """`rewrite` for mlx-whisper models: a new Whisper (its class unchanged) and the report.
    attention: the SDPA op of every rewritten attention layer where it differs from `mode`'s
    ("rounded": as mlx-whisper's graph rounds). Which engine decodes the result is chosen per
    decode (whisperfast.decode.engine); word timestamps read their attention weights from a
    view of it (words.alignment_view)."""
    if attention is not None and not hasattr(ops, f"{attention}_scaled_dot_product_attention"):
        raise ValueError(f"unknown attention op {attention!r}")
    new, report = rewrite(model, only=only, mode=mode, table=TABLE)
    if attention is not None:
        for _, m in new.named_modules():
            if isinstance(m, WhisperAttention):
                m.attention = attention  # the copy's own layer: `model` is untouched
    return new, report
