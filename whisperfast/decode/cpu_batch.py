"""A greedy step of a batch's rows on the CPU in one C call (kernels/cpu_batch.c), MLX's bits.

Batched mode decodes one row per audio, without conditioning (issue 15). On the CPU its rows
stepped through FlatStep's MLX ops: ~250 primitives a step, and MLX's filters after them. Their
dispatch, and the BLAS packing each weight again on every call at a few rows, cost more than
the one-row C step's whole step, so a batch of 8 ran slower than the same windows one after
another (benchmarks/cpu/session24/). `NativeRows` runs FlatStep's step for the rows still
decoding as one call that reads the weights once for all of them (cpu_batch.c: MLX's products
at that row count, and the one-row step's attention a row). `loop` gives the step that
`task._host_loop` drives with the rows' state on the host, as it does the one-row step's:
the C pick (rules.NativePick) a row, a row that ends leaving the call.

Where it can, it rounds the rows' cross-attention keys and values to float16 and reads them so
(`cross_half`, on unless WHISPERFAST_CPU_CROSS_HALF=0 when the model's step is built), for a
greedy batch it drives: a row's cross keys and values are most of what its step reads, and the C
step read them at ~10 GB/s a core. The caches' float32 arrays hold the rounded values too, so
MLX's step (the check below, a fallback) computes on the same numbers. Batched mode does not keep
stock's semantics anyway (no conditioning across chunks); the logits move by thousandths, the
words on real speech by little or nothing (tests/test_cpu_batch.py). A sampled batch (the
temperature fallback) keeps its keys and values as made.

Its first call runs MLX's step over every row, rewinds, runs the C step over the same position
and compares the logits bit for bit. It stands in only where they were equal; otherwise
`reason` says why and MLX's step runs."""

from __future__ import annotations

import ctypes
import weakref
from typing import Callable, Optional

import mlx.core as mx

from ..kernels import cpu_simd
from ..kernels.cpu_simd import CheckedChain
from .cpu_step import HALF, LAYER, MODEL, SIZES, SPLIT_MIN, NativeStep, _modules, checked_tn16

# cpu_batch.c's kinds of Linear, in its order, and how each multiplies its rows (cpu_decoder.h's BY_*),
# its copy's form (PANELS_*) shifted in above
KINDS = ("wq", "wk", "wv", "wo", "wcq", "wco", "w1", "w2")
BY_SGEMM, BY_TN16, BY_CHAIN, FORM_SHIFT = 0, 1, 2, 4


class NativeRows:
    """FlatStep's step for rows of a batch, one audio a row, in one C call."""

    def __init__(self, native: NativeStep, cross_half: bool = True):
        self.native = native
        # the rows' cross keys and values rounded to float16 and read so (half the bytes a step
        # reads, most of a row's cost): batched mode's semantics are not stock's, and a float16
        # model's keys and values are so rounded
        self.cross_half = cross_half
        self.halved = 0  # batches whose cross keys and values went float16
        self.reason = ""  # why it is off; "" while on
        # the forms of cross keys and values (float16: True) whose first step was found MLX's
        self.checked_forms: set = set()
        self._chains: Optional[list] = None  # per layer, per kind: the weight as chains (CheckedChain)
        self._how: dict = {}  # row count -> (each kind's product, whether the vocabulary's is chained)

    def _products(self, n: int, layers) -> tuple:
        """How each kind of Linear multiplies n rows as MLX's own call sums them (cpu_batch.c's
        `how`), its copies put in the layer table `layers`: tn16 a row where that gives the
        layer's n-row product bit for bit on every layer's weight (OpenBLAS's small-matrix
        kernel, which it takes at one to three rows of tiny.en's widths), else the packed
        chains where they do (its large kernels, from 3-4 rows on), else MLX's BLAS call; and
        whether the vocabulary's product takes its chains. Checked once a row count, on random
        rows (FlatStep's CheckedChain checks so too)."""
        native, flat = self.native, self.native.flat
        blocks = flat.decoder.blocks
        if self._chains is None:
            def chain(kind, m, e):  # FlatStep's fc1 and the one-row step's fc2 as they are, else new ones
                if kind in ("w1", "w2"):
                    return flat.layers[e][7] if kind == "w1" else native.fc2[e]
                return CheckedChain(native.kernels, m.weight, m.get("bias") if "bias" in m else None, m,
                                    source=getattr(m, "quantized", None))

            self._chains = [{kind: chain(kind, m, e) for kind, m in _modules(b).items() if kind in KINDS}
                            for e, b in enumerate(blocks)]
        if n not in self._how:
            how = []
            for kind in KINDS:
                mods = [_modules(b)[kind] for b in blocks]
                copies = [native._keep[len(MODEL) + e * len(LAYER) + LAYER.index(HALF[kind])] if kind in HALF else None
                          for e in range(len(blocks))]
                chains = [c[kind] for c in self._chains]
                if all(checked_tn16(native.kernels, m, c, n) is not None for m, c in zip(mods, copies)):
                    how.append(BY_TN16 | native._sizes["tn16_half"] << FORM_SHIFT)
                elif all(isinstance(c, CheckedChain) and c.chained(n) for c in chains) and \
                        len({c.panels.form for c in chains}) == 1:
                    how.append(BY_CHAIN | chains[0].panels.form << FORM_SHIFT)
                else:
                    how.append(BY_SGEMM)
            logits = isinstance(flat.logits, CheckedChain) and flat.logits.chained(n)
            self._how[n] = (how, logits)
        how, logits = self._how[n]
        for e, chains in enumerate(self._chains):
            for kind, mode in zip(KINDS, how):
                name = "fc1_packed" if kind == "w1" else kind + "_packed"
                chain = chains[kind]
                layers[e * len(LAYER) + LAYER.index(name)] = \
                    chain.panels.data.ctypes.data if mode & 15 == BY_CHAIN else None
        return (ctypes.c_long * len(how))(*how), logits

    @property
    def checked(self) -> bool:
        """Whether a first step has been found MLX's (for either form of the cross keys)."""
        return bool(self.checked_forms)

    def _halve(self, cache: list, packed: list) -> Optional[list]:
        """Each layer's cross keys (packed) and values in float16 ([keys, values] a layer), the
        caches' float32 keys and values rounded to the same values in place, so that MLX's step
        (the check, a fallback) reads what the C step reads. None, and nothing rounded, where
        a layer's keys are not packed, a cache is not a whole contiguous array of its own, or
        a value is beyond float16's range."""
        import numpy as np

        lib, threads = self.native.kernels.lib, self.native.kernels.threads
        if any(keys is None for keys in packed):
            return None
        try:
            arrays = [cpu_simd._buffer(a) for _, cross in cache for a in cross]
        except ValueError:
            return None
        mx.synchronize()  # nothing queued (a prompt's graph) still reads them as they are rounded
        halves = []
        for keys, values in zip(packed, arrays[1::2]):
            k16, v16 = np.empty(keys.size, np.float16), np.empty(values.shape, np.float16)
            if lib.wf_half(keys.ctypes.data, k16.ctypes.data, None, keys.size, threads) or \
                    lib.wf_half(values.ctypes.data, v16.ctypes.data, None, values.size, threads):
                return None
            halves += [k16, v16]
        for a in arrays:
            lib.wf_half(a.ctypes.data, None, a.ctypes.data, a.size, threads)
        return halves

    def loop(self, cache: list, half: bool = False) -> Optional[Callable]:
        """For a loop in which nothing else writes `cache` (B rows, one audio each, the prompt
        in): (tokens, rows) -> logits (len(rows), n_vocab) float32 on the host, for the next
        token tokens[i] of batch row rows[i], the caches' offsets moved on. None where the C
        call cannot take these caches or has been found to differ. `half`: the caller's rows
        are a greedy batch that this step drives (task._main_loop), whose cross keys and values
        may then go float16 (`cross_half`); a sampled batch's stay as made."""
        import numpy as np

        native, flat = self.native, self.native.flat
        if self.reason or not native.ready():
            return None
        kv0, cross0 = cache[0]
        B = kv0.keys.shape[0] if kv0.keys is not None else 0
        if B < 2 or cross0 is None or cross0[0].shape[0] != B or kv0.n_ctx != native._sizes["n_ctx"]:
            return None
        layers = (ctypes.c_void_p * len(native._layers))(*native._layers)
        first, hd = LAYER.index("keys"), flat.n_state // flat.n_head
        for e, (kv, cross) in enumerate(cache):
            for i, arr in enumerate((kv.keys, kv.values, *cross)):
                a = cpu_simd._host(arr)
                want = (B, flat.n_head, kv.n_ctx if i < 2 else cross0[0].shape[2], hd)
                if a.shape != want or not a.flags.c_contiguous or (i < 2 and not a.flags.writeable):
                    return None
                layers[e * len(LAYER) + first + i] = a.ctypes.data
        held = [a for kv, cross in cache for a in (kv.keys, kv.values, *cross)]  # their memory, while the loop runs
        sizes = dict(native._sizes, n_audio=cross0[0].shape[2])
        dims = (ctypes.c_long * len(SIZES))(*(sizes[k] for k in SIZES))
        model = (ctypes.c_void_p * len(MODEL))(*native._model)
        kt = np.empty(sizes["n_layer"] * B * sizes["n_state"] * sizes["n_ctx"], np.float32)
        lib, state = native.kernels.lib, {"kt_from": 0, "scratch": None}
        packed = native.packed_keys([cross[0] for _, cross in cache], sizes["n_audio"])  # each row's cross keys
        halves = self._halve(cache, packed) if half and self.cross_half else None
        form = halves is not None
        if halves is not None:  # [keys, values] a layer, float16
            packed = halves[0::2]
            for e, values in enumerate(halves[1::2]):
                layers[e * len(LAYER) + LAYER.index("cvalues16")] = values.ctypes.data
            dims[SIZES.index("cross_half")] = 1
            self.halved += 1
        held += [a for a in (halves or packed) if a is not None]
        for e, keys in enumerate(packed):
            layers[e * len(LAYER) + LAYER.index("ckeys_packed")] = None if keys is None else keys.ctypes.data

        def c_step(tokens, rows, picks=None) -> np.ndarray:
            n, pos = len(rows), kv0.offset
            if pos >= kv0.n_ctx:  # the call writes position pos of every cache without a bound of its own
                raise IndexError("the self-attention cache is full")
            if picks is not None:
                picks.fits((n, sizes["n_vocab"]))
            need = lib.wf_rows_scratch(dims, n)
            if state["scratch"] is None or state["scratch"].size < need:
                state["scratch"] = np.empty(need, np.float32)
            how, logits_chained = self._products(n, layers)
            model[MODEL.index("logits_packed")] = flat.logits.panels.data.ctypes.data if logits_chained else None
            dims[SIZES.index("logits_half")] = flat.logits.panels.form if logits_chained else 0
            ids, at = np.array(tokens, np.int64), np.array(rows, np.int64)
            out = np.empty((n, sizes["n_vocab"]), np.float32)
            if lib.wf_decoder_rows(native._sgemm, model, layers, dims, flat.scale, native._eps, ids.ctypes.data,
                                   at.ctypes.data, n, B, pos, kt.ctypes.data, min(state["kt_from"], pos), SPLIT_MIN,
                                   how, int(logits_chained), state["scratch"].ctypes.data, out.ctypes.data,
                                   None if picks is None else ctypes.byref(picks.table)):
                raise RuntimeError("wf_decoder_rows declined its tables")
            state["kt_from"] = pos + 1
            for kv, _ in cache:
                kv.offset += 1
            return out

        def every_row(tokens, rows) -> list:
            """The next token of every row of the batch: tokens[i] for rows[i], 0 for a row that ended."""
            last = [0] * B
            for r, t in zip(rows, tokens):
                last[r] = t
            return last

        def mlx_step(last) -> np.ndarray:
            """MLX's step over every row (a row that ended steps on unread): logits (B, n_vocab)."""
            out = flat._mlx_step(mx.array([[t] for t in last], mx.int32), cache)
            mx.eval(out)
            return np.asarray(out.reshape(B, -1))

        def step(tokens, rows):
            if kv0.offset >= kv0.n_ctx:  # the check's MLX step writes the caches too
                raise IndexError("the self-attention cache is full")
            if form in self.checked_forms:
                return c_step(tokens, rows)
            last = every_row(tokens, rows)
            if self.reason:
                return mlx_step(last)[list(rows)]
            # the check, over every row: MLX's step, then the C call over the same position
            want = mlx_step(last)
            for kv, _ in cache:
                kv.offset -= 1
            got = c_step(last, list(range(B)))
            if not np.array_equal(got.view(np.uint32), want.view(np.uint32)):
                self.reason = "its first step's logits differed from MLX's"
                for kv, _ in cache:  # its keys and values at this position too, maybe: MLX's again
                    kv.offset -= 1
                got = mlx_step(last)
            if not self.reason:
                self.checked_forms.add(form)
            return got[list(rows)]

        def picking(tokens, rows, picks) -> list:
            """step's, and the rows' picks (rules.NativePick.picks) in the same C call once the
            check is past: [(token, log probability)] a row."""
            if form not in self.checked_forms:
                return native.kernels.pick_rows(stepping()(tokens, rows), picks)
            c_step(tokens, rows, picks)
            return picks.result()

        # picking reaches step through a weak reference: step holds picking, and a cycle would
        # keep the batch's caches, keys and scratch (~70 MB a batch of 2 rows of tiny.en) until
        # Python's collector ran, which large arrays do not prompt (a 60-minute file's peak
        # memory grew by them batch after batch)
        stepping = weakref.ref(step)
        step.held, step.layers, step.picking = held, layers, picking
        step.cross_half = form
        return step

