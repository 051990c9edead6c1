"""The CPU's one-row decode step in one C call (kernels/cpu_decoder.c), and a window's
prompt in another (kernels/cpu_rows.c), MLX's bits.

At one row on the CPU, FlatStep's ~250 MLX primitives cost more to dispatch than to compute
(benchmarks/cpu/profile.md §11). `NativeStep` runs the same step as one call into the
library that kernels/cpu_simd.py builds, on two threads where there are two cores:
- each product sums as MLX's BLAS call sums it: the one-row Linear layers as OpenBLAS's
  AVX-512 small-matrix kernel does (`tn16`, on float16 copies of the weights, which hold
  them exactly), the logits, fc1 and the cross-attention's scores as one fma chain an output
  (packed weights and keys), the attention's weighted values as one chain an output, each
  of these checked against MLX's own product before it stands in; other products call the
  very cblas_sgemm MLX binds to, with MLX's arguments;
- the layer norms do MLX's CPU arithmetic (the fallback of mx.fast.layer_norm), the softmax
  and GELU are cpu_simd's (MLX's bits).
It writes the self-attention's keys and values into the `KVCache` buffers in place, where
MLX's step would have put them, so either step can follow the other.

It runs only where its first step gave the logits of FlatStep's own MLX step bit for bit
(checked once a step object, on the real state: MLX's step runs, the offsets rewind, this
one runs over the same position); its prompt where the first prompt gave the logits, keys and
values of MLX's graph for it (`prompt`). Otherwise, and for what it does not cover (several rows,
quantized or non-float32 layers, a layer norm or attention op other than the fused one, no
global cblas_sgemm), FlatStep's MLX ops run and `reason` says why."""

from __future__ import annotations

import ctypes
import threading
from typing import Optional

import mlx.core as mx
import mlx.nn as nn

from ..kernels import cpu_simd, ops
from ..kernels.cpu_simd import PANELS_F16, PANELS_F32, PANELS_Q8, CheckedChain, CpuSimd

# cpu_decoder.c's tables, in its order
MODEL = ("tokens", "positions", "ln_w", "ln_b", "logits_packed", "logits_bounds")
LAYER = ("ln1_w", "ln1_b", "wq", "bq", "wk", "wv", "bv", "wo", "bo", "ln2_w", "ln2_b", "wcq", "bcq", "wco", "bco",
         "ln3_w", "ln3_b", "w1", "b1", "w2", "b2", "keys", "values", "ckeys", "cvalues", "fc1_packed",
         "wq16", "wk16", "wv16", "wo16", "wcq16", "wco16", "w216", "ckeys_packed",
         "wq_packed", "wk_packed", "wv_packed", "wo_packed", "wcq_packed", "wco_packed", "w2_packed", "cvalues16")
SIZES = ("n_layer", "n_state", "n_head", "n_ctx", "n_audio", "n_vocab", "n_mlp", "fc1_half", "logits_half", "threads",
         "n_pieces", "tn16_half", "fc2_half", "cross_half")
# A Linear's output features are shared by the prompt's two threads where each half is at
# least this many multiply-adds (cpu_rows.c): OpenBLAS's small-matrix kernels, which take a
# few rows, sum a row otherwise at another width (2 to 7 rows of tiny.en's layers, scipy's
# OpenBLAS on AVX-512), while its large products sum alike at any width
SPLIT_MIN = 4_000_000
HALF = {"wq": "wq16", "wk": "wk16", "wv": "wv16", "wo": "wo16", "wcq": "wcq16", "wco": "wco16", "w2": "w216"}


def global_sgemm() -> Optional[int]:
    """The address of the process's global cblas_sgemm, the one MLX binds to (whisperfast._blas),
    or None where there is none (MLX then uses the reference BLAS it bundles)."""
    try:
        return ctypes.cast(ctypes.CDLL(None).cblas_sgemm, ctypes.c_void_p).value
    except AttributeError:
        return None


def _modules(block) -> dict:
    """A residual block's layers by cpu_decoder.c's names."""
    a, c = block.attn, block.cross_attn
    return {"ln1": block.attn_ln, "wq": a.query, "wk": a.key, "wv": a.value, "wo": a.out,
            "ln2": block.cross_attn_ln, "wcq": c.query, "wco": c.out, "ln3": block.mlp_ln,
            "w1": block.mlp1, "w2": block.mlp2}


def unsupported(decoder) -> str:
    """Why NativeStep cannot run this decoder's step, or an empty string."""
    if any(b.cross_attn.sdpa is not ops.fused_scaled_dot_product_attention for b in decoder.blocks):
        return "a cross-attention other than the fused one"
    if type(decoder.token_embedding) is not nn.Embedding:
        return "quantized layers"
    layers = [_modules(b) for b in decoder.blocks]
    why = layers_unsupported([m[n] for m in layers for n in m if n.startswith("w")],
                             [decoder.ln] + [m[n] for m in layers for n in ("ln1", "ln2", "ln3")],
                             [decoder.token_embedding.weight, decoder.positional_embedding])
    if why:
        return why
    if decoder.positional_embedding.shape[-1] % decoder.blocks[0].attn.n_head or \
            (decoder.positional_embedding.shape[-1] // decoder.blocks[0].attn.n_head) % 8:
        return "a head width that is not a multiple of 8"
    return ""


def layers_unsupported(linears: list, norms: list, arrays: list = ()) -> str:
    """Why the C code cannot read these layers (it takes plain float32 Linear layers, the fused
    layer norm at one eps, and other float32 `arrays`, with MLX on a global cblas_sgemm), or an
    empty string: the decoder's step and prompt, and the encoder's blocks (cpu_encoder.py)."""
    if any(type(m) is not nn.Linear for m in linears):
        return "quantized layers"
    if any(getattr(n, "mode", "fused") != "fused" or n.eps != norms[0].eps for n in norms):
        return "a layer norm other than the fused one"
    params = [a for m in linears + norms for a in (m.weight, m.get("bias")) if a is not None]
    if any(a.dtype != mx.float32 for a in list(arrays) + params):
        return "not float32"
    return "" if global_sgemm() is not None else "no global cblas_sgemm (MLX runs its bundled reference BLAS)"


def tn16_rows(kernels: CpuSimd, m: nn.Linear, half: bool = True):
    """m's weight laid out for the library's tn16 (float16 rows where `half`, else float32)
    where that gives m's own one-row product bit for bit (one random row, checked here: another
    order of sums shows in most of the outputs), else None (MLX's BLAS call runs)."""
    return checked_tn16(kernels, m, kernels.tn16_layout(m.weight, half))


def checked_tn16(kernels: CpuSimd, m: nn.Linear, rows, n: int = 1):
    """`rows` (tn16_layout's, or None) where tn16 on them, a row at a time, gives m's own product
    of n rows, else None. Several rows (cpu_batch.c) are read unpadded: m's inputs must then be
    a multiple of 16, as tn16 reads them."""
    if rows is None or m.weight.shape[0] % 4 or (n > 1 and m.weight.shape[1] % 16):
        return None
    bias = m.bias if "bias" in m else None
    with mx.stream(mx.cpu):
        x = mx.random.normal((n, 1, m.weight.shape[1]), key=mx.random.key(0))
        want = m(x)
        got = mx.concatenate([kernels.tn16(rows, x[i : i + 1], bias) for i in range(n)]).reshape(want.shape)
        return rows if cpu_simd.same_bits(got, want) else None


def cross_chain_matches(kernels: CpuSimd, n_head: int, n_audio: int, head_dim: int) -> bool:
    """Whether one query's scores over a head's keys (MLX's SDPA fallback, q @ swapaxes(k))
    sum as one fma chain a score on this BLAS, as the packed keys do (random values)."""
    with mx.stream(mx.cpu):
        q = mx.random.normal((1, n_head, 1, head_dim), key=mx.random.key(1))
        k = mx.random.normal((1, n_head, n_audio, head_dim), key=mx.random.key(2))
        want = q @ mx.swapaxes(k, -1, -2)
        return all(cpu_simd.same_bits(kernels.chain_matmul(q[:, e], kernels.pack(k[0, e], half=False)),
                                      want[:, e]) for e in range(n_head))


class NativeStep:
    """FlatStep's one-row step (B = 1, one audio) in one C call; `flat._mlx_step` is MLX's."""

    def __init__(self, kernels: CpuSimd, flat, cross=None):
        # cross: the decoder's NativeCross (cpu_encoder.py), which packs the keys it makes
        self.kernels, self.flat, self.cross = kernels, flat, cross
        self.reason = unsupported(flat.decoder)  # why it is off; "" while on
        self.checked = False
        self._keep: list = []  # the arrays whose memory the tables point at
        self._cross = None  # (the cross K arrays it packed, their panels)
        self._chains: dict = {}  # n_audio -> whether one query's cross scores sum as chains (cross_chains)
        # the cache arrays whose memory the layer table points at, held so that no new array
        # takes their addresses (an address seen again is not rebound, nor its keys repacked)
        self._bound: list = []
        self._where: list = []  # and that memory's addresses
        self._lock = threading.Lock()  # one step at a time: the tables, scratch and logits are shared
        self.prompt_checked = False  # a prompt gave MLX's logits, keys and values (prompt())
        self.prompt_reason = ""  # why prompts run MLX's graph, once found
        self._prompt_scratch = None
        # The C step's scaled keys transposed, (n_layer, n_head, head_dim, n_ctx): mlx-whisper's
        # graph lays k^T out afresh every step (~0.1 ms of tiny.en's step at 150 positions); here
        # each position's column is made once, for the bound caches' positions below _kt_upto
        self._kt, self._kt_upto = None, 0
        self._model = None  # the C tables (_tables), once made

    def ready(self) -> bool:
        """Whether the tables are made (by a first step, or here: batched mode's rows may come
        before any one-row step, decode/cpu_batch.py), else False, `reason` saying why."""
        if not self.reason and self._model is None:
            f = self.flat
            for chain in [f.logits] + [layer[7] for layer in f.layers]:
                if isinstance(chain, CheckedChain):
                    chain.chained(1)  # what the tables read: FlatStep's first step checks them so
            try:
                self.reason = self._tables()
            except (TypeError, ValueError) as e:  # an array the library does not take
                self.reason = f"its tables: {e}"
        return not self.reason

    def __call__(self, tokens: mx.array, cache: list) -> Optional[mx.array]:
        """logits (1, 1, n_vocab), or None where FlatStep's MLX ops are to run."""
        if self.reason or tokens.shape[0] != 1 or cache[0][1][0].shape[0] != 1:
            return None
        if cache[0][0].offset + 1 > cache[0][0].n_ctx:
            return None  # MLX's step says the cache is full
        with self._lock:
            return self._run(tokens, cache) if self.checked else self._first(tokens, cache)

    def _first(self, tokens: mx.array, cache: list) -> mx.array:
        """MLX's step, then the tables and this step over the same position: the check."""
        want = self.flat._mlx_step(tokens, cache)
        mx.eval(want)
        if self.ready():  # the tables, made once (here, or by a batch's rows before)
            for kv, _ in cache:
                kv.offset -= 1
            got = self._run(tokens, cache)
            if got is None:
                for kv, _ in cache:
                    kv.offset += 1
            elif not cpu_simd.same_bits(got, want):
                self.reason = "its first step's logits differed from MLX's"
                for kv, _ in cache:  # its keys and values at this position too, maybe: MLX's again
                    kv.offset -= 1
                want = self.flat._mlx_step(tokens, cache)
            self.checked = got is not None and not self.reason  # else checked on a later step
        return want

    def _tables(self) -> str:
        """The C tables (MLX's step has run once: the wide products have checked and packed
        their weights), or why there can be none."""
        import numpy as np

        f, k = self.flat, self.kernels
        if not isinstance(f.logits, CheckedChain):
            return "the logits' product is not the CPU's float32 one"
        dec = f.decoder
        host = lambda a: np.ascontiguousarray(cpu_simd._host(a))  # noqa: E731
        # the logits as FlatStep makes them: the checked chains, else MLX's calls on its pieces
        chained = bool(f.logits.same.get(1))
        bounds = np.array(f.logits_pieces, np.int64)
        model = [host(dec.token_embedding.weight), host(dec.positional_embedding), host(dec.ln.weight),
                 host(dec.ln.bias), f.logits.panels.data if chained else None, bounds]
        layers, rows_made, fc1_half, fc2_half = [], [], set(), set()
        self.fc2 = []  # each layer's fc2 as chains (CheckedChain), for the one-row step and a batch's
        # tn16 reads float16 copies where every such weight is a float16 value (the
        # checkpoints'), the 8-bit values where every one was dequantized from an 8-bit layer
        # that gives it (a quantized model's), else the float32 weights
        def copies(half: bool, quantized: bool) -> Optional[list]:
            made = [{name: k.tn16_layout(m.weight, half, getattr(m, "quantized", None) if quantized else None)
                     for name, m in _modules(b).items() if name in HALF} for b in dec.blocks]
            return made if all(rows is not None for layer in made for rows in layer.values()) else None

        q8 = copies(False, True) if all(hasattr(_modules(b)[name], "quantized") for b in dec.blocks for name in HALF) \
            else None
        halves = q8 or copies(True, False)
        half = PANELS_Q8 if q8 else PANELS_F16 if halves else PANELS_F32
        for b, step_layer, layer_halves in zip(dec.blocks, f.layers, halves or [None] * len(dec.blocks)):
            mods, fc1 = _modules(b), step_layer[7]
            row = dict.fromkeys(LAYER)
            for name in ("ln1", "ln2", "ln3"):
                row[name + "_w"], row[name + "_b"] = host(mods[name].weight), host(mods[name].bias)
            for name, bias in (("wq", "bq"), ("wk", None), ("wv", "bv"), ("wo", "bo"), ("wcq", "bcq"), ("wco", "bco"),
                               ("w1", "b1"), ("w2", "b2")):
                row[name] = host(mods[name].weight)
                if bias:
                    row[bias] = host(mods[name].bias)
                if name in HALF:
                    rows = layer_halves[name] if halves else k.tn16_layout(mods[name].weight, False)
                    row[HALF[name]] = checked_tn16(k, mods[name], rows)
            if isinstance(fc1, CheckedChain) and fc1.same.get(1):
                row["fc1_packed"] = fc1.panels
                fc1_half.add(fc1.panels.form)
            # fc2 where tn16 is not its one-row sum: the chains where they are (base's fc2, which
            # OpenBLAS takes to its large kernels even at one row), else MLX's BLAS call
            fc2 = CheckedChain(k, mods["w2"].weight, mods["w2"].bias, mods["w2"], source=getattr(mods["w2"], "quantized", None))
            self.fc2.append(fc2)
            if row["w216"] is None and fc2.chained(1):
                row["w2_packed"] = fc2.panels
                fc2_half.add(fc2.panels.form)
            rows_made.append(row)
        # one form a kind for every layer (the table has one): where they differ (a model
        # quantized at two widths, say), every layer's copy in float32, the same values
        for name, forms in (("fc1_packed", fc1_half), ("w2_packed", fc2_half)):
            if len(forms) > 1:
                for row in rows_made:
                    if row[name] is not None:
                        row[name] = k.pack(row[name].w, half=False)
                forms.clear()
                forms.add(PANELS_F32)
            for row in rows_made:
                row[name] = None if row[name] is None else row[name].data
        for row in rows_made:
            layers.extend(row[name] for name in LAYER)
        self._keep = model + layers
        self._model = (ctypes.c_void_p * len(MODEL))(*(None if a is None else a.ctypes.data for a in model))
        self._layers = (ctypes.c_void_p * len(layers))(*(None if a is None else a.ctypes.data for a in layers))
        self._sizes = dict(n_layer=len(dec.blocks), n_state=f.n_state, n_head=f.n_head,
                           n_ctx=dec.positional_embedding.shape[0], n_audio=0,
                           n_vocab=dec.token_embedding.weight.shape[0], n_mlp=dec.blocks[0].mlp1.weight.shape[0],
                           fc1_half=fc1_half.pop() if fc1_half else 0,
                           logits_half=f.logits.panels.form if chained else 0, threads=k.threads,
                           n_pieces=len(bounds) - 1, tn16_half=half, fc2_half=fc2_half.pop() if fc2_half else 0,
                           cross_half=0)
        self._sgemm = global_sgemm()
        self._eps = dec.ln.eps
        self._logits = np.empty(self._sizes["n_vocab"], np.float32)
        self._kt = np.empty(len(dec.blocks) * f.n_state * self._sizes["n_ctx"], np.float32)
        return ""

    def prompt(self, tokens: mx.array, cache: list, rows, mlx_prompt) -> Optional[mx.array]:
        """The logits (1, len(rows), n_vocab) of a prompt `tokens` (1, L) over empty caches (one
        audio, its cross K/V in place, the buffers reserved), every layer's keys and values
        written and the offsets moved on: what MLX's graph `mlx_prompt()` makes, in one C call
        (kernels/cpu_rows.c). None where that graph is to run: the step is off or not yet
        checked (its tables come with its first step), or this is another kind of prompt. The
        first prompt runs both and compares the logits, keys and values; the C prompt stands in
        only where they were MLX's bits, else `prompt_reason` says why."""
        import numpy as np

        L, n = tokens.shape[1], len(rows)
        kv0 = cache[0][0]
        if self.reason or not self.checked or self.prompt_reason or tokens.shape[0] != 1 or not 1 < L <= kv0.n_ctx \
                or n > L or kv0.offset != 0 or cache[0][1][0].shape[0] != 1:
            return None
        if self.prompt_checked and not self.flat.logits.same.get(n):
            return None  # at this row count the vocabulary's product is MLX's BLAS call
        with self._lock:
            if not self._bind(cache):
                return None
            need = self.kernels.lib.wf_prompt_scratch(self._dims, L)
            if self._prompt_scratch is None or self._prompt_scratch.size < need:
                self._prompt_scratch = np.empty(need, np.float32)
            ids = np.ascontiguousarray(np.asarray(tokens).reshape(-1), np.int64)
            at = np.array(rows, np.int64)
            logits = np.empty((n, self._sizes["n_vocab"]), np.float32)
            if self.kernels.lib.wf_decoder_prompt(self._sgemm, self._model, self._layers, self._dims, self.flat.scale,
                                                  self._eps, ids.ctypes.data, L, at.ctypes.data, n, SPLIT_MIN,
                                                  self._prompt_scratch.ctypes.data, logits.ctypes.data):
                self.prompt_reason = "the C prompt declined (no packed logits)"
                return None
            self._kt_upto = 0  # the prompt wrote positions 0 .. L - 1
            if self.prompt_checked:
                for kv, _ in cache:
                    kv.offset = L
                return mx.array(logits)[None]
            written = [np.array(cpu_simd._host(a)[:, :, :L]) for kv, _ in cache for a in (kv.keys, kv.values)]
        want = mlx_prompt()  # over the same empty caches: it writes the same positions
        mx.eval(want)
        theirs = [cpu_simd._host(a)[:, :, :L] for kv, _ in cache for a in (kv.keys, kv.values)]
        same = cpu_simd.same_bits(mx.array(logits)[None], want) and \
            all(np.array_equal(a.view(np.uint32), b.view(np.uint32)) for a, b in zip(written, theirs))
        self.prompt_checked = same
        self.prompt_reason = "" if same else "its first prompt's logits, keys or values differed from MLX's"
        return want

    def _pack_cross(self, cache: list, n_audio: int):
        """Each layer's cross keys as panels (once a window), where their scores sum as chains."""
        keys = [cross[0] for _, cross in cache]
        if self._cross is not None and all(a is b for a, b in zip(self._cross[0], keys)):
            return self._cross[1]
        panels = self.packed_keys(keys, n_audio)
        self._cross = (keys, panels)
        return panels

    def packed_keys(self, keys: list, n_audio: int) -> list:
        """Each layer's cross keys (a layer's (B, n_head, n_audio, head_dim)) as wf_pack_heads
        lays them out, where the step reads them so (its scores sum as chains), else Nones:
        NativeCross's, made with the keys, or packed here."""
        made = self.cross.take_packed(keys) if self.cross is not None else None
        if made is not None:
            return made
        return [self.kernels.pack_heads(k) for k in keys] if self.cross_chains(n_audio) else [None] * len(keys)

    def cross_chains(self, n_audio: int) -> bool:
        """cross_chain_matches for this decoder over n_audio keys, found once (~18 ms: a batch's
        rows and every window ask): NativeCross's finding where there is one."""
        if self.cross is not None:
            return self.cross.chains(n_audio)
        f = self.flat
        if n_audio not in self._chains:
            self._chains[n_audio] = cross_chain_matches(self.kernels, f.n_head, n_audio, f.n_state // f.n_head)
        return self._chains[n_audio]

    def _run(self, tokens: mx.array, cache: list) -> Optional[mx.array]:
        if not self._bind(cache):
            return None
        self._c_step(int(tokens.reshape(-1)[0].item()), cache)
        return mx.array(self._logits).reshape(1, 1, -1)

    def _bind(self, cache: list) -> bool:
        """The layer table on these caches' buffers (a window's, or new ones an MLX step wrote),
        where they are laid out as the C code reads them."""
        import numpy as np

        f, first = self.flat, LAYER.index("keys")
        hd, n_audio = f.n_state // f.n_head, cache[0][1][0].shape[2]
        arrays = _cache_arrays(cache)
        where = _addresses(arrays)
        if where != self._where:
            if any(kv.n_ctx != self._sizes["n_ctx"] for kv, _ in cache):
                return False  # the C code's caches are n_ctx positions long
            panels = self._pack_cross(cache, n_audio)
            for e, (kv, cross) in enumerate(cache):
                base = e * len(LAYER)
                for i, arr in enumerate((kv.keys, kv.values, *cross)):
                    a = cpu_simd._host(arr)
                    want = (1, f.n_head, kv.n_ctx if i < 2 else n_audio, hd)
                    if a.shape != want or not a.flags.c_contiguous or (i < 2 and not a.flags.writeable):
                        self._bound, self._where = [], []
                        return False
                    self._layers[base + first + i] = a.ctypes.data
                self._layers[base + LAYER.index("ckeys_packed")] = None if panels[e] is None else panels[e].ctypes.data
            self._bound, self._where = arrays, where
            self._kt_upto = 0  # other caches: their keys are transposed afresh
        if self._sizes["n_audio"] != n_audio:
            self._sizes["n_audio"] = n_audio
            self._dims = (ctypes.c_long * len(SIZES))(*(self._sizes[k] for k in SIZES))
            self._scratch = np.empty(self.kernels.lib.wf_decoder_scratch(self._dims), np.float32)
        return True

    def _c_step(self, token: int, cache: list) -> None:
        """The C call on bound caches: the logits into self._logits, the position written, and
        the scaled keys transposed (self._kt) made up to it."""
        pos = cache[0][0].offset
        self.kernels.lib.wf_decoder_step(self._sgemm, self._model, self._layers, self._dims, self.flat.scale,
                                         self._eps, token, pos, self._kt.ctypes.data, min(self._kt_upto, pos),
                                         self._scratch.ctypes.data, self._logits.ctypes.data)
        self._kt_upto = pos + 1
        for kv, _ in cache:
            kv.offset += 1

    def looped(self, cache: list):
        """A step for a loop in which nothing else writes `cache` (one row, one audio): token ->
        logits (n_vocab,) float32 on the host. A call is FlatStep's (this step's __call__: its
        check, its binding; else MLX's step) until the tables are found bound to these caches'
        buffers as they are; from then on it is the C call alone while they stay bound (another
        loop on this step rebinds them to its own), since only an MLX step moves a buffer and
        none runs here (__call__'s address checks and MLX arrays cost ~0.3 ms a token)."""
        import numpy as np

        def ours() -> bool:
            return len(self._bound) == len(mine) and all(a is b for a, b in zip(self._bound, mine))

        bound, mine = False, _cache_arrays(cache)

        def step(token: int):
            nonlocal bound, mine
            with self._lock:
                if bound and ours():
                    if cache[0][0].offset >= cache[0][0].n_ctx:
                        raise IndexError("the self-attention cache is full")
                    self._c_step(token, cache)
                    return self._logits.copy()
            out = self.flat(mx.array([[token]], mx.int32), cache)
            mine = _cache_arrays(cache)  # an MLX step may put new arrays in the caches; a C step never
            with self._lock:
                bound = self.checked and not self.reason and ours() and self._where == _addresses(mine)
            return np.array(out.astype(mx.float32)).reshape(-1)

        return step


def _cache_arrays(cache: list) -> list:
    """Every layer's self-attention keys and values and cross K/V, in the order the tables bind them."""
    return [a for kv, cross in cache for a in (kv.keys, kv.values, *cross)]


def _addresses(arrays: list) -> list:
    """Where each array's memory is (MLX may move it under the same array object: a slice
    update that cannot reuse its buffer)."""
    import numpy as np

    return [np.asarray(a).__array_interface__["data"][0] for a in arrays]
