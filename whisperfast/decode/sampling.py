"""Sampled decodes on the fast engine, checked against the rounding of its logits.

On a GPU in fp16 or bf16 the fast engine's logits differ from stock's in the last digits (its
kernels sum in their own orders). A window sampled at temperature > 0 gives stock's tokens
anyway wherever no draw and no ranking is that close. These classes keep mlx-whisper's update
and ranking as they are and note, on the device, whether every decision stood clear of the
rounding; where one did not, the engine decodes the window again on the stock model
(engine.py).

mlx-whisper samples with `categorical`, an `mx.compile`d `mx.random.categorical(logits / T)`
that captures its key when first traced: the Gumbel noise is one constant per shape and
temperature for the rest of the process (tests/test_sampling.py shows it). So calling it again
on other logits of the same shape draws nothing new and meets the same noise: the token drawn
stands against logits moved by up to `slack` if it still wins with its own logit lowered by
2 * slack (each rival may be up to `slack` higher, the token up to `slack` lower).

Shapes: tokens (rows, L); logits (rows, n_vocab) float32; sum_logprobs (rows,)."""

from __future__ import annotations

from typing import List

import mlx.core as mx
import numpy as np
from mlx_whisper.decoding import GreedyDecoder, MaximumLikelihoodRanker, categorical

# How far the fast engine's logits may lie from stock's before a draw counts as unsure, per
# dtype: 8 steps of the dtype at logits of 32 to 64 (one fp16 step there is 0.03125).
# benchmarks/h200-session8/ measures the real distance on the GPU.
SLACK = {mx.float16: 0.25, mx.bfloat16: 2.0}
# How close two different candidates' scores (sum of log probabilities over the length
# penalty, about their average log probability) may be before the ranking counts as unsure.
RANK_MARGIN = 0.01


class CheckedSampler(GreedyDecoder):
    """mlx-whisper's GreedyDecoder at temperature > 0, the same draws in the same order, that
    also keeps `sure`: whether every row's draw, so far, would stand with logits `slack` away."""

    def __init__(self, temperature: float, eot: int, slack: float):
        super().__init__(temperature, eot)
        self.slack = slack
        self.sure = mx.array(True)

    def reset(self):
        self.sure = mx.array(True)

    def update(self, tokens: mx.array, logits: mx.array, sum_logprobs: mx.array):
        tokens_next, completed, sum_logprobs = super().update(tokens, logits, sum_logprobs)
        drawn = tokens_next[:, -1]
        own = mx.arange(logits.shape[-1])[None] == drawn[:, None]
        again = categorical(logits - mx.where(own, 2 * self.slack, 0.0), self.temperature)
        ended = tokens[:, -1] == self.eot  # their token is EOT whatever was drawn
        self.sure = mx.logical_and(self.sure, mx.all((again == drawn) | ended))
        mx.async_eval(self.sure)  # a flag, not a graph holding every step's logits
        return tokens_next, completed, sum_logprobs


class CheckedRanker(MaximumLikelihoodRanker):
    """mlx-whisper's ranking, the same choice, that also keeps `sure`: whether each audio's
    best candidate scored more than `margin` above every candidate with other tokens."""

    def __init__(self, length_penalty, margin: float = RANK_MARGIN):
        super().__init__(length_penalty)
        self.margin, self.sure = margin, True

    def rank(self, tokens: List[List[List[int]]], sum_logprobs: List[List[float]]):
        chosen = super().rank(tokens, sum_logprobs)
        for group, sums, best in zip(tokens, sum_logprobs, chosen):
            scores = [total / self._penalty(len(t)) for t, total in zip(group, sums)]
            if any(t != group[best] and scores[best] - score <= self.margin for t, score in zip(group, scores)):
                self.sure = False
        return chosen

    def _penalty(self, length: int) -> float:  # MaximumLikelihoodRanker.rank's
        return length if self.length_penalty is None else ((5 + length) / 6) ** self.length_penalty


def sure(decoder, ranker) -> bool:
    """Whether a finished decode's draws and ranking both stood clear of the rounding."""
    return bool(np.array(decoder.sure)) and ranker.sure
