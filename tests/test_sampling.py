"""Sampled decodes checked against the rounding of the logits (whisperfast/decode/sampling.py):
the premise (mlx-whisper's compiled `categorical` meets one constant noise per shape and
temperature), the draw check at its boundary, the ranking check, and the engine keeping or
redoing sampled windows on real audio."""

import mlx.core as mx
import numpy as np
import pytest
from mlx_whisper.decoding import GreedyDecoder, MaximumLikelihoodRanker, categorical

from whisperfast.decode.sampling import RANK_MARGIN, CheckedRanker, CheckedSampler

EOT = 3
V = 1009  # a vocabulary size no other test samples at: this test traces categorical for it


def test_stocks_categorical_meets_one_noise_per_shape_and_temperature():
    """The premise: after its first call for a shape and temperature, mlx-whisper's compiled
    categorical draws nothing new, whatever the seed; MLX's own draws differ call to call."""
    flat = mx.zeros((4, V + 1))
    mx.random.seed(0)
    first = categorical(flat, 0.7).tolist()
    mx.random.seed(1)
    assert all(categorical(flat, 0.7).tolist() == first for _ in range(3))
    assert len({tuple(mx.random.categorical(flat).tolist()) for _ in range(3)}) > 1


def flip_point(temperature: float, a: int = 5, b: int = 9) -> float:
    """The logit of token b (token a's being 0, every other token's -inf) at which the drawn
    token turns from a to b: the noise's gap T * (g_a - g_b), found by bisection."""
    lo, hi = -60.0, 60.0
    for _ in range(60):
        mid = (lo + hi) / 2
        logits = mx.where(mx.arange(V)[None] == b, mid, mx.where(mx.arange(V)[None] == a, 0.0, -mx.inf))
        if categorical(logits, temperature)[0].item() == a:
            lo = mid
        else:
            hi = mid
    return lo


@pytest.mark.parametrize("temperature", [0.2, 1.0])
def test_a_draw_is_sure_only_clear_of_the_slack(temperature):
    """Two live tokens, a (logit 0) and b: the drawn a is sure when b's logit is 3 slacks below
    the point where the draw turns to b, unsure at half a slack below it; and an ended row
    (its token EOT whatever is drawn) is never unsure."""
    slack, a, b = 0.25, 5, 9
    x = flip_point(temperature, a, b)
    for below, sure in ((3 * slack, True), (slack / 2, False)):
        logits = mx.where(mx.arange(V)[None] == b, x - below,
                          mx.where(mx.arange(V)[None] == a, 0.0, -mx.inf)) * mx.ones((2, 1))
        for last, expect in ((7, sure), (EOT, True)):  # live rows; ended ones
            sampler = CheckedSampler(temperature, EOT, slack)
            tokens, _, _ = sampler.update(mx.array([[1, last]] * 2), logits, mx.zeros(2))
            assert tokens[:, -1].tolist() == [a if last != EOT else EOT] * 2
            assert sampler.sure.item() == expect
            sampler.reset()
            assert sampler.sure.item()


def test_checked_sampler_draws_what_stocks_does():
    rng = np.random.default_rng(0)
    logits = mx.array(rng.standard_normal((3, V)).astype(np.float32) * 3)
    tokens = mx.array([[1, 2]] * 3)
    ours = CheckedSampler(0.5, EOT, 0.25).update(tokens, logits, mx.zeros(3))
    theirs = GreedyDecoder(0.5, EOT).update(tokens, logits, mx.zeros(3))
    assert all(mx.array_equal(x, y).item() for x, y in zip(ours, theirs))


@pytest.mark.parametrize("length_penalty", [None, 1.0])
def test_ranking_is_unsure_only_between_other_tokens_within_the_margin(length_penalty):
    ranker, stock = CheckedRanker(length_penalty), MaximumLikelihoodRanker(length_penalty)
    same = [[[4, 5, 6], [4, 5, 6]]]
    close = [[[4, 5, 6], [4, 5, 7]]]
    cases = [(same, [[-1.0, -1.0 - RANK_MARGIN / 10]], True),  # one sequence twice: either is the same
             (close, [[-1.0, -1.0 - 10 * RANK_MARGIN]], True),  # clear of the margin
             (close, [[-1.0, -1.0 - RANK_MARGIN / 10]], False)]  # other tokens within it
    for tokens, sums, sure in cases:
        ranker = CheckedRanker(length_penalty)
        assert ranker.rank(tokens, sums) == stock.rank(tokens, sums)
        assert ranker.sure == sure


def test_a_knob_turns_the_check_off(knobs, tiny):
    """WHISPERFAST_CHECK_SAMPLES=0 (for A/B records) gives engines that check nothing: every
    sampled window where stock decides goes to stock."""
    from whisperfast.decode.sampling import SLACK
    from whisperfast.pipeline import rewritten

    fused = rewritten(tiny)
    assert fused.engine().slack == SLACK[mx.float16]  # fp32 on the CPU: checked, where forced, at fp16's slack
    knobs(WHISPERFAST_CHECK_SAMPLES="0")
    assert fused.engine().slack is None
