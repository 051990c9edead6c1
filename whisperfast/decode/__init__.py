"""Whisper's decoding wing: the engines that turn a window's audio features into tokens.

    engine.py     which engine decodes (stock, fast; sampled windows on stock where needed)
    task.py       mlx-whisper's DecodingTask, generalized: static caches, beams, groups of rows
    flat.py       the static-cache decoder and its one-function step
    cuda/         the greedy step as one CUDA kernel
    beam.py       openai/whisper's beam search
    rules.py      the logit filters as device ops
    attention.py  WhisperAttention and the static KV cache
    language.py   language detection on the engine's logits
    rewrite.py    the rewrite table row for mlx-whisper's attention

Imports run downwards in that list (cuda/ below task.py), never back up."""

from .engine import Engine, decode_window
from .rewrite import rewrite_whisper

__all__ = ["Engine", "decode_window", "rewrite_whisper"]
