"""Whisper's decoding wing: the engines that turn a window's audio features into tokens.

    engine.py     which engine decodes (stock, fast; sampled windows on stock where needed)
    task.py       mlx-whisper's DecodingTask, generalized: static caches, beams, groups of rows
    language.py   language detection on the engine's logits
    encoder.py    the encoder's forward pass, shared out among CPU streams on the fast engine
    flat.py       the static-cache decoder and its one-function step
    cuda/         the greedy step as one CUDA kernel (and the forward pass of beams and samples)
    beam.py       openai/whisper's beam search
    rules.py      the logit filters as device ops
    rewrite.py    the rewrite table row for mlx-whisper's attention
    words.py      word timestamps: mlx-whisper's alignment, its DTW and median filter in numpy
    attention.py  WhisperAttention and the static KV cache

Imports run down that list, never back up."""

from .encoder import encode, windows_per_call
from .engine import Engine, decode_window, tokenizer_for
from .rewrite import rewrite_whisper

__all__ = ["Engine", "decode_window", "encode", "rewrite_whisper", "tokenizer_for", "windows_per_call"]
