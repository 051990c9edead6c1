"""`rewrite(model)`: walk any `mlx.nn.Module` tree and swap supported layers onto fused
(or composed) kernels, as a replacement table says: `TABLE` for mlx.nn's layers, plus rows a
caller adds for its model's own (whisperfast.decode.rewrite adds mlx-whisper's attention).
The model given is never mutated: every module on the way is copied, while weight arrays
(immutable in MLX) are shared, so both graphs hold the same parameters. Each site is
reported as rewritten, already in the target form, or skipped with its reason."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Mapping, Optional, Sequence

import mlx.nn as nn

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


@dataclass(frozen=True)
class Replacement:
    """A row of the rewrite table: modules of type `source` (subclasses too, except for
    attention, whose subclasses may change its math) are sites of `kind`, and `make(module,
    mode)` builds their rewritten copy. `native`: the mode `source` computes in as it is."""

    source: type
    kind: str
    make: Callable[[nn.Module, str], nn.Module]
    native: str = "fused"


def swap_to(cls: type) -> Callable[[nn.Module, str], nn.Module]:
    """`make` for a target holding the same parameters: an instance of `cls` with copies of
    the old module's children and attributes (arrays shared), in `mode`."""

    def make(old: nn.Module, mode: str) -> nn.Module:
        new = cls.__new__(cls)
        new.__dict__.update(old.__dict__)
        for k, v in old.items():
            dict.__setitem__(new, k, _copy(v))
        new.mode = mode
        return new

    return make


# mlx.nn's layers (which call mx.fast already) and this package's own
TABLE: tuple[Replacement, ...] = (
    Replacement(layers.LayerNorm, "layer_norm", swap_to(layers.LayerNorm)),
    Replacement(nn.LayerNorm, "layer_norm", swap_to(layers.LayerNorm)),
    Replacement(layers.RMSNorm, "rms_norm", swap_to(layers.RMSNorm)),
    Replacement(nn.RMSNorm, "rms_norm", swap_to(layers.RMSNorm)),
    Replacement(layers.RoPE, "rope", swap_to(layers.RoPE)),
    Replacement(nn.RoPE, "rope", lambda m, mode: layers.RoPE(m.dims, m.traditional, m.base, m.scale, mode=mode)),
    Replacement(layers.MultiHeadAttention, "attention", swap_to(layers.MultiHeadAttention)),
    Replacement(nn.MultiHeadAttention, "attention", swap_to(layers.MultiHeadAttention)),
)

# Norms the kernels do not cover: reported, never rewritten
_OTHER_AXES = (nn.GroupNorm, nn.InstanceNorm, nn.BatchNorm)


def _classify(m: nn.Module, table: Sequence[Replacement]) -> Optional[tuple[Replacement | None, str, str]]:
    """(its table row, kind, skip reason or "") for a supported site; None for any other module."""
    if isinstance(m, _OTHER_AXES):
        return None, "layer_norm", f"{type(m).__name__} normalizes over axes other than the last"
    row = next((r for r in table if type(m) is r.source), None) or next((r for r in table if isinstance(m, r.source)), None)
    if row is None:
        return None
    if row.kind == "attention":
        if _dropout(m) > 0:
            return row, "attention", f"attention dropout {_dropout(m)} > 0 (the kernel has none; rewrites are for inference)"
        if type(m) is not row.source:
            return row, "attention", f"{type(m).__name__} subclasses a supported layer and may change its math"
    return row, row.kind, ""


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


def map_modules(model: nn.Module, visit: Callable[[nn.Module, str], Optional[nn.Module]]) -> nn.Module:
    """A copy of `model` in which `visit(module, path)` may replace any module (None keeps a
    copy of it and walks on into its children); arrays are shared, `model` is untouched."""
    return _walk(model, "", visit)


def rewrite(model: nn.Module, only: Optional[Iterable[str]] = None, mode: str = "fused",
            keep: Mapping[str, str] = {}, table: Sequence[Replacement] = ()) -> tuple[nn.Module, RewriteReport]:
    """Return (a rewritten copy of `model`, the report).

    only: kinds to rewrite (default: all of KINDS); other sites are left and reported skipped.
    mode: "fused" (mx.fast kernels) or "composed" (every op written out).
    keep: {path: reason} for sites to leave exactly as they are.
    table: rows for a model's own layers, looked up before `TABLE`'s."""
    layers.check_mode(mode)
    selected = set(KINDS if only is None else only)
    if selected - set(KINDS):
        raise ValueError(f"unknown rewrite kinds {sorted(selected - set(KINDS))}; known: {KINDS}")
    sites: list[Site] = []

    def visit(m: nn.Module, path: str):
        found = _classify(m, (*table, *TABLE))
        if found is None:
            return None
        row, kind, reason = found
        if not reason and path in keep:
            reason = keep[path]
        if not reason and kind not in selected:
            reason = f"not selected (only={sorted(selected)})"
        if not reason and isinstance(m, layers.RoPE) and m.fallback and mode == "fused":
            reason = m.fallback
        if reason:
            sites.append(Site(kind, path, type(m).__name__, "skipped", reason))
            return _copy(m)
        if getattr(m, "mode", row.native) == mode:
            sites.append(Site(kind, path, type(m).__name__, f"already_{mode}"))
            return _copy(m)
        sites.append(Site(kind, path, type(m).__name__, "rewritten"))
        return row.make(m, mode)

    return _walk(model, "", visit), RewriteReport(mode, tuple(sites))
