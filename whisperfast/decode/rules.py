"""mlx-whisper's logit filters as the static-cache engines apply them: the timestamp rules as
array ops on the device, and the suppression masks built once per tokenizer, not per task."""

from __future__ import annotations

import copy
from functools import lru_cache

import mlx.core as mx
from mlx_whisper.decoding import ApplyTimestampRules, SuppressBlank, SuppressTokens

from ..kernels import cpu_simd


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
        logprobs = logits - logsumexp(logits)
        timestamp_logprob = logsumexp(logprobs[:, ts_begin:])
        max_text_token_logprob = logprobs[:, :ts_begin].max(axis=-1, keepdims=True)
        text = (vocab < ts_begin) & (timestamp_logprob > max_text_token_logprob)
        return logits + mx.where(text, -mx.inf, mask)


def greedy_update(tokens: mx.array, logits: mx.array, sum_logprobs: mx.array, eot: int):
    """mlx-whisper 0.4.3's GreedyDecoder.update at temperature 0, the same values, without an
    indexed read and with the tokens kept in their dtype. On CUDA an indexed read or write (a
    Gather or Scatter: `logprobs[rows, tokens]`, and `x[0]` too, where `x[0, ...]` is a
    slice) is a kernel MLX's JIT compiles with NVRTC on a machine's first run, 2-4 s each
    (benchmarks/h200-session10/); and its update widens int32 tokens to int64, for which the
    CUDA decode kernel compiles again. The picked token's log probability is read through a
    mask: the max of it and -infs is it, bit for bit.
    (tokens (B, L), logits (B, n_vocab), sum_logprobs (B,)) -> (tokens (B, L+1), completed, sum_logprobs)"""
    next_tokens = logits.argmax(axis=-1)
    logprobs = logits - logsumexp(logits)
    picked = mx.arange(logits.shape[-1]) == next_tokens[:, None]
    current_logprobs = mx.max(mx.where(picked, logprobs, -mx.inf), axis=-1)
    sum_logprobs = sum_logprobs + current_logprobs * (tokens[:, -1] != eot)
    next_tokens = mx.where(tokens[:, -1] == eot, eot, next_tokens).astype(tokens.dtype)
    tokens = mx.concatenate([tokens, next_tokens[:, None]], axis=-1)
    return tokens, mx.all(tokens[:, -1] == eot), sum_logprobs


def logsumexp(x: mx.array) -> mx.array:
    """mx.logsumexp(x, axis=-1, keepdims=True); on the CPU at float32 on x86 vectors
    (kernels/cpu_simd.py: MLX's arithmetic, the same bits, 0.09 against 0.6 ms over a 51864-word
    vocabulary), which reads x on the host: the CPU's step has waited for its logits already
    (flat.FlatStep's chain_matmul), and the filters' few ops before this cost little."""
    simd = cpu_simd.chosen(x.dtype) if mx.default_device() == mx.cpu else None
    return simd.logsumexp(x) if simd is not None else mx.logsumexp(x, axis=-1, keepdims=True)


_BLANKS: dict = {}


def suppress_blank(tokenizer, sample_begin: int, n_vocab: int) -> SuppressBlank:
    """mlx-whisper's SuppressBlank; its mask (" " and EOT) is made once per tokenizer encoding."""
    key = (tokenizer.encoding.name, tokenizer.eot, n_vocab)
    if key not in _BLANKS:
        _BLANKS[key] = SuppressBlank(tokenizer, sample_begin, n_vocab)
    kept = copy.copy(_BLANKS[key])  # shares the mask
    kept.sample_begin = sample_begin
    return kept


@lru_cache(maxsize=32)
def suppress_tokens(suppress: tuple, n_vocab: int) -> SuppressTokens:
    return SuppressTokens(suppress, n_vocab)
