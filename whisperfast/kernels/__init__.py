"""Fused kernels with composed fallbacks, and the model rewrite that uses them. Nothing here
knows Whisper: its attention, engines and CUDA step live in whisperfast.decode."""

from .ops import (composed_layer_norm, composed_rms_norm, composed_rope, composed_rope_inv_freq,
                  composed_scaled_dot_product_attention, fused_layer_norm, fused_rms_norm, fused_rope,
                  fused_rope_inv_freq, fused_scaled_dot_product_attention)
from .rewrite import KINDS, TABLE, Replacement, RewriteReport, Site, rewrite, swap_to

__all__ = ["KINDS", "TABLE", "Replacement", "RewriteReport", "Site", "rewrite", "swap_to",
           "fused_layer_norm", "composed_layer_norm", "fused_rms_norm", "composed_rms_norm",
           "fused_rope", "composed_rope", "fused_rope_inv_freq", "composed_rope_inv_freq",
           "fused_scaled_dot_product_attention", "composed_scaled_dot_product_attention"]
