"""The contract helper itself (tests/contract.py) can fail: a lane that really differs from
stock is found, located and refused, and stock's own margin there is measured, not assumed."""

import mlx.core as mx
import numpy as np
import pytest

from whisperfast.audio import load_audio
from whisperfast.pipeline import TranscribeOptions, load, transcribe

from .conftest import SAMPLES
from .contract import assert_same_or_stock_tie, first_difference, dtype_step, recorded


@pytest.fixture(scope="module")
def lanes():
    """Stock tiny.en, and a copy whose last MLP is perturbed: the same words with other
    punctuation ("fellow-americans", a comma), so its tokens part from stock's."""
    stock, other = load("tiny.en", dtype=mx.float32), load("tiny.en", dtype=mx.float32)
    mlp = other.whisper.decoder.blocks[-1].mlp2
    mlp.weight = mlp.weight + 0.02 * mx.random.normal(mlp.weight.shape, key=mx.random.key(3))
    return stock, other


def test_dtype_step():
    assert dtype_step(13.47) == 2.0 ** -7 and dtype_step(-0.7) == 2.0 ** -11 and dtype_step(1.0) == 2.0 ** -10
    assert dtype_step(13.47, mx.float32) == 2.0 ** -20 and dtype_step(-13.47, mx.bfloat16) == 2.0 ** -4


def test_a_real_difference_is_located_and_refused(lanes):
    stock, other = lanes
    audio, options = load_audio(SAMPLES / "jfk.wav"), TranscribeOptions()
    (_, log_a), (_, log_b) = recorded(stock, audio, options), recorded(other, audio, options)
    assert first_difference(stock, log_a, log_a) is None
    where = first_difference(stock, log_a, log_b)
    assert where is not None and not where["options_differ"] and where["decode"] == 0
    k, ours = where["token_index"], log_a[0][2].tokens
    assert ours[:k] == log_b[0][2].tokens[:k] and where["stock_token"] == ours[k] != where["fused_token"]
    # stock decodes greedily at temperature 0: its own choice has the larger logit, here by far
    # more than one float32 step, so the GPU contract would refuse it too
    assert where["margin"] > where["dtype_step"]
    a, b = transcribe(stock, audio, options), transcribe(other, audio, options)
    with pytest.raises(AssertionError):
        assert_same_or_stock_tie(stock, other, audio, options, a, b)
    assert assert_same_or_stock_tie(stock, stock, audio, options, a, a) is None
    assert np.isfinite(where["stock_logit"])


def test_stock_score_is_what_stock_ranks_beams_by(lanes):
    """stock_score re-derives, from stock's model alone, the summed log probability stock's beam
    search reports for its choice; and the beam contract refuses another lane's sequence."""
    from mlx_whisper.decoding import DecodingOptions

    from whisperfast.audio import first_window_mel
    from whisperfast.decode import decode_window

    from .contract import assert_beams_same_or_stock_tie, stock_score

    stock, other = lanes
    mel = first_window_mel(SAMPLES / "jfk.wav")[0]
    opts = DecodingOptions(language="en", fp16=False, beam_size=5)
    a = decode_window(stock.whisper, stock.whisper.encoder(mel[None])[0], opts)
    b = decode_window(other.whisper, other.whisper.encoder(mel[None])[0], opts)
    score, step = stock_score(stock, opts, mel, a.tokens)
    n = len(a.tokens)
    assert score * n / (n + 1) == pytest.approx(a.avg_logprob, abs=1e-4) and 0 < step < 1e-5
    assert a.tokens != b.tokens
    assert assert_beams_same_or_stock_tie(stock, opts, mel, a.tokens, a.tokens) is None
    with pytest.raises(AssertionError):
        assert_beams_same_or_stock_tie(stock, opts, mel, a.tokens, b.tokens)
