"""The fused lane's decoding pieces against mlx-whisper's: the on-device timestamp rules
and the flat single-token step."""

import mlx.core as mx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlx_whisper.decoding import ApplyTimestampRules, GreedyDecoder
from mlx_whisper.tokenizer import get_tokenizer

from whisperfast.decode.rules import DeviceTimestampRules, HeldEnd, greedy_update

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


def held(seq, sample_begin, tok, reach) -> bool:
    """Batched mode's rule, as batched.py states it: the row's last two sampled tokens are
    timestamps, the first below `reach`."""
    sampled, ts = seq[sample_begin:], tok.timestamp_begin
    return len(sampled) >= 2 and sampled[-1] >= ts and sampled[-2] >= ts and sampled[-2] - ts < reach


@settings(max_examples=100, deadline=None)
@given(case=history(), reach=st.lists(st.integers(0, 1502), min_size=3, max_size=3))
def test_held_end_bans_eot_after_a_pair_below_its_bound(case, reach):
    """HeldEnd after either lane's timestamp rules: their logits, EOT at -inf on the rows the
    rule holds, and nowhere else; keep_rows keeps the bounds with their rows."""
    tok, n_vocab, sample_begin, seqs, seed, scale, max_initial = case
    reach = reach[: len(seqs)]
    logits = mx.random.normal((len(seqs), n_vocab), key=mx.random.key(seed)) * scale
    tokens = mx.array(seqs)
    theirs = np.array(ApplyTimestampRules(tok, sample_begin, max_initial).apply(logits, tokens))
    for row, seq in enumerate(seqs):
        if held(seq, sample_begin, tok, reach[row]):
            theirs[row, tok.eot] = -np.inf
    rule = HeldEnd(tok, sample_begin, reach)
    for rules in (ApplyTimestampRules, DeviceTimestampRules):
        ours = rule.apply(rules(tok, sample_begin, max_initial).apply(logits, tokens), tokens)
        assert np.array_equal(np.array(ours), theirs)
    assert [rule.held(s, r) for r, s in enumerate(seqs)] == [held(s, sample_begin, tok, b) for s, b in zip(seqs, reach)]
    rule.keep_rows(mx.array([len(seqs) - 1]))
    assert rule.must_reach.tolist() == reach[-1:]


def held_batch(tok, n_vocab: int):
    """Rows a batched decode may meet (sample_begin 1), EOT their top logit: a pair of
    timestamps whose first (2.00 s, 100 steps) lies one step under its row's bound, at it, with
    no bound; a lone timestamp under a bound; a pair whose first is 0.00.
    -> (tokens (5, 5) int32, logits (5, n_vocab), bounds, whether each is held)."""
    ts, text, sot = tok.timestamp_begin, 400, tok.sot
    pair, lone, at_zero = [sot, ts, text, ts + 100, ts + 100], [sot, ts, text, text, ts + 100], [sot, ts, text, ts, ts + 3]
    seqs, reach, held = [pair, pair, pair, lone, at_zero], [101, 100, 0, 1500, 1], [True, False, False, False, True]
    logits = mx.random.normal((len(seqs), n_vocab), key=mx.random.key(7))
    # EOT far above the rest: the timestamps' summed mass stays under it, so the rules' last
    # rule (timestamps over the best text, EOT counted as text) leaves it
    logits = mx.where(mx.arange(n_vocab) == tok.eot, logits.max() + 15, logits)
    return mx.array(seqs, dtype=mx.int32), logits, reach, held


def test_held_end_at_its_bound():
    """The rule's edge, several bounds in one batch: held exactly where the pair's first lies
    under the row's bound; there EOT goes, elsewhere it stays the pick."""
    tok = TOKENIZERS[False]
    tokens, logits, reach, want = held_batch(tok, 51864)
    assert [held(s, 1, tok, r) for s, r in zip(tokens.tolist(), reach)] == want
    out = HeldEnd(tok, 1, reach).apply(DeviceTimestampRules(tok, 1, None).apply(logits, tokens), tokens)
    picks = np.array(out.argmax(axis=-1)).tolist()
    assert [p != tok.eot for p in picks] == want, picks


@settings(max_examples=60, deadline=None)
@given(case=history(), inf_rows=st.integers(0, 3))
def test_greedy_update_equals_mlx_whispers(case, inf_rows):
    """The fast engine's greedy update (no indexed read, tokens kept int32) against mlx-whisper's
    GreedyDecoder.update at temperature 0: the same tokens, completion and sums, bit for bit,
    rows that ended and rows whose filters banned most of the vocabulary among them."""
    tok, n_vocab, _, seqs, seed, scale, _ = case
    logits = mx.random.normal((len(seqs), n_vocab), key=mx.random.key(seed)) * scale
    banned = mx.arange(n_vocab) < tok.timestamp_begin  # as the timestamp rules leave a row
    logits = mx.where((mx.arange(len(seqs)) < inf_rows)[:, None] & banned, -mx.inf, logits)
    tokens, sums = mx.array(seqs, dtype=mx.int32), mx.random.normal((len(seqs),), key=mx.random.key(seed + 1))
    ours = greedy_update(tokens, logits, sums, tok.eot)
    theirs = GreedyDecoder(0.0, tok.eot).update(tokens, logits, sums)
    assert ours[0].dtype == mx.int32 and ours[0].shape == (len(seqs), tokens.shape[1] + 1)
    assert np.array_equal(np.array(ours[0]), np.array(theirs[0]))
    assert ours[1].item() == theirs[1].item()
    assert np.array_equal(np.array(ours[2]), np.array(theirs[2]), equal_nan=True)


def count_flat_steps(monkeypatch) -> list:
    """FlatStep.__call__ wrapped, for the test's duration, to count its calls: [n]."""
    from whisperfast.decode.flat import FlatStep

    calls, original = [0], FlatStep.__call__

    def counted(self, tokens, cache):
        calls[0] += 1
        return original(self, tokens, cache)

    monkeypatch.setattr(FlatStep, "__call__", counted)
    return calls


@pytest.mark.parametrize("batch", [1, 2])
def test_flat_step_matches_stock_decoder(batch, monkeypatch):
    from whisperfast.decode.flat import FlatStep, StaticInference
    from whisperfast.decode import rewrite_whisper

    from .test_rewrite import tiny_whisper

    calls = count_flat_steps(monkeypatch)
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
    # the prompt ran the module path, each of the four single-token steps the flat step
    assert isinstance(fused.decoder.__dict__.get("_whisperfast_step"), FlatStep)
    assert calls[0] == 4
    assert inference.kv_cache[0][0].offset == 7


def test_lazy_eot_check_changes_nothing(tiny, monkeypatch, knobs):
    """Reading `completed` every k steps runs a few steps past EOT; the results must not move."""
    from mlx_whisper.decoding import DecodingOptions

    from whisperfast.audio import first_window_mel
    from whisperfast.decode.task import StaticCacheTask
    from whisperfast.pipeline import rewritten

    from .conftest import SAMPLES

    # the CUDA kernel's loop reads every step; the CPU's C step and pick run a host loop that
    # makes no step past EOT (test_cpu_step.py)
    knobs(WHISPERFAST_CUDA_STEP="0", WHISPERFAST_CPU_STEP="0")
    calls = count_flat_steps(monkeypatch)
    fused = rewritten(tiny).whisper
    mel = first_window_mel(SAMPLES / "jfk.wav")
    results, past_eot = [], []
    for check in (1, 3, 4, 7):  # 4: the GPU's; 3 and 7 with it divide no n below 84
        task = StaticCacheTask(fused, DecodingOptions(language="en", fp16=False))
        task.eot_check = check
        before = calls[0]
        r = task.run(mel)[0]
        # n tokens with the EOT: the prompt (tiny.en's SOT alone, one flat step on the CPU:
        # flat.StaticInference._one_token_prompt) samples the first, a flat step each of the
        # others, and one more step is queued before `completed` is read; read at every k-th
        # step, the loop stops at the first multiple of k from n on
        n, prompt = len(r.tokens) + 1, int(mx.default_device() == mx.cpu)
        assert calls[0] - before - prompt == -(-n // check) * check, (check, n, calls[0] - before)
        past_eot.append(calls[0] - before - prompt - n)
        results.append((r.tokens, r.avg_logprob, r.no_speech_prob, r.text))
    assert results[0] == results[1] == results[2] == results[3]
    assert past_eot[0] == 0 and any(past_eot), past_eot  # some k did run steps past EOT
    assert "fellow Americans" in results[0][3]


@pytest.mark.parametrize("options", [dict(language="en"), dict(language="fr", without_timestamps=True, prompt=[50, 51]),
                                     dict(language="en", suppress_tokens="", suppress_blank=False, temperature=0.6,
                                          best_of=3, max_initial_timestamp=None)])
def test_stock_task_is_mlx_whispers_task_on_whisperfasts_tokenizer(options):
    """StockTask (the fast engine's windows on the stock model) is mlx-whisper's DecodingTask
    field for field, filter for filter, but for whose tokenizer it holds; beams refused alike."""
    from mlx_whisper.decoding import DecodingOptions, DecodingTask

    from whisperfast import tokenizer as ours
    from whisperfast.decode.task import StockTask

    from .test_rewrite import tiny_whisper

    model = tiny_whisper(seed=1)
    model.dims.n_vocab = 51865
    ref, got = DecodingTask(model, DecodingOptions(**options)), StockTask(model, DecodingOptions(**options))
    assert isinstance(got.tokenizer.encoding, ours.Encoding) and not isinstance(ref.tokenizer.encoding, ours.Encoding)
    fields = ("n_group", "n_ctx", "sample_len", "sot_sequence", "initial_tokens", "sample_begin", "sot_index", "options")
    assert [getattr(got, f) for f in fields] == [getattr(ref, f) for f in fields]
    assert type(got.inference) is type(ref.inference) and type(got.decoder) is type(ref.decoder)
    assert (got.decoder.temperature, got.decoder.eot) == (ref.decoder.temperature, ref.decoder.eot)
    assert [type(f) for f in got.logit_filters] == [type(f) for f in ref.logit_filters]
    for r, x in zip(ref.logit_filters, got.logit_filters):
        assert {k: v for k, v in vars(x).items() if k not in ("mask", "tokenizer")} == \
            {k: v for k, v in vars(r).items() if k not in ("mask", "tokenizer")}
        if hasattr(r, "mask"):
            assert np.array_equal(np.array(x.mask), np.array(r.mask))
    with pytest.raises(NotImplementedError):
        StockTask(model, DecodingOptions(language="en", beam_size=2))


@pytest.mark.parametrize("options", [dict(language="en"), dict(language="fr", without_timestamps=True, prompt=[50, 51]),
                                     dict(language="en", suppress_tokens="", suppress_blank=False),
                                     dict(language="en", suppress_tokens=[7, 9])])
def test_task_filters_are_mlx_whispers_kept_across_tasks(options):
    """StaticCacheTask keeps SuppressBlank's and SuppressTokens' masks between tasks; its
    filters are still mlx-whisper's, in its order, with its masks and first sample."""
    from mlx_whisper.decoding import DecodingOptions, DecodingTask

    from whisperfast.decode.task import StaticCacheTask

    from .test_rewrite import tiny_whisper

    model = tiny_whisper(seed=1)
    model.dims.n_vocab = 51865  # the multilingual tokenizer's vocabulary
    ref = DecodingTask(model, DecodingOptions(**options)).logit_filters
    a, b = (StaticCacheTask(model, DecodingOptions(**options)).logit_filters for _ in range(2))
    expected = [type(f).__name__.replace("ApplyTimestampRules", "DeviceTimestampRules") for f in ref]
    assert [type(f).__name__ for f in a] == [type(f).__name__ for f in b] == expected
    for r, x, y in zip(ref, a, b):
        if hasattr(r, "mask"):
            assert x.mask is y.mask  # made once
            assert np.array_equal(np.array(x.mask), np.array(r.mask))
        if hasattr(r, "sample_begin"):
            assert x.sample_begin == r.sample_begin


def test_rows_that_ended_leave_the_batch(tiny, monkeypatch, knobs):
    """Issue 15: in a greedy batch of several audios, a row stops costing once it has ended.
    The tokens are those of the batch where every row steps until the last one ends (as
    mlx-whisper's task does), and the stock model's. The logprobs agree to rounding: the BLAS
    picks its kernels, and so its order of sums, by the row count, which is why a batch's rows
    and the same audio alone differ in their last bits too."""
    from mlx_whisper.decoding import DecodingOptions

    from whisperfast.audio import first_window_mel
    from whisperfast.decode.flat import FlatStep, StaticInference
    from whisperfast.decode.task import StaticCacheTask, StockTask
    from whisperfast.pipeline import rewritten

    from .conftest import SAMPLES

    knobs(WHISPERFAST_CUDA_STEP="0")
    # MLX's loop, whose steps are counted here: the C call for a batch's rows, which keeps
    # its rows on the host, is tests/test_cpu_batch.py's
    monkeypatch.setattr(StaticInference, "native_rows", lambda self: None)
    rows, original = [], FlatStep.__call__

    def counted(self, tokens, cache):
        rows.append(tokens.shape[0])
        return original(self, tokens, cache)

    monkeypatch.setattr(FlatStep, "__call__", counted)
    files = ("en_ldc93s1_timit_16k.wav", "jfk.wav", "en_new_home_in_the_stars_deepspeech.wav")
    mel = mx.concatenate([first_window_mel(SAMPLES / f) for f in files])
    options, fused = DecodingOptions(language="en", fp16=False), rewritten(tiny).whisper
    got = [(r.tokens, r.avg_logprob, r.no_speech_prob, r.text) for r in StaticCacheTask(fused, options).run(mel)]
    compacted, rows[:] = list(rows), []
    monkeypatch.setattr(StaticCacheTask, "_compacts", lambda *_: False)
    full = [(r.tokens, r.avg_logprob, r.no_speech_prob, r.text) for r in StaticCacheTask(fused, options).run(mel)]
    assert [(g[0], g[3]) for g in got] == [(f[0], f[3]) for f in full]
    assert np.allclose([g[1:3] for g in got], [f[1:3] for f in full], rtol=1e-5, atol=0)
    assert [g[0] for g in got] == [r.tokens for r in StockTask(tiny.whisper, options).run(mel)]
    lengths = [len(g[0]) for g in got]
    assert "fellow Americans" in got[1][3] and max(lengths) > min(lengths) + 5, lengths
    # each row steps until one step past its EOT (the step queued before `completed` is read)
    assert set(rows) == {3} and compacted[0] == 3 and compacted[-1] == 1, compacted
    assert sum(compacted) < sum(rows) and len(compacted) == len(rows), (compacted, rows)
