"""The decode-step kernel with rows in groups (decode_step.cu's for_groups; past 3 rows its
forward pass, then the greedy launch's picks: tiny.en's groups hold up to 8 rows in float16,
5 in float32, the last one padded): a batch of 5 and of 16 different windows decoded greedily
in one batch through the kernel gives each row what the kernel gives that row alone (B = 1:
the grouping changes no row) and the tokens stock mlx-whisper's DecodingTask gives it. Every
lane decodes the same audio features (the stock encoder's, a row at a time), so only the
decoders differ. These need MLX's CUDA backend: elsewhere they are reported as skipped;
benchmarks/gpu.sh rows runs them."""

import mlx.core as mx
import numpy as np
import pytest
from mlx_whisper.audio import N_FRAMES, N_SAMPLES, SAMPLE_RATE, log_mel_spectrogram, pad_or_trim
from mlx_whisper.decoding import DecodingOptions, DecodingTask

from whisperfast.audio import load_audio
from whisperfast.decode.task import StaticCacheTask
from whisperfast.decode.cuda.step import CROSS_CHUNKS, CudaStep, cross_chunks, grid_blocks, kernel_picks

from .conftest import SAMPLES, needs_cuda
from .test_decoding import count_flat_steps

pytestmark = needs_cuda


def windows(n: int) -> list:
    """n different first windows: JFK, the English samples, then JFK shifted later or
    earlier, or under faint white noise (seeded)."""
    jfk = load_audio(SAMPLES / "jfk.wav")
    audio = [jfk] + [load_audio(p) for p in sorted(SAMPLES.glob("en_*"))]
    rng = np.random.default_rng(0)
    for k in range(1, n):
        if k % 3 == 1:  # later by 0.37 k s
            audio.append(np.concatenate([np.zeros(int(0.37 * k * SAMPLE_RATE), np.float32), jfk]))
        elif k % 3 == 2:  # earlier: its first 0.11 k s cut
            audio.append(jfk[int(0.11 * k * SAMPLE_RATE):])
        else:
            audio.append(jfk + rng.normal(0, 0.002 * k, jfk.shape).astype(np.float32))
    return audio[:n]


def mel(audio: np.ndarray) -> mx.array:
    m = log_mel_spectrogram(audio, padding=N_SAMPLES)
    return pad_or_trim(m[:N_FRAMES], N_FRAMES, axis=-2)


@pytest.fixture(scope="module", params=[mx.float32, mx.float16], ids=["float32", "float16"])
def lanes(request):
    from whisperfast.pipeline import load, rewritten

    stock = load("tiny.en", dtype=request.param)
    return request.param, stock.whisper, rewritten(stock).whisper


@pytest.mark.parametrize("n", [5, 16])
def test_rows_decode_in_one_batch_as_stock_decodes_each_alone(lanes, n, monkeypatch, knobs):
    dtype, stock, fused = lanes
    # each row's cross-attention in the chunks a window alone takes (rows of several audio
    # take fewer by default: test_several_audio_take_fewer_cross_chunks)
    knobs(WHISPERFAST_CUDA_STEP="1", WHISPERFAST_STEP_BLOCKS="", WHISPERFAST_CROSS_CHUNKS=str(CROSS_CHUNKS))
    grid_blocks.cache_clear()
    options = DecodingOptions(language="en", fp16=dtype == mx.float16)
    feats = [stock.embed_audio(mel(a)[None].astype(dtype)) for a in windows(n)]
    mx.eval(feats)
    flat = count_flat_steps(monkeypatch)
    before, picks = (getattr(fused.decoder.__dict__.get("_whisperfast_cuda"), k, 0) for k in ("launches", "pick_launches"))
    got = StaticCacheTask(fused, options).run(mx.concatenate(feats))
    step = fused.decoder.__dict__.get("_whisperfast_cuda")
    # the kernel ran every token of the batch, B = n rows in each launch, and no flat step;
    # past the step's own picks, a greedy launch of their own picked every token
    assert isinstance(step, CudaStep)
    tokens = max(len(r.tokens) for r in got)
    assert step.launches - before >= tokens and flat[0] == 0, (step.launches, flat)
    assert not kernel_picks(fused, n) and step.pick_launches - picks >= tokens, (step.pick_launches, picks)
    assert any(dict(k)["B"] == n for k in step.kernels), step.kernels
    assert len(got) == n
    texts = set()
    for i, f in enumerate(feats):
        # a row's math does not depend on the rows beside it: the kernel on the row alone (one
        # group, B = 1) gives the same tokens and sums; and stock gives those tokens
        alone = StaticCacheTask(fused, options).run(f)[0]
        assert got[i].tokens == alone.tokens, (i, got[i].text, alone.text)
        assert abs(got[i].avg_logprob - alone.avg_logprob) < 1e-6, (i, got[i].avg_logprob, alone.avg_logprob)
        ref = DecodingTask(stock, options).run(f)[0]
        assert got[i].tokens == ref.tokens, (i, got[i].text, ref.text)
        # fp16 logits carry 11 significant bits, so a rounding moves a log-probability by up to
        # ~1e-3 of its size; stock and the kernel sum in different orders, and one such
        # rounding in a 13-token row moves the average by ~1e-3 (seen on the H200: 0.0011)
        assert got[i].avg_logprob == pytest.approx(ref.avg_logprob, rel=1e-2, abs=1e-2), (i, got[i].avg_logprob, ref.avg_logprob)
        texts.add(ref.text)
    assert len(texts) > n // 2  # the rows differ (a row mixed up with another would show)


def test_several_audio_take_fewer_cross_chunks(lanes, knobs):
    """Rows of 16 different windows (batched mode's) attend to their audio in fewer, longer
    chunks than a window alone (cross_chunks). The rows stay independent: each gets what it
    gets alone in the same chunks; and in float32 stock's tokens (in float16 another split
    may turn a near-tie, as 4 chunks turn one of JFK's timestamps in tiny.en)."""
    dtype, stock, fused = lanes
    knobs(WHISPERFAST_CUDA_STEP="1", WHISPERFAST_STEP_BLOCKS="", WHISPERFAST_CROSS_CHUNKS="")
    grid_blocks.cache_clear()
    options = DecodingOptions(language="en", fp16=dtype == mx.float16)
    feats = [stock.embed_audio(mel(a)[None].astype(dtype)) for a in windows(16)]
    mx.eval(feats)
    chunks = cross_chunks(16, 16, fused.dims.n_text_head, grid_blocks())
    assert chunks < CROSS_CHUNKS
    got = StaticCacheTask(fused, options).run(mx.concatenate(feats))
    step = fused.decoder.__dict__["_whisperfast_cuda"]
    assert any(dict(k)["B"] == 16 and dict(k)["CC"] == chunks for k in step.kernels), step.kernels
    knobs(WHISPERFAST_CROSS_CHUNKS=str(chunks))
    for i, f in enumerate(feats):
        alone = StaticCacheTask(fused, options).run(f)[0]
        assert got[i].tokens == alone.tokens and abs(got[i].avg_logprob - alone.avg_logprob) < 1e-6, i
        if dtype == mx.float32:
            assert got[i].tokens == DecodingTask(stock, options).run(f)[0].tokens, i
