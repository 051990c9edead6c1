"""Whisper's tokenizer, built for a fresh process: mlx-whisper's `Tokenizer` class on the same
vocabulary, special tokens and split pattern as `mlx_whisper.tokenizer.get_encoding`, so
every id and text is the same; two things cost less (benchmarks/cold-start-cpu.md):

- the 50k-line vocabulary is parsed in one split, not line by line;
- `encode` checks for disallowed special tokens only where the text can hold one. tiktoken's
  check compiles a regular expression of all ~1600 special tokens in every process (0.3 s on
  a slow core), on the first `encode`, which `non_speech_tokens` makes in every decode task.
  Every Whisper special token starts with "<|": text without it holds none, and text with it
  goes through tiktoken's own check, so its error is unchanged;
- tiktoken's `CoreBPE` (its regex and maps, ~50 ms) is built on the first `encode` it is needed
  for. A transcription without a prompt encodes only single pieces (SuppressBlank's " ", the
  non-speech symbols) and decodes ids: both are table lookups and tiktoken's byte-pair merge,
  written out here.

The fast engine's tasks, the long-form loop and batched mode use it; the stock lane keeps
mlx-whisper's own."""

from __future__ import annotations

import binascii
import os
import unicodedata
from functools import cached_property, lru_cache
from typing import Optional

import tiktoken
from tiktoken import _tiktoken
from mlx_whisper import tokenizer as stock
from mlx_whisper.tokenizer import LANGUAGES, TO_LANGUAGE_CODE, Tokenizer

# mlx_whisper/tokenizer.py's get_encoding, 0.4.3
PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


class Encoding(tiktoken.Encoding):
    """tiktoken's Encoding: the same ids and errors, `CoreBPE` built only when first needed."""

    def __init__(self, name: str, *, pat_str: str, mergeable_ranks: dict[bytes, int], special_tokens: dict[str, int],
                 explicit_n_vocab: Optional[int] = None):
        # tiktoken's __init__ (0.14) but for its last line, which builds CoreBPE
        self.name, self._pat_str = name, pat_str
        self._mergeable_ranks, self._special_tokens = mergeable_ranks, special_tokens
        self.max_token_value = max(max(mergeable_ranks.values()), max(special_tokens.values(), default=0))
        if explicit_n_vocab:
            assert len(mergeable_ranks) + len(special_tokens) == explicit_n_vocab
            assert self.max_token_value == explicit_n_vocab - 1
        self._special_token_values = set(special_tokens.values())
        self._bytes = {i: b for b, i in mergeable_ranks.items()}
        self._bytes.update((i, t.encode()) for t, i in special_tokens.items())

    @cached_property
    def _core_bpe(self):
        return _tiktoken.CoreBPE(self._mergeable_ranks, self._special_tokens, self._pat_str)

    def encode(self, text, *, allowed_special=None, disallowed_special="all"):
        if _one_piece(text):
            return _byte_pair_encode(self._mergeable_ranks, text.encode())
        allowed_special = set() if allowed_special is None else allowed_special  # tiktoken's default
        if disallowed_special and "<|" not in text:
            disallowed_special = ()
        return super().encode(text, allowed_special=allowed_special, disallowed_special=disallowed_special)

    def encode_single_token(self, text_or_bytes) -> int:
        piece = text_or_bytes.encode() if isinstance(text_or_bytes, str) else text_or_bytes
        token = self._mergeable_ranks.get(piece)
        if token is None:
            token = self._special_tokens.get(piece.decode(errors="ignore"))  # as CoreBPE: a special token's text
        if token is None:
            raise KeyError(text_or_bytes)
        return token

    def decode_bytes(self, tokens) -> bytes:
        return b"".join(self._bytes[t] for t in tokens)

    def decode(self, tokens, errors: str = "replace") -> str:
        return self.decode_bytes(tokens).decode("utf-8", errors=errors)

    def decode_single_token_bytes(self, token: int) -> bytes:
        return self._bytes[token]


def _one_piece(text: str) -> bool:
    """Whether PATTERN splits `text` into one piece that holds no special token: a single " ",
    or an optional " " and then punctuation and symbols alone (never a letter, number or space,
    so no other alternative of PATTERN can match inside it)."""
    body = text[1:] if text.startswith(" ") else text
    if not body:
        return text == " "
    return "<|" not in body and all(unicodedata.category(c)[0] in "PS" for c in body)


def _byte_pair_encode(ranks: dict[bytes, int], piece: bytes) -> list[int]:
    """tiktoken's byte-pair merge of one piece: merge the adjacent pair of lowest rank, the
    leftmost on a tie, until no pair is a token."""
    if piece in ranks:
        return [ranks[piece]]
    parts = [piece[i:i + 1] for i in range(len(piece))]
    while len(parts) > 1:
        rank, at = min(((ranks.get(a + b), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))
                        if a + b in ranks), default=(None, None))
        if rank is None:
            break
        parts[at:at + 2] = [parts[at] + parts[at + 1]]
    return [ranks[p] for p in parts]


def vocabulary_file(name: str) -> str:
    """mlx-whisper's tiktoken file of vocabulary `name` ("gpt2" or "multilingual")."""
    return os.path.join(os.path.dirname(stock.__file__), "assets", f"{name}.tiktoken")


@lru_cache(maxsize=None)
def get_encoding(name: str = "gpt2", num_languages: int = 99) -> Encoding:
    """mlx-whisper's `get_encoding(name, num_languages)`, token for token."""
    path = vocabulary_file(name)
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

