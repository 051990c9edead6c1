"""`rewrite(model)`: walk any `mlx.nn.Module` tree and swap supported layers onto fused
(or composed) kernels. The model given is never mutated: every module on the way is
copied, while weight arrays (immutable in MLX) are shared, so both graphs hold the same
parameters. Each site is reported as rewritten, already in the target form, or skipped
with its reason."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Iterable, Mapping, Optional

import mlx.nn as nn
from mlx_whisper import whisper as mw

from . import layers

KINDS = ("layer_norm", "rms_norm", "rope", "attention")


@dataclass(frozen=True)
class Site:
    kind: str
    path: str
    layer: str  # class name before the rewrite
    action: str  # "rewritten" | "already_fused" | "already_composed" | "skipped"
    reason: str = ""


@dataclass(frozen=True)
class RewriteReport:
    mode: str
    sites: tuple[Site, ...]

    def counts(self) -> dict[str, dict[str, int]]:
        """Per kind, how many sites took each action; kinds with no site show zeros."""
        out = {k: {"sites": 0, "rewritten": 0, f"already_{self.mode}": 0, "skipped": 0} for k in KINDS}
        for s in self.sites:
            out[s.kind]["sites"] += 1
            out[s.kind][s.action] += 1
        return out

    def to_dict(self) -> dict:
        return {"mode": self.mode, "counts": self.counts(), "sites": [asdict(s) for s in self.sites]}

    def summary(self) -> str:
        lines = []
        for kind, c in self.counts().items():
            line = f"{kind}: {c['sites']} sites, {c['rewritten']} rewritten, {c[f'already_{self.mode}']} already {self.mode}, {c['skipped']} skipped"
            reasons = sorted({s.reason for s in self.sites if s.kind == kind and s.action == "skipped"})
            lines.append(line + "".join(f"\n  skipped: {r}" for r in reasons))
        return "\n".join(lines)


def _dropout(m: nn.Module) -> float:
    p = getattr(m, "dropout", 0.0)
    if isinstance(p, nn.Dropout):
        return 1.0 - p._p_1
    return float(p) if isinstance(p, (int, float)) else 0.0


def _classify(m: nn.Module) -> Optional[tuple[str, str]]:
    """(kind, skip reason or "") for a supported site; None for any other module."""
    if isinstance(m, (nn.GroupNorm, nn.InstanceNorm, nn.BatchNorm)):
        return "layer_norm", f"{type(m).__name__} normalizes over axes other than the last"
    if isinstance(m, (nn.LayerNorm, layers.LayerNorm)):
        return "layer_norm", ""
    if isinstance(m, (nn.RMSNorm, layers.RMSNorm)):
        return "rms_norm", ""
    if isinstance(m, (nn.RoPE, layers.RoPE)):
        return "rope", ""
    if isinstance(m, (nn.MultiHeadAttention, mw.MultiHeadAttention, layers.WhisperAttention)):
        if _dropout(m) > 0:
            return "attention", f"attention dropout {_dropout(m)} > 0 (the kernel has none; rewrites are for inference)"
        if type(m) not in (nn.MultiHeadAttention, mw.MultiHeadAttention, layers.MultiHeadAttention, layers.WhisperAttention):
            return "attention", f"{type(m).__name__} subclasses a supported layer and may change its math"
        return "attention", ""
    return None


def _current_mode(m: nn.Module) -> str:
    """mx.fast-backed stock layers count as fused; mlx-whisper's hand-written attention as composed."""
    if isinstance(m, mw.MultiHeadAttention):
        return "composed"
    return getattr(m, "mode", "fused")


def _swap(old: nn.Module, cls: type, mode: str) -> nn.Module:
    """An instance of `cls` holding copies of old's children and attributes (arrays shared)."""
    new = cls.__new__(cls)
    new.__dict__.update(old.__dict__)
    for k, v in old.items():
        dict.__setitem__(new, k, _copy(v))
    new.mode = mode
    return new


def _replacement(m: nn.Module, mode: str) -> nn.Module:
    if isinstance(m, (nn.LayerNorm, layers.LayerNorm)):
        return _swap(m, layers.LayerNorm, mode)
    if isinstance(m, (nn.RMSNorm, layers.RMSNorm)):
        return _swap(m, layers.RMSNorm, mode)
    if isinstance(m, layers.RoPE):
        return _swap(m, layers.RoPE, mode)
    if isinstance(m, nn.RoPE):
        return layers.RoPE(m.dims, m.traditional, m.base, m.scale, mode=mode)
    if isinstance(m, nn.MultiHeadAttention):
        return _swap(m, layers.MultiHeadAttention, mode)
    return _swap(m, layers.WhisperAttention, mode)


def _copy(value):
    return _walk(value, "", None)


def _walk(value, path: str, visit):
    if isinstance(value, nn.Module):
        if visit is not None:
            replaced = visit(value, path)
            if replaced is not None:
                return replaced
        new = copy.copy(value)  # a new dict of the same children and attributes
        for k, v in value.items():
            dict.__setitem__(new, k, _walk(v, f"{path}.{k}" if path else k, visit))
        return new
    if isinstance(value, (list, tuple)):
        return type(value)(_walk(v, f"{path}.{i}", visit) for i, v in enumerate(value))
    if isinstance(value, dict):
        return {k: _walk(v, f"{path}.{k}", visit) for k, v in value.items()}
    return value


def rewrite(model: nn.Module, only: Optional[Iterable[str]] = None, mode: str = "fused",
            keep: Mapping[str, str] = {}) -> tuple[nn.Module, RewriteReport]:
    """Return (a rewritten copy of `model`, the report).

    only: kinds to rewrite (default: all of KINDS); other sites are left and reported skipped.
    mode: "fused" (mx.fast kernels) or "composed" (every op written out).
    keep: {path: reason} for sites to leave exactly as they are."""
    layers._check(mode)
    selected = set(KINDS if only is None else only)
    if selected - set(KINDS):
        raise ValueError(f"unknown rewrite kinds {sorted(selected - set(KINDS))}; known: {KINDS}")
    sites: list[Site] = []

    def visit(m: nn.Module, path: str):
        found = _classify(m)
        if found is None:
            return None
        kind, reason = found
        if not reason and path in keep:
            reason = keep[path]
        if not reason and kind not in selected:
            reason = f"not selected (only={sorted(selected)})"
        if not reason and isinstance(m, layers.RoPE) and m.fallback and mode == "fused":
            reason = m.fallback
        if reason:
            sites.append(Site(kind, path, type(m).__name__, "skipped", reason))
            return _copy(m)
        if _current_mode(m) == mode:
            sites.append(Site(kind, path, type(m).__name__, f"already_{mode}"))
            return _copy(m)
        sites.append(Site(kind, path, type(m).__name__, "rewritten"))
        return _replacement(m, mode)

    return _walk(model, "", visit), RewriteReport(mode, tuple(sites))


def rewrite_whisper(model: mw.Whisper, word_timestamps: bool = False, mode: str = "fused",
                    only: Optional[Iterable[str]] = None, attention: Optional[str] = None) -> tuple[mw.Whisper, RewriteReport]:
    """`rewrite` for mlx-whisper models. With word timestamps, the cross-attention layers that
    hold alignment heads stay as built, since they must return their attention weights.
    attention: the SDPA op of every rewritten attention layer where it differs from `mode`'s
    ("rounded": as mlx-whisper's graph rounds)."""
    keep = {}
    if word_timestamps:
        for layer in sorted({int(l) for l, _ in model.alignment_heads.tolist()}):
            keep[f"decoder.blocks.{layer}.cross_attn"] = "returns attention weights (qk) for word timestamps (alignment heads)"
    new, report = rewrite(model, only=only, mode=mode, keep=keep)
    if attention is not None:
        ops_name = f"{attention}_scaled_dot_product_attention"
        if not hasattr(layers.ops, ops_name):
            raise ValueError(f"unknown attention op {attention!r}")
        for _, m in new.named_modules():
            if isinstance(m, layers.WhisperAttention):
                m.attention = attention  # the copy's own layer: `model` is untouched
    from ..decoding import FastWhisper, supports_static_cache

    if mode == "fused" and supports_static_cache(new):
        new.__class__ = FastWhisper  # the copy only: decode through preallocated KV caches
    return new, report
