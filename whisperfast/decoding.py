"""The fused lane's decoding: mlx-whisper's own DecodingTask (options, logit filters,
temperature fallback, timestamp rules: all reused, none forked) driving the decoder
through preallocated self-attention KV caches instead of concatenation per token."""

from __future__ import annotations

from dataclasses import replace
from typing import List, Union

import mlx.core as mx
from mlx_whisper.decoding import DecodingOptions, DecodingResult, DecodingTask, Inference
from mlx_whisper.whisper import TextDecoder, Whisper

from .kernels.layers import KVCache, WhisperAttention


def decoder_forward(decoder: TextDecoder, tokens: mx.array, xa: mx.array, cache: list) -> mx.array:
    """TextDecoder.__call__ with the position offset read from the static cache.
    tokens (B, L); xa (B, n_audio_ctx, n_audio_state); cache: per block [KVCache, cross K/V]."""
    offset = cache[0][0].offset
    x = decoder.token_embedding(tokens) + decoder.positional_embedding[offset : offset + tokens.shape[-1]]
    for e, block in enumerate(decoder.blocks):
        x, cache[e], _ = block(x, xa, mask=decoder._mask, kv_cache=cache[e])
    return decoder.token_embedding.as_linear(decoder.ln(x))


class StaticInference(Inference):
    def logits(self, tokens: mx.array, audio_features: mx.array) -> mx.array:
        if self.kv_cache is None:
            n_ctx = self.model.dims.n_text_ctx
            self.kv_cache = [[KVCache(n_ctx), None] for _ in self.model.decoder.blocks]
        return decoder_forward(self.model.decoder, tokens, audio_features, self.kv_cache).astype(mx.float32)

    def rearrange_kv_cache(self, source_indices):
        if source_indices != list(range(len(source_indices))):
            raise NotImplementedError("beam search is not implemented by mlx-whisper either")


def supports_static_cache(model: Whisper) -> bool:
    return all(isinstance(b.attn, WhisperAttention) for b in model.decoder.blocks)


class StaticCacheTask(DecodingTask):
    def __init__(self, model: Whisper, options: DecodingOptions):
        super().__init__(model, options)
        self.inference = StaticInference(model)


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
