"""MLX's CPU float32 softmax, GELU and layer norm, bit for bit, on x86 vectors and threads (cpu_simd.c).

MLX 0.32's CPU backend computes elementwise math one element at a time on x86 (its vector
types are Arm's), each `exp` a chain of library calls: ~17 ns an element, 7x numpy's. On
tiny.en's encoder the softmax and the GELUs were 63-68 % of a window (benchmarks/cpu/profile.md
§2). cpu_simd.c computes the same IEEE operations in the same order, eight lanes at a time, so
its results are MLX's own, bit for bit; stock's lane keeps MLX's ops, and the equality tests
hold the two together.

The library (cpu_simd.c, with cpu_products.c's products in the BLAS's orders of sums,
cpu_decoder.c's decode step and cpu_rows.c's prompt and encoder blocks on cpu_team.c's two
threads: decode/cpu_step.py, decode/cpu_encoder.py) is built once per machine with the C compiler
(`cc`; MLX's own `mx.compile` runs g++ on the CPU the same way) and kept in the kernel cache,
keyed by the sources, the flags, the compiler and MLX's version. A new build is checked against MLX's own CPU ops before it is
kept: about a million float32 bit patterns spread over all of them through exp and GELU, and
softmaxes and logsumexps with -inf among the scores. A build that differs, or that the compiler
refuses, is never used, and a note says so (`<key>.rejected`), so that later processes do not
build it again; a compile cut short is tried again by the next process. Where the library
cannot be had (not x86-64 Linux, no AVX2 and FMA, no compiler, the check failed, a cache that
cannot be written) `load` says why and MLX's ops run.

softmax_, gelu_ and exp_ write over their input: they take the caller's own intermediate (the
scores of an attention, a layer's output before its GELU), evaluated and contiguous, and
return it, so that nothing is copied or allocated."""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import mlx.core as mx

if TYPE_CHECKING:
    from .dequantize import Quantized

# cpu_products.c: its products in the BLAS's orders; cpu_decoder.c: a decoder step built on both,
# cpu_rows.c: many rows (a decoder prompt, the encoder's blocks), cpu_batch.c: a step of a batch's rows, all
# on cpu_team.c's threads; cpu_amx.c: a cblas_sgemm in bfloat16 on AMX tiles; one library
SOURCES = tuple(Path(__file__).with_name(name) for name in ("cpu_simd.c", "cpu_products.c", "cpu_team.c", "cpu_decoder.c",
                                                             "cpu_rows.c", "cpu_batch.c", "cpu_amx.c", "cpu_decoder.h"))
FLAGS = ("-O2", "-std=gnu11", "-fPIC", "-shared", "-pthread", "-ffp-contract=off", "-fno-fast-math")
MAX_THREADS = 8
MAX_CHAIN_ROWS = 8  # cpu_simd.c's MAX_ROWS
MAX_RANGES = 8  # cpu_decoder.h's: banned ranges a row for pick_rows
PANELS_F32, PANELS_F16, PANELS_Q8 = 0, 1, 2  # cpu_decoder.h's: the forms of a packed copy

_P, _L = ctypes.c_void_p, ctypes.c_long


@dataclass(frozen=True)
class Loaded:
    """What `load` found: the kernels, or None and why."""

    kernels: Optional["CpuSimd"]
    how: str  # "cached", "built", or why there are none

    def describe(self) -> str:
        return f"avx2 ({self.how})" if self.kernels is not None else f"unavailable: {self.how}"


class CpuSimd:
    """The library's ops on MLX arrays, float32. softmax_, gelu_ and exp_ write over x (the
    caller's own intermediate, C-contiguous, which nothing else holds) and return it;
    logsumexp and chain_matmul return new arrays. Rows or elements are shared out over
    `threads` threads of the library's own."""

    def __init__(self, lib: ctypes.CDLL, threads: int):
        self._lib, self.threads = lib, max(1, min(threads, MAX_THREADS))
        for name, args in (("wf_softmax", (_P, _P, _L, _L, ctypes.c_int)), ("wf_gelu", (_P, _P, _L, ctypes.c_int)),
                           ("wf_gelu_fast", (_P, _P, _L, ctypes.c_int)),
                           ("wf_chain_matmul", (_P, _P, ctypes.c_int, _P, _P, _L, _L, _L, ctypes.c_int)),
                           ("wf_pack", (_P, _P, _L, _L, ctypes.c_int, ctypes.c_int)),
                           ("wf_pack_q8", (_P, _P, _P, _P, _P, _L, _L, _L, ctypes.c_int)),
                           ("wf_q8_packed_bytes", (_L, _L, _L)),
                           ("wf_tn16_q8", (_P, _P, _P, _P, _P, _L, _L, _L)),
                           ("wf_tn16_q8_bytes", (_L, _L, _L)),
                           ("wf_panel_size", ()),
                           ("wf_decoder_scratch", (_P,)),
                           ("wf_tn16", (_P, ctypes.c_int, _P, _P, _P, _L, _L)),
                           ("wf_pick", (_P, _P, _P, _L, _P, ctypes.c_int, _P, ctypes.c_int, _L, _P)),
                           ("wf_pick_rows", (_P, _L, _L, _P, ctypes.c_int)),
                           ("wf_pack_heads", (_P, _P, _L, _L, _L, ctypes.c_int)),
                           ("wf_half", (_P, _P, _P, _L, ctypes.c_int)),
                           ("wf_cross_kv", (_P, _P, _P, ctypes.c_float, _P, _L, _L, _P, _L, _P, _P, _P, _P)),
                           ("wf_decoder_step", (_P, _P, _P, _P, ctypes.c_float, ctypes.c_float, _L, _L, _P, _L, _P, _P)),
                           ("wf_prompt_scratch", (_P, _L)),
                           ("wf_encoder_scratch", (_P, _L, _L)),
                           ("wf_encoder_blocks", (_P, _P, _P, ctypes.c_float, ctypes.c_float, _P, _L, _L, _L, _P)),
                           ("wf_decoder_prompt", (_P, _P, _P, _P, ctypes.c_float, ctypes.c_float, _P, _L, _P, _L, _L, _P,
                                                  _P)),
                           ("wf_rows_scratch", (_P, _L)),
                           ("wf_decoder_rows", (_P, _P, _P, _P, ctypes.c_float, ctypes.c_float, _P, _P, _L, _L, _L, _P,
                                                _L, _L, _P, ctypes.c_int, _P, _P, _P)),
                           ("wf_logsumexp", (_P, _P, _L, _L, ctypes.c_int)),
                           ("wf_layer_norm", (_P, _P, _P, ctypes.c_float, _P, _L, _L, ctypes.c_int)),
                           ("wf_exp", (_P, _P, _L, ctypes.c_int)),
                           ("wf_amx_ready", ()),
                           ("wf_check", (ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint64))):
            getattr(lib, name).argtypes = args
        lib.wf_check.restype = lib.wf_pack.restype = lib.wf_panel_size.restype = ctypes.c_long
        for name in ("wf_decoder_scratch", "wf_pick", "wf_half", "wf_prompt_scratch", "wf_encoder_scratch", "wf_rows_scratch",
                     "wf_pack_q8", "wf_q8_packed_bytes", "wf_tn16_q8", "wf_tn16_q8_bytes"):
            getattr(lib, name).restype = ctypes.c_long

    @property
    def lib(self) -> ctypes.CDLL:
        """The library itself, for kernels/cpu_decoder.py's step."""
        return self._lib

    def bf16_sgemm(self) -> Optional[int]:
        """The address of cpu_amx.c's wf_sgemm_bf16 (cblas_sgemm's interface, its operands rounded
        to bfloat16, on AMX tiles) where this CPU and the OS let the process use the tiles, else None."""
        return ctypes.cast(self._lib.wf_sgemm_bf16, ctypes.c_void_p).value if self._lib.wf_amx_ready() else None

    def threaded(self, threads: int) -> "CpuSimd":
        """The same library on another number of threads."""
        return CpuSimd(self._lib, threads)

    def softmax_(self, x: mx.array) -> mx.array:
        """mx.softmax(x, axis=-1) (precise or not: the same for float32), over x."""
        a = _buffer(x)
        self._lib.wf_softmax(a.ctypes.data, a.ctypes.data, a.size // a.shape[-1], a.shape[-1], self.threads)
        return x

    def gelu_(self, x: mx.array) -> mx.array:
        """mlx.nn.gelu(x), over x."""
        a = _buffer(x)
        self._lib.wf_gelu(a.ctypes.data, a.ctypes.data, a.size, self.threads)
        return x

    def gelu16_(self, x: mx.array) -> mx.array:
        """GELU over x in 16 lanes (cpu_amx.c's wf_gelu16: not mlx.nn.gelu's bits; within a few
        float32 roundings of the exact GELU, tests/test_cpu_amx.py), for bfloat16 products; only
        where bf16_sgemm() is not None."""
        a = _buffer(x)
        self._lib.wf_gelu_fast(a.ctypes.data, a.ctypes.data, a.size, self.threads)
        return x

    def logsumexp(self, x: mx.array) -> mx.array:
        """mx.logsumexp(x, axis=-1, keepdims=True), a new array."""
        import numpy as np

        a = np.ascontiguousarray(_host(x))
        out = np.empty(a.shape[:-1] + (1,), np.float32)
        self._lib.wf_logsumexp(a.ctypes.data, out.ctypes.data, a.size // a.shape[-1], a.shape[-1], self.threads)
        return mx.array(out)

    def layer_norm(self, norm, x: mx.array) -> mx.array:
        """norm(x) for an mlx.nn.LayerNorm with weight and bias (mx.fast.layer_norm, whose CPU
        fallback this is, row for row), a new array; rows shared out over the threads."""
        import numpy as np

        a = np.ascontiguousarray(_host(x))
        w, b = (np.ascontiguousarray(_host(p)) for p in (norm.weight, norm.bias))
        out = np.empty_like(a)
        self._lib.wf_layer_norm(a.ctypes.data, w.ctypes.data, b.ctypes.data, norm.eps, out.ctypes.data,
                                a.size // a.shape[-1], a.shape[-1], self.threads)
        return mx.array(out)

    def exp_(self, x: mx.array) -> mx.array:
        """mx.exp(x), over x."""
        a = _buffer(x)
        self._lib.wf_exp(a.ctypes.data, a.ctypes.data, a.size, self.threads)
        return x

    def pack(self, w: mx.array, half: bool = True, source: Optional["Quantized"] = None) -> "Panels":
        """w (n, k) float32 laid out once for chain_matmul: panels of 64 outputs, in float16
        where float16 holds every value of w exactly (then the same values in half the bytes)
        and `half` allows, else in float32. Where w is an affine 8-bit layer's dequantized
        weight and `source` that layer's values, scales and biases, its 8-bit values instead
        (a quarter of the bytes, widened in registers), where they give every value of w."""
        import numpy as np

        wa = _host(w)
        if wa.ndim != 2:
            raise ValueError("pack takes an (n, k) weight")
        n, k = wa.shape
        wa = np.ascontiguousarray(wa)
        q8 = self._pack_q8(wa, source) if source is not None else None
        if q8 is not None:
            return Panels(w, q8, PANELS_Q8)
        size = -(-n // self._lib.wf_panel_size()) * self._lib.wf_panel_size() * k
        data = np.empty(size, np.float16)
        if half and self._lib.wf_pack(wa.ctypes.data, data.ctypes.data, n, k, 1, self.threads) == 0:
            return Panels(w, data, PANELS_F16)
        data = np.empty(size, np.float32)
        self._lib.wf_pack(wa.ctypes.data, data.ctypes.data, n, k, 0, self.threads)
        return Panels(w, data, PANELS_F32)

    def _pack_q8(self, wa, source: "Quantized"):
        """wa's panels from its 8-bit source (cpu_products.c: PANELS_Q8), or None where the
        source is not such a layer of this weight or its widened values are not wa's."""
        import numpy as np

        n, k = wa.shape
        q8, size = self._q8_parts(wa, source), self._lib.wf_q8_packed_bytes(n, k, source.group_size)
        if q8 is None or size < 0:
            return None
        data = np.empty(size, np.uint8)
        q, scales, biases = q8
        if self._lib.wf_pack_q8(q.ctypes.data, scales.ctypes.data, biases.ctypes.data, wa.ctypes.data, data.ctypes.data,
                                n, k, source.group_size, self.threads) != 0:
            return None
        return data

    @staticmethod
    def _q8_parts(wa, source: "Quantized"):
        """(values (n, k) uint8, scales, biases (n, k / group) float32), numpy and contiguous,
        where `source` is an affine 8-bit layer of wa's shape, else None."""
        import numpy as np

        n, k = wa.shape
        if source.bits != 8 or source.mode != "affine" or source.biases is None or k % source.group_size:
            return None
        q = np.asarray(source.weight)
        scales, biases = (np.ascontiguousarray(np.asarray(a.astype(mx.float32))) for a in (source.scales, source.biases))
        if q.dtype != np.uint32 or q.shape != (n, k // 4) or scales.shape != (n, k // source.group_size) or \
                biases.shape != scales.shape:
            return None
        return np.ascontiguousarray(q).view(np.uint8), scales, biases  # four 8-bit values a word, the first lowest

    def pack_heads(self, k: mx.array):
        """k (B, H, n, d) float32: each row's each head's (n, d) laid out as `pack` lays out a
        weight, in float32, one after the other (the cross-attention's keys, once a window)."""
        import numpy as np

        ka = np.ascontiguousarray(_host(k))
        n, d = ka.shape[-2:]
        heads, panel = ka.size // (n * d), self._lib.wf_panel_size()
        out = np.empty(heads * -(-n // panel) * panel * d, np.float32)
        self._lib.wf_pack_heads(ka.ctypes.data, out.ctypes.data, heads, n, d, min(self.threads, 2))
        return out

    def chain_matmul(self, x: mx.array, w, bias: Optional[mx.array] = None) -> mx.array:
        """x @ w.T (+ bias), a new array: x (..., k) of at most MAX_ROWS rows, w (n, k) float32
        or its `Panels` (packed here when not). Each output is one fma chain in k order from 0,
        then + bias: the order of OpenBLAS's large-matrix kernels with k in one block, which
        `chain_matches` checks for a weight before it stands in for MLX's matmul (the library
        does not know the BLAS)."""
        import numpy as np

        panels = w if isinstance(w, Panels) else self.pack(w)
        n, k = panels.w.shape
        a = np.ascontiguousarray(_host(x))
        ba = None if bias is None else np.ascontiguousarray(_host(bias))
        rows = a.size // k
        if rows > MAX_CHAIN_ROWS or a.shape[-1] != k or (ba is not None and ba.shape != (n,)):
            raise ValueError("chain_matmul takes an (n, k) weight, an (n,) bias and at most 8 rows")
        out = np.empty((rows, n), np.float32)
        self._lib.wf_chain_matmul(a.ctypes.data, panels.data.ctypes.data, panels.form,
                                  None if ba is None else ba.ctypes.data, out.ctypes.data, rows, n, k, self.threads)
        return mx.array(out).reshape(*x.shape[:-1], n)

    def tn16_layout(self, w: mx.array, half: bool, source: Optional["Quantized"] = None):
        """w (n, k) float32 as tn16 reads it: rows padded with zeros to a multiple of 16, in
        float16 (`half`; None where float16 does not hold every value exactly) or float32 (w's
        own memory where no padding is needed). With `source`, the affine 8-bit layer w was
        dequantized from: its values, scales and biases as tn16_rows_q8 reads them (a flat
        uint8 array), or None where they do not give every value of w."""
        import numpy as np

        wa = _host(w)
        if source is not None:
            return self._tn16_q8(np.ascontiguousarray(wa), source)
        kp = -(-wa.shape[1] // 16) * 16
        if half:
            h = wa.astype(np.float16)
            if not np.array_equal(h.astype(np.float32).view(np.uint32), wa.view(np.uint32)):
                return None
        elif kp == wa.shape[1] and wa.flags.c_contiguous:
            return wa
        out = np.zeros((wa.shape[0], kp), np.float16 if half else np.float32)
        out[:, : wa.shape[1]] = h if half else wa
        return out

    def _tn16_q8(self, wa, source: "Quantized"):
        import numpy as np

        q8 = self._q8_parts(wa, source)
        if q8 is None:
            return None
        (n, k), size = wa.shape, self._lib.wf_tn16_q8_bytes(*wa.shape, source.group_size)
        if size < 0:
            return None
        out = np.empty(size, np.uint8)
        q, scales, biases = q8
        if self._lib.wf_tn16_q8(q.ctypes.data, scales.ctypes.data, biases.ctypes.data, wa.ctypes.data, out.ctypes.data,
                                n, k, source.group_size) != 0:
            return None
        return out

    def tn16(self, rows, x: mx.array, bias: Optional[mx.array] = None) -> mx.array:
        """x (..., k) one row @ w.T (+ bias), w as `tn16_layout` laid it out: the sums of
        OpenBLAS's AVX-512 small-matrix TN kernel (cpu_products.c: tn16_rows)."""
        import numpy as np

        k = x.shape[-1]
        if rows.dtype == np.uint8:  # 8-bit rows (tn16_layout's with a source): n in their header, k whole
            form, (n, kp) = PANELS_Q8, (int(rows[8:16].view(np.int64)[0]), k)
        else:
            form, (n, kp) = int(rows.dtype == np.float16), rows.shape
        a = np.zeros(kp, np.float32)
        a[:k] = _host(x).reshape(-1)
        ba = None if bias is None else np.ascontiguousarray(_host(bias))
        out = np.empty(n, np.float32)
        self._lib.wf_tn16(rows.ctypes.data, form, a.ctypes.data, None if ba is None else ba.ctypes.data, out.ctypes.data,
                          n, kp)
        return mx.array(out).reshape(*x.shape[:-1], n)

    def chain_matches(self, w, bias: Optional[mx.array] = None, rows=(1, 5)) -> bool:
        """Whether chain_matmul gives MLX's own x @ w.T (+ bias, as addmm) for this weight (or
        its Panels), bit for bit, at these row counts (random rows): the BLAS's order, checked,
        not assumed."""
        panels, w = (w, w.w) if isinstance(w, Panels) else (None, w)
        if w.dtype != mx.float32 or w.ndim != 2:
            return False
        panels = panels or self.pack(w)
        for m in rows:
            with mx.stream(mx.cpu):  # MLX's CPU product, whatever the default device
                x = mx.random.normal((m, 1, w.shape[1]), key=mx.random.key(m))
                want = x @ w.T if bias is None else mx.addmm(bias, x, w.T)
                if not same_bits(self.chain_matmul(x, panels, bias), want):
                    return False
        return True

    def pick(self, logits, masks: list, ranges: list, split: int) -> tuple:
        """(index, log probability) of the greedy pick over one row of float32 `logits` (numpy,
        contiguous) after the additive `masks` (numpy, in order) and, where split >= 0, the
        split rule with the banned [lo, hi) `ranges` (cpu_simd.c: wf_pick)."""
        import numpy as np

        n = logits.shape[-1]
        x, work = np.empty(n, np.float32), np.empty(n, np.float32)
        ptrs = (ctypes.c_void_p * max(1, len(masks)))(*(m.ctypes.data for m in masks))
        flat = (ctypes.c_long * max(1, 2 * len(ranges)))(*(v for r in ranges for v in r))
        logprob = ctypes.c_float()
        best = self._lib.wf_pick(logits.ctypes.data, x.ctypes.data, work.ctypes.data, n, ptrs, len(masks), flat,
                                 len(ranges), split, ctypes.byref(logprob))
        return best, logprob.value

    def pick_rows(self, logits, picks: "Picks") -> list:
        """`pick` for each row of float32 `logits` (numpy (n, n_vocab), contiguous) by `picks`
        (its rows'), on up to two threads of the library's: [(index, log probability)]."""
        import numpy as np

        picks.fits(logits.shape)
        if logits.dtype != np.float32 or not logits.flags.c_contiguous:
            raise ValueError("pick_rows takes contiguous float32 logits")
        self._lib.wf_pick_rows(logits.ctypes.data, logits.shape[0], logits.shape[1], ctypes.byref(picks.table),
                               min(self.threads, 2))
        return picks.result()

    def check(self, first: int, step: int, count: int) -> int:
        """How many of `count` bit patterns (first, first + step, ...) the vector exp or GELU
        computes otherwise than the one-lane code (MLX's, as written)."""
        return self._lib.wf_check(first, step, count)


class _PicksTable(ctypes.Structure):
    """cpu_decoder.h's Picks"""
    _fields_ = [("masks", _P), ("n_masks", _L), ("ranges", _P), ("n_ranges", _P), ("splits", _P), ("best", _P),
                ("logprob", _P), ("work", _P)]


class Picks:
    """What `pick` takes, for n rows at once (CpuSimd.pick_rows, or the C step of a batch's
    rows, cpu_batch.c): the `masks` every row's, row i's `ranges[i]` (at most MAX_RANGES
    pairs) and `splits[i]`; `work` (numpy float32, 4 * n_vocab at least) the C pick's scratch.
    The call writes each row's pick and log probability here (`result`)."""

    def __init__(self, masks: list, ranges: list, splits: list, work):
        import numpy as np

        n = len(ranges)
        if any(len(r) > MAX_RANGES for r in ranges):
            raise ValueError(f"more than {MAX_RANGES} ranges for a row")
        flat = np.zeros((n, 2 * MAX_RANGES), np.int64)
        for i, r in enumerate(ranges):
            flat[i, : 2 * len(r)] = [v for pair in r for v in pair]
        counts, split = np.array([len(r) for r in ranges], np.int64), np.array(splits, np.int64)
        pointers = (ctypes.c_void_p * max(1, len(masks)))(*(m.ctypes.data for m in masks))
        self.work, self.best, self.logprob = work, np.empty(n, np.int64), np.empty(n, np.float32)
        self._held = (flat, counts, split, pointers, masks)  # what the table points to, alive with it
        self.table = _PicksTable(ctypes.addressof(pointers), len(masks), flat.ctypes.data, counts.ctypes.data,
                                 split.ctypes.data, self.best.ctypes.data, self.logprob.ctypes.data, work.ctypes.data)

    def fits(self, logits_shape: tuple) -> None:
        """Raises unless logits of this shape (rows, n_vocab) are what these picks and their
        scratch were made for: the C call trusts both."""
        rows, vocab = logits_shape
        if rows != len(self.best) or 4 * vocab > self.work.size:
            raise ValueError(f"picks for {len(self.best)} rows and {self.work.size // 4} words, not {logits_shape}")

    def result(self) -> list:
        """[(index, log probability)] a row, as `pick` returns them."""
        return list(zip(self.best.tolist(), self.logprob.tolist()))


@dataclass(frozen=True)
class Panels:
    """A weight w (n, k) as CpuSimd.pack laid it out: `data` in `form`, the library's code
    (cpu_decoder.h): float32, float16, or 8-bit values with their groups' scales and biases."""

    w: mx.array
    data: object  # numpy array
    form: int  # PANELS_F32, PANELS_F16 or PANELS_Q8

    @property
    def half(self) -> bool:
        return self.form == PANELS_F16

    @property
    def q8(self) -> bool:
        return self.form == PANELS_Q8


class CheckedChain:
    """x -> x @ w.T (+ bias) on `kernels.chain_matmul` at the row counts where that gives MLX's
    own product bit for bit (checked at a row count's first use, on random rows: ~20 ms for a
    51864-word vocabulary, once a process), else `fallback(x)`, MLX's. The weight is packed
    at the first check (~40 ms for the vocabulary) and kept (half the weight's bytes where
    float16 holds it, a quarter where it came from an 8-bit layer, `source`)."""

    def __init__(self, kernels: CpuSimd, w: mx.array, bias: Optional[mx.array], fallback: Callable,
                 source: Optional["Quantized"] = None):
        # source: the 8-bit layer w was dequantized from, whose values `pack` reads instead where they give w's
        self.kernels, self.w, self.bias, self.fallback, self.source = kernels, w, bias, fallback, source
        self.panels: Optional[Panels] = None
        self.same: dict = {}  # row count -> whether chain_matmul gives MLX's bits there

    def __call__(self, x: mx.array) -> mx.array:
        same = self.chained(x.size // self.w.shape[1])
        return self.kernels.chain_matmul(x, self.panels, self.bias) if same else self.fallback(x)

    def chained(self, rows: int) -> bool:
        """Whether `rows` rows take the chain (self.panels), else MLX's product."""
        same = self.same.get(rows)
        if same is None:
            same = rows <= MAX_CHAIN_ROWS and self.w.dtype == mx.float32
            if same:
                self.panels = self.panels or self.kernels.pack(self.w, source=self.source)
                same = self.kernels.chain_matches(self.panels, self.bias, (rows,))
            self.same[rows] = same
            if not any(self.same.values()):
                self.panels = None  # not kept where no row count uses it
        return same


def _host(x: mx.array):
    """x's memory as a numpy array (no copy), after evaluating x; float32 only."""
    import numpy as np  # not at import: `info` reads this module, and numpy costs it 0.15 s

    if x.dtype != mx.float32:
        raise TypeError(f"cpu_simd takes float32, not {x.dtype}")
    mx.eval(x)
    return np.asarray(x)


def _buffer(x: mx.array):
    """x's own memory as a writable numpy array (no copy), after evaluating x."""
    a = _host(x)
    if not (a.flags.c_contiguous and a.flags.writeable) or a.size != x.size:
        # (a contiguous slice of another array passes here: the callers' own outputs only)
        raise ValueError("cpu_simd writes over a contiguous array of its own; this one is strided")
    return a


def copy(x: mx.array) -> mx.array:
    """A new array with x's values, for calling an op on x without writing over it."""
    import numpy as np

    return mx.array(np.array(x, copy=True))


# -- building, checking, caching ---------------------------------------------------------------

def load(root: Path, write: Callable[[Path, bytes], None], threads: int,
         compiler: Optional[str] = None) -> Loaded:
    """The library from `root` (built there on a miss, with `compiler`, else `cc`), or why not.
    `write(path, data)` replaces a file atomically."""
    try:
        found = _locate(root, compiler)
        if isinstance(found, str):
            return Loaded(None, found)
        path, rejected, sources, cc = found
        if path.exists():
            kernels = _open(path, threads)
            if isinstance(kernels, CpuSimd):
                return Loaded(kernels, "cached")
            if not kernels.startswith("cannot load"):
                return Loaded(None, kernels)  # this CPU: nothing to build
        if rejected.exists():
            return Loaded(None, rejected.read_text(errors="replace").strip() or "rejected")
        return _build(sources, cc, path, rejected, write, threads)
    except OSError as e:  # a cache or temp folder that cannot be read or written: MLX's ops run
        return Loaded(None, f"cannot build it here: {e}")


def _locate(root: Path, compiler: Optional[str]):
    """(library path, rejection note path, source, compiler), or why there can be no library."""
    machine = platform.machine().lower()
    if not sys.platform.startswith("linux") or machine not in ("x86_64", "amd64"):
        return f"for x86-64 Linux only (this is {sys.platform} {machine})"
    cc = compiler or shutil.which("cc") or shutil.which("gcc")
    if cc is None or not os.path.isfile(cc):
        return "no C compiler (cc) to build it with"
    sources = tuple(path.read_bytes() for path in SOURCES)
    key = _key(sources, cc)
    return root / f"cpu_simd-{key}.so", root / f"cpu_simd-{key}.rejected", sources, cc


def _key(sources: tuple, cc: str) -> str:
    """What decides the library: the sources, the flags, the compiler (its path, size and
    time), and MLX's version, whose arithmetic the library repeats."""
    st = os.stat(cc)
    blob = b"\0".join([*sources, " ".join(FLAGS).encode(), os.path.realpath(cc).encode(),
                       f"{st.st_size}:{st.st_mtime_ns}".encode(), mx.__version__.encode()])
    return hashlib.sha256(blob).hexdigest()[:24]


def _open(path: Path, threads: int):
    """CpuSimd, or why the library at `path` cannot be used."""
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as e:
        return f"cannot load the built library: {e}"
    if not lib.wf_supported():
        return "this CPU lacks AVX2 or FMA"
    return CpuSimd(lib, threads)


def _build(sources: tuple, cc: str, path: Path, rejected: Path, write, threads: int) -> Loaded:
    with tempfile.TemporaryDirectory(prefix="whisperfast-cpu-simd-") as tmp:
        built = Path(tmp) / "cpu_simd.so"
        srcs = [Path(tmp) / p.name for p in SOURCES]
        for src, source in zip(srcs, sources):
            src.write_bytes(source)
        try:
            units = [str(src) for src in srcs if src.suffix == ".c"]  # the header is included by them
            run = subprocess.run([cc, *FLAGS, "-o", str(built), *units, "-lm"], capture_output=True,
                                 text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as e:  # may pass: not noted, the next process tries
            return Loaded(None, f"the C compiler did not run to its end: {e}")
        if run.returncode != 0:
            # noted (as a build that differs from MLX is), so that later processes do not pay
            # for the same failed build; a new compiler or MLX is a new key
            why = f"the C compiler failed: {(run.stderr.strip().splitlines() or ['no message'])[-1]}"
            _keep(write, rejected, why.encode())
            return Loaded(None, why)
        kernels = _open(built, threads)
        if not isinstance(kernels, CpuSimd):  # this CPU, or a temp folder that cannot map code
            return Loaded(None, kernels)
        problem = verify(kernels)
        if problem:
            why = f"its results differ from MLX's ({problem})"
            _keep(write, rejected, why.encode())
            return Loaded(None, why)
        data = built.read_bytes()
    if not _keep(write, path, data):
        return Loaded(kernels, "built; the cache could not keep it")
    return Loaded(kernels, "built")


def _keep(write, path: Path, data: bytes) -> bool:
    try:
        write(path, data)
        return True
    except OSError:
        return False


def verify(kernels: CpuSimd, step: int = 4099) -> str:
    """What `kernels` computes otherwise than MLX, or an empty string: float32 bit patterns 0,
    step, 2 * step, ... (all of them at step 1) through exp and GELU, the vectors against the
    one-lane code and against MLX; softmaxes and logsumexps of random rows (with -inf), and
    layer norms, against MLX's."""
    import numpy as np

    count = -(-(1 << 32) // step)
    if kernels.check(0, step, count):
        return "the vector exp or GELU against the one-lane code"
    x = (np.arange(count, dtype=np.uint64) * step).astype(np.uint32).view(np.float32)
    with mx.stream(mx.cpu):  # MLX's CPU arithmetic, whatever the default device
        for name, ours, theirs in (("exp", kernels.exp_, mx.exp), ("GELU", kernels.gelu_, _mlx_gelu)):
            if not same_bits(ours(mx.array(x)), theirs(mx.array(x))):
                return name
        rng = np.random.default_rng(0)
        for shape, scale in (((37, 1500), 4.0), ((9, 77), 40.0), ((3, 51865), 8.0)):
            s = (rng.standard_normal(shape) * scale).astype(np.float32)
            s.reshape(-1)[::11] = -np.inf
            if not same_bits(kernels.softmax_(mx.array(s)), mx.softmax(mx.array(s), axis=-1, precise=True)):
                return f"softmax {shape}"
            if not same_bits(kernels.logsumexp(mx.array(s)), mx.logsumexp(mx.array(s), axis=-1, keepdims=True)):
                return f"logsumexp {shape}"
        for shape, scale in (((37, 384), 4.0), ((9, 77), 300.0)):
            x = mx.array((rng.standard_normal(shape) * scale + scale).astype(np.float32))
            norm = _mlx_layer_norm(shape[-1])
            norm.weight, norm.bias = (mx.array(rng.standard_normal(shape[-1]).astype(np.float32)) for _ in range(2))
            if not same_bits(kernels.layer_norm(norm, x), norm(x)):
                return f"layer norm {shape}"
    return ""


def _mlx_gelu(x: mx.array) -> mx.array:
    import mlx.nn as nn

    return nn.gelu(x)


def _mlx_layer_norm(dims: int):
    import mlx.nn as nn

    return nn.LayerNorm(dims)


def same_bits(a: mx.array, b: mx.array) -> bool:
    """Equal bit for bit, any NaN equal to any NaN (the library does not promise NaN's sign)."""
    import numpy as np

    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    both_nan = np.isnan(a) & np.isnan(b)
    return bool(np.all((a.view(np.uint32) == b.view(np.uint32)) | both_nan))


# -- the process's choice ----------------------------------------------------------------------

def chosen(dtype: mx.Dtype = mx.float32) -> Optional[CpuSimd]:
    """The kernels the fast engine uses for arrays of `dtype` on the CPU, or None: float32 only,
    loaded (and on a machine's first use built) once a process and cache folder;
    WHISPERFAST_CPU_SIMD=0 keeps MLX's ops."""
    from ..config import config

    c = config()
    if dtype != mx.float32 or not c.cpu_simd:
        return None
    return loaded(c.cache / "kernels").kernels


@lru_cache(maxsize=None)
def loaded(root: Path) -> Loaded:
    from ..files import write_atomic

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return load(root, write_atomic, threads=min(cores, MAX_THREADS))


def status(root: Path) -> str:
    """What `loaded(root)` finds or would find, without building anything (for `info`)."""
    found = _locate(root, None)
    if isinstance(found, str):
        return f"unavailable: {found}"
    path, rejected, _, _ = found
    if path.exists():  # load's order: a library kept is read before any note
        amx = ctypes.CDLL(str(path)).wf_amx_ready()
        return "avx2 (built)" + ("; AMX bfloat16 tiles" if amx else "")
    if rejected.exists():
        return f"unavailable: {rejected.read_text(errors='replace').strip()}"
    return "not built yet (the first fast CPU transcription builds it)"
