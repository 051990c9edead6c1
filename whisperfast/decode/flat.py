"""The static-cache engine: the decoder over preallocated self-attention caches (`KVCache`),
the prompt through the module graph (`decoder_forward`), then one single-token step at a time
as one flat function over the decoder's own weights (`FlatStep`). `StaticInference` is the
mlx-whisper `Inference` that drives both. On the CPU at float32, once its first step has
checked itself, FlatStep's step and a window's prompt each run as one C call
(decode/cpu_step.py), the same bits.

Shapes: tokens (B, L); audio features xa (n_audio, n_audio_ctx, n_audio_state); logits
(B, L, n_vocab); B = n_audio * G rows where G rows decode one audio (beams, best-of samples)."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
from mlx_whisper.decoding import Inference
from mlx_whisper.whisper import TextDecoder

from ..config import config
from ..kernels import cpu_simd
from ..kernels.cpu_simd import CheckedChain
from ..kernels.layers import (cpu_streams, heads_across_cpu_streams, matmul_t_across_cpu_streams, mode_op,
                              piece_bounds)
from ..kernels.ops import on_cuda
from .attention import KVCache, WhisperAttention
from .cpu_batch import NativeRows
from .cpu_encoder import native_cross
from .cpu_step import NativeStep
from .encoder import fast_gelu


def _blocks(decoder: TextDecoder, x: mx.array, xa: mx.array, cache: list, rows=None, logits=None) -> mx.array:
    """The residual blocks, as TextDecoder.__call__ runs them; cache[e] = [self KV, cross K/V],
    with the fast engine's GELU (prompt_gelu). `rows`: the positions whose logits are made
    (all where None), by `logits` (the embedding's as_linear where None)."""
    gelu = prompt_gelu(x.dtype)
    for e, block in enumerate(decoder.blocks):
        x, cache[e] = _block(block, x, xa, decoder._mask, cache[e], gelu)
    x = decoder.ln(x)
    if rows is not None:
        x = x[:, list(rows)]
    return (logits or decoder.token_embedding.as_linear)(x)


def prompt_gelu(dtype: mx.Dtype):
    """The GELU of a decoder's prompt: on the CPU at float32, cpu_simd's (MLX's bits, over the
    layer's own fresh output), else fast_gelu()'s."""
    simd = cpu_simd.chosen(dtype) if mx.default_device() == mx.cpu else None
    return simd.gelu_ if simd is not None else fast_gelu()


def _block(block, x: mx.array, xa: mx.array, mask, kv_cache, gelu):
    """ResidualAttentionBlock.__call__ (mlx-whisper 0.4.3), the same ops, gelu(x) its GELU."""
    kv, cross_kv = kv_cache if kv_cache else (None, None)
    y, kv, _ = block.attn(block.attn_ln(x), mask=mask, kv_cache=kv)
    x += y
    if block.cross_attn:
        y, cross_kv, _ = block.cross_attn(block.cross_attn_ln(x), xa, kv_cache=cross_kv)
        x += y
    x = x + block.mlp2(gelu(block.mlp1(block.mlp_ln(x))))
    return x, (kv, cross_kv)


def decoder_forward(decoder: TextDecoder, tokens: mx.array, xa: mx.array, cache: list, rows=None,
                    logits=None) -> mx.array:
    """TextDecoder.__call__ with the position offset read from the static cache.
    tokens (B, L); xa (B, n_audio_ctx, n_audio_state); cache: per block [KVCache, cross K/V];
    rows, logits: _blocks'. -> logits (B, L or len(rows), n_vocab)"""
    offset = cache[0][0].offset
    x = embed(decoder.token_embedding, tokens, on_cuda()) + decoder.positional_embedding[offset : offset + tokens.shape[-1]]
    return _blocks(decoder, x, xa, cache, rows, logits)


ONE_HOT_MAX = 1 << 26  # elements (128 MB in fp16)


def embed(embedding: nn.Module, tokens: mx.array, one_hot: bool) -> mx.array:
    """embedding(tokens); with `one_hot` (on CUDA), a float16 or bfloat16 table is read through
    a one-hot product instead of an indexed read, a Gather that MLX's JIT compiles on a
    machine's first run (rules.greedy_update). A row times a 1 plus the others times 0 is
    the row exactly, in any order and precision of the sums, but for a -0.0 in the table,
    which comes out +0.0 (tiny.en's holds 23): the position embedding added next leaves a
    zero of the other sign only where it holds -0.0 too, and the next sum erases that. Other
    tables (float32, which CUDA may multiply in TF32; quantized) keep the indexed read, and so
    do token counts whose one-hot matrix would pass ONE_HOT_MAX elements (a window's prompt of
    up to 224 tokens is 11.6M; a batch of 32 such prompts would be 372M)."""
    w = getattr(embedding, "weight", None)
    if (not one_hot or type(embedding) is not nn.Embedding or w.dtype not in (mx.float16, mx.bfloat16)
            or tokens.size * w.shape[0] > ONE_HOT_MAX):
        return embedding(tokens)
    return (tokens[..., None] == mx.arange(w.shape[0])).astype(w.dtype) @ w


class FlatStep:
    """One single-token decode step as one function over the decoder's own weight arrays.

    The module graph spends its time on the host, not the GPU: measured on an H100 (mlx
    0.32.4, tiny.en fp16, benchmarks/overhead.py) a step is ~350 primitives, MLX costs
    4-11 µs to dispatch each and 13-27 µs per matmul, while the math is ~0.02 ms. So this
    issues as few primitives as the math allows:
    - q|k|v in one matmul on a GPU: the three weights concatenated (k's missing bias is a
      zero), except in quantized layers, which run their own quantized matmuls;
    - heads by one reshape: with one query row, (B, 1, n_state) -> (B, n_head, 1, head_dim)
      needs no transpose, and neither does the way back;
    - biases shaped (1, 1, n) up front, so addmm broadcasts nothing.
    It writes the same `KVCache` buffers as the module path (which still runs the prompt)
    and reads the cross K/V that path computed once per window. Norms and SDPA go through
    the ops each rewritten layer was given: fused, composed, or (`exact`) rounded as
    mlx-whisper's graph rounds."""

    def __init__(self, decoder: TextDecoder):
        made = []  # arrays built here: evaluated once, not in the first step
        self.gelu = fast_gelu()
        # Layers rewritten to attend as mlx-whisper rounds (pipeline.rewritten, GPU fp16/bf16)
        self.exact = any(getattr(b.attn, "attention", None) == "rounded" for b in decoder.blocks)

        # On the CPU every matmul is stock's own call on stock's weight views. OpenBLAS picks its
        # kernel, and with it the order of its sums, by the operands' layout and shape: weights
        # laid out (in, out), or q|k|v as one matmul, gave other last bits than mlx-whisper's
        # Linear at one row for some shapes with scipy's OpenBLAS on AVX-512 (384x384,
        # 1152x384; tests/test_heldout.py::test_logits_bit_identical), and were no faster
        # there (benchmarks/cpu/profile.md §9). Likewise the self-attention's scores: mlx-whisper
        # scales k^T after transposing, which lays it out (head_dim, L) row by row, where
        # `k.swapaxes` of the cache is a transposed operand, and from 9 keys on OpenBLAS sums
        # the two in other orders. (On the CPU mx.fast's SDPA is that graph, so nothing is lost.)
        cpu = self.cpu = mx.default_device() == mx.cpu
        # A one-row step is all reading weights and cross K/V, which one CPU thread does more
        # slowly than two (benchmarks/cpu/profile.md §9): the logits and the cross attention's
        # heads run across the CPU streams (same ops on slices, same bits: tests/test_streams.py).
        self.across = cpu and len(cpu_streams()) > 1
        # At float32 the CPU's few-row products of the large-matrix kind (the logits, fc1: more
        # outputs than inputs) sum each output as one fma chain, and cpu_simd's chain_matmul
        # sums so too, reading the weight in place on its own threads: tiny.en's logits 7.5 ->
        # 4.5 ms a step on 2 cores, fc1 0.5 -> 0.05 ms. It stands in at the row counts where it
        # gives MLX's own product bit for bit on that weight (CheckedChain: the BLAS's order is
        # checked, not assumed); q, k, v, out and fc2 go through OpenBLAS's small-matrix
        # kernels, which sum otherwise, and stay MLX's.
        simd = cpu_simd.chosen(decoder.token_embedding.weight.dtype) if cpu else None
        emb = decoder.token_embedding
        self.logits = emb.as_linear
        self.logits_pieces = [0, emb.weight.shape[0]]  # the rows of the vocabulary each product takes
        if self.across and type(emb) is nn.Embedding:
            self.logits = lambda x: matmul_t_across_cpu_streams(x, emb.weight)
            self.logits_pieces = piece_bounds(emb.weight.shape[0])
        if simd is not None and type(emb) is nn.Embedding:
            # a quantized model's vocabulary (dequantized on the CPU) packs its 8-bit values
            self.logits = CheckedChain(simd, emb.weight, None, self.logits, source=getattr(emb, "quantized", None))

        def linear(m):
            """x -> m(x): addmm on the weight, its bias shaped up front; quantized layers and
            the CPU's call the layer itself (or chain_matmul, above, for the wider ones)."""
            if cpu and simd is not None and isinstance(m, nn.Linear) and m.weight.shape[0] > m.weight.shape[1]:
                return CheckedChain(simd, m.weight, m.get("bias") if "bias" in m else None, m,
                                    source=getattr(m, "quantized", None))
            if cpu or not isinstance(m, nn.Linear):
                return m
            w, b = m.weight.T, m.bias.reshape(1, 1, -1) if "bias" in m else None
            made.extend(a for a in (w, b) if a is not None)
            return (lambda x: mx.addmm(b, x, w)) if b is not None else (lambda x: x @ w)

        def qkv(a):
            """x -> (q, k, v); one matmul where the three are plain Linear layers (not on the CPU)."""
            if cpu or not all(isinstance(m, nn.Linear) for m in (a.query, a.key, a.value)):
                return lambda x: (a.query(x), a.key(x), a.value(x))
            D = a.query.weight.shape[0]
            w = mx.concatenate([a.query.weight, a.key.weight, a.value.weight]).T
            b = mx.concatenate([a.query.bias, mx.zeros((D,), w.dtype), a.value.bias]).reshape(1, 1, 3 * D)
            made.extend((w, b))
            return lambda x: mx.split(mx.addmm(b, x, w), 3, axis=-1)

        def norm(m):
            fn = mode_op(getattr(m, "mode", "fused"), "layer_norm")
            return lambda x: fn(x, m.weight, m.bias, m.eps)

        self.layers = []
        for b in decoder.blocks:
            a, c = b.attn, b.cross_attn
            self.layers.append((norm(b.attn_ln), qkv(a), linear(a.out), norm(b.cross_attn_ln), linear(c.query),
                                linear(c.out), norm(b.mlp_ln), linear(b.mlp1), linear(b.mlp2),
                                a.sdpa, c.sdpa))
        mx.eval(made)
        self.decoder, self.n_head = decoder, decoder.blocks[0].attn.n_head
        self.n_state = decoder.positional_embedding.shape[-1]
        self.scale = decoder.blocks[0].attn.qk_scale  # q and k each, as mlx-whisper scales them
        # One row on the CPU: the whole step in one C call where its first step gives these ops' bits
        self.native = NativeStep(simd, self, native_cross(decoder)) if simd is not None and config().cpu_step else None
        # A batch's rows (batched mode, one audio a row), greedy: their step in one C call
        self.native_rows = NativeRows(self.native, config().cpu_cross_half) if self.native is not None else None

    def __call__(self, tokens: mx.array, cache: list) -> mx.array:
        """tokens (B, 1) -> logits (B, 1, n_vocab); `_mlx_step`'s, or NativeStep's (the same bits)."""
        out = self.native(tokens, cache) if self.native is not None else None
        return out if out is not None else self._mlx_step(tokens, cache)

    def _mlx_step(self, tokens: mx.array, cache: list) -> mx.array:
        """tokens (B, 1) -> logits (B, 1, n_vocab); cache as `decoder_forward`'s, prompt already in.
        The cross K/V may hold one row per audio for B = n * G rows (beams, best-of samples):
        each audio's G rows then attend as G queries of its one row, which reads its K/V once
        (not when `exact`: G queries make a matrix product where stock's rows make G vector
        products, which may sum in another order, so the cross K/V are then one per row)."""
        dec, D, H, s = self.decoder, self.n_state, self.n_head, self.scale
        B, t = tokens.shape[0], cache[0][0].offset
        heads = (B, H, 1, D // H)  # one query row: the head split is a reshape
        n = cache[0][1][0].shape[0]  # audios
        x = dec.token_embedding(tokens) + dec.positional_embedding[t : t + 1]
        for (ln1, qkv, out, ln2, cq, co, ln3, fc1, fc2, sdpa, cross_sdpa), (kv, cross) in zip(self.layers, cache):
            q, k, v = qkv(ln1(x))
            k, v, mask = kv.update(k.reshape(heads), v.reshape(heads), False)
            if self.cpu:  # mlx-whisper's graph, k^T handed to the BLAS as that graph hands it (__init__)
                # row-major: at the cache's last position the keys span the buffer and the scaled
                # product would keep their transposed layout, which the BLAS sums otherwise
                # (stock's logits differed there)
                kt = mx.contiguous(k.swapaxes(-1, -2) * s)
                o = mx.softmax((q.reshape(heads) * s) @ kt, axis=-1, precise=True) @ v
            else:
                o = sdpa(q.reshape(heads) * s, k * s, v, 1.0, mask)
            x = x + out(o.reshape(B, 1, D))
            q = cq(ln2(x))  # (B, 1, D) -> (B, H, 1, hd), or (n, G, H, hd) -> (n, H, G, hd)
            q = q.reshape(heads) if n == B else q.reshape(n, B // n, H, D // H).transpose(0, 2, 1, 3)
            o = heads_across_cpu_streams(cross_sdpa, q * s, *cross, 1.0, None) if self.across else \
                cross_sdpa(q * s, *cross, 1.0, None)
            x = x + co((o if n == B else o.transpose(0, 2, 1, 3)).reshape(B, 1, D))
            x = x + fc2(self.gelu(fc1(ln3(x))))
        return self.logits(dec.ln(x))


def cross_kv(decoder: TextDecoder, xa: mx.array, bf16: bool = False):
    """Every block's cross K/V (WhisperAttention.cross_kv) for audio features xa (n_audio,
    n_audio_ctx, n_audio_state), as a prompt would compute them (`bf16`: on the CPU, their
    products in bfloat16 where it has AMX tiles, NativeCross); None where a block keeps
    mlx-whisper's own cross-attention (layers kept for word timestamps), whose cache holds
    another layout."""
    if not all(isinstance(b.cross_attn, WhisperAttention) for b in decoder.blocks):
        return None
    native = native_cross(decoder)
    made = native(xa, bf16) if native is not None else None
    return made if made is not None else [b.cross_attn.cross_kv(xa) for b in decoder.blocks]


class StaticInference(Inference):
    """mlx-whisper's Inference on static caches. `cross`: the window's cross K/V (cross_kv's,
    for the same audio features), already made: the prompt then reads them (issue 16: on the
    CPU the fast engine makes them with the encoder, once a window for all its decodes).
    `bf16`: batched mode's; where it makes them for a greedy batch the C step drives, their
    products in bfloat16 (NativeCross, on AMX tiles where the CPU has them)."""

    def __init__(self, model, cross=None, bf16: bool = False):
        super().__init__(model)
        self.cross, self.bf16 = cross, bf16
        self._rows_loop = None  # the C step of a batch's rows over these caches (rows_loop), once made
        # set by the task: a greedy batch whose rows the C step drives (their cross K/V may go
        # float16: cpu_batch.NativeRows.loop's `half`)
        self.greedy_rows = False

    def logits(self, tokens: mx.array, audio_features: mx.array, rows=None) -> mx.array:
        """mlx-whisper's Inference.logits, (B, L, n_vocab); for a prompt (L > 1, offset 0) with
        `rows`, only those positions' logits (B, len(rows), n_vocab). A position's logits do
        not depend on how many others are made with it: the vocabulary's product is of the
        BLAS's large-matrix kind at any row count, each output one chain of sums
        (kernels/cpu_simd.py; tests/test_cpu_step.py checks against all rows), and a prompt
        of 224 tokens made them all for two (0.1 s of tiny.en's CPU window)."""
        decoder = self.model.decoder
        if self.kv_cache is None:
            self.kv_cache = [[KVCache(self.model.dims.n_text_ctx), None if self.cross is None else self.cross[e]]
                             for e in range(len(decoder.blocks))]
        # One flat step per decoder, built on first use and kept on the decoder module; None
        # where layers kept for word timestamps hold mlx-whisper's own cross-attention.
        if "_whisperfast_step" not in decoder.__dict__:
            flat = all(isinstance(b.cross_attn, WhisperAttention) for b in decoder.blocks)
            decoder.__dict__["_whisperfast_step"] = FlatStep(decoder) if flat else None
        step = decoder.__dict__["_whisperfast_step"]
        group = tokens.shape[0] // audio_features.shape[0]
        if group > 1 and self.kv_cache[0][0].offset == 0:
            shared = step is not None and not step.exact  # cross K/V one per audio (FlatStep.__call__)
            return self._group_prompt(decoder, tokens, audio_features, group, shared_cross=shared)
        if step is not None and step.cpu and tokens.shape == (1, 1) and self.kv_cache[0][0].offset == 0:
            return self._one_token_prompt(step, tokens, audio_features, rows)
        if step is not None and step.cpu and tokens.shape[0] > 1 and tokens.shape[1] == 1 and \
                audio_features.shape[0] == tokens.shape[0] and self.kv_cache[0][0].offset == 0:
            out = self._rows_prompt(tokens, audio_features, rows)
            if out is not None:
                return out
        if step is not None and step.cpu and rows is not None and tokens.shape[0] == 1 and self.kv_cache[0][0].offset == 0:
            out = self._native_prompt(step, tokens, audio_features, rows)
            if out is not None:
                return out
        if step is None or tokens.shape[-1] > 1 or self.kv_cache[0][0].offset == 0:
            product = step.logits if step is not None and rows is not None else None
            return decoder_forward(decoder, tokens, audio_features, self.kv_cache, rows, product).astype(mx.float32)
        return step(tokens, self.kv_cache).astype(mx.float32)

    def _one_token_prompt(self, step: "FlatStep", tokens: mx.array, audio_features: mx.array, rows) -> mx.array:
        """A prompt of one token (an English-only model's SOT, no previous text), one audio, on
        the CPU: the step's, which is stock's prompt bit for bit at one position (its self-
        attention over one key gives that key's value exactly, whatever the score; the rest are
        the same products at one row), after the cross K/V; the C step where it runs (~2 ms,
        against ~10 ms of the module graph's ops for tiny.en). -> (1, 1 or len(rows), n_vocab)"""
        self._ready(audio_features)
        out = step(tokens, self.kv_cache).astype(mx.float32)
        return out if rows is None else out[:, list(rows)]

    def _rows_prompt(self, tokens: mx.array, audio_features: mx.array, rows):
        """A one-token prompt (an English-only model's SOT) for a batch's rows, one audio each, on
        the CPU: the C step of the rows (rows_loop) at position 0, which is MLX's step there,
        itself stock's prompt bit for bit at one position (as _one_token_prompt's, a row at a
        time; tests/test_cpu_batch.py checks the rows). -> (B, 1 or len(rows), n_vocab); None
        where the module graph is to run."""
        if self.native_rows() is None:
            return None
        self._ready(audio_features)
        step = self.rows_loop()
        if step is None:
            return None
        out = mx.array(step(tokens[:, 0].tolist(), list(range(tokens.shape[0]))))[:, None]
        return out if rows is None else out[:, list(rows)]

    def rows_loop(self):
        """The C step of a batch's rows over these caches (cpu_batch.NativeRows.loop: tokens,
        rows -> logits on the host), made once, for the prompt and the loop after it; None
        where it cannot run or has been found to differ."""
        if self._rows_loop is None:
            batch = self.native_rows()
            self._rows_loop = (batch.loop(self.kv_cache, self.greedy_rows) if batch is not None else None) or False
        return self._rows_loop if self._rows_loop and self.native_rows() is not None else None

    def _native_prompt(self, step: "FlatStep", tokens: mx.array, audio_features: mx.array, rows):
        """A prompt of several tokens (a window's previous text), one audio, on the CPU: the C
        prompt (cpu_step.NativeStep.prompt; ~2x faster, on both cores), stock's graph's bits,
        after the cross K/V; None where the module graph is to run."""
        native = self.native_step()
        if native is None or audio_features.shape[0] != 1:
            return None
        self._ready(audio_features)
        graph = lambda: decoder_forward(self.model.decoder, tokens, audio_features, self.kv_cache, rows,  # noqa: E731
                                        step.logits).astype(mx.float32)
        return native.prompt(tokens, self.kv_cache, rows, graph)

    def _ready(self, audio_features: mx.array):
        """Every layer's cross K/V (made here where the engine gave none) and its self-attention
        buffers, for a step that writes them itself (the CPU's C step or prompt)."""
        if self.kv_cache[0][1] is None:
            # batched mode's greedy batch: made in bfloat16 as its encoder's were (a sampled one keeps float32)
            bf16 = self.bf16 and self.greedy_rows
            for entry, kv_cross in zip(self.kv_cache, cross_kv(self.model.decoder, audio_features, bf16)):
                entry[1] = kv_cross
        k = self.kv_cache[0][1][0]
        for kv, _ in self.kv_cache:
            kv.reserve(k.shape[0], k.shape[1], k.shape[3], k.dtype)

    def native_step(self):
        """The CPU's C step (cpu_step.NativeStep) of this decoder's FlatStep, where it has one
        that has not been found to differ (or to be unsupported), else None."""
        step = self.model.decoder.__dict__.get("_whisperfast_step")
        native = step.native if step is not None else None
        return native if native is not None and not native.reason else None

    def native_rows(self):
        """The CPU's C step for a batch's rows (cpu_batch.NativeRows) of this decoder's
        FlatStep, where it has one that has not been found to differ, else None."""
        step = self.model.decoder.__dict__.get("_whisperfast_step")
        rows = step.native_rows if step is not None else None
        return rows if rows is not None and not rows.reason and not rows.native.reason else None

    def _group_prompt(self, decoder: TextDecoder, tokens: mx.array, audio_features: mx.array, group: int,
                      shared_cross: bool):
        """The prompt for `group` rows per audio (beams, best-of samples), rows i*G .. i*G+G-1
        being audio i's: they are one prompt (the task repeats it), so it runs once per audio
        and each row gets a copy of its self-attention cache. The cross K/V stay one per audio
        where the flat step shares them; the module path's attention wants them per row."""
        logits = decoder_forward(decoder, tokens[::group], audio_features, self.kv_cache)
        rows = mx.repeat(mx.arange(audio_features.shape[0]), group)
        for e, (kv, cross) in enumerate(self.kv_cache):
            kv.take(rows)
            if not shared_cross:
                self.kv_cache[e] = (kv, tuple(a[rows] for a in cross))
        return logits[rows].astype(mx.float32)

    def keep_rows(self, rows: mx.array):
        """Only `rows` (indices, one row an audio) decode on: their self-attention caches and
        cross K/V stay, the others' are let go."""
        for e, (kv, cross) in enumerate(self.kv_cache):
            kv.take(rows)
            self.kv_cache[e] = [kv, tuple(a[rows] for a in cross)]

    def rearrange_kv_cache(self, source_indices):
        """Each row's self-attention cache becomes its source row's; cross K/V are per audio
        (or, on the module path, alike within each audio's rows) and stay."""
        if source_indices != list(range(len(source_indices))):
            rows = mx.array(source_indices)
            for kv, _ in self.kv_cache:
                kv.take(rows)
