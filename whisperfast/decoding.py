"""The fused lane's decoding: mlx-whisper's own DecodingTask (options, logit filters,
temperature fallback, timestamp rules: all reused, none forked) driving the decoder
through preallocated self-attention KV caches instead of concatenation per token, with
the timestamp rules on the device, and, opt-in, single-token steps through one
`mx.compile`d function of fixed shapes."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import List, Union

import mlx.core as mx
from mlx_whisper.decoding import ApplyTimestampRules, DecodingOptions, DecodingResult, DecodingTask, Inference
from mlx_whisper.whisper import TextDecoder, Whisper

from .kernels.layers import KVCache, PositionalKV, WhisperAttention


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


def _step(decoder: TextDecoder, token: mx.array, xa: mx.array, pos: mx.array, keys: list, values: list, cross: list):
    """One token (B, 1) at position `pos` (int32 scalar): logits and the updated buffers."""
    cache = [[PositionalKV(k, v, pos), c] for k, v, c in zip(keys, values, cross)]
    x = decoder.token_embedding(token) + mx.take(decoder.positional_embedding, pos.reshape(1), axis=0)
    logits = _blocks(decoder, x, xa, cache)
    return logits, [c[0].keys for c in cache], [c[0].values for c in cache]


def compile_steps() -> bool:
    """Opt-in (WHISPERFAST_COMPILE=1). Measured on an H100 (mlx 0.32.4, tiny.en fp16): the
    compiled step ran 1.6 ms on the GPU against 1.15 ms uncompiled (the full-buffer mask
    keeps SDPA off its fused decode kernel), and its first trace JIT-compiles for ~38 s."""
    return os.environ.get("WHISPERFAST_COMPILE") == "1"


class StaticInference(Inference):
    def logits(self, tokens: mx.array, audio_features: mx.array) -> mx.array:
        decoder = self.model.decoder
        if self.kv_cache is None:
            self.kv_cache = [[KVCache(self.model.dims.n_text_ctx), None] for _ in decoder.blocks]
        first = self.kv_cache[0][0]
        if tokens.shape[-1] > 1 or first.offset == 0 or not compile_steps():
            return decoder_forward(decoder, tokens, audio_features, self.kv_cache).astype(mx.float32)
        if first.offset >= first.n_ctx:
            raise ValueError(f"KV cache full at n_ctx {first.n_ctx}")
        # One trace per decoder (the same shapes every step); kept on the decoder module.
        step = decoder.__dict__.setdefault("_whisperfast_step", mx.compile(lambda *a: _step(decoder, *a)))
        pos = mx.array(first.offset, dtype=mx.int32)
        logits, keys, values = step(tokens, audio_features, pos, [c[0].keys for c in self.kv_cache],
                                    [c[0].values for c in self.kv_cache], [c[1] for c in self.kv_cache])
        for c, k, v in zip(self.kv_cache, keys, values):
            c[0].keys, c[0].values, c[0].offset = k, v, c[0].offset + 1
        return logits.astype(mx.float32)

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


class StaticCacheTask(DecodingTask):
    def __init__(self, model: Whisper, options: DecodingOptions):
        super().__init__(model, options)
        self.inference = StaticInference(model)
        self.logit_filters = [
            DeviceTimestampRules(f.tokenizer, f.sample_begin, f.max_initial_timestamp_index)
            if type(f) is ApplyTimestampRules else f
            for f in self.logit_filters
        ]


def decode(model: Whisper, mel: mx.array, options: DecodingOptions = DecodingOptions(),
           **kwargs) -> Union[DecodingResult, List[DecodingResult]]:
    """mlx_whisper.decoding.decode, on static KV caches."""
    if single := mel.ndim == 2:
        mel = mel[None]
    if kwargs:
        options = replace(options, **kwargs)
    result = StaticCacheTask(model, options).run(mel)
    return result[0] if single else result


class FastWhisper(Whisper):
    """A rewritten Whisper whose `decode` uses static KV caches."""

    decode = decode
