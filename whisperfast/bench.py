"""`whisperfast bench`: lanes (stock, fused, composed) on the whole pipeline, alternated run
by run so that ratios hold on a noisy machine, plus per-kernel micro-benchmarks.

Timing: MLX is lazy, so every timed region ends in `mx.eval` of what it produced (the
pipeline's stage timings do the same); nothing is timed while merely queued.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

import mlx.core as mx
import numpy as np

from . import runtime
from .audio import load_audio
from .batched import BatchOptions, transcribe_batched
from .errors import WhisperfastError
from .kernels import ops
from .models import default_dtype, default_group_size
from .peers import PEERS, peer
from .pipeline import LoadedModel, TranscribeOptions, load, rewritten, transcribe

LANES = ("stock", "fused", "composed") + PEERS


def stock_lane(lane: str) -> str:
    """The stock lane that decodes as `lane` does: "stock beam5" for "fused beam5", else "stock"."""
    return "stock" + lane[lane.index(" "):] if " " in lane else "stock"


@dataclass(frozen=True)
class Stat:
    median: float
    min: float
    max: float

    @staticmethod
    def of(xs: list[float]) -> "Stat":
        return Stat(statistics.median(xs), min(xs), max(xs))


@dataclass(frozen=True)
class Lane:
    total_ms: Stat
    mel_ms: Optional[Stat]
    encode_ms: Optional[Stat]
    decode_ms: Optional[Stat]
    decode_ms_per_token: Optional[Stat]
    tokens: int
    tokens_per_s: Optional[Stat]
    rtf: Stat
    peak_memory_mb: Optional[float]
    transcript: str
    matches_stock: Optional[bool]  # same tokens as stock (for a peer: the same text)
    windows: Optional[int] = None  # 30 s windows decoded, per run
    sampled_windows: Optional[int] = None  # of those, decoded again at temperature > 0
    audio_s_per_s: Optional[float] = None  # seconds of audio transcribed per second (median total)
    vad_ms: Optional[Stat] = None  # finding the speech (--vad, batched mode); None when no run did


@dataclass(frozen=True)
class KernelRow:
    op: str
    shape: str
    dtype: str
    composed_ms: float
    fused_ms: float
    speedup: float
    max_abs_diff: float


@dataclass(frozen=True)
class BenchReport:
    device: str
    mlx_version: str
    dtype: str
    blas: str
    model: str
    audio: list[str]
    audio_seconds: float
    runs: int
    warmup: int
    lanes: dict[str, Lane] = field(default_factory=dict)
    batch_size: int = 1  # > 1: whisperfast's lanes ran batched mode (VAD chunks, N per batch)
    speedup: dict[str, float] = field(default_factory=dict)  # lane vs stock, ratio of median totals
    kernels: list[KernelRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# -- whole pipeline ------------------------------------------------------------------------

def run_pipeline(model: LoadedModel, audio: list[np.ndarray], lanes: tuple[str, ...], runs: int, warmup: int,
                 progress: Callable[[str], None] = lambda _: None, seed: int = 0,
                 batch_size: int = 1, beam_size: Optional[int] = None) -> tuple[dict[str, Lane], list[str]]:
    """Alternate lanes A B C A B C ... after `warmup` rounds; summarize each lane. Every
    transcription is seeded with `seed`, so sampled fallback windows draw alike in each lane.
    batch_size > 1: whisperfast's lanes transcribe all the audio in batched mode, one call.
    beam_size: each whisperfast lane runs twice, greedy and with that many beams ("fused
    beam5"), and a beam lane's tokens are checked against stock's beam lane."""
    if not audio:
        raise WhisperfastError("no audio to benchmark")
    bad = [x for x in lanes if x not in LANES]
    if bad:
        raise WhisperfastError(f"unknown lane(s) {', '.join(bad)}; choose from {', '.join(LANES)}")
    models = {"stock": model, "fused": rewritten(model), "composed": rewritten(model, mode="composed")}
    beams = f" beam{beam_size}" if beam_size else ""
    if beams:  # a beam twin after each whisperfast lane
        lanes = tuple(x for lane in lanes for x in ((lane,) if lane in PEERS else (lane, lane + beams)))
        models.update({x + beams: models[x] for x in ("stock", "fused", "composed")})
    options = {x: TranscribeOptions(seed=seed, beam_size=beam_size if x.endswith(beams) and beams else None)
               for x in lanes}
    peers = {x: peer(x, model, batch_size, gpu=mx.default_device() == mx.gpu) for x in lanes if x in PEERS}
    samples: dict[str, list] = {x: [] for x in lanes}
    peaks = {x: 0 for x in lanes}
    for r in range(warmup + runs):
        for lane in lanes:
            progress(f"{'warm-up' if r < warmup else 'run'} {r + 1 - (warmup if r >= warmup else 0)} · {lane}")
            mx.reset_peak_memory()
            if lane in peers:
                t0 = time.perf_counter()
                texts = peers[lane].run(audio)
                result = (texts, None, time.perf_counter() - t0)
            else:
                ts = (transcribe_batched(models[lane], audio, options[lane], BatchOptions(batch_size))
                      if batch_size > 1 else [transcribe(models[lane], a, options[lane]) for a in audio])
                result = ([t.text for t in ts], ts, sum(t.timings.total for t in ts))
            peaks[lane] = max(peaks[lane], mx.get_peak_memory())
            if r >= warmup:
                samples[lane].append(result)
    seconds = sum(len(a) for a in audio) / 16000
    out = {}
    for lane, rs in samples.items():
        texts, ts, _ = rs[0]
        ref = stock_lane(lane)
        stock_tokens = [t.tokens for t in samples[ref][0][1]] if ref in lanes else None
        stock_text = samples[ref][0][0] if ref in lanes else None
        totals = [r[2] * 1000 for r in rs]
        stage = (lambda f: Stat.of([sum(f(t) for t in r[1]) * 1000 for r in rs])) if ts else (lambda f: None)
        n_tokens = sum(t.timings.tokens for t in ts) if ts else 0
        if stock_tokens is None:
            match = None
        elif ts:
            match = [t.tokens for t in ts] == stock_tokens
        else:
            match = [" ".join(x.split()) for x in texts] == [" ".join(x.split()) for x in stock_text]
        out[lane] = Lane(
            total_ms=Stat.of(totals), mel_ms=stage(lambda t: t.timings.mel), encode_ms=stage(lambda t: t.timings.encode),
            decode_ms=stage(lambda t: t.timings.decode),
            decode_ms_per_token=Stat.of([sum(t.timings.decode for t in r[1]) * 1000 / max(n_tokens, 1) for r in rs]) if ts else None,
            tokens=n_tokens,
            tokens_per_s=Stat.of([n_tokens / max(sum(t.timings.decode for t in r[1]), 1e-9) for r in rs]) if ts else None,
            rtf=Stat.of([x / 1000 / seconds for x in totals]), peak_memory_mb=peaks[lane] / 2**20 if ts else None,
            transcript=" ".join(texts), matches_stock=match,
            windows=sum(t.windows for t in ts) if ts else None, sampled_windows=sum(t.sampled_windows for t in ts) if ts else None,
            audio_s_per_s=seconds * 1000 / statistics.median(totals),
            vad_ms=stage(lambda t: t.timings.vad) if ts and any(t.timings.vad for r in rs for t in r[1]) else None)
    notes = [f"{p.lane}: {p.how}" for p in peers.values()]
    notes += [f"stock {'text' if x in peers else 'tokens'} differ{'s' if x in peers else ''} in lane {x}"
              for x, lane in out.items() if lane.matches_stock is False]
    notes += [f"{x}: {out[x].total_ms.median / out[x[: -len(beams)]].total_ms.median:.2f}x the greedy lane's total"
              for x in out if beams and x.endswith(beams)]
    return out, notes


# -- kernels --------------------------------------------------------------------------------

def kernel_cases(dtype: mx.Dtype) -> list[tuple[str, str, Callable, Callable, tuple]]:
    """(op, shape label, fused fn, composed fn, args): the reference notebook shapes,
    Whisper tiny (n_state 384, 6 heads) and base (512, 8 heads) as they run, and RoPE at
    Llama shapes (Whisper has none, but it is one of the three rewrites)."""
    r = lambda *s: mx.random.normal(s).astype(dtype)
    cases = [("rms_norm", "4x128x1024", ops.fused_rms_norm, ops.composed_rms_norm, (r(4, 128, 1024), r(1024), 1e-5)),
             ("layer_norm", "4x128x1024", ops.fused_layer_norm, ops.composed_layer_norm, (r(4, 128, 1024), r(1024), r(1024), 1e-5)),
             ("sdpa", "2x8x128x64", ops.fused_scaled_dot_product_attention, ops.composed_scaled_dot_product_attention,
              (r(2, 8, 128, 64), r(2, 8, 128, 64), r(2, 8, 128, 64), 0.125, None)),
             ("sdpa causal", "2x8x128x64", ops.fused_scaled_dot_product_attention, ops.composed_scaled_dot_product_attention,
              (r(2, 8, 128, 64), r(2, 8, 128, 64), r(2, 8, 128, 64), 0.125, "causal"))]
    for name, n_state, heads in (("tiny", 384, 6), ("base", 512, 8)):
        cases += [
            ("layer_norm", f"{name} 1x1500x{n_state}", ops.fused_layer_norm, ops.composed_layer_norm,
             (r(1, 1500, n_state), r(n_state), r(n_state), 1e-5)),
            ("layer_norm", f"{name} decode 1x1x{n_state}", ops.fused_layer_norm, ops.composed_layer_norm,
             (r(1, 1, n_state), r(n_state), r(n_state), 1e-5)),
            ("sdpa encoder self", f"{name} 1x{heads}x1500x64", ops.fused_scaled_dot_product_attention,
             ops.composed_scaled_dot_product_attention, (r(1, heads, 1500, 64), r(1, heads, 1500, 64), r(1, heads, 1500, 64), 0.125, None)),
            ("sdpa decoder self step", f"{name} q 1x{heads}x1x64, kv cache 96", ops.fused_scaled_dot_product_attention,
             ops.composed_scaled_dot_product_attention, (r(1, heads, 1, 64), r(1, heads, 96, 64), r(1, heads, 96, 64), 0.125, None)),
            ("sdpa cross step", f"{name} q 1x{heads}x1x64, kv 1500", ops.fused_scaled_dot_product_attention,
             ops.composed_scaled_dot_product_attention, (r(1, heads, 1, 64), r(1, heads, 1500, 64), r(1, heads, 1500, 64), 0.125, None)),
        ]
    cases += rope_cases(dtype)
    return cases


# Llama-style RoPE (Llama 3.1 8B: 32 heads of 128, base 500000, the llama3 schedule), over a
# 512-token prompt and for one decode step at position 511: the standard schedule
# (mx.fast.rope's own base) and a precomputed inverse-frequency table (freqs=...).
ROPE_BASE, ROPE_MAX_POSITION = 500000.0, 511
LLAMA3_SCALING = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                  "original_max_position_embeddings": 8192}


def rope_cases(dtype: mx.Dtype) -> list[tuple[str, str, Callable, Callable, tuple]]:
    """Inputs in [-1, 1], so a row's max |diff| is bounded by how the two paths round the
    angle position * frequency (at most a few ulps of the largest, ROPE_MAX_POSITION * 1)
    and by the dtype's rounding of the output, not by how large a random draw came out."""
    from .kernels.rope_scaling import rope_schedule

    u = lambda *s: mx.random.uniform(-1.0, 1.0, s).astype(dtype)
    H, T, D = 32, ROPE_MAX_POSITION + 1, 128
    inv = mx.array(rope_schedule(D, ROPE_BASE, LLAMA3_SCALING).inv_freq)
    prompt, step = u(1, H, T, D), u(1, H, 1, D)
    return [
        ("rope", f"llama 1x{H}x{T}x{D}", ops.fused_rope, ops.composed_rope, (prompt, D, 0, ROPE_BASE, 1.0, False)),
        ("rope decode step", f"llama 1x{H}x1x{D} @{T - 1}", ops.fused_rope, ops.composed_rope,
         (step, D, T - 1, ROPE_BASE, 1.0, False)),
        ("rope_inv_freq llama3", f"llama 1x{H}x{T}x{D}", ops.fused_rope_inv_freq, ops.composed_rope_inv_freq,
         (prompt, D, 0, inv, 1.0, False)),
        ("rope_inv_freq llama3 decode step", f"llama 1x{H}x1x{D} @{T - 1}", ops.fused_rope_inv_freq,
         ops.composed_rope_inv_freq, (step, D, T - 1, inv, 1.0, False)),
    ]


def _time_ms(fn: Callable, args: tuple, runs: int, budget_s: float = 0.25) -> float:
    t0 = time.perf_counter()
    mx.eval(fn(*args))  # warm-up: compile, allocate
    runs = max(3, min(runs, int(budget_s / max(time.perf_counter() - t0, 1e-6))))  # slow ops: fewer runs
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        mx.eval(fn(*args))
        ts.append((time.perf_counter() - t0) * 1000)
    return statistics.median(ts)


def run_kernels(dtype: mx.Dtype, runs: int = 20, progress: Callable[[str], None] = lambda _: None) -> list[KernelRow]:
    rows = []
    for op, shape, fused, composed, args in kernel_cases(dtype):
        progress(f"kernel {op} {shape}")
        mx.eval([a for a in args if isinstance(a, mx.array)])
        diff = float(mx.abs(fused(*args).astype(mx.float32) - composed(*args).astype(mx.float32)).max())
        # alternate the two, as the lanes do
        c, f = [], []
        for _ in range(2):
            c.append(_time_ms(composed, args, runs))
            f.append(_time_ms(fused, args, runs))
        c_ms, f_ms = statistics.median(c), statistics.median(f)
        rows.append(KernelRow(op, shape, runtime.dtype_name(dtype), c_ms, f_ms, c_ms / f_ms if f_ms > 0 else 0.0, diff))
    return rows


def run(audio_paths: list[Path], model_name: str, dtype: Optional[mx.Dtype] = None, lanes=("stock", "fused", "composed"),
        runs: int = 5, warmup: int = 1, pipeline: bool = True, kernels: bool = True,
        progress: Callable[[str], None] = lambda _: None, seed: int = 0, quantize: Optional[int] = None,
        group_size: Optional[int] = None, batch_size: int = 1, beam_size: Optional[int] = None) -> BenchReport:
    if runs < 1 or warmup < 0:
        raise WhisperfastError("--runs must be >= 1 and --warmup >= 0")
    if batch_size < 1:
        raise WhisperfastError(f"--batch-size must be at least 1, not {batch_size}")
    if beam_size is not None and beam_size < 1:
        raise WhisperfastError(f"--beam-size must be at least 1, not {beam_size}")
    dtype = dtype or default_dtype()
    group_size = group_size or default_group_size(quantize)
    audio = [load_audio(p) for p in audio_paths] if pipeline else []
    model = load(model_name, dtype=dtype, quantize=quantize, group_size=group_size) if pipeline else None
    if quantize is not None:  # every lane runs the quantized model; the name says so in the report
        model_name = f"{model_name} {quantize}-bit g{group_size}"
    dname = runtime.dtype_name(dtype)
    info = runtime.info()
    report = BenchReport(device=info["device"], mlx_version=info["mlx"], dtype=dname, blas=info["blas"]["blas"],
                         model=model_name, audio=[str(p) for p in audio_paths],
                         audio_seconds=sum(len(a) for a in audio) / 16000, runs=runs, warmup=warmup, batch_size=batch_size)
    notes = []
    if pipeline:
        lane_results, lane_notes = run_pipeline(model, audio, tuple(lanes), runs, warmup, progress, seed, batch_size,
                                                beam_size)
        notes += lane_notes
        speedup = {f"{x} vs {stock_lane(x)}": lane_results[stock_lane(x)].total_ms.median / v.total_ms.median
                   for x, v in lane_results.items() if x != stock_lane(x) and stock_lane(x) in lane_results}
        report = replace(report, lanes=lane_results, speedup=speedup)
    if kernels:
        report = replace(report, kernels=run_kernels(dtype, progress=progress))
    if info["device"] == "cpu":  # after the lanes: the first fused run builds cpu_simd
        notes.insert(0, "CPU: every mx.fast op falls back to composed ops, so kernel ratios near 1.0 are expected; "
                        "the fused lane's gain here is MLX's own softmax, GELU, logsumexp and wide products on x86 "
                        f"vectors (cpu_kernels: {runtime.cpu_kernels()}) and work shared across CPU "
                        "streams, not fusion")
    return replace(report, notes=notes)
