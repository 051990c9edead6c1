"""Measurement prototype, not part of whisperfast (benchmarks/cold-start-cpu.md): what the
tokenizer warm-up would cost if mlx-whisper's encoding were built with a faster vocabulary
parse (one split and binascii, same dict, same order) and a special-token check that skips
tiktoken's regex of every special token when the text holds no "<|" (every Whisper special
token starts so; with one, tiktoken's own check runs, so its error is unchanged).

It replaces `mlx_whisper.tokenizer.get_encoding`, which whisperfast does not do: it was
imported at the top of `pipeline._warm_tokenizer` in a copy of the tree, for
benchmarks/cpu-cold/phases.py. The transcript's JSON (timings aside) was byte-identical, and
`regex` was no longer imported."""
import binascii
import functools
import os

import tiktoken
from mlx_whisper import tokenizer as T


class FastCheckEncoding(tiktoken.Encoding):
    def encode(self, text, *, allowed_special=set(), disallowed_special="all"):
        if disallowed_special and "<|" not in text:  # every Whisper special token starts with "<|"
            disallowed_special = ()
        return super().encode(text, allowed_special=allowed_special, disallowed_special=disallowed_special)


@functools.lru_cache(maxsize=None)
def get_encoding(name="gpt2", num_languages=99):
    vocab_path = os.path.join(os.path.dirname(T.__file__), "assets", f"{name}.tiktoken")
    with open(vocab_path, "rb") as f:
        toks = f.read().split()
    ranks = dict(zip(map(binascii.a2b_base64, toks[0::2]), map(int, toks[1::2])))
    n_vocab = len(ranks)
    special_tokens = {}
    specials = ["<|endoftext|>", "<|startoftranscript|>", *[f"<|{lang}|>" for lang in list(T.LANGUAGES.keys())[:num_languages]],
                "<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>",
                *[f"<|{i * 0.02:.2f}|>" for i in range(1501)]]
    for token in specials:
        special_tokens[token] = n_vocab
        n_vocab += 1
    return FastCheckEncoding(name=os.path.basename(vocab_path), explicit_n_vocab=n_vocab,
                             pat_str=r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
                             mergeable_ranks=ranks, special_tokens=special_tokens)


T.get_encoding = get_encoding
