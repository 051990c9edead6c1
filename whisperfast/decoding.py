"""The fused lane's decoding: mlx-whisper's own DecodingTask (options, logit filters,
greedy update, temperature fallback: all reused) driving the decoder through preallocated
self-attention KV caches instead of concatenation per token. Three pieces are its own,
each checked against mlx-whisper's: the timestamp rules as array ops on the device,
single-token steps issued as one flat function, and a main loop that reads the end of
text back lazily.

Beam search, which mlx-whisper 0.4.3 declines, is openai/whisper's BeamSearchDecoder here,
in both lanes: the fused one (StaticCacheTask: beams are rows of the flat step, the static
caches gathered by source row) and the stock one (StockBeamTask: mlx-whisper's own
Inference, its concatenated caches gathered likewise), which the fused lane is checked
against. `decode_window` is the one entry that picks the lane."""

from __future__ import annotations

import copy
from dataclasses import replace
from functools import lru_cache
from typing import List, Optional, Union

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx_whisper.decoding import (ApplyTimestampRules, DecodingOptions, DecodingResult, DecodingTask, GreedyDecoder,
                                  Inference, SuppressBlank, SuppressTokens, TokenDecoder, compression_ratio)
from mlx_whisper.whisper import TextDecoder, Whisper

from .kernels.cuda_step import cuda_step, prompt_logits
from .kernels.layers import KVCache, WhisperAttention, _op


def _blocks(decoder: TextDecoder, x: mx.array, xa: mx.array, cache: list) -> mx.array:
    """The residual blocks, as TextDecoder.__call__ runs them; cache[e] = [self KV, cross K/V]."""
    for e, block in enumerate(decoder.blocks):
        x, cache[e], _ = block(x, xa, mask=decoder._mask, kv_cache=cache[e])
    return decoder.token_embedding.as_linear(decoder.ln(x))


def decoder_forward(decoder: TextDecoder, tokens: mx.array, xa: mx.array, cache: list) -> mx.array:
    """TextDecoder.__call__ with the position offset read from the static cache.
    tokens (B, L); xa (B, n_audio_ctx, n_audio_state); cache: per block [KVCache, cross K/V]."""
    offset = cache[0][0].offset
    x = decoder.token_embedding(tokens) + decoder.positional_embedding[offset : offset + tokens.shape[-1]]
    return _blocks(decoder, x, xa, cache)


class FlatStep:
    """One single-token decode step as one function over the decoder's own weight arrays.

    The module graph spends its time on the host, not the GPU: measured on an H100 (mlx
    0.32.4, tiny.en fp16, benchmarks/overhead.py) a step is ~350 primitives, MLX costs
    4-11 µs to dispatch each and 13-27 µs per matmul, while the math is ~0.02 ms. So this
    issues as few primitives as the math allows:
    - q|k|v in one matmul: the three weights concatenated (k's missing bias is a zero),
      except in quantized layers, which run their own quantized matmuls;
    - heads by one reshape: with one query row, (B, 1, n_state) -> (B, n_head, 1, head_dim)
      needs no transpose, and neither does the way back;
    - biases shaped (1, 1, n) up front, so addmm broadcasts nothing.
    It writes the same `KVCache` buffers as the module path (which still runs the prompt)
    and reads the cross K/V that path computed once per window. Norms and SDPA go through
    the ops each rewritten layer was given: fused, composed, or (`exact`) rounded as
    mlx-whisper's graph rounds."""

    def __init__(self, decoder: TextDecoder):
        made = []  # arrays built here: evaluated once, not in the first step
        # Layers rewritten to attend as mlx-whisper rounds (pipeline.rewritten, GPU fp16/bf16)
        self.exact = any(getattr(b.attn, "attention", None) == "rounded" for b in decoder.blocks)

        # On the CPU a one-row matmul against a transposed weight view makes OpenBLAS repack
        # the whole weight every step (MLX calls sgemm, never sgemv): the logits took 18-21 ms
        # a step against 8.8-10.4 ms on an (in, out) copy, with the same bits
        # (benchmarks/cpu/profile.md). GPU matmul kernels read the view as it is.
        cpu = mx.default_device() == mx.cpu
        layout = mx.contiguous if cpu else (lambda a: a)

        def linear(m):
            """x -> m(x): addmm on the weight laid out once; quantized layers call themselves."""
            if not isinstance(m, nn.Linear):
                return m
            w, b = layout(m.weight.T), m.bias.reshape(1, 1, -1) if "bias" in m else None
            made.extend(a for a in (w, b) if a is not None)
            return (lambda x: mx.addmm(b, x, w)) if b is not None else (lambda x: x @ w)

        def qkv(a):
            """x -> (q, k, v); one matmul where the three are plain Linear layers."""
            if not all(isinstance(m, nn.Linear) for m in (a.query, a.key, a.value)):
                return lambda x: (a.query(x), a.key(x), a.value(x))
            D = a.query.weight.shape[0]
            w = layout(mx.concatenate([a.query.weight, a.key.weight, a.value.weight]).T)
            b = mx.concatenate([a.query.bias, mx.zeros((D,), w.dtype), a.value.bias]).reshape(1, 1, 3 * D)
            made.extend((w, b))
            return lambda x: mx.split(mx.addmm(b, x, w), 3, axis=-1)

        def norm(m):
            fn = _op(getattr(m, "mode", "fused"), "layer_norm")
            return lambda x: fn(x, m.weight, m.bias, m.eps)

        self.layers = []
        for b in decoder.blocks:
            a, c = b.attn, b.cross_attn
            self.layers.append((norm(b.attn_ln), qkv(a), linear(a.out), norm(b.cross_attn_ln), linear(c.query),
                                linear(c.out), norm(b.mlp_ln), linear(b.mlp1), linear(b.mlp2),
                                a.sdpa, c.sdpa))
        emb = decoder.token_embedding  # the logits: x @ emb.weight.T, as Embedding.as_linear
        self.vocab = mx.contiguous(emb.weight.T) if cpu and type(emb) is nn.Embedding else None
        if self.vocab is not None:
            made.append(self.vocab)
        mx.eval(made)
        self.decoder, self.n_head = decoder, decoder.blocks[0].attn.n_head
        self.n_state = decoder.positional_embedding.shape[-1]
        self.scale = decoder.blocks[0].attn.qk_scale  # q and k each, as mlx-whisper scales them

    def __call__(self, tokens: mx.array, cache: list) -> mx.array:
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
            x = x + out(sdpa(q.reshape(heads) * s, k * s, v, 1.0, mask).reshape(B, 1, D))
            q = cq(ln2(x))  # (B, 1, D) -> (B, H, 1, hd), or (n, G, H, hd) -> (n, H, G, hd)
            q = q.reshape(heads) if n == B else q.reshape(n, B // n, H, D // H).transpose(0, 2, 1, 3)
            o = cross_sdpa(q * s, *cross, 1.0, None)
            x = x + co((o if n == B else o.transpose(0, 2, 1, 3)).reshape(B, 1, D))
            x = x + fc2(nn.gelu(fc1(ln3(x))))
        x = dec.ln(x)
        return x @ self.vocab if self.vocab is not None else dec.token_embedding.as_linear(x)


class StaticInference(Inference):
    def logits(self, tokens: mx.array, audio_features: mx.array) -> mx.array:
        decoder = self.model.decoder
        if self.kv_cache is None:
            self.kv_cache = [[KVCache(self.model.dims.n_text_ctx), None] for _ in decoder.blocks]
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
        if step is None or tokens.shape[-1] > 1 or self.kv_cache[0][0].offset == 0:
            return decoder_forward(decoder, tokens, audio_features, self.kv_cache).astype(mx.float32)
        return step(tokens, self.kv_cache).astype(mx.float32)

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

    def rearrange_kv_cache(self, source_indices):
        """Each row's self-attention cache becomes its source row's; cross K/V are per audio
        (or, on the module path, alike within each audio's rows) and stay."""
        if source_indices != list(range(len(source_indices))):
            rows = mx.array(source_indices)
            for kv, _ in self.kv_cache:
                kv.take(rows)


class RowInference(Inference):
    """mlx-whisper's Inference (concatenated caches) with the rearrangement beam search
    needs: mlx-whisper 0.4.3's gathers every cached array, the cross K/V too, which hold one
    row per audio, not per beam; here only the self-attention rows are gathered."""

    def rearrange_kv_cache(self, source_indices):
        if source_indices != list(range(len(source_indices))):
            rows = mx.array(source_indices)
            self.kv_cache = [((k[rows], v[rows]), cross) for (k, v), cross in self.kv_cache]


def supports_static_cache(model: Whisper) -> bool:
    return all(isinstance(b.attn, WhisperAttention) for b in model.decoder.blocks)


class DeviceTimestampRules(ApplyTimestampRules):
    """mlx-whisper's ApplyTimestampRules with its per-row Python loop (and the
    `tokens.tolist()` that waits for every token on the host) expressed as array ops, so
    step n+1 is queued before step n's token is read. Same constructor, same semantics,
    checked against the original on random token histories (tests/test_decoding.py).

    mlx-whisper 0.4.3 collects the *positions* of timestamp tokens where openai/whisper
    collects their values, so its "timestamps must not decrease" slice is always empty;
    this keeps that behaviour: the output must match mlx-whisper's, token for token."""

    def apply(self, logits: mx.array, tokens: mx.array) -> mx.array:
        ts_begin, eot = self.tokenizer.timestamp_begin, self.tokenizer.eot
        vocab = mx.arange(logits.shape[-1])
        n_sampled = tokens.shape[1] - self.sample_begin  # known on the host: a shape
        mask = mx.zeros(logits.shape, mx.float32)
        if self.tokenizer.no_timestamps is not None:
            mask = mx.where(vocab == self.tokenizer.no_timestamps, -mx.inf, mask)
        if n_sampled >= 1:
            last_ts = tokens[:, -1] >= ts_begin
            penult_ts = tokens[:, -2] >= ts_begin if n_sampled >= 2 else mx.ones_like(last_ts)
            # after a lone timestamp no text may follow; after a pair, no timestamp
            banned = ((last_ts & penult_ts)[:, None] & (vocab >= ts_begin)) | \
                     ((last_ts & ~penult_ts)[:, None] & (vocab < eot))
            mask = mx.where(banned, -mx.inf, mask)
        if n_sampled == 0:
            mask = mx.where(vocab < ts_begin, -mx.inf, mask)
            if self.max_initial_timestamp_index is not None:
                mask = mx.where(vocab > ts_begin + self.max_initial_timestamp_index, -mx.inf, mask)
        logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        timestamp_logprob = logprobs[:, ts_begin:].logsumexp(axis=-1, keepdims=True)
        max_text_token_logprob = logprobs[:, :ts_begin].max(axis=-1, keepdims=True)
        text = (vocab < ts_begin) & (timestamp_logprob > max_text_token_logprob)
        return logits + mx.where(text, -mx.inf, mask)


_BLANKS: dict = {}


def _suppress_blank(tokenizer, sample_begin: int, n_vocab: int) -> SuppressBlank:
    """mlx-whisper's SuppressBlank; its mask (" " and EOT) is made once per tokenizer encoding."""
    key = (tokenizer.encoding.name, tokenizer.eot, n_vocab)
    if key not in _BLANKS:
        _BLANKS[key] = SuppressBlank(tokenizer, sample_begin, n_vocab)
    kept = copy.copy(_BLANKS[key])  # shares the mask
    kept.sample_begin = sample_begin
    return kept


@lru_cache(maxsize=32)
def _suppress_tokens(suppress: tuple, n_vocab: int) -> SuppressTokens:
    return SuppressTokens(suppress, n_vocab)


class BeamSearchDecoder(TokenDecoder):
    """openai/whisper's BeamSearchDecoder (whisper/decoding.py, release 20250625) on MLX
    arrays, with its semantics: each of a group's `beam_size` rows proposes its
    beam_size + 1 likeliest next tokens; the group's candidates are ranked by summed log
    probability, those ending in EOT are finished (kept, best first, until there are
    max_candidates = round(beam_size * patience)), the best beam_size others go on, and the
    KV cache is rearranged by their source rows. The decode is complete when every audio has
    max_candidates finished. `finalize` tops each audio up to beam_size with its unfinished
    beams; mlx-whisper's MaximumLikelihoodRanker (openai's, with length_penalty) picks.

    The log-softmax and the top-k run on the device; the ranking runs on the host, as
    openai's does, on beam_size * (beam_size + 1) candidates a group. mlx-whisper's update
    returns `completed` where openai's loop breaks: after completion, an update (a main loop
    queues one before it reads `completed`) changes nothing."""

    def __init__(self, beam_size: int, eot: int, inference: Inference, patience: Optional[float] = None):
        self.beam_size, self.eot, self.inference = beam_size, eot, inference
        self.patience = patience or 1.0
        self.max_candidates: int = round(beam_size * self.patience)
        if self.max_candidates <= 0:
            raise ValueError(f"Invalid beam size ({beam_size}) or patience ({patience})")
        self.finished_sequences = None
        self.completed = False

    def reset(self):
        self.finished_sequences, self.completed = None, False

    def update(self, tokens: mx.array, logits: mx.array, sum_logprobs: mx.array):
        if tokens.shape[0] % self.beam_size != 0:
            raise ValueError(f"{tokens.shape}[0] % {self.beam_size} != 0")
        if self.completed:
            return tokens, mx.array(True), sum_logprobs
        n_audio = tokens.shape[0] // self.beam_size
        if self.finished_sequences is None:  # for the first update
            self.finished_sequences = [{} for _ in range(n_audio)]

        # the beam_size + 1 likeliest tokens a row, and their log probabilities as mlx-whisper's
        # GreedyDecoder computes them (logits - logsumexp), for those tokens only
        first = logits.shape[-1] - self.beam_size - 1
        top = mx.argpartition(logits, first, axis=-1)[:, first:]
        top_logprobs = mx.take_along_axis(logits, top, axis=-1) - mx.logsumexp(logits, axis=-1, keepdims=True)
        mx.eval(top, top_logprobs, tokens, sum_logprobs)  # one wait for the device
        top, top_logprobs, sums = np.array(top), np.array(top_logprobs), np.array(sum_logprobs, dtype=np.float32)
        prefixes = tokens.tolist()
        next_tokens, source_indices, next_sums, finished_sequences = [], [], [], []
        for i in range(n_audio):
            scores, sources, finished = {}, {}, {}
            # STEP 1: the cumulative log probabilities (float32 sums, as openai's) of the candidates;
            # in topk's order, likeliest first (ties: the lower token id)
            for j in range(self.beam_size):
                idx = i * self.beam_size + j
                for k in np.lexsort((top[idx], -top_logprobs[idx])):
                    sequence = tuple(prefixes[idx] + [int(top[idx, k])])
                    scores[sequence] = float(sums[idx] + top_logprobs[idx, k])
                    sources[sequence] = idx
            # STEP 2: rank the candidates and keep the top beam_size sequences for each audio
            saved = 0
            for sequence in sorted(scores, key=scores.get, reverse=True):
                if sequence[-1] == self.eot:
                    finished[sequence] = scores[sequence]
                else:
                    next_sums.append(scores[sequence])
                    next_tokens.append(sequence)
                    source_indices.append(sources[sequence])
                    saved += 1
                    if saved == self.beam_size:
                        break
            finished_sequences.append(finished)

        self.inference.rearrange_kv_cache(source_indices)
        # add newly finished sequences to self.finished_sequences
        for previously_finished, newly_finished in zip(self.finished_sequences, finished_sequences):
            for seq in sorted(newly_finished, key=newly_finished.get, reverse=True):
                if len(previously_finished) >= self.max_candidates:
                    break  # the candidate list is full
                previously_finished[seq] = newly_finished[seq]
        # mark as completed if all audio has enough number of samples
        self.completed = all(len(sequences) >= self.max_candidates for sequences in self.finished_sequences)
        return (mx.array(next_tokens, dtype=tokens.dtype), mx.array(self.completed),
                mx.array(next_sums, dtype=mx.float32))

    def finalize(self, preceding_tokens: mx.array, sum_logprobs: mx.array):
        """(n_audio, beam_size, L) tokens and (n_audio, beam_size) sums -> per audio, its
        candidates (token lists ending in EOT) and their sums."""
        sum_logprobs, preceding = np.array(sum_logprobs, dtype=np.float32), preceding_tokens.tolist()
        for i, sequences in enumerate(self.finished_sequences):
            if len(sequences) < self.beam_size:  # when not enough sequences are finished
                for j in list(np.argsort(sum_logprobs[i]))[::-1]:
                    sequences[tuple(preceding[i][j] + [self.eot])] = float(sum_logprobs[i][j])
                    if len(sequences) >= self.beam_size:
                        break
        tokens = [[list(seq) for seq in sequences] for sequences in self.finished_sequences]
        return tokens, [list(sequences.values()) for sequences in self.finished_sequences]


def _token_decoder(task: DecodingTask, options: DecodingOptions) -> TokenDecoder:
    """The decoding strategy, chosen once a task: openai's beam search where beam_size is
    given (at any temperature, as in openai's DecodingTask; its transcribe drops beam_size for
    the sampled fallback), else mlx-whisper's GreedyDecoder, which samples at temperature > 0
    (best_of samples are rows of it). Sets the task's group size (rows per audio)."""
    task.n_group = options.beam_size or options.best_of or 1
    if options.beam_size is not None:
        return BeamSearchDecoder(options.beam_size, task.tokenizer.eot, task.inference, options.patience)
    return GreedyDecoder(options.temperature, task.tokenizer.eot)


class GroupRun:
    """mlx-whisper 0.4.3's DecodingTask.run, generalized twice, its results otherwise alike:
    a decoder's `finalize` may give each audio a list of candidates (beam search's, as in
    openai's), and the rows of a batch of audio decoded in groups (n_audio > 1 with beams or
    best_of) take their features from `_row_features`: mlx-whisper's run broadcasts one
    audio's features over its group and fails for more."""

    def _row_features(self, audio_features: mx.array) -> mx.array:
        return audio_features

    def run(self, mel: mx.array) -> List[DecodingResult]:
        self.inference.reset()
        self.decoder.reset()
        tokenizer, n_audio = self.tokenizer, mel.shape[0]
        audio_features = self._get_audio_features(mel)  # encoder forward pass
        tokens = mx.broadcast_to(mx.array(self.initial_tokens), (n_audio, len(self.initial_tokens)))
        # detect language if requested, overwriting the language token
        languages, language_probs = self._detect_language(audio_features, tokens)
        if self.options.task == "lang_id":
            return [DecodingResult(audio_features=features, language=language, language_probs=probs)
                    for features, language, probs in zip(audio_features, languages, language_probs)]
        # repeat tokens by the group size, for beam search or best-of-n sampling
        if self.n_group > 1:
            tokens = mx.repeat(tokens, self.n_group, axis=0)
        tokens, sum_logprobs, no_speech_probs = self._main_loop(self._row_features(audio_features), tokens)
        no_speech_probs = no_speech_probs[:: self.n_group]
        # the final candidates for each group, sliced between the first sampled token and EOT
        tokens, sum_logprobs = self.decoder.finalize(tokens.reshape(n_audio, self.n_group, -1),
                                                     sum_logprobs.reshape(n_audio, self.n_group))
        if isinstance(tokens, mx.array):  # (n_audio, n_group, L): greedy and best_of
            tokens, sum_logprobs = tokens.tolist(), sum_logprobs.tolist()
        tokens = [[t[self.sample_begin : t.index(tokenizer.eot, self.sample_begin)] for t in s] for s in tokens]
        # select the top-ranked sample in each group
        selected = self.sequence_ranker.rank(tokens, sum_logprobs)
        tokens = [t[i] for i, t in zip(selected, tokens)]
        texts = [tokenizer.decode(t).strip() for t in tokens]
        sum_logprobs = [lp[i] for i, lp in zip(selected, sum_logprobs)]
        avg_logprobs = [lp / (len(t) + 1) for t, lp in zip(tokens, sum_logprobs)]
        fields = (texts, languages, tokens, audio_features, avg_logprobs, no_speech_probs.tolist())
        if len(set(map(len, fields))) != 1:
            raise RuntimeError(f"inconsistent result lengths: {list(map(len, fields))}")
        return [DecodingResult(audio_features=features, language=language, tokens=tokens, text=text,
                               avg_logprob=avg_logprob, no_speech_prob=no_speech_prob,
                               temperature=self.options.temperature, compression_ratio=compression_ratio(text))
                for text, language, tokens, features, avg_logprob, no_speech_prob in zip(*fields)]


class StockBeamTask(GroupRun, DecodingTask):
    """The stock lane with beam search, which mlx-whisper's own decode lacks: its
    DecodingTask, Inference (caches concatenated per token) and filters as they are, with
    openai's BeamSearchDecoder and a rearrangement that gathers rows (`RowInference`). The
    reference the fused lane's beams are checked against."""

    def __init__(self, model: Whisper, options: DecodingOptions):
        super().__init__(model, replace(options, beam_size=None, patience=None))
        self.options = self._verify_options(options)
        self.inference = RowInference(model)
        self.decoder = _token_decoder(self, options)

    def _row_features(self, audio_features: mx.array) -> mx.array:
        # its attention broadcasts one audio's K/V over a group's rows, and no more audio
        many = audio_features.shape[0] > 1 and self.n_group > 1
        return mx.repeat(audio_features, self.n_group, axis=0) if many else audio_features


class StaticCacheTask(GroupRun, DecodingTask):
    """mlx-whisper's DecodingTask on static caches, with the end of text checked lazily, and
    beam search (openai's) where beam_size is given."""

    def __init__(self, model: Whisper, options: DecodingOptions):
        # mlx-whisper builds SuppressBlank's and SuppressTokens' masks for every task, on the
        # host (a tiktoken call, then 51865-float copies: ~1 ms a window on an H100); they
        # depend only on the tokenizer, the vocabulary and the suppressed ids, so they are kept.
        # Its own constructor declines beam search; that is chosen below.
        super().__init__(model, replace(options, suppress_blank=False, suppress_tokens=None, beam_size=None,
                                        patience=None))
        self.options = self._verify_options(options)
        n_vocab, kept = model.dims.n_vocab, []
        if options.suppress_blank:
            kept.append(_suppress_blank(self.tokenizer, self.sample_begin, n_vocab))
        if options.suppress_tokens:
            kept.append(_suppress_tokens(self._get_suppress_tokens(), n_vocab))
        # Greedy decoding on the GPU reads `completed` (a host round trip) every 4th step.
        # Steps run past the end are harmless: after EOT the greedy update only appends EOT
        # and adds 0 to the logprob sums, and `run` cuts each row at its first EOT. On the
        # CPU a step is math (~25 ms for tiny), so wasted steps cost more than the reads.
        # Sampling (temperature > 0) checks every step: extra steps would draw random numbers;
        # so does beam search, whose update reads its candidates on the host anyway.
        # So does the CUDA kernel's loop (_main_loop): a step costs the host ~60 µs and the
        # GPU 0.2-0.3 ms (tiny.en, base), and reading every k-th step measured the same for
        # k = 1 to 1000 (benchmarks/cuda_step_profile.py): running past the end gains nothing.
        self.inference = StaticInference(model)
        self.decoder = _token_decoder(self, options)
        greedy = isinstance(self.decoder, GreedyDecoder) and options.temperature == 0
        self.eot_check = 4 if mx.default_device() == mx.gpu and greedy else 1
        self.logit_filters = kept + [
            DeviceTimestampRules(f.tokenizer, f.sample_begin, f.max_initial_timestamp_index)
            if type(f) is ApplyTimestampRules else f
            for f in self.logit_filters
        ]

    def _main_loop(self, audio_features: mx.array, tokens: mx.array):
        """mlx-whisper 0.4.3's _main_loop, the same steps and results, but for when
        `completed` is read. The next step is always queued before the host waits. Where
        the CUDA kernel applies (kernels/cuda_step.py) it runs every token, the prompt's too."""
        sum_logprobs = mx.zeros(tokens.shape[0])
        cuda = cuda_step(self, tokens.shape[0], audio_features.dtype)

        def step(inputs, tokens, sum_logprobs):
            pre_logits = self.inference.logits(inputs, audio_features)
            logits = pre_logits[:, -1]
            for logit_filter in self.logit_filters:
                logits = logit_filter.apply(logits, tokens)
            return (*self.decoder.update(tokens, logits, sum_logprobs), pre_logits)

        if cuda is not None and tokens.shape[1] <= cuda.MAX_PROMPT:
            tokens, completed, sum_logprobs, sot_logits = cuda.prompt(tokens, audio_features, self.sot_index)
        else:
            tokens, completed, sum_logprobs, pre_logits = step(tokens, tokens, sum_logprobs)
            sot_logits = pre_logits[:, self.sot_index]
            if cuda is not None:
                cuda.resume(audio_features, self.inference.kv_cache, tokens.shape[0])
        if self.tokenizer.no_speech is not None:
            no_speech_probs = mx.softmax(sot_logits, axis=-1)[:, self.tokenizer.no_speech]
        else:
            no_speech_probs = mx.full(tokens.shape[0], mx.nan)
        mx.async_eval(completed, tokens, sum_logprobs, no_speech_probs)
        eot_check = 1 if cuda is not None else self.eot_check
        for i in range(1, self.sample_len):
            if tokens.shape[-1] > self.n_ctx:
                break
            if cuda is not None:
                queued = cuda(tokens, sum_logprobs)
            else:
                queued = step(tokens[:, -1:], tokens, sum_logprobs)[:3]
            mx.async_eval(*queued)
            if i % eot_check == 0 and completed:
                break
            tokens, completed, sum_logprobs = queued
        return tokens, sum_logprobs, no_speech_probs


def decode(model: Whisper, mel: mx.array, options: DecodingOptions = DecodingOptions(),
           **kwargs) -> Union[DecodingResult, List[DecodingResult]]:
    """mlx_whisper.decoding.decode, on static KV caches."""
    if single := mel.ndim == 2:
        mel = mel[None]
    if kwargs:
        options = replace(options, **kwargs)
    result = StaticCacheTask(model, options).run(mel)
    return result[0] if single else result


def decode_window(model: Whisper, mel: mx.array, options: DecodingOptions) -> Union[DecodingResult, List[DecodingResult]]:
    """Decode one window (mel (n_frames, n_mels)) or a batch ((B, n_frames, n_mels)) under
    `options`, on the engine this model has: the long-form loop's one entry into decoding.
    The model's own decode (mlx-whisper's, exactly, on a stock model), except for beam search
    on a model whose decode has none: there the stock lane's `StockBeamTask`."""
    if options.beam_size is None or getattr(model, "beam_search", False):
        return model.decode(mel, options)
    if single := mel.ndim == 2:
        mel = mel[None]
    result = StockBeamTask(model, options).run(mel)
    return result[0] if single else result


class FastWhisper(Whisper):
    """A rewritten Whisper whose `decode` uses static KV caches, and whose `logits` for a
    short prompt (language detection's) run on the CUDA kernel where it applies."""

    decode = decode
    beam_search = True  # its decode runs beam search itself (decode_window reads this)

    def logits(self, tokens: mx.array, audio_features: mx.array) -> mx.array:
        out = prompt_logits(self, tokens, audio_features)
        return super().logits(tokens, audio_features) if out is None else out
