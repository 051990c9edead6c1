"""The fused lane's decoding pieces against mlx-whisper's: the on-device timestamp rules
and the flat single-token step."""

import mlx.core as mx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlx_whisper.decoding import ApplyTimestampRules
from mlx_whisper.tokenizer import get_tokenizer

from whisperfast.decoding import DeviceTimestampRules

TOKENIZERS = {m: get_tokenizer(m, num_languages=99 if m else None, language="en") for m in (False, True)}


@st.composite
def history(draw):
    multilingual = draw(st.booleans())
    tok = TOKENIZERS[multilingual]
    n_vocab = 51865 if multilingual else 51864
    sample_begin = draw(st.integers(1, 4))
    kinds = st.one_of(st.integers(0, tok.eot - 1), st.integers(tok.timestamp_begin, tok.timestamp_begin + 1500), st.just(tok.eot))
    rows = draw(st.integers(1, 3))
    n = draw(st.integers(0, 8))
    seqs = [draw(st.lists(kinds, min_size=n, max_size=n)) for _ in range(rows)]
    prefix = [[tok.sot] * sample_begin] * rows
    seed = draw(st.integers(0, 2**16))
    scale = draw(st.sampled_from([1.0, 8.0]))  # flat and peaked distributions
    max_initial = draw(st.sampled_from([None, 0, 50]))
    return tok, n_vocab, sample_begin, [p + s for p, s in zip(prefix, seqs)], seed, scale, max_initial


@settings(max_examples=150, deadline=None)
@given(case=history())
def test_device_timestamp_rules_equal_mlx_whispers(case):
    tok, n_vocab, sample_begin, seqs, seed, scale, max_initial = case
    logits = mx.random.normal((len(seqs), n_vocab), key=mx.random.key(seed)) * scale
    tokens = mx.array(seqs)
    ours = DeviceTimestampRules(tok, sample_begin, max_initial).apply(logits, tokens)
    theirs = ApplyTimestampRules(tok, sample_begin, max_initial).apply(logits, tokens)
    assert np.array_equal(np.array(ours), np.array(theirs))


@pytest.mark.parametrize("batch", [1, 2])
def test_flat_step_matches_stock_decoder(batch):
    from whisperfast.decoding import StaticInference
    from whisperfast.kernels import rewrite_whisper

    from .test_rewrite import tiny_whisper

    m = tiny_whisper(seed=2)
    fused, _ = rewrite_whisper(m)
    xa = mx.random.normal((batch, 12, 32))
    inference = StaticInference(fused)
    prompt = mx.array([[50257, 50362, 11]] * batch)
    ref, kv, _ = m.decoder(prompt, xa)
    np.testing.assert_allclose(np.array(inference.logits(prompt, xa)), np.array(ref), atol=1e-4, rtol=1e-4)
    for tok in (5, 7, 9, 13):
        step = mx.array([[tok]] * batch)
        ref, kv, _ = m.decoder(step, xa, kv_cache=kv)
        ours = inference.logits(step, xa)
        np.testing.assert_allclose(np.array(ours), np.array(ref), atol=1e-4, rtol=1e-4)
    assert "_whisperfast_step" in fused.decoder.__dict__  # the flat path ran
    assert inference.kv_cache[0][0].offset == 7


@settings(max_examples=40, deadline=None)
@given(case=history(), n_extra=st.integers(0, 3))
def test_compiled_tail_equals_filters_then_greedy_update(case, n_extra):
    """The compiled tail sees only the last two tokens: it must pick the same token, sum the
    same logprob and say `completed` as mlx-whisper's filters + GreedyDecoder on the whole history."""
    from mlx_whisper.decoding import GreedyDecoder, SuppressBlank, SuppressTokens

    from whisperfast.decoding import CompiledGreedyTail

    tok, n_vocab, sample_begin, seqs, seed, scale, max_initial = case
    seqs = [s + [tok.timestamp_begin + 3] * n_extra for s in seqs]
    filters = [SuppressBlank(tok, sample_begin, n_vocab), SuppressTokens([220, 50257, 1000], n_vocab),
               DeviceTimestampRules(tok, sample_begin, max_initial)]
    tail = CompiledGreedyTail(filters, GreedyDecoder(0.0, tok.eot), sample_begin)
    tokens = mx.array(seqs)
    logits = mx.random.normal((len(seqs), n_vocab), key=mx.random.key(seed)) * scale
    sum_logprobs = np.random.default_rng(seed).normal(size=len(seqs)).astype(np.float32)
    expected = logits
    for f in filters:
        expected = f.apply(expected, tokens)
    # GreedyDecoder adds to sum_logprobs in place: each side gets its own array
    expected = GreedyDecoder(0.0, tok.eot).update(tokens, expected, mx.array(sum_logprobs))
    ours = tail.update(tokens, logits, mx.array(sum_logprobs))
    assert np.array_equal(np.array(ours[0]), np.array(expected[0]))
    assert bool(ours[1]) == bool(expected[1])
    assert np.array_equal(np.array(ours[2]), np.array(expected[2]), equal_nan=True)  # all masked: both NaN
