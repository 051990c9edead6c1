"""The CPU's step of a batch's rows in C (decode/cpu_batch.py, kernels/cpu_batch.c): on tiny.en's
real weights and real speech, a greedy batch whose rows leave as they end gets MLX's logits bit
for bit at every step and row count, and batched mode runs it."""

from contextlib import contextmanager

import mlx.core as mx
import numpy as np
import pytest
from mlx_whisper.audio import N_SAMPLES, log_mel_spectrogram, pad_or_trim

from whisperfast import _blas
from whisperfast.batched import BatchOptions, transcribe_batched
from whisperfast.decode import cpu_batch
from whisperfast.decode.flat import StaticInference
from whisperfast.kernels import cpu_simd

from .conftest import skip_without_c_step
from .test_cpu_step import bits
from .test_transcribe import long_clip

SOT_TIMESTAMPS = [50257]  # tiny.en's start of transcript, timestamps on


@pytest.fixture(scope="module")
def model():
    from whisperfast.pipeline import load

    skip_without_c_step()
    return load("tiny.en", dtype=mx.float32, fast=True).whisper


def windows(model, n: int) -> mx.array:
    """Audio features of n 30 s windows of real speech (the long clip's first n windows)."""
    audio, _ = long_clip(30.0 * n)
    mels = [pad_or_trim(log_mel_spectrogram(audio[i * N_SAMPLES:(i + 1) * N_SAMPLES]), 3000, axis=-2) for i in range(n)]
    return model.encoder(mx.stack(mels).astype(mx.float32))


def prompted(model, xa: mx.array, c_rows: bool = True, greedy: bool = True):
    """A StaticInference over the rows of xa after their prompt (the SOT): its first logits.
    The prompt is the C step's at position 0 (`c_rows`) or the module graph's; `greedy`: the
    rows are a greedy batch the C step drives, as task._main_loop marks one."""
    inference = StaticInference(model)
    inference.greedy_rows = greedy
    if not c_rows:
        inference._rows_loop = False
    logits = inference.logits(mx.array([SOT_TIMESTAMPS] * xa.shape[0]), xa)
    mx.eval(logits)
    return inference, np.asarray(logits[:, -1])


@contextmanager
def cross_half(model, on: bool):
    """The model's rows step (cpu_batch.NativeRows) rounding its rows' cross keys and values to
    float16 (`on`) or keeping them float32, for the batches made meanwhile."""
    from whisperfast.decode.flat import FlatStep

    if "_whisperfast_step" not in model.decoder.__dict__:  # as StaticInference builds it on first use
        model.decoder.__dict__["_whisperfast_step"] = FlatStep(model.decoder)
    rows = model.decoder.__dict__["_whisperfast_step"].native_rows
    was, rows.cross_half = rows.cross_half, on
    try:
        yield
    finally:
        rows.cross_half = was


def test_rows_step_is_mlx_step_as_rows_leave(model):
    """Four windows decode greedily on the C call, their cross keys and values float32. Their
    prompt's logits (the SOT's) are the module graph's, and at every step after it those of the
    rows still decoding are MLX's step's over the same rows (the batch compacted as
    task._main_loop compacts it), bit for bit, at 4, 3, 2 and 1 rows: rows leave at set steps,
    and each row count takes other products (tn16 a row at one to three rows, the packed chains
    at four)."""
    with cross_half(model, False):
        rows_leave(model, cpu_simd.PANELS_F16)


def test_rows_step_on_float16_cross_kv_is_mlx_step_on_the_same_values(model):
    """The same batch with the rows' cross keys and values rounded to float16 (batched mode's
    default on the CPU): the C call reads them in float16, half the bytes, and its logits are
    MLX's step's over float32 caches holding the same rounded values, bit for bit, at every
    step and row count. The rounding moved the prompt's logits by at most a few thousandths."""
    with cross_half(model, True):
        rows_leave(model, cpu_simd.PANELS_F16, half=True)


def test_an_8bit_models_rows_step_is_mlx_step_as_rows_leave():
    """The same on tiny.en quantized to 8 bits (its layers dequantized on the CPU): tn16 and the
    chains read the layers' 8-bit values (PANELS_Q8), MLX's step's bits at every row count."""
    from whisperfast.pipeline import load

    skip_without_c_step()
    q8 = load("tiny.en", dtype=mx.float32, quantize=8, fast=True).whisper
    with cross_half(q8, False):
        rows_leave(q8, cpu_simd.PANELS_Q8)


def rows_leave(model, form: int, half: bool = False):
    """test_rows_step_is_mlx_step_as_rows_leave on `model`, whose copies for tn16 and the
    chains are of `form` (on the BLAS these tests were written on); with `half`, the C call's
    rows on float16 cross keys and values, MLX's on the same values in float32."""
    xa = windows(model, 4)
    ours, first = prompted(model, xa)
    theirs, first_theirs = prompted(model, xa, c_rows=False)
    rows_step, step = ours.native_rows(), ours.rows_loop()
    assert step is not None and step is ours._rows_loop and rows_step.checked  # the prompt ran on it
    assert step.cross_half == half and half in rows_step.checked_forms
    flat = model.decoder.__dict__["_whisperfast_step"]
    if half:  # theirs rounded too, and their prompt made again on those values by MLX's step
        assert 0 < np.abs(first - first_theirs).max() < 0.01
        for (kv, cross), (kv_theirs, cross_theirs) in zip(ours.kv_cache, theirs.kv_cache):
            for a, b in zip(cross, cross_theirs):
                a, b = np.asarray(a), np.asarray(b)
                assert np.array_equal(a, a.astype(np.float16).astype(np.float32))
                b[...] = b.astype(np.float16)
            assert kv.offset == kv_theirs.offset == 1
            kv_theirs.offset = 0
        again = flat._mlx_step(mx.array([SOT_TIMESTAMPS] * 4, mx.int32), theirs.kv_cache)
        assert np.array_equal(bits(first), bits(np.asarray(again).reshape(4, -1)))
    else:
        assert np.array_equal(bits(first), bits(first_theirs))  # the C step's prompt is stock's graph's
    live, last = [0, 1, 2, 3], first.argmax(-1).tolist()
    leave = {6: 2, 12: 0, 18: 3}  # step -> the row that leaves there
    for i in range(24):
        if i in leave:
            keep = [j for j, r in enumerate(live) if r != leave[i]]
            theirs.keep_rows(mx.array(keep))
            live = [live[j] for j in keep]
        tokens = [last[r] for r in live]
        got = step(tokens, live)
        assert rows_step.checked and rows_step.reason == "", rows_step.reason
        want = np.asarray(flat._mlx_step(mx.array([[t] for t in tokens], mx.int32), theirs.kv_cache)).reshape(len(live), -1)
        assert np.array_equal(bits(got), bits(want)), f"step {i}, {len(live)} rows"
        for j, r in enumerate(live):
            last[r] = int(want[j].argmax())
    # every row count ran its own products; on the BLAS they were found on (scipy's OpenBLAS,
    # SkylakeX kernels): tn16 a row below four rows, the chains at four
    how = {n: rows_step._how[n][0] for n in (1, 2, 3, 4)}
    if "SkylakeX" in str(_blas.describe().get("note")):
        assert {h for n in (1, 2, 3) for h in how[n][:6]} == {cpu_batch.BY_TN16 | form << cpu_batch.FORM_SHIFT}
        assert {h for h in how[4][:6]} == {cpu_batch.BY_CHAIN | form << cpu_batch.FORM_SHIFT}


def test_the_rows_step_picks_in_its_call_as_the_host_pick_does(model):
    """The rows' C step with their greedy picks in the same call (step.picking, rules.NativePick
    .picks) against the same step's logits then NativePick.host a row, two decodes of four
    windows side by side: the same token and log probability at every step, bit for bit, each
    row under its own timestamp rules and HeldEnd bound, rows leaving as they end."""
    from whisperfast.decode.rules import HeldEnd, NativePick

    from .test_cpu_step import filters_for
    from .test_decoding import TOKENIZERS

    tok, n_vocab = TOKENIZERS[False], model.dims.n_vocab
    xa = windows(model, 4)
    (ours, first), (theirs, _) = prompted(model, xa), prompted(model, xa)
    step, plain = ours.rows_loop(), theirs.rows_loop()
    assert step is not None and plain is not None and ours.native_rows().checked
    filters = filters_for(tok, n_vocab, len(SOT_TIMESTAMPS), None) + [HeldEnd(tok, 1, [0, 300, 1000, 1500])]
    pick = NativePick.for_filters(cpu_simd.chosen(mx.float32), filters, tok.eot)
    history = [SOT_TIMESTAMPS + [pick.host(SOT_TIMESTAMPS, np.ascontiguousarray(first[r]), r)[0]] for r in range(4)]
    in_call = 0
    for _ in range(40):
        live = [r for r in range(4) if history[r][-1] != tok.eot]
        if not live:
            break
        last, rows = [history[r][-1] for r in live], [history[r] for r in live]
        logits = plain(last, live)
        want = [pick.host(h, logits[j], r) for j, (h, r) in enumerate(zip(rows, live))]
        picks = pick.picks(rows, live, n_vocab)
        got = step.picking(last, live, picks) if picks is not None else [pick.host(rows[0], step(last, live)[0], live[0])]
        in_call += picks is not None
        assert got == want
        for r, (token, _) in zip(live, want):
            history[r].append(token)
    assert in_call >= 10 and any(h[-1] == tok.eot for h in history)  # the call picked, and rows left


def test_a_first_step_that_differs_turns_the_rows_step_off(model):
    """Products that are not MLX's at this row count (tn16 a row at four rows, where OpenBLAS
    sums otherwise) fail the first step's check: the logits given are MLX's, the C call stands
    aside from then on and the decode goes on with MLX's step."""
    xa = windows(model, 4)
    ours, first = prompted(model, xa, c_rows=False)
    theirs, _ = prompted(model, xa, c_rows=False)
    rows_step = cpu_batch.NativeRows(ours.native_step(), cross_half=False)
    step = rows_step.loop(ours.kv_cache)
    layers = step.layers
    how, logits = rows_step._products(4, layers)
    tn16 = cpu_batch.BY_TN16 | rows_step.native._sizes["tn16_half"] << cpu_batch.FORM_SHIFT
    rows_step._how[4] = ([tn16 if k < 6 else h for k, h in enumerate(how)], logits)
    flat = model.decoder.__dict__["_whisperfast_step"]
    tokens = first.argmax(-1).tolist()
    for i in range(3):
        got = step(tokens, [0, 1, 2, 3])
        assert rows_step.reason == "its first step's logits differed from MLX's" and not rows_step.checked
        want = np.asarray(flat._mlx_step(mx.array([[t] for t in tokens], mx.int32), theirs.kv_cache)).reshape(4, -1)
        assert np.array_equal(bits(got), bits(want)), f"step {i}"
        tokens = want.argmax(-1).tolist()


def flat_step(model):
    return model.whisper.decoder.__dict__.get("_whisperfast_step")


def test_batched_mode_decodes_its_rows_in_c(model):
    """A batched transcription of a 95 s clip (its chunks decoded as one batch) runs its greedy
    batch on the C call, checked, and says word for word what it says with that call off (MLX's
    step over the rows, compacted as they end)."""
    from whisperfast.pipeline import load

    audio, _ = long_clip(95.0)
    on, off = (load("tiny.en", dtype=mx.float32, fast=True) for _ in range(2))
    assert on.whisper is not off.whisper
    t_off = transcribe_batched(off, [audio], batch=BatchOptions(8))[0]  # builds off's FlatStep
    flat_step(off).native_rows = None
    t_off = transcribe_batched(off, [audio], batch=BatchOptions(8))[0]
    with cross_half(on.whisper, False):
        t_on = transcribe_batched(on, [audio], batch=BatchOptions(8))[0]
    rows = flat_step(on).native_rows
    assert rows.checked and rows.reason == "" and rows.halved == 0, rows.reason
    assert len(t_on.segments) > 4
    assert [(s.start, s.end, s.text) for s in t_on.segments] == [(s.start, s.end, s.text) for s in t_off.segments]
    assert "fellow americans" in t_on.text.lower()


def test_float16_cross_kv_keep_batched_modes_words():
    """Batched mode's default on the CPU (its rows' cross keys and values in float16) against
    the same batch in float32, on a 95 s clip of real speech: the float16 batch ran, and its
    words are as close to the clip's reference (WER within half a point)."""
    from whisperfast.pipeline import load

    from .text import error_rate

    audio, reference = long_clip(95.0)
    model = load("tiny.en", dtype=mx.float32, fast=True)
    with cross_half(model.whisper, False):
        full = transcribe_batched(model, [audio], batch=BatchOptions(8))[0]
    with cross_half(model.whisper, True):
        half = transcribe_batched(model, [audio], batch=BatchOptions(8))[0]
    rows = flat_step(model).native_rows
    assert rows.halved == 1 and rows.checked and rows.reason == "", rows.reason
    wer_full, wer_half = error_rate(reference, full.text), error_rate(reference, half.text)
    assert wer_full < 0.15 and abs(wer_half - wer_full) <= 0.005, (wer_full, wer_half)


def test_a_sampled_batch_keeps_its_cross_kv_as_made(model):
    """A batch that is not greedy (the temperature fallback's, sampled by MLX's step) takes the
    C prompt but keeps its cross keys and values in float32, as made: its prompt's logits are
    the module graph's bit for bit, and nothing was rounded."""
    xa = windows(model, 2)
    with cross_half(model, True):
        ours, first = prompted(model, xa, greedy=False)
        theirs, first_theirs = prompted(model, xa, c_rows=False)
    step = ours.rows_loop()
    assert step is not None and not step.cross_half
    assert np.array_equal(bits(first), bits(first_theirs))
    k = np.asarray(ours.kv_cache[0][1][0])
    assert not np.array_equal(k, k.astype(np.float16).astype(np.float32))


def test_a_rows_step_goes_with_its_last_reference(model):
    """The rows' C step holds its batch's caches, packed keys and scratch (~70 MB for a batch
    of two rows of tiny.en). Dropped with the decode that made it, it goes at once, not when
    Python's cycle collector next runs, which large arrays do not prompt: a cycle there
    (step.picking reaching step) kept every batch's arrays, and a 60-minute file's peak memory
    grew batch after batch."""
    import gc
    import weakref

    gc.collect()
    gc.disable()  # nothing is collected here: what goes, goes by its reference count
    try:
        ours, _ = prompted(model, windows(model, 2))
        step = ours.rows_loop()
        assert step is not None and step.picking is not None and step.held
        gone, key = weakref.ref(step), weakref.ref(step.held[0])
        del ours, step
        assert gone() is None and key() is None
    finally:
        gc.enable()
