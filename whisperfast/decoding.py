"""The fused lane's decoding: mlx-whisper's own DecodingTask (options, logit filters,
greedy update, temperature fallback: all reused) driving the decoder through preallocated
self-attention KV caches instead of concatenation per token. Three pieces are its own,
each checked against mlx-whisper's: the timestamp rules as array ops on the device,
single-token steps issued as one flat function, and a main loop that reads the end of
text back lazily."""

from __future__ import annotations

import copy
from dataclasses import replace
from functools import lru_cache
from typing import List, Union

import mlx.core as mx
import mlx.nn as nn
from mlx_whisper.decoding import (ApplyTimestampRules, DecodingOptions, DecodingResult, DecodingTask, Inference,
                                  SuppressBlank, SuppressTokens)
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
    the ops each rewritten layer was given, fused or composed."""

    def __init__(self, decoder: TextDecoder):
        made = []  # arrays built here: evaluated once, not in the first step

        def linear(m):
            """x -> m(x): addmm on the weight laid out once; quantized layers call themselves."""
            if not isinstance(m, nn.Linear):
                return m
            w, b = m.weight.T, m.bias.reshape(1, 1, -1) if "bias" in m else None
            made.extend(a for a in (w, b) if a is not None)
            return (lambda x: mx.addmm(b, x, w)) if b is not None else (lambda x: x @ w)

        def qkv(a):
            """x -> (q, k, v); one matmul where the three are plain Linear layers."""
            if not all(isinstance(m, nn.Linear) for m in (a.query, a.key, a.value)):
                return lambda x: (a.query(x), a.key(x), a.value(x))
            D = a.query.weight.shape[0]
            w = mx.concatenate([a.query.weight, a.key.weight, a.value.weight]).T
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
                                _op(a.mode, "scaled_dot_product_attention"), _op(c.mode, "scaled_dot_product_attention")))
        mx.eval(made)
        self.decoder, self.n_head = decoder, decoder.blocks[0].attn.n_head
        self.n_state = decoder.positional_embedding.shape[-1]
        self.scale = decoder.blocks[0].attn.qk_scale  # q and k each, as mlx-whisper scales them

    def __call__(self, tokens: mx.array, cache: list) -> mx.array:
        """tokens (B, 1) -> logits (B, 1, n_vocab); cache as `decoder_forward`'s, prompt already in."""
        dec, D, H, s = self.decoder, self.n_state, self.n_head, self.scale
        B, t = tokens.shape[0], cache[0][0].offset
        heads = (B, H, 1, D // H)  # one query row: the head split is a reshape
        x = dec.token_embedding(tokens) + dec.positional_embedding[t : t + 1]
        for (ln1, qkv, out, ln2, cq, co, ln3, fc1, fc2, sdpa, cross_sdpa), (kv, cross) in zip(self.layers, cache):
            q, k, v = qkv(ln1(x))
            k, v, mask = kv.update(k.reshape(heads), v.reshape(heads), False)
            x = x + out(sdpa(q.reshape(heads) * s, k * s, v, 1.0, mask).reshape(B, 1, D))
            x = x + co(cross_sdpa(cq(ln2(x)).reshape(heads) * s, *cross, 1.0, None).reshape(B, 1, D))
            x = x + fc2(nn.gelu(fc1(ln3(x))))
        return dec.token_embedding.as_linear(dec.ln(x))


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
        if step is None or tokens.shape[-1] > 1 or self.kv_cache[0][0].offset == 0:
            return decoder_forward(decoder, tokens, audio_features, self.kv_cache).astype(mx.float32)
        return step(tokens, self.kv_cache).astype(mx.float32)

    def rearrange_kv_cache(self, source_indices):
        if source_indices != list(range(len(source_indices))):
            raise NotImplementedError("beam search is not implemented by mlx-whisper either")


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


class StaticCacheTask(DecodingTask):
    """mlx-whisper's DecodingTask on static caches, with the end of text checked lazily."""

    def __init__(self, model: Whisper, options: DecodingOptions):
        # mlx-whisper builds SuppressBlank's and SuppressTokens' masks for every task, on the
        # host (a tiktoken call, then 51865-float copies: ~1 ms a window on an H100); they
        # depend only on the tokenizer, the vocabulary and the suppressed ids, so they are kept.
        super().__init__(model, replace(options, suppress_blank=False, suppress_tokens=None))
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
        # Sampling (temperature > 0) checks every step: extra steps would draw random numbers.
        # So does the CUDA kernel's loop (_main_loop): a step costs the host ~60 µs and the
        # GPU 0.2-0.3 ms (tiny.en, base), and reading every k-th step measured the same for
        # k = 1 to 1000 (benchmarks/cuda_step_profile.py): running past the end gains nothing.
        self.eot_check = 4 if mx.default_device() == mx.gpu and options.temperature == 0 else 1
        self.inference = StaticInference(model)
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
    `options`, on the engine this model has: the long-form loop's one entry into decoding."""
    return model.decode(mel, options)


class FastWhisper(Whisper):
    """A rewritten Whisper whose `decode` uses static KV caches, and whose `logits` for a
    short prompt (language detection's) run on the CUDA kernel where it applies."""

    decode = decode

    def logits(self, tokens: mx.array, audio_features: mx.array) -> mx.array:
        out = prompt_logits(self, tokens, audio_features)
        return super().logits(tokens, audio_features) if out is None else out
