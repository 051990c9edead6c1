"""openai's beam search update on the CUDA device (beam_update.cuh's beam_update, through
cuda/beams.py's CudaBeams) against the host's (beam.py's BeamSearchDecoder after the task's own
filters), step by step on the same logits: the same next tokens, source rows (and the rows'
histories the device records for its forward pass: `path`), sums (to float32
rounding: the two log-sum-exps sum in other orders), completion and finished sequences. The
logits are random but shaped to exercise the rules: identical rows at the first update (every
beam starts as the prompt), the first sample's timestamp rule, EOT finishing rows until
max_candidates, and after that, a launch that must change nothing. Then whole decodes: the
fused lane's beams on the kernel equal the stock lane's on the host (tests/test_beam.py has
the same on every device; here it is asserted that the device update ran). These need MLX's
CUDA backend: elsewhere they are reported as skipped; benchmarks/gpu.sh beams runs them."""

import mlx.core as mx
import numpy as np
import pytest
from mlx_whisper.decoding import DecodingOptions

from whisperfast.decode.beam import BeamSearchDecoder
from whisperfast.decode.cuda.step import cuda_step
from whisperfast.decode.task import StaticCacheTask

from .conftest import needs_cuda

pytestmark = needs_cuda


@pytest.fixture(scope="module")
def model():
    from whisperfast.pipeline import load, rewritten

    return rewritten(load("tiny.en", dtype=mx.float32)).whisper


class Sources:
    """The Inference a host BeamSearchDecoder rearranges: records the source rows."""

    def rearrange_kv_cache(self, source_indices):
        self.last = list(source_indices)


def synthetic_logits(rng, tokens: np.ndarray, tokenizer, step: int, n_vocab: int) -> np.ndarray:
    """(B, 1, n_vocab) float32: noise, a few likely text tokens and timestamps; EOT likely in
    some rows from step 2 on, so that beams finish at different steps. Timestamps are made
    likely only where they may follow (the first sample, or after text): after a pair of them
    the rules ban timestamps, and where their mass then beat the best text the rules would ban
    text too, leaving a row of -inf whose order neither update defines."""
    B = tokens.shape[0]
    x = rng.normal(0, 2, (B, n_vocab)).astype(np.float32)
    x[:, rng.integers(0, tokenizer.eot, 8)] += 9
    ts_rows = np.flatnonzero((tokens[:, -1] < tokenizer.eot) | (step == 0))
    x[np.ix_(ts_rows, tokenizer.timestamp_begin + rng.integers(0, 40, 3))] += 8
    if step >= 2:
        x[rng.integers(0, B, max(1, B // 3)), tokenizer.eot] += 14
    if step == 0:  # the rows are one prompt repeated: identical logits, as the kernel gives them
        x[:] = x[0]
    return x[:, None]


@pytest.mark.parametrize("n_audio,beam_size,patience,without_timestamps,reach",
                         [(1, 5, None, False, None), (2, 3, 2.0, False, None), (1, 4, 1.0, True, None),
                          (2, 5, 0.6, False, None), (2, 3, 2.0, False, (20, 1500))])
def test_device_beam_update_is_the_hosts(model, n_audio, beam_size, patience, without_timestamps, reach):
    """`reach`: batched mode's HeldEnd, a bound an audio (its beams' rows read it from meta)."""
    opts = DecodingOptions(language="en", fp16=False, beam_size=beam_size, patience=patience,
                           without_timestamps=without_timestamps)
    host = StaticCacheTask(model, opts, must_reach=reach)
    B = n_audio * beam_size
    decode = cuda_step(host, B, mx.float32)
    assert decode is not None and decode.beams is not None and not decode.greedy
    host.decoder.inference = sources = Sources()
    tokenizer = host.tokenizer
    rng = np.random.default_rng(n_audio * 100 + beam_size)
    tokens = np.repeat(np.array([host.initial_tokens], np.int32), B, axis=0)
    sums = np.zeros(B, np.float32)
    decode.beams.start(B, mx.int32)
    ctx = model.dims.n_text_ctx
    path = mx.zeros((2, B, ctx), mx.int32)  # (as step.py's state: offsets, every row its own)
    history = np.broadcast_to(np.arange(B)[:, None], (B, ctx)).copy()  # where each row's positions lie
    completed_at = None
    for step in range(12):
        logits = synthetic_logits(rng, tokens, tokenizer, step, model.dims.n_vocab)
        mask = decode.first if step == 0 else decode.suppress
        got_tokens, got_done, got_sums, got_source = decode.beams(mx.array(tokens), mx.array(logits), mx.array(sums),
                                                                  mask, decode.rules, path)
        mx.eval(got_tokens, got_done, got_sums, got_source)
        mx.synchronize()  # path is written in place, where MLX does not see it
        if completed_at is not None:  # after completion the host's update changes nothing; nor may the device's
            assert bool(got_done)
            continue
        filtered = mx.array(logits[:, -1])
        for f in host.logit_filters:
            filtered = f.apply(filtered, mx.array(tokens))
        want_tokens, want_done, want_sums = host.decoder.update(mx.array(tokens), filtered, mx.array(sums))
        assert np.array(got_tokens).tolist() == np.array(want_tokens).tolist(), step
        assert np.array(got_source).tolist() == sources.last, step
        # row b's history: its source's, whose last position the forward pass wrote in its own row
        L = tokens.shape[1]
        history[:, :L] = np.concatenate([history[sources.last, : L - 1], np.array(sources.last)[:, None]], axis=1)
        assert (np.array(path)[(L + 1) % 2, :, :L] + np.arange(B)[:, None]).tolist() == history[:, :L].tolist(), step
        np.testing.assert_allclose(np.array(got_sums), np.array(want_sums), rtol=0, atol=1e-4)
        assert bool(got_done) == bool(want_done), step
        tokens, sums = np.array(want_tokens), np.array(want_sums)
        if bool(want_done):
            completed_at = step
    assert completed_at is not None, "the synthetic logits should finish every audio"
    got = decode.beams.finished_sequences()
    want = host.decoder.finished_sequences
    assert [list(s) for s in got] == [list(s) for s in want]
    for g, w in zip(got, want):
        np.testing.assert_allclose(list(g.values()), list(w.values()), rtol=0, atol=1e-4)
    assert all(len(s) == host.decoder.max_candidates for s in want)


@pytest.mark.parametrize("kw", [dict(beam_size=5), dict(beam_size=5, patience=2.0),
                                dict(beam_size=3, without_timestamps=True),
                                dict(beam_size=5, prompt="Ask not what your country can do.")])
def test_jfk_beams_on_the_device_update(kw):
    """A whole JFK window: fused (kernel forward pass and device beam update) against stock
    (mlx-whisper's graph, the host's update), float32: the same tokens and finished sequences;
    the device update ran for every token after the prompt and the host's never did."""
    from mlx_whisper.tokenizer import get_tokenizer

    from whisperfast.audio import first_window_mel
    from whisperfast.decode.task import StockBeamTask
    from whisperfast.pipeline import load, rewritten

    from .conftest import SAMPLES

    stock = load("tiny.en", dtype=mx.float32)
    fused = rewritten(stock).whisper
    if "prompt" in kw:
        kw = dict(kw, prompt=get_tokenizer(False).encode(" " + kw["prompt"]))
    opts = DecodingOptions(language="en", fp16=False, **kw)
    mel = first_window_mel(SAMPLES / "jfk.wav")
    st = StockBeamTask(stock.whisper, opts)
    a = st.run(stock.whisper.encoder(mel))[0]
    ft = StaticCacheTask(fused, opts)
    host_updates = []
    update = BeamSearchDecoder.update
    ft.decoder.update = lambda *args: host_updates.append(1) or update(ft.decoder, *args)
    step = fused.decoder.__dict__.get("_whisperfast_cuda")
    before = step.beam_launches if step is not None else 0
    b = ft.run(fused.encoder(mel))[0]
    step = fused.decoder.__dict__["_whisperfast_cuda"]
    assert a.tokens == b.tokens and a.text == b.text
    assert [list(s) for s in st.decoder.finished_sequences] == [list(s) for s in ft.decoder.finished_sequences]
    assert not host_updates
    assert step.beam_launches - before >= len(b.tokens)
