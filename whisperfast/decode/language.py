"""Language detection: mlx-whisper's `detect_language`, the SOT's logits taken from the
engine (the CUDA kernel where it applies, else the module graph)."""

from __future__ import annotations

from functools import lru_cache
from typing import List, Tuple

import mlx.core as mx
import numpy as np
from mlx_whisper.tokenizer import Tokenizer
from mlx_whisper.whisper import Whisper

from .attention import supports_static_cache
from .cuda.step import prompt_logits


def sot_logits(model: Whisper, tokens: mx.array, features: mx.array, tokenizer: Tokenizer) -> mx.array:
    """Whisper.logits for the SOT alone: tokens (n_audio, 1), features (n_audio,
    n_audio_ctx, n_audio_state) -> (n_audio, 1, n_vocab). `tokenizer`: the one the
    transcription's filters will come from (prompt_logits runs the kernel compiled for them)."""
    out = prompt_logits(model, tokens, features, tokenizer) if supports_static_cache(model) else None
    return model.logits(tokens, features) if out is None else out


def detect_language(model: Whisper, features: mx.array, tokenizer: Tokenizer) -> Tuple[mx.array, List[dict]]:
    """mlx_whisper.decoding.detect_language on encoded audio: features (n_audio, n_audio_ctx,
    n_audio_state) -> (the likeliest language token per audio, (n_audio,); per audio, the
    probability of each language code)."""
    if tokenizer.language is None or tokenizer.language_token not in tokenizer.sot_sequence:
        raise ValueError("This model doesn't have language tokens so it can't perform lang id")
    x = mx.array([[tokenizer.sot]] * features.shape[0])
    logits = sot_logits(model, x, features, tokenizer)[:, 0]
    logits += language_mask(tuple(tokenizer.all_language_tokens), logits.shape[-1])  # the language tokens only
    probs = np.array(mx.softmax(logits, axis=-1))
    return mx.argmax(logits, axis=-1), [
        {c: probs[i, j].item() for j, c in zip(tokenizer.all_language_tokens, tokenizer.all_language_codes)}
        for i in range(features.shape[0])]


@lru_cache(maxsize=8)
def language_mask(language_tokens: tuple, n_vocab: int) -> mx.array:
    """0 at the language tokens, -inf elsewhere, written on the host: mlx-whisper writes it on
    the device, an indexed write (a Scatter), which MLX's CUDA backend compiles with NVRTC on
    a machine's first run (rules.greedy_update)."""
    mask = np.full(n_vocab, -np.inf, np.float32)
    mask[list(language_tokens)] = 0.0
    return mx.array(mask)
