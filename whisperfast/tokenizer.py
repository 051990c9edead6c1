"""Whisper's tokenizer, built for a fresh process: mlx-whisper's `Tokenizer` class on the same
vocabulary, special tokens and split pattern as `mlx_whisper.tokenizer.get_encoding`, so
every id and text is the same; two things cost less (benchmarks/cold-start-cpu.md):

- the 50k-line vocabulary is parsed in one split, not line by line;
- `encode` checks for disallowed special tokens only where the text can hold one. tiktoken's
  check compiles a regular expression of all ~1600 special tokens in every process (0.3 s on
  a slow core), on the first `encode`, which `non_speech_tokens` makes in every decode task.
  Every Whisper special token starts with "<|": text without it holds none, and text with it
  goes through tiktoken's own check, so its error is unchanged.

The fast engine's tasks, the long-form loop and batched mode use it; the stock lane keeps
mlx-whisper's own."""

from __future__ import annotations

import binascii
import os
from functools import lru_cache
from typing import Optional

import tiktoken
from mlx_whisper import tokenizer as stock
from mlx_whisper.tokenizer import LANGUAGES, TO_LANGUAGE_CODE, Tokenizer

# mlx_whisper/tokenizer.py's get_encoding, 0.4.3
PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


class Encoding(tiktoken.Encoding):
    """tiktoken's Encoding, its special-token check skipped where no special token can be."""

    def encode(self, text, *, allowed_special=None, disallowed_special="all"):
        allowed_special = set() if allowed_special is None else allowed_special  # tiktoken's default
        if disallowed_special and "<|" not in text:
            disallowed_special = ()
        return super().encode(text, allowed_special=allowed_special, disallowed_special=disallowed_special)


@lru_cache(maxsize=None)
def get_encoding(name: str = "gpt2", num_languages: int = 99) -> Encoding:
    """mlx-whisper's `get_encoding(name, num_languages)`, token for token."""
    path = os.path.join(os.path.dirname(stock.__file__), "assets", f"{name}.tiktoken")
    with open(path, "rb") as f:
        fields = f.read().split()
    ranks = dict(zip(map(binascii.a2b_base64, fields[0::2]), map(int, fields[1::2])))
    specials = [
        "<|endoftext|>",
        "<|startoftranscript|>",
        *[f"<|{lang}|>" for lang in list(LANGUAGES.keys())[:num_languages]],
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        "<|nospeech|>",
        "<|notimestamps|>",
        *[f"<|{i * 0.02:.2f}|>" for i in range(1501)],
    ]
    special_tokens = {token: len(ranks) + i for i, token in enumerate(specials)}
    return Encoding(name=os.path.basename(path), explicit_n_vocab=len(ranks) + len(specials), pat_str=PATTERN,
                    mergeable_ranks=ranks, special_tokens=special_tokens)


@lru_cache(maxsize=None)
def get_tokenizer(multilingual: bool, *, num_languages: int = 99, language: Optional[str] = None,
                  task: Optional[str] = None) -> Tokenizer:
    """mlx-whisper's `get_tokenizer`, with the same arguments and checks, on `get_encoding`."""
    if language is not None:
        language = language.lower()
        if language not in LANGUAGES:
            if language not in TO_LANGUAGE_CODE:
                raise ValueError(f"Unsupported language: {language}")
            language = TO_LANGUAGE_CODE[language]
    if multilingual:
        name, language, task = "multilingual", language or "en", task or "transcribe"
    else:
        name, language, task = "gpt2", None, None
    return Tokenizer(encoding=get_encoding(name, num_languages), num_languages=num_languages, language=language,
                     task=task)

