"""Word timestamps: mlx-whisper 0.4.3's timing.py (MIT, Apple; after openai/whisper's),
`add_word_timestamps` and `find_alignment` as they are there, with its two numeric helpers
in numpy:
- `dtw`: the same recurrence on float32 costs, the same comparisons and the same backtrace,
  run one anti-diagonal at a time (a cell needs only the two diagonals before it), not as
  numba's loop;
- `median_filter`: the same reflect padding and the middle of `width` values, which is what
  scipy.signal.medfilt takes.

Why not mlx_whisper.timing itself: importing it imports numba and scipy.signal (about 3 s on a
2-core CPU), and numba compiles its DTW at the first call of every process (about 2 s), where
JFK's whole transcription takes 0.4 s. The paths and times are stock's:
- tests/test_words.py checks `dtw` and `median_filter` against mlx-whisper's, on random and on
  tied matrices;
- tests/test_longform.py checks the words against stock mlx_whisper.transcribe's.

Shapes: find_alignment's cross-attention weights are (heads, tokens, frames); dtw takes
(tokens, frames) and gives the path as (2, steps): text indices, then time indices."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import List

import mlx.core as mx
import numpy as np
from mlx_whisper.audio import HOP_LENGTH, SAMPLE_RATE, TOKENS_PER_SECOND
from mlx_whisper.tokenizer import Tokenizer
from mlx_whisper.whisper import MultiHeadAttention

from ..kernels.rewrite import Replacement, rewrite, swap_to
from .attention import WhisperAttention


def median_filter(x: np.ndarray, filter_width: int) -> np.ndarray:
    """A median filter of odd `filter_width` along the last axis of `x` (ndim <= 3), reflect-padded."""
    pad_width = filter_width // 2
    if x.shape[-1] <= pad_width:
        return x
    if filter_width <= 0 or filter_width % 2 != 1:
        raise ValueError("`filter_width` should be an odd number")
    ndim = x.ndim
    if ndim <= 2:
        x = x[None, None, :]
    padded = np.pad(x, ((0, 0), (0, 0), (pad_width, pad_width)), mode="reflect").astype(np.float32)
    windows = np.lib.stride_tricks.sliding_window_view(padded, filter_width, axis=-1)
    result = np.partition(windows, pad_width, axis=-1)[..., pad_width]
    return result[0, 0] if ndim <= 2 else result


def dtw(x: np.ndarray) -> np.ndarray:
    """x (N, M) costs -> the cheapest monotonic path from (0, 0) to (N-1, M-1), (2, steps):
    numba's dtw_cpu. Cell (i, j) of the (N+1, M+1) tables comes from (i-1, j-1), (i-1, j) or
    (i, j-1): the first where it is strictly cheaper than both others, else the second where
    it is, else the third; its cost is x[i-1, j-1] plus that one's, in float32.

    The tables are kept skewed, a row per anti-diagonal (row k, column i: cell (i, k - i)), so
    that each row is one set of vector operations on the two rows before it; cells outside
    the table add an infinite cost, so they stay infinite and are never on the path."""
    n, m = x.shape
    # skewed x: row k holds x[i-1, k-i-1] at column i, inf where (i, k - i) is outside the table
    k, i = np.arange(n + m + 1)[:, None], np.arange(n + 1)[None, :]
    j = k - i
    inside = (i >= 1) & (j >= 1) & (j <= m)
    xs = np.full((n + m + 1, n + 1), np.inf, dtype=np.result_type(x.dtype, np.float32))
    xs[inside] = x[(i - 1 + 0 * k)[inside], (j - 1)[inside]]
    cost = np.full((n + m + 1, n + 1), np.inf, dtype=np.float32)
    trace = np.full((n + m + 1, n + 1), -1.0, dtype=np.float32)
    cost[0, 0] = 0
    first, second, other = (np.empty(n, bool) for _ in range(3))
    for d in range(2, n + m + 1):
        c0, c1, c2 = cost[d - 2, :-1], cost[d - 1, :-1], cost[d - 1, 1:]
        np.less(c0, c1, out=first)
        first &= np.less(c0, c2, out=other)
        np.less(c1, c0, out=second)
        second &= np.less(c1, c2, out=other)  # never with `first`: c1 < c0 and c0 < c1 exclude each other
        row = cost[d, 1:]
        np.copyto(row, c2)
        np.copyto(row, c1, where=second)
        np.copyto(row, c0, where=first)
        row += xs[d, 1:]
        t = trace[d, 1:]
        t.fill(2)
        t[second] = 1
        t[first] = 0
    return _backtrace(trace, n, m)


def _backtrace(skewed: np.ndarray, n: int, m: int) -> np.ndarray:
    """numba's backtrace over the skewed trace (cell (i, j) at row i + j, column i): the
    path's (i - 1, j - 1) from (n, m) back, then in order."""
    i, j = n, m
    result = []
    while i > 0 or j > 0:
        result.append((i - 1, j - 1))
        step = 2 if i == 0 else 1 if j == 0 else skewed[i + j, i]
        if step == 0:
            i, j = i - 1, j - 1
        elif step == 1:
            i -= 1
        elif step == 2:
            j -= 1
        else:
            raise ValueError("Unexpected trace[i, j]")
    return np.array(result)[::-1, :].T


def alignment_view(model):
    """`model` with the cross-attention layers that hold alignment heads as mlx-whisper builds
    them, on the same parameter arrays, so that they return their attention weights, which
    fused attention does not; every other layer is `model`'s own (fused, or dequantized on the
    CPU). A model without fused attention there is returned as it is."""
    wanted = {f"decoder.blocks.{int(layer)}.cross_attn" for layer, _ in model.alignment_heads.tolist()}
    view = model
    # the rewrite leaves a layer already in the mode it is asked for, so each pass asks for the
    # mode its layers are not in (one pass: a rewrite gives all its layers one mode)
    for _ in range(2):
        layers = {path: m for path, m in view.named_modules() if isinstance(m, WhisperAttention)}
        left = sorted(set(layers) & wanted)
        if not left:
            break
        mode = "fused" if layers[left[0]].mode == "composed" else "composed"
        swap = {path for path in left if layers[path].mode != mode}
        view, _ = rewrite(view, only=["attention"], mode=mode,
                          keep={path: "not an alignment layer" for path in set(layers) - swap},
                          table=(Replacement(WhisperAttention, "attention", swap_to(MultiHeadAttention)),))
    return view


class Aligner:
    """A model as find_alignment uses it, on a window's audio features already made: its
    "mel" is those features, handed straight to the decoder, so a window's words cost one
    decoder pass over its tokens, not a second encoder pass; and on `alignment_view(whisper)`,
    whose alignment layers return their weights. So the decode runs on the rewritten model
    whole, and only the alignment's one pass on those layers as built (openai/whisper's
    `disable_sdpa` for that pass)."""

    def __init__(self, whisper):
        self.whisper = alignment_view(whisper)
        self.alignment_heads = whisper.alignment_heads

    def forward_with_cross_qk(self, features: mx.array, tokens: mx.array):
        logits, _, cross_qk = self.whisper.decoder(tokens, features)
        return logits, cross_qk


@dataclass
class WordTiming:
    word: str
    tokens: List[int]
    start: float
    end: float
    probability: float


def find_alignment(model, tokenizer: Tokenizer, text_tokens: List[int], mel: mx.array, num_frames: int, *,
                   medfilt_width: int = 7, qk_scale: float = 1.0) -> List[WordTiming]:
    """mlx-whisper's: each word's start and end from DTW over the alignment heads' attention."""
    if len(text_tokens) == 0:
        return []
    tokens = mx.array([*tokenizer.sot_sequence, tokenizer.no_timestamps, *text_tokens, tokenizer.eot])
    logits, cross_qk = model.forward_with_cross_qk(mel[None, :], tokens[None, :])
    # only the logits that predict text
    sampled_logits = logits[0][len(tokenizer.sot_sequence) : -2, : tokenizer.eot]
    token_probs = mx.softmax(sampled_logits, precise=True, axis=-1)
    text_token_probs = np.array(mx.take_along_axis(token_probs, mx.array(text_tokens)[:, None], axis=1).squeeze(1))

    weights = mx.stack([cross_qk[_l][0, _h] for _l, _h in model.alignment_heads.tolist()])  # (heads, tokens, frames)
    weights = weights[:, :, : num_frames // 2]
    weights = mx.softmax(weights * qk_scale, axis=-1, precise=True).astype(mx.float32)
    mean = mx.mean(weights, axis=-2, keepdims=True)
    std = mx.var(weights, axis=-2, keepdims=True, ddof=0).sqrt()
    weights = median_filter(np.array((weights - mean) / std), medfilt_width)

    matrix = weights.mean(axis=0)[len(tokenizer.sot_sequence) : -1]
    text_indices, time_indices = dtw(-matrix)

    words, word_tokens = tokenizer.split_to_word_tokens(text_tokens + [tokenizer.eot])
    if len(word_tokens) <= 1:  # the end of text alone (np.pad([], (1, 0)) would index with a float)
        return []
    word_boundaries = np.pad(np.cumsum([len(t) for t in word_tokens[:-1]]), (1, 0))
    jumps = np.pad(np.diff(text_indices), (1, 0), constant_values=1).astype(bool)
    jump_times = time_indices[jumps] / TOKENS_PER_SECOND
    start_times, end_times = jump_times[word_boundaries[:-1]], jump_times[word_boundaries[1:]]
    word_probabilities = [np.mean(text_token_probs[i:j]) for i, j in zip(word_boundaries[:-1], word_boundaries[1:])]
    return [WordTiming(word, tokens, start, end, probability) for word, tokens, start, end, probability
            in zip(words, word_tokens, start_times, end_times, word_probabilities)]


def merge_punctuations(alignment: List[WordTiming], prepended: str, appended: str) -> None:
    """mlx-whisper's: opening punctuation joins the word after it, closing the word before."""
    i, j = len(alignment) - 2, len(alignment) - 1
    while i >= 0:
        previous, following = alignment[i], alignment[j]
        if previous.word.startswith(" ") and previous.word.strip() in prepended:
            following.word, following.tokens = previous.word + following.word, previous.tokens + following.tokens
            previous.word, previous.tokens = "", []
        else:
            j = i
        i -= 1
    i, j = 0, 1
    while j < len(alignment):
        previous, following = alignment[i], alignment[j]
        if not previous.word.endswith(" ") and following.word in appended:
            previous.word, previous.tokens = previous.word + following.word, previous.tokens + following.tokens
            following.word, following.tokens = "", []
        else:
            i = j
        j += 1


def add_word_timestamps(*, segments: List[dict], model, tokenizer: Tokenizer, mel: mx.array, num_frames: int,
                        prepend_punctuations: str = "\"'“¿([{-", append_punctuations: str = "\"'.。,，!！?？:：”)]}、",
                        last_speech_timestamp: float, **kwargs) -> None:
    """mlx-whisper's: each segment's "words" (word, start, end, probability), its start and
    end moved to its words' where they are the better guess."""
    if len(segments) == 0:
        return
    text_tokens_per_segment = [[token for token in segment["tokens"] if token < tokenizer.eot] for segment in segments]
    text_tokens = list(itertools.chain.from_iterable(text_tokens_per_segment))
    alignment = find_alignment(model, tokenizer, text_tokens, mel, num_frames, **kwargs)
    word_durations = np.array([t.end - t.start for t in alignment])
    word_durations = word_durations[word_durations.nonzero()]
    median_duration = np.median(word_durations) if len(word_durations) > 0 else 0.0
    median_duration = min(0.7, float(median_duration))
    max_duration = median_duration * 2

    # mlx-whisper's hack: words at sentence boundaries no longer than twice the median word
    if len(word_durations) > 0:
        sentence_end_marks = ".。!！?？"
        for i in range(1, len(alignment)):
            if alignment[i].end - alignment[i].start > max_duration:
                if alignment[i].word in sentence_end_marks:
                    alignment[i].end = alignment[i].start + max_duration
                elif alignment[i - 1].word in sentence_end_marks:
                    alignment[i].start = alignment[i].end - max_duration

    merge_punctuations(alignment, prepend_punctuations, append_punctuations)

    time_offset = segments[0]["seek"] * HOP_LENGTH / SAMPLE_RATE
    word_index = 0
    for segment, text_tokens in zip(segments, text_tokens_per_segment):
        saved_tokens = 0
        words = []
        while word_index < len(alignment) and saved_tokens < len(text_tokens):
            timing = alignment[word_index]
            if timing.word:
                words.append(dict(word=timing.word, start=round(time_offset + timing.start, 2),
                                  end=round(time_offset + timing.end, 2), probability=float(timing.probability)))
            saved_tokens += len(timing.tokens)
            word_index += 1

        if len(words) > 0:
            # mlx-whisper's hack: the first and second word after a pause no longer than twice the median
            if words[0]["end"] - last_speech_timestamp > median_duration * 4 and (
                    words[0]["end"] - words[0]["start"] > max_duration
                    or (len(words) > 1 and words[1]["end"] - words[0]["start"] > max_duration * 2)):
                if len(words) > 1 and words[1]["end"] - words[1]["start"] > max_duration:
                    boundary = max(words[1]["end"] / 2, words[1]["end"] - max_duration)
                    words[0]["end"] = words[1]["start"] = boundary
                words[0]["start"] = max(0, words[0]["end"] - max_duration)

            # the segment's start where its first word is too long, else the word's
            if segment["start"] < words[0]["end"] and segment["start"] - 0.5 > words[0]["start"]:
                words[0]["start"] = max(0, min(words[0]["end"] - median_duration, segment["start"]))
            else:
                segment["start"] = words[0]["start"]

            # the segment's end where its last word is too long, else the word's
            if segment["end"] > words[-1]["start"] and segment["end"] + 0.5 < words[-1]["end"]:
                words[-1]["end"] = max(words[-1]["start"] + median_duration, segment["end"])
            else:
                segment["end"] = words[-1]["end"]

            last_speech_timestamp = segment["end"]

        segment["words"] = words
