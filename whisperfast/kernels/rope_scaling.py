"""RoPE frequency schedules, precomputed so `mx.fast.rope(freqs=...)` can run them.

`rope_schedule(dims, base, scaling, max_position)` returns the inverse frequencies, the
magnitude factor applied to the rotated features (longrope, yarn), and, when a schedule
cannot be precomputed (dynamic NTK without a fixed length), the reason it runs composed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    import numpy as np

STRATEGIES = ("default", "linear", "llama3", "dynamic", "longrope", "yarn")


@dataclass(frozen=True)
class RoPESchedule:
    inv_freq: np.ndarray  # (dims/2,) float32
    scale: float = 1.0  # position scale (linear)
    mscale: float = 1.0  # multiplies the rotated features
    fallback: Optional[str] = None  # why the fused kernel cannot run it, if it cannot


def rope_schedule(dims: int, base: float = 10000.0, scaling: Optional[dict] = None,
                  max_position: Optional[int] = None) -> RoPESchedule:
    """`scaling` follows Hugging Face's `rope_scaling` dicts: {"rope_type"|"type": ..., "factor": ...}."""
    import numpy as np  # here, not at import: `whisperfast info` imports this package without numpy

    scaling = dict(scaling or {})
    kind = scaling.pop("rope_type", scaling.pop("type", "default"))
    i = np.arange(0, dims, 2, dtype=np.float64)
    inv = base ** (-i / dims)
    factor = float(scaling.get("factor", 1.0))
    orig = scaling.get("original_max_position_embeddings")
    if kind == "default":
        return RoPESchedule(inv.astype(np.float32))
    if kind == "linear":
        return RoPESchedule(inv.astype(np.float32), scale=1.0 / factor)
    if kind == "llama3":
        low, high = float(scaling.get("low_freq_factor", 1.0)), float(scaling.get("high_freq_factor", 4.0))
        orig = float(orig or 8192)
        wavelen = 2 * math.pi / inv
        smooth = np.clip((orig / wavelen - low) / (high - low), 0.0, 1.0)
        scaled = np.where(wavelen > orig / low, inv / factor, inv)
        mid = (wavelen <= orig / low) & (wavelen >= orig / high)
        scaled = np.where(mid, (1 - smooth) * inv / factor + smooth * inv, scaled)
        return RoPESchedule(scaled.astype(np.float32))
    if kind == "dynamic":
        if orig is None:
            raise ValueError("dynamic RoPE scaling needs original_max_position_embeddings")
        if max_position is None:
            return RoPESchedule(inv.astype(np.float32), fallback="dynamic NTK: the base follows the live sequence "
                                "length, so it is computed per call; give max_position to precompute it")
        n = max(max_position, orig)
        dyn_base = base * ((factor * n / orig) - (factor - 1)) ** (dims / (dims - 2))
        return RoPESchedule((dyn_base ** (-i / dims)).astype(np.float32))
    if kind == "longrope":
        if orig is None:
            raise ValueError("longrope scaling needs original_max_position_embeddings")
        long = max_position is not None and max_position > orig
        ext = np.asarray(scaling["long_factor" if long else "short_factor"], dtype=np.float64)
        factor = float(scaling.get("factor", (max_position or orig) / orig))
        msc = math.sqrt(1 + math.log(factor) / math.log(orig)) if factor > 1 else 1.0
        return RoPESchedule((inv / ext).astype(np.float32), mscale=float(scaling.get("attention_factor", msc)))
    if kind == "yarn":
        orig = float(orig or 4096)
        beta_fast, beta_slow = float(scaling.get("beta_fast", 32)), float(scaling.get("beta_slow", 1))

        def dim_of(rotations):
            return dims * math.log(orig / (rotations * 2 * math.pi)) / (2 * math.log(base))

        lo, hi = max(math.floor(dim_of(beta_fast)), 0), min(math.ceil(dim_of(beta_slow)), dims - 1)
        ramp = np.clip((np.arange(dims // 2) - lo) / max(hi - lo, 1e-3), 0, 1)
        extrapolate = 1 - ramp
        blended = inv / factor * (1 - extrapolate) + inv * extrapolate
        msc = float(scaling.get("attention_factor", 0.1 * math.log(factor) + 1.0 if factor > 1 else 1.0))
        return RoPESchedule(blended.astype(np.float32), mscale=msc)
    raise ValueError(f"unknown RoPE scaling '{kind}' (known: {', '.join(STRATEGIES)})")
