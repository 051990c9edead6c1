"""mlx-whisper's logit filters as the static-cache engines apply them: the timestamp rules as
array ops on the device, and the suppression masks built once per tokenizer, not per task."""

from __future__ import annotations

import copy
from functools import lru_cache
from typing import Optional

import mlx.core as mx
import numpy as np
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


class HeldEnd:
    """Batched mode's one rule beyond mlx-whisper's filters (batched.py): a row may not end
    right after a pair of timestamps (a segment's end, the next one's start) whose first lies
    below the row's `must_reach`, in timestamp steps. Whisper ends so where it hears a
    segment run on past the window: sequential mode seeks to it and decodes it again in the
    next window, while a batched chunk ends where its speech does, so with a second or more of
    speech left the row goes on and transcribes it. It follows the timestamp rules, as an EOT
    banned in their mask would (their last rule reads the logits before either).
    must_reach: one int a row of the tokens (numpy int32 on the host)."""

    def __init__(self, tokenizer, sample_begin: int, must_reach):
        self.ts_begin, self.eot, self.sample_begin = tokenizer.timestamp_begin, tokenizer.eot, sample_begin
        self.must_reach = np.asarray(must_reach, np.int32).reshape(-1)

    def held(self, history, row: int) -> bool:
        """Whether EOT is banned after one row's `history` (ints)."""
        if len(history) - self.sample_begin < 2:
            return False
        first, last = history[-2], history[-1]
        return first >= self.ts_begin and last >= self.ts_begin and first - self.ts_begin < self.must_reach[row]

    def apply(self, logits: mx.array, tokens: mx.array) -> mx.array:
        if tokens.shape[1] - self.sample_begin < 2:
            return logits
        first, last = tokens[:, -2], tokens[:, -1]
        held = (first >= self.ts_begin) & (last >= self.ts_begin) & (first - self.ts_begin < mx.array(self.must_reach))
        return mx.where(held[:, None] & (mx.arange(logits.shape[-1]) == self.eot), -mx.inf, logits)

    def keep_rows(self, keep) -> None:
        """The rows at `keep` (positions, as the tokens' rows are kept) stay."""
        self.must_reach = self.must_reach[np.asarray(keep)]


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


class NativePick:
    """The logit filters and greedy update of one row on the CPU (temperature 0) in one call
    into kernels/cpu_simd.c (`pick`): SuppressBlank's and SuppressTokens' masks added in
    their order, the timestamp rules as banned ranges and the split rule, then the argmax and
    its log probability, each as MLX's ops compute them (tests/test_decoding.py checks the
    tokens and sums against `apply` and `greedy_update`). MLX's ops cost ~2.7 ms a token here,
    mostly dispatch and waiting on 51864-wide arrays; this ~0.2 ms. `for_filters` returns None
    for filters it does not know, and the MLX path runs."""

    def __init__(self, kernels, filters: list, eot: int):
        self.kernels, self.filters, self.eot = kernels, filters, eot
        self._masks: dict = {}  # filter index -> its mask on the host
        self._work = None  # the C picks' scratch (numpy), kept for the task's steps

    @classmethod
    def for_filters(cls, kernels, filters: list, eot: int):
        known = all(type(f) in (SuppressBlank, SuppressTokens, DeviceTimestampRules, HeldEnd) for f in filters)
        rules = [f for f in filters if type(f) in (DeviceTimestampRules, HeldEnd)]
        # the timestamp rules last, or followed by HeldEnd: a range banned in their mask
        if kernels is None or not known or filters[len(filters) - len(rules):] != rules or \
                [type(f) for f in rules] not in ([], [DeviceTimestampRules], [DeviceTimestampRules, HeldEnd]):
            return None
        return cls(kernels, filters, eot)

    def __call__(self, tokens: mx.array, logits: mx.array, sum_logprobs: mx.array):
        """greedy_update(tokens, filtered logits, sum_logprobs) for tokens (1, L), logits (1, n_vocab)."""
        history = np.asarray(tokens)[0]
        best, logprob = self.host(history, np.ascontiguousarray(cpu_simd._host(logits).reshape(-1)), 0)
        last = int(history[-1])
        total = np.float32(np.asarray(sum_logprobs)[0]) + np.float32(logprob) * np.float32(last != self.eot)
        best = self.eot if last == self.eot else best
        tokens = mx.concatenate([tokens, mx.array([[best]], dtype=tokens.dtype)], axis=-1)
        return tokens, mx.array(best == self.eot), mx.array(np.array([total], np.float32))

    def host(self, history, logits, row: int) -> tuple:
        """(token, log probability) of the filtered greedy pick after `history` (the tokens of
        batch row `row`, a sequence of ints), over `logits` (numpy float32 (n_vocab,), contiguous)."""
        return self.kernels.pick(logits, *self._row(history, row, logits.shape[-1]))

    def rows(self, histories: list, logits, rows: list) -> list:
        """`host` for several rows of one batch at once (histories of one length; logits numpy
        float32 (len(rows), n_vocab), contiguous), the rows shared over the library's threads:
        [(token, log probability)] in their order."""
        picks = self.picks(histories, rows, logits.shape[-1])
        if picks is None:
            return [self.host(h, x, r) for h, x, r in zip(histories, logits, rows)]
        return self.kernels.pick_rows(logits, picks)

    def picks(self, histories: list, rows: list, n_vocab: int) -> Optional[cpu_simd.Picks]:
        """The picks of several rows of one batch as one C call takes them (`rows`, or the C
        step of the rows, cpu_batch.NativeRows), or None where it cannot: fewer than two rows,
        histories of different lengths (every row's masks are the first's), too many ranges."""
        each = [self._row(h, r, n_vocab) for h, r in zip(histories, rows)]
        if len(each) < 2 or len({len(h) for h in histories}) > 1 or \
                any(len(ranges) > cpu_simd.MAX_RANGES for _, ranges, _ in each):
            return None
        if self._work is None or self._work.size < 4 * n_vocab:
            self._work = np.empty(4 * n_vocab, np.float32)
        return cpu_simd.Picks(each[0][0], [e[1] for e in each], [e[2] for e in each], self._work)

    def _row(self, history, row: int, n_vocab: int) -> tuple:
        """(masks, ranges, split) for the pick after `history`, the tokens of batch row `row`."""
        masks, ranges, split = [], [], -1
        for i, f in enumerate(self.filters):
            if isinstance(f, SuppressBlank):
                if len(history) == f.sample_begin:
                    masks.append(self._mask(i, f))
            elif isinstance(f, SuppressTokens):
                masks.append(self._mask(i, f))
            elif isinstance(f, DeviceTimestampRules):
                ranges, split = self._rules(f, history, n_vocab), f.tokenizer.timestamp_begin
            elif f.held(history, row):
                ranges.append((f.eot, f.eot + 1))
        return masks, ranges, split

    def _mask(self, i: int, f):
        """Filter i's mask on the host, read once."""
        if i not in self._masks:
            self._masks[i] = np.ascontiguousarray(cpu_simd._host(f.mask))
        return self._masks[i]

    @staticmethod
    def _rules(f: DeviceTimestampRules, history, n_vocab: int) -> list:
        """DeviceTimestampRules.apply's banned tokens before its last rule, as [lo, hi) ranges."""
        ts_begin, eot = f.tokenizer.timestamp_begin, f.tokenizer.eot
        n_sampled, ranges = len(history) - f.sample_begin, []
        if f.tokenizer.no_timestamps is not None:
            ranges.append((f.tokenizer.no_timestamps, f.tokenizer.no_timestamps + 1))
        if n_sampled >= 1:
            last_ts = history[-1] >= ts_begin
            penult_ts = history[-2] >= ts_begin if n_sampled >= 2 else True
            if last_ts and penult_ts:
                ranges.append((ts_begin, n_vocab))
            elif last_ts:
                ranges.append((0, eot))
        if n_sampled == 0:
            ranges.append((0, ts_begin))
            if f.max_initial_timestamp_index is not None:
                ranges.append((ts_begin + f.max_initial_timestamp_index + 1, n_vocab))
        return ranges


def native_pick(filters: list, eot: int):
    """NativePick for these filters where the CPU runs the fast engine's C (float32 kernels,
    WHISPERFAST_CPU_STEP not 0), else None."""
    from ..config import config

    if mx.default_device() != mx.cpu or not config().cpu_step:
        return None
    return NativePick.for_filters(cpu_simd.chosen(mx.float32), filters, eot)
