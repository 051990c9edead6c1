"""The CPU's one-row decode in C (decode/cpu_step.py, decode/rules.NativePick): the step's
logits and the token picks are those of the MLX ops they stand in for, bit for bit, on
tiny.en's real weights and on the filters' real rules."""

import mlx.core as mx
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from whisperfast import _blas
from whisperfast.decode.attention import KVCache
from whisperfast.decode.cpu_step import tn16_rows
from whisperfast.decode.flat import FlatStep, decoder_forward
from whisperfast.decode.rules import (DeviceTimestampRules, HeldEnd, NativePick, greedy_update, native_pick,
                                      suppress_blank, suppress_tokens)
from whisperfast.files import write_atomic
from whisperfast.kernels import cpu_simd

from .conftest import cpu_simd_builds_here, needs_base, skip_without_c_step
from .test_decoding import TOKENIZERS, count_flat_steps, held_batch, history


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    found = cpu_simd.load(tmp_path_factory.mktemp("kernels"), write_atomic, threads=2)
    if found.kernels is None:
        if cpu_simd_builds_here() and "AVX2" not in found.how:
            pytest.fail(f"cpu_simd did not build here: {found.how}")
        pytest.skip(found.how)
    return found.kernels


def bits(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float32)
    return np.where(np.isnan(a), np.float32(np.nan), a).view(np.uint32)  # one NaN for all (their sign is not promised)


@pytest.fixture(scope="module")
def decoder():
    from whisperfast.pipeline import load

    skip_without_c_step()
    return load("tiny.en", dtype=mx.float32, fast=True).whisper.decoder


def prompted(dec, n_prompt: int, seed: int):
    """A FlatStep and its caches after a prompt of n_prompt tokens over random audio features."""
    D = dec.positional_embedding.shape[-1]
    xa = mx.random.normal((1, 1500, D), key=mx.random.key(seed))
    cache = [[KVCache(448), None] for _ in dec.blocks]
    prompt = [50257, 50362] + [int(t) for t in np.random.default_rng(seed).integers(0, 50000, n_prompt - 2)]
    mx.eval(decoder_forward(dec, mx.array([prompt]), xa, cache))
    return FlatStep(dec), cache


@pytest.mark.parametrize("n_prompt,threads", [(3, 2), (3, 1), (200, 2)], ids=["short", "one-thread", "long"])
def test_native_step_is_the_mlx_step_bit_for_bit(decoder, n_prompt, threads):
    """From the prompt's end on (short: 3 tokens; long: 200, so that the self-attention reaches
    260 keys), a decode whose positions alternate between the C step and MLX's step gives the
    logits of a decode by MLX's step alone at every position, bit for bit: each step reads
    keys and values the other wrote. One thread or two: the same bits."""
    step, cache = prompted(decoder, n_prompt, seed=n_prompt)
    ref_step, ref_cache = prompted(decoder, n_prompt, seed=n_prompt)
    step.native.kernels = step.native.kernels.threaded(threads)
    rng = np.random.default_rng(7)
    for i, t in enumerate(rng.integers(0, 50257, 60)):
        tok = mx.array([[int(t)]])
        if i == 0:
            ours = step(tok, cache)  # MLX's step, then the check
            assert step.native.reason == "" and step.native.checked, step.native.reason
        else:
            ours = step.native(tok, cache) if i % 2 else step._mlx_step(tok, cache)
        assert ours is not None and ours.shape == (1, 1, decoder.token_embedding.weight.shape[0])
        theirs = ref_step._mlx_step(tok, ref_cache)
        assert cache[0][0].offset == ref_cache[0][0].offset
        assert np.array_equal(bits(ours), bits(theirs)), f"position {cache[0][0].offset - 1}"


def test_steps_give_stocks_logits_up_to_the_last_position(decoder):
    """The C step, and FlatStep's MLX step, give the logits of stock's decoder (mlx-whisper's
    concatenated caches) at every position to the cache's last, where the keys span the whole
    buffer (MLX's scaled keys there kept the buffer's transposed layout, which the BLAS sums
    otherwise: FlatStep now lays them out row-major, as stock's graph does)."""
    from whisperfast.pipeline import load

    stock = load("tiny.en", dtype=mx.float32).whisper.decoder
    xa = mx.random.normal((1, 1500, decoder.positional_embedding.shape[-1]), key=mx.random.key(9))
    prompt = mx.array([[50257, 50362, 11]])
    _, kv, _ = stock(prompt, xa)
    lanes = []
    for _ in range(2):
        cache = [[KVCache(448), None] for _ in decoder.blocks]
        mx.eval(decoder_forward(decoder, prompt, xa, cache))
        lanes.append((FlatStep(decoder), cache))
    (c_step, c_cache), (m_step, m_cache) = lanes
    n_ctx = c_cache[0][0].n_ctx
    for tok in range(3, n_ctx):
        theirs, kv, _ = stock(mx.array([[tok]]), xa, kv_cache=kv)
        assert np.array_equal(bits(c_step(mx.array([[tok]]), c_cache)), bits(theirs)), f"C step, position {tok}"
        assert np.array_equal(bits(m_step._mlx_step(mx.array([[tok]]), m_cache)), bits(theirs)), f"MLX step, {tok}"
    assert c_step.native.checked and c_cache[0][0].offset == n_ctx
    assert c_step.native(mx.array([[5]]), c_cache) is None  # full


@needs_base
def test_base_fc2_runs_on_the_chains_and_gives_stocks_logits(decoder):
    """base's fc2 (2048 inputs) is a product OpenBLAS takes to its large kernels even at one row
    (scipy's OpenBLAS on AVX-512), where tn16 is not its order of sums: the C step reads it as
    the packed chains where they were checked to be its sums (k blocks of 448, 448, 448, 352 and
    352 there), else MLX's BLAS call, and its logits are stock's decoder's at every position of
    a 40-token decode, bit for bit."""
    from whisperfast.decode.cpu_step import LAYER
    from whisperfast.pipeline import load

    base = load("base", dtype=mx.float32, fast=True).whisper.decoder
    stock = load("base", dtype=mx.float32).whisper.decoder
    xa = mx.random.normal((1, 1500, base.positional_embedding.shape[-1]), key=mx.random.key(3))
    prompt = mx.array([[50258, 50259, 50359]])
    _, kv, _ = stock(prompt, xa)
    cache = [[KVCache(448), None] for _ in base.blocks]
    mx.eval(decoder_forward(base, prompt, xa, cache))
    step = FlatStep(base)
    for tok in range(3, 43):
        theirs, kv, _ = stock(mx.array([[tok * 101]]), xa, kv_cache=kv)
        assert np.array_equal(bits(step(mx.array([[tok * 101]]), cache)), bits(theirs)), f"position {tok}"
    assert step.native.checked and step.native.reason == ""
    read = [[bool(step.native._layers[e * len(LAYER) + LAYER.index(name)]) for name in ("w216", "w2_packed")]
            for e in range(len(base.blocks))]
    assert [packed for _, packed in read] == [not tn16 and bool(c.same.get(1)) for (tn16, _), c in zip(read, step.native.fc2)]
    if "SkylakeX" in str(_blas.describe().get("note")):  # the BLAS whose blocks the chains were found on
        assert read == [[False, True]] * len(base.blocks)


def test_native_step_stands_aside(decoder, knobs):
    """Several rows, or a full cache: MLX's step runs (None here); WHISPERFAST_CPU_STEP=0 makes
    no native step at all."""
    step, cache = prompted(decoder, 3, seed=1)
    step(mx.array([[11]]), cache)
    assert step.native.checked
    assert step.native(mx.array([[11], [12]]), cache) is None
    for kv, _ in cache:
        kv.offset = kv.n_ctx
    assert step.native(mx.array([[11]]), cache) is None
    knobs(WHISPERFAST_CPU_STEP="0")
    assert FlatStep(decoder).native is None


def test_native_step_declines_what_it_does_not_cover(decoder):
    """Quantized layers, or a head width the C step's vectors do not divide: a reason, and
    MLX's step runs. The 8-bit lane on the CPU dequantizes at load, so it is covered."""
    import mlx.nn as nn

    from whisperfast.decode import rewrite_whisper
    from whisperfast.decode.cpu_step import unsupported
    from whisperfast.pipeline import load

    from .test_rewrite import tiny_whisper

    fused, _ = rewrite_whisper(tiny_whisper(seed=1))  # heads of 8
    assert unsupported(fused.decoder) == ""
    nn.quantize(fused.decoder, group_size=32, bits=8)
    assert unsupported(fused.decoder) == "quantized layers"
    eight = load("tiny.en", dtype=mx.float32, fast=True, quantize=8).whisper.decoder
    assert unsupported(eight) == ""


def test_tn16_is_the_one_row_linear_or_is_refused(built):
    """tn16 stands in for a one-row Linear only where it gives the layer's own product, with
    and without bias, from float16 rows (a weight float16 holds, the checkpoints' kind) or
    float32 rows (any weight; k not a multiple of 16 padded); float16 rows of a weight float16
    does not hold are refused. On OpenBLAS's AVX-512 (SkylakeX) kernels they must stand in."""
    from whisperfast import _blas

    import mlx.nn as nn

    rng = np.random.default_rng(3)
    taken = 0
    for n, k, bias, exact in ((384, 384, True, True), (384, 384, False, True), (512, 512, True, False),
                              (512, 2048, True, True), (64, 40, True, False)):
        m = nn.Linear(k, n, bias=bias)
        w = rng.standard_normal((n, k)).astype(np.float32)
        m.weight = mx.array(w.astype(np.float16).astype(np.float32) if exact else w)
        for half in (True, False):
            rows = tn16_rows(built, m, half)
            if half and not exact:
                assert rows is None and built.tn16_layout(m.weight, True) is None
            if rows is None:  # the BLAS sums this one otherwise: MLX's call then runs
                continue
            taken += 1
            assert rows.dtype == (np.float16 if half else np.float32) and rows.shape[1] % 16 == 0
            for seed in range(5):
                x = mx.random.normal((1, 1, k), key=mx.random.key(100 + seed))
                assert np.array_equal(bits(built.tn16(rows, x, m.bias if bias else None)), bits(m(x)))
    assert taken >= 4 or "SkylakeX" not in str(_blas.describe()["note"])


def filters_for(tok, n_vocab, sample_begin, max_initial, timestamps=True, reach=None):
    out = [suppress_blank(tok, sample_begin, n_vocab), suppress_tokens((1, 2, 7, 220, tok.eot - 1), n_vocab)]
    if timestamps:
        out.append(DeviceTimestampRules(tok, sample_begin, max_initial))
        if reach is not None:  # batched mode's bound on where a row may end
            out.append(HeldEnd(tok, sample_begin, [reach]))
    return out


@settings(max_examples=160, deadline=None)
@given(case=history(), timestamps=st.booleans(), banned_text=st.booleans(),
       shape=st.sampled_from(["plain", "ties", "timestamps_likely", "top_banned", "zeros", "eot_top"]),
       reach=st.one_of(st.none(), st.integers(0, 1502)))
def test_native_pick_is_the_filters_and_greedy_update(built, case, timestamps, banned_text, shape, reach):
    """NativePick against the MLX filters (SuppressBlank, SuppressTokens, the timestamp rules)
    then greedy_update, on one row: the same next token, completion and logprob sum, bit for
    bit, at the sample's start, after timestamps, after EOT, with and without the rules, with
    the text tokens already at -inf, and on the rows wf_pick's shortcuts single out: ties for
    the maximum, timestamps likely enough to ban the text, the maximum on a banned token
    (no-timestamps), maxima of ±0; and with batched mode's HeldEnd, EOT the maximum among them."""
    tok, n_vocab, sample_begin, seqs, seed, scale, max_initial = case
    filters = filters_for(tok, n_vocab, sample_begin, max_initial, timestamps, reach)
    logits = mx.random.normal((1, n_vocab), key=mx.random.key(seed)) * scale
    vocab = mx.arange(n_vocab)
    if shape == "ties":
        logits = mx.round(logits)
    elif shape == "timestamps_likely":
        logits = mx.where(vocab >= tok.timestamp_begin, logits + 6 * scale, logits)
    elif shape == "top_banned":
        logits = mx.where(vocab == tok.no_timestamps, logits.max() + 3, logits)
    elif shape == "zeros":
        logits = mx.where(logits > 0, -0.0, logits) * mx.where(vocab % 2 == 0, 1, -1)
    elif shape == "eot_top":
        logits = mx.where(vocab == tok.eot, logits.max() + 3, logits)
    if banned_text:
        logits = mx.where(vocab < tok.timestamp_begin, -mx.inf, logits)
    tokens = mx.array(seqs[:1], dtype=mx.int32)
    sums = mx.random.normal((1,), key=mx.random.key(seed + 1))
    ours = NativePick(built, filters, tok.eot)(tokens, logits, sums)
    filtered = logits
    for f in filters:
        filtered = f.apply(filtered, tokens)
    theirs = greedy_update(tokens, filtered, sums, tok.eot)
    assert ours[0].dtype == tokens.dtype and np.array_equal(np.array(ours[0]), np.array(theirs[0]))
    assert ours[1].item() == theirs[1].item()
    assert np.array_equal(bits(ours[2]), bits(theirs[2]))


def test_native_pick_holds_each_rows_end(built):
    """The C pick of each row of a batch, by its row's bound (NativePick.host's `row`), at the
    rule's edge: MLX's filters' picks, EOT gone exactly where the rule holds."""
    tok = TOKENIZERS[False]
    tokens, logits, reach, want = held_batch(tok, 51864)
    filters = filters_for(tok, 51864, 1, None) + [HeldEnd(tok, 1, reach)]
    pick = NativePick.for_filters(built, filters, tok.eot)
    filtered = logits
    for f in filters:
        filtered = f.apply(filtered, tokens)
    rows = np.array(logits)
    got = [pick.host(row, np.ascontiguousarray(rows[r]), r) for r, row in enumerate(tokens.tolist())]
    assert [g for g, _ in got] == np.array(filtered.argmax(axis=-1)).tolist()
    assert [g != tok.eot for g, _ in got] == want, got
    assert pick.rows(tokens.tolist(), rows, list(range(len(rows)))) == got  # the rows in one call


@settings(max_examples=80, deadline=None)
@given(case=history(), timestamps=st.booleans(), reach=st.one_of(st.none(), st.integers(0, 1502)),
       shape=st.sampled_from(["plain", "ties", "timestamps_likely"]))
def test_native_pick_of_rows_is_the_filters_and_greedy_update(built, case, timestamps, reach, shape):
    """NativePick.rows (a batch's rows in one C call, shared over the library's threads)
    against the MLX filters then greedy_update over the whole batch: each row still decoding
    gets the same token and logprob, whatever the others' histories and rules."""
    tok, n_vocab, sample_begin, seqs, seed, scale, max_initial = case
    filters = filters_for(tok, n_vocab, sample_begin, max_initial, timestamps)
    if timestamps and reach is not None:
        filters.append(HeldEnd(tok, sample_begin, [reach + 7 * r for r in range(len(seqs))]))
    logits = mx.random.normal((len(seqs), n_vocab), key=mx.random.key(seed)) * scale
    if shape == "ties":
        logits = mx.round(logits)
    elif shape == "timestamps_likely":
        logits = mx.where(mx.arange(n_vocab) >= tok.timestamp_begin, logits + 6 * scale, logits)
    tokens = mx.array(seqs, dtype=mx.int32)
    filtered = logits
    for f in filters:
        filtered = f.apply(filtered, tokens)
    want_tokens, _, want_sums = greedy_update(tokens, filtered, mx.zeros((len(seqs),)), tok.eot)
    live = [r for r, row in enumerate(seqs) if row[-1] != tok.eot]
    assume(len(live) >= 2)  # fewer take NativePick.host
    got = NativePick(built, filters, tok.eot).rows([seqs[r] for r in live], np.array(logits)[live], live)
    assert [g for g, _ in got] == np.array(want_tokens)[live, -1].tolist()
    sums = np.zeros(len(live), np.float32) + np.array([lp for _, lp in got], np.float32)  # as the host loop adds
    want, nan = np.array(want_sums)[live], np.isnan(sums)
    # bit for bit, but for a NaN's sign (a row whose every token is banned: wf_pick's as one row's)
    assert np.array_equal(nan, np.isnan(want)) and np.array_equal(sums[~nan].view(np.uint32), want[~nan].view(np.uint32))


def test_native_pick_only_for_filters_it_knows(built):
    from mlx_whisper.decoding import ApplyTimestampRules

    tok = TOKENIZERS[False]
    assert NativePick.for_filters(built, filters_for(tok, 51864, 3, None), tok.eot) is not None
    assert NativePick.for_filters(built, filters_for(tok, 51864, 3, None, reach=10), tok.eot) is not None
    assert NativePick.for_filters(built, filters_for(tok, 51864, 3, None, reach=10)[::-1], tok.eot) is None
    assert NativePick.for_filters(built, [ApplyTimestampRules(tok, 3, None)], tok.eot) is None
    assert NativePick.for_filters(None, filters_for(tok, 51864, 3, None), tok.eot) is None


def test_native_pick_knob(knobs):
    tok = TOKENIZERS[False]
    knobs(WHISPERFAST_CPU_STEP="0")
    assert native_pick(filters_for(tok, 51864, 3, None), tok.eot) is None


@pytest.mark.parametrize("n_prompt", [3, 50, 224])
def test_prompt_logits_of_some_rows_are_those_of_all_rows(decoder, n_prompt):
    """A prompt's logits made for the SOT's and the last position only (StaticInference.logits
    with rows, through FlatStep's product) are those positions' logits when every position's
    are made, as stock makes them, bit for bit."""
    from whisperfast.decode.flat import StaticInference
    from whisperfast.pipeline import load

    model = load("tiny.en", dtype=mx.float32, fast=True).whisper
    xa = mx.random.normal((1, 1500, 384), key=mx.random.key(n_prompt))
    tokens = mx.array([[50257] + [int(t) for t in np.random.default_rng(n_prompt).integers(0, 50000, n_prompt - 1)]])
    full = StaticInference(model).logits(tokens, xa)
    some = StaticInference(model).logits(tokens, xa, rows=(0, n_prompt - 1))
    assert some.shape == (1, 2, full.shape[-1])
    assert np.array_equal(bits(some[:, 0]), bits(full[:, 0])) and np.array_equal(bits(some[:, 1]), bits(full[:, -1]))


def test_a_native_step_that_differs_leaves_mlx_state(decoder):
    """Where the first C step's logits differ from MLX's (here its table points the first
    layer norm at other weights, so its keys and values differ too), the step is off for
    good, with its reason, and the caches hold MLX's keys and values: the following steps are
    those of a decode that never ran it."""
    from whisperfast.decode.cpu_step import LAYER

    step, cache = prompted(decoder, 3, seed=5)
    ref_step, ref_cache = prompted(decoder, 3, seed=5)
    original, other = step.native._tables, np.full(decoder.positional_embedding.shape[-1], 0.5, np.float32)

    def tampered():
        why = original()
        step.native._layers[LAYER.index("ln1_w")] = other.ctypes.data
        return why

    step.native._tables = tampered
    for tok in (11, 12, 13):
        ours, theirs = step(mx.array([[tok]]), cache), ref_step._mlx_step(mx.array([[tok]]), ref_cache)
        assert np.array_equal(bits(ours), bits(theirs))
    assert step.native.reason == "its first step's logits differed from MLX's" and not step.native.checked


def test_native_step_follows_caches_mlx_moved(decoder):
    """MLX's step may write a cache into a new buffer under the same array object (here a view
    of it is held, so the slice update cannot reuse the old one): the C step after it reads
    and writes the new buffer, and its logits stay those of MLX's step alone."""
    step, cache = prompted(decoder, 3, seed=11)
    ref_step, ref_cache = prompted(decoder, 3, seed=11)
    for i, tok in enumerate((11, 12, 13, 14, 15, 16)):
        held = [kv.keys[..., :1, :] for kv, _ in cache] if i % 2 == 0 else []
        before = np.asarray(cache[0][0].keys).__array_interface__["data"][0]
        if i % 2:
            ours = step.native(mx.array([[tok]]), cache)
        else:
            ours = step(mx.array([[tok]]), cache) if i == 0 else step._mlx_step(mx.array([[tok]]), cache)
        if i and i % 2 == 0:  # MLX's step ran with views held: its buffers moved
            assert np.asarray(cache[0][0].keys).__array_interface__["data"][0] != before
        mx.eval(held)
        assert np.array_equal(bits(ours), bits(ref_step._mlx_step(mx.array([[tok]]), ref_cache)))


def test_looped_steps_of_two_loops_keep_to_their_own_caches(decoder, monkeypatch):
    """NativeStep.looped: after its first call (the check and binding) a call is the C call
    alone; two loops on one step, interleaved, each rebind the tables to their own caches, and
    every logit is that of MLX's step alone on the same caches."""
    step, cache_a = prompted(decoder, 3, seed=21)
    D = decoder.positional_embedding.shape[-1]
    xa_b = mx.random.normal((1, 1500, D), key=mx.random.key(22))
    cache_b, ref_b = ([[KVCache(448), None] for _ in decoder.blocks] for _ in range(2))
    for c in (cache_b, ref_b):
        mx.eval(decoder_forward(decoder, mx.array([[50257, 50362, 400]]), xa_b, c))
    refs = [prompted(decoder, 3, seed=21)]
    refs.append((refs[0][0], ref_b))
    loops = [step.native.looped(cache_a), step.native.looped(cache_b)]
    from whisperfast.decode import cpu_step

    c_calls, slow = [], []
    addresses = cpu_step._addresses
    monkeypatch.setattr(cpu_step, "_addresses", lambda arrays: (slow.append(1), addresses(arrays))[1])
    original = step.native._c_step
    step.native._c_step = lambda token, cache: (c_calls.append(token), original(token, cache))
    for i, tok in enumerate((11, 12, 13, 14, 15, 16, 17, 18)):
        which = (i // 2) % 2  # a, a, b, b, a, a, b, b
        ours = loops[which](tok)
        ref_step, ref_cache = refs[which]
        theirs = ref_step._mlx_step(mx.array([[tok]]), ref_cache)
        assert ours.shape == (decoder.token_embedding.weight.shape[0],)
        assert np.array_equal(bits(ours), bits(theirs).reshape(-1)), f"call {i}"
    assert step.native.checked and len(c_calls) == 8  # the first call's check ran the C step too
    assert len(slow) == 4 * 2  # each loop's first call after the other's: __call__'s binding, then looped's check


def test_host_loop_gives_the_queued_loops_results(monkeypatch):
    """StaticCacheTask's host loop (the C step's logits, NativePick's picks, no MLX array a
    token) against its queued loop with the same C step and pick (StaticInference.native_step
    made None): the same tokens, logprob, no-speech probability and text, with timestamps and
    without, and cut at sample_len before any EOT."""
    from mlx_whisper.decoding import DecodingOptions

    from whisperfast.audio import first_window_mel
    from whisperfast.decode.flat import StaticInference
    from whisperfast.decode.task import StaticCacheTask
    from whisperfast.pipeline import load

    from .conftest import SAMPLES

    skip_without_c_step()
    model = load("tiny.en", dtype=mx.float32, fast=True).whisper
    mel = first_window_mel(SAMPLES / "jfk.wav")
    hosted, use_host = [], [True]
    host_loop, native_step = StaticCacheTask._host_loop, StaticInference.native_step
    monkeypatch.setattr(StaticCacheTask, "_host_loop", lambda *a: (hosted.append(1), host_loop(*a))[1])
    monkeypatch.setattr(StaticInference, "native_step", lambda self: native_step(self) if use_host[0] else None)
    for options in (dict(), dict(without_timestamps=True), dict(sample_len=6)):
        results = []
        for use_host[0] in (True, False):
            r = StaticCacheTask(model, DecodingOptions(language="en", fp16=False, **options)).run(mel)[0]
            results.append((r.tokens, r.avg_logprob, r.no_speech_prob, r.text))
        assert results[0] == results[1], options
        assert "Americans" in results[0][3] or options
    assert len(hosted) == 3


@pytest.mark.parametrize("made_before", [False, True], ids=["made-in-the-prompt", "made-with-the-encoding"])
def test_a_one_token_prompt_is_stocks_prompt_bit_for_bit(decoder, made_before, monkeypatch):
    """An English-only model's prompt, its SOT alone, runs as one step (the C step once it has
    checked itself: flat.StaticInference._one_token_prompt) over the cross K/V it makes, or was
    given (flat.cross_kv): its logits are stock's prompt's, and the steps after it stock's
    steps, bit for bit; twice, the second prompt on the checked C step."""
    from whisperfast.decode.flat import StaticInference, cross_kv
    from whisperfast.pipeline import load

    stock = load("tiny.en", dtype=mx.float32).whisper.decoder
    model = load("tiny.en", dtype=mx.float32, fast=True).whisper
    xa = mx.random.normal((1, 1500, 384), key=mx.random.key(11))
    steps = count_flat_steps(monkeypatch)
    for _ in range(2):
        inference = StaticInference(model, cross_kv(model.decoder, xa) if made_before else None)
        theirs, kv, _ = stock(mx.array([[50257]]), xa)
        before = steps[0]
        ours = inference.logits(mx.array([[50257]]), xa, rows=(0, 0))
        assert steps[0] == before + 1  # the prompt was a step
        assert ours.shape == (1, 2, theirs.shape[-1]) and inference.kv_cache[0][0].offset == 1
        assert np.array_equal(bits(ours[:, :1]), bits(theirs)) and np.array_equal(bits(ours[:, 1:]), bits(theirs))
        for tok in (50363, 314, 5):
            theirs, kv, _ = stock(mx.array([[tok]]), xa, kv_cache=kv)
            assert np.array_equal(bits(inference.logits(mx.array([[tok]]), xa)), bits(theirs)), tok
    native = model.decoder.__dict__["_whisperfast_step"].native
    assert native.checked and not native.reason


def test_the_engine_makes_a_windows_cross_kv_once_for_all_its_decodes(monkeypatch):
    """On the CPU the fast engine makes a window's cross K/V with its encoding (as whisper.cpp
    does), and each decode of the window (greedy, then the fallback's samples) reads them: no
    decode makes them again, and each gives the tokens of a decode that makes its own."""
    from mlx_whisper.decoding import DecodingOptions

    from whisperfast.audio import first_window_mel
    from whisperfast.decode.attention import WhisperAttention
    from whisperfast.decode.cpu_encoder import NativeCross
    from whisperfast.decode.engine import Engine, decode_with
    from whisperfast.pipeline import load

    from .conftest import SAMPLES

    if mx.default_device() != mx.cpu:
        pytest.skip("the CPU's engine")
    model = load("tiny.en", dtype=mx.float32, fast=True).whisper
    engine = Engine(model)
    made = [0]  # layers' cross K/V made, by MLX's ops (a layer a call) or the C call (every layer)
    original, native = WhisperAttention.cross_kv, NativeCross.__call__

    def counted(self, xa):
        made[0] += 1
        return original(self, xa)

    def counted_native(self, xa, bf16=False):
        out = native(self, xa, bf16)
        made[0] += 0 if out is None else len(out)
        return out

    monkeypatch.setattr(WhisperAttention, "cross_kv", counted)
    monkeypatch.setattr(NativeCross, "__call__", counted_native)
    features = engine.encode(first_window_mel(SAMPLES / "jfk.wav")[0])
    assert made[0] == len(model.decoder.blocks)
    for options in (DecodingOptions(language="en", fp16=False),
                    DecodingOptions(language="en", fp16=False, temperature=0.6, best_of=3)):
        mx.random.seed(3)
        before = made[0]
        got = engine.decode(features, options)
        assert made[0] == before, options  # none made again
        mx.random.seed(3)
        want = decode_with(model, features, options, fast=True)  # makes its own
        assert made[0] == before + len(model.decoder.blocks)
        assert got.tokens == want.tokens and got.avg_logprob == want.avg_logprob, options
        assert "fellow Americans" in got.text or options.temperature > 0


@pytest.fixture(scope="module")
def prompted_model():
    """tiny.en rewritten, its C step checked (a one-token prompt ran it) and its C prompt
    checked once (a 40-token prompt ran it and MLX's graph), with stock's decoder beside it."""
    from whisperfast.decode.flat import StaticInference, cross_kv
    from whisperfast.pipeline import load

    if mx.default_device() != mx.cpu or cpu_simd.chosen(mx.float32) is None:
        pytest.skip("the C prompt is the CPU's")
    model = load("tiny.en", dtype=mx.float32, fast=True).whisper
    xa = mx.random.normal((1, 1500, 384), key=mx.random.key(11))
    StaticInference(model).logits(mx.array([[50257]]), xa, rows=(0, 0))
    tokens = mx.array([[50361] + list(range(400, 437)) + [50257, 50362]])
    StaticInference(model, cross_kv(model.decoder, xa)).logits(tokens, xa, rows=(38, 39))
    native = model.decoder.__dict__["_whisperfast_step"].native
    assert native.checked and native.prompt_checked and not native.prompt_reason, native.prompt_reason
    return model, load("tiny.en", dtype=mx.float32).whisper.decoder, xa


def previous_text_prompt(n: int, seed: int) -> mx.array:
    """A window's prompt of n tokens: SOT_PREV, previous text, SOT, no-timestamps (n >= 3), or
    the SOT and no-timestamps alone (n = 2)."""
    text = [int(t) for t in np.random.default_rng(seed).integers(0, 50000, max(n - 3, 0))]
    return mx.array([([50361] + text if n > 2 else []) + [50257, 50362]])


@pytest.mark.parametrize("n_prompt", [2, 3, 5, 7, 8, 13, 27, 56, 90, 169, 224])
def test_c_prompt_is_stocks_prompt_bit_for_bit(prompted_model, n_prompt, monkeypatch):
    """A window's prompt of previous text runs as one C call (cpu_rows.c, no MLX graph), its
    products on two threads: the SOT's and the last position's logits are those of stock's
    decoder (mlx-whisper's, every position made), and the steps after it stock's steps, bit
    for bit, so its keys and values are stock's too. The lengths span the Linears run whole
    (a few rows, where OpenBLAS's small-matrix kernels sum a row otherwise at half the width)
    and those shared by the threads (SPLIT_MIN)."""
    from whisperfast.decode import flat
    from whisperfast.decode.flat import StaticInference, cross_kv

    model, stock, xa = prompted_model
    graph = [0]
    forward = flat.decoder_forward
    monkeypatch.setattr(flat, "decoder_forward", lambda *a, **k: (graph.__setitem__(0, graph[0] + 1), forward(*a, **k))[1])
    tokens = previous_text_prompt(n_prompt, seed=n_prompt)
    sot = n_prompt - 2
    inference = StaticInference(model, cross_kv(model.decoder, xa))
    ours = inference.logits(tokens, xa, rows=(sot, n_prompt - 1))
    assert graph[0] == 0 and inference.kv_cache[0][0].offset == n_prompt  # the C prompt, not MLX's graph
    theirs, kv, _ = stock(tokens, xa)
    assert ours.shape == (1, 2, theirs.shape[-1])
    assert np.array_equal(bits(ours[:, 0]), bits(theirs[:, sot])) and np.array_equal(bits(ours[:, 1]), bits(theirs[:, -1]))
    for tok in (50363, 314, 5):
        theirs, kv, _ = stock(mx.array([[tok]]), xa, kv_cache=kv)
        assert np.array_equal(bits(inference.logits(mx.array([[tok]]), xa)), bits(theirs)), tok


def test_a_c_prompt_that_differs_leaves_mlx_state(monkeypatch):
    """Where the first C prompt's logits differ from MLX's graph's (here its table points the
    final layer norm at other weights), the C prompt is off for good, with its reason: that
    prompt's logits and the caches' keys and values are MLX's (stock's), and later prompts run
    MLX's graph."""
    from whisperfast.decode import flat
    from whisperfast.decode.cpu_step import MODEL
    from whisperfast.decode.flat import StaticInference
    from whisperfast.pipeline import load

    if mx.default_device() != mx.cpu or cpu_simd.chosen(mx.float32) is None:
        pytest.skip("the C prompt is the CPU's")
    model = load("tiny.en", dtype=mx.float32, fast=True).whisper
    stock = load("tiny.en", dtype=mx.float32).whisper.decoder
    xa = mx.random.normal((1, 1500, 384), key=mx.random.key(12))
    StaticInference(model).logits(mx.array([[50257]]), xa, rows=(0, 0))
    native = model.decoder.__dict__["_whisperfast_step"].native
    other = np.full(384, 0.5, np.float32)
    native._model[MODEL.index("ln_w")] = other.ctypes.data
    graph = [0]
    forward = flat.decoder_forward
    monkeypatch.setattr(flat, "decoder_forward", lambda *a, **k: (graph.__setitem__(0, graph[0] + 1), forward(*a, **k))[1])
    tokens = previous_text_prompt(30, seed=3)
    for n in (1, 2):
        inference = StaticInference(model)
        ours = inference.logits(tokens, xa, rows=(28, 29))
        theirs, _, _ = stock(tokens, xa)
        assert np.array_equal(bits(ours[:, 0]), bits(theirs[:, 28])) and np.array_equal(bits(ours[:, 1]), bits(theirs[:, -1]))
        assert graph[0] == n  # the check's graph, then the graph alone
        ref = [[KVCache(448), None] for _ in model.decoder.blocks]
        mx.eval(forward(model.decoder, tokens, xa, ref))
        for (kv, _), (want, _) in zip(inference.kv_cache, ref):
            assert all(np.array_equal(bits(a[:, :, :30]), bits(b[:, :, :30]))
                       for a, b in ((kv.keys, want.keys), (kv.values, want.values)))
    assert native.prompt_reason == "its first prompt's logits, keys or values differed from MLX's"
    assert not native.prompt_checked
