"""decode/words.py's DTW and median filter against mlx-whisper 0.4.3's (numba's dtw_cpu and
backtrace, scipy's medfilt), which word timestamps used until they cost seconds a process:
the same paths and values, on random matrices, on integer ones (ties everywhere: the
recurrence's order of preference decides) and on float64 ones; the words themselves are
checked against stock mlx_whisper.transcribe's in tests/test_longform.py."""

import numpy as np
import pytest

from whisperfast.decode.words import dtw, median_filter
from whisperfast.kernels.ops import on_cuda


@pytest.fixture(scope="module")
def stock():
    timing = pytest.importorskip("mlx_whisper.timing")  # numba, scipy.signal
    return timing


def matrices():
    rng = np.random.default_rng(0)
    shapes = [(1, 1), (1, 9), (9, 1), (2, 2), (3, 40)] + [(int(rng.integers(1, 80)), int(rng.integers(1, 300)))
                                                         for _ in range(60)] + [(60, 1500)]
    for k, (n, m) in enumerate(shapes):
        if k % 3 == 0:
            yield rng.integers(-2, 3, (n, m)).astype(np.float32)  # ties
        elif k % 3 == 1:
            yield rng.standard_normal((n, m)).astype(np.float32)
        else:
            yield rng.standard_normal((n, m))


def test_dtw_takes_stocks_path(stock):
    for x in matrices():
        ours, theirs = dtw(x.copy()), stock.dtw(x.copy())
        assert ours.shape == theirs.shape and np.array_equal(ours, theirs), x.shape
        assert ours.shape[0] == 2 and tuple(ours[:, -1]) == (x.shape[0] - 1, x.shape[1] - 1)


@pytest.mark.parametrize("width", [3, 7])
def test_median_filter_gives_medfilts_values(stock, width):
    rng = np.random.default_rng(width)
    for shape in [(50,), (6, 30, 750), (4, 12, width // 2 + 1), (2, 3, width)]:
        x = rng.standard_normal(shape).astype(np.float32)
        ours, theirs = median_filter(x, width), stock.median_filter(x, width)
        assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs), shape
    short = rng.standard_normal((2, 3, width // 2)).astype(np.float32)
    assert median_filter(short, width) is short  # too short to filter: as it was


def test_quantized_fused_words_are_stocks():
    # 8-bit: on the CPU the rewritten model runs its layers dequantized, and the alignment's
    # view keeps them (only the alignment layers' attention as built); stock's lane aligns on
    # the quantized layers themselves: the same words and times, probabilities to rounding
    from whisperfast.pipeline import TranscribeOptions, load, rewritten, transcribe

    from .conftest import SAMPLES

    stock = load("tiny.en", quantize=8)
    fused = rewritten(stock)
    options = TranscribeOptions(word_timestamps=True)
    a, b = (transcribe(m, SAMPLES / "jfk.wav", options) for m in (stock, fused))
    words = lambda t: [(w.word, w.start, w.end) for s in t.segments for w in s.words]  # noqa: E731
    assert a.tokens == b.tokens and words(a) == words(b) and len(words(a)) == 22
    probs = lambda t: [w.probability for s in t.segments for w in s.words]  # noqa: E731
    # the rounding is the model's dtype's: float32 on the CPU; on a CUDA GPU the logits are
    # float16, summed by the kernel in another order. A token's log-probability moves by at
    # most twice its logits' largest move: one float16 step of a logit under 16 (2 ** -6) is
    # 2 ** -5 of the probability (an H100 saw 2.3e-3 of it: three float16 steps near 0.65)
    if on_cuda():
        assert np.allclose(probs(a), probs(b), rtol=2 ** -5, atol=0)
    else:
        assert np.allclose(probs(a), probs(b), rtol=0, atol=1e-5)


def test_words_on_a_model_rewritten_twice():
    # a fused model rewritten composed: its attention layers are WhisperAttention in mode
    # "composed", which the view must still swap for layers that return their weights
    from whisperfast.pipeline import TranscribeOptions, load, rewritten, transcribe

    from .conftest import SAMPLES

    stock = load("tiny.en")
    twice = rewritten(rewritten(stock), mode="composed")
    options = TranscribeOptions(word_timestamps=True)
    a, b = (transcribe(m, SAMPLES / "jfk.wav", options) for m in (stock, twice))
    words = lambda t: [(w.word, w.start, w.end) for s in t.segments for w in s.words]  # noqa: E731
    assert words(a) == words(b) and len(words(a)) == 22
