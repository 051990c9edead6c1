"""The equality promise on audio the other tests never transcribe: every variant is built here
from the samples (other rates, channels, formats, noise, silence, languages, length), and the
fused lane must give stock mlx-whisper's tokens with default options and one seed per lane.

On the CPU the fused model computes exactly stock's arithmetic (mx.fast falls back to composed
ops there, and the rewrite scales q and k as mlx-whisper does), so equality is exact, the
sampled fallback included; `test_logits_bit_identical` pins that down step by step."""

import mlx.core as mx
import numpy as np
import pytest
import soundfile as sf
from mlx_whisper.decoding import Inference
from scipy.signal import resample_poly

from whisperfast.audio import SAMPLE_RATE, first_window_mel, load_audio
from whisperfast.decode import rewrite_whisper
from whisperfast.decode.flat import StaticInference
from whisperfast.kernels import cpu_simd
from whisperfast.kernels.cpu_simd import CheckedChain
from whisperfast.pipeline import TranscribeOptions, seed_generator, transcribe

from .conftest import SAMPLES, cpu_simd_builds_here, cuda_available, needs_base
from .contract import assert_same_or_stock_tie
from .test_equality import pair
from .test_transcribe import long_clip


def jfk():
    return load_audio(SAMPLES / "jfk.wav")


def speech(name):
    return load_audio(SAMPLES / name)


def silence(seconds):
    return np.zeros(int(seconds * SAMPLE_RATE), np.float32)


def written(tmp_path, name, data, rate, **kw):
    """`data` written to tmp_path/name and read back the way the CLI reads files."""
    p = tmp_path / name
    sf.write(p, data, rate, **kw)
    return load_audio(p)


def flac_44k_stereo_24bit(tmp_path):
    x = resample_poly(jfk(), 441, 160).astype(np.float32)
    right = np.concatenate([np.zeros(130, np.float32), x[:-130]]) * 0.8  # the other mic, 3 ms later
    return written(tmp_path, "jfk44.flac", np.stack([x, right], axis=1), 44100, subtype="PCM_24")


def same_tokens(name, dtype, audio, options=TranscribeOptions()):
    """Both lanes on one input, each seeded the same (options.seed); their tokens and text equal."""
    base, fused = pair(name, dtype)
    a, b = transcribe(base, audio, options), transcribe(fused, audio, options)
    assert_same_or_stock_tie(base, fused, audio, options, a, b)
    return a, b


VARIANTS = {
    "flac-44k1-stereo-24bit": flac_44k_stereo_24bit,
    "mp3": lambda d: written(d, "jfk.mp3", jfk(), SAMPLE_RATE, format="MP3", subtype="MPEG_LAYER_III"),
    "ogg-vorbis": lambda d: written(d, "jfk.ogg", jfk(), SAMPLE_RATE, format="OGG", subtype="VORBIS"),
    "wav-8k-float": lambda d: written(d, "jfk8k.wav", resample_poly(jfk(), 1, 2).astype(np.float32), 8000, subtype="FLOAT"),
    # two speakers, one per channel, talking over each other
    "stereo-two-speakers": lambda d: written(
        d, "two.wav", np.stack([jfk(), speech("en_librispeech_2412-153948-0000.flac")[: len(jfk())]], 1), SAMPLE_RATE),
    # speech, 25 s of silence across a window boundary, speech
    "silence-between": lambda d: np.concatenate([jfk(), silence(25), speech("en_ljspeech_LJ050-0131.wav")]),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_format_and_content_variants_fp32(variant, tmp_path):
    a, _ = same_tokens("tiny.en", mx.float32, VARIANTS[variant](tmp_path))
    assert a.text  # speech was heard, not an empty pair of transcripts


def test_fp16_flac_44k_stereo(tmp_path):
    """The held-out case where a timestamp token flipped: 50740 against 50750."""
    same_tokens("tiny.en", mx.float16, flac_44k_stereo_24bit(tmp_path))


def noisy_jfk():
    """JFK under loud white noise: tiny.en's first decode fails the logprob threshold, so the
    window is decoded again at temperature 0.2 (sampled)."""
    return jfk() + np.random.default_rng(0).standard_normal(len(jfk())).astype(np.float32) * 0.25


def test_sampled_fallback_same_draws():
    a, _ = same_tokens("tiny.en", mx.float32, noisy_jfk())
    assert a.sampled_windows >= 1  # the fallback really sampled


@pytest.mark.parametrize("dtype", [mx.float32, mx.float16])
def test_sampled_windows_on_the_stock_engine(dtype):
    """Where the fast engine cannot round as stock does (a GPU in fp16), windows decoded at
    temperature > 0 run on the stock model (decode/engine.py). Forced here on the CPU: the
    fused lane's tokens are stock's, and every sampled window, only those, ran on stock."""
    from whisperfast import longform
    from whisperfast.decode import Engine

    base, fused = pair("tiny.en", dtype)
    options = TranscribeOptions(language="en")
    ref = transcribe(base, noisy_jfk(), options)
    results = {}
    for forced in (True, False):
        engine = Engine(fused.whisper, stock=fused.stock, sampled_on_stock=forced)
        seed_generator(options.seed)
        results[forced] = longform.transcribe(engine, noisy_jfk(), options, fp16=dtype == mx.float16), engine
    (on_stock, engine), (alone, fast_only) = results[True], results[False]
    assert ref.sampled_windows >= 1 and on_stock.stats.sampled_windows == ref.sampled_windows
    assert engine.decodes == {"fast": ref.windows, "stock (sampled)": ref.sampled_windows}
    assert fast_only.decodes == {"fast": ref.windows + ref.sampled_windows}
    stock_tokens = [t for s in ref.segments for t in s.tokens]
    for result in (on_stock, alone):  # on the CPU the fast engine is stock's arithmetic: equal both ways
        assert [t for s in result.segments for t in s["tokens"]] == stock_tokens


@pytest.mark.parametrize("beam_size", [None, 5])
def test_decisions_near_a_threshold_on_the_stock_engine(beam_size):
    """Where the fast engine cannot round as stock does, a window whose average log
    probability lies within MARGIN of the threshold is decoded again on the stock model,
    whose numbers decide the fallback (forced here on the CPU, where both are equal); with
    beams, by the stock lane's beam search."""
    from whisperfast import longform
    from whisperfast.decode import Engine
    from whisperfast.decode.engine import MARGIN

    base, fused = pair("tiny.en", mx.float32)
    ref = longform.transcribe(Engine(base.whisper), jfk(), TranscribeOptions(language="en", beam_size=beam_size),
                              fp16=False)
    logprob = ref.segments[0]["avg_logprob"]
    for offset, confirmed in ((MARGIN / 2, 1), (2 * MARGIN, 0)):  # the threshold just below it; far below
        engine = Engine(fused.whisper, stock=fused.stock, sampled_on_stock=True)
        options = TranscribeOptions(language="en", logprob_threshold=logprob - offset, beam_size=beam_size)
        got = longform.transcribe(engine, jfk(), options, fp16=False)
        assert engine.decodes["fast"] == 1 and engine.decodes["stock (near a threshold)"] == confirmed
        assert [s["tokens"] for s in got.segments] == [s["tokens"] for s in ref.segments]
        assert got.stats.sampled_windows == 0  # above the threshold both ways: no fallback


def test_seed_reproduces_sampled_windows():
    base, _ = pair("tiny.en", mx.float32)
    first, again = (transcribe(base, noisy_jfk(), TranscribeOptions(seed=0)) for _ in range(2))
    assert first.sampled_windows >= 1 and again.tokens == first.tokens  # a seed reproduces its transcript


def test_long_form_65s_fp32():
    audio, _ = long_clip(65.0)
    a, _ = same_tokens("tiny.en", mx.float32, audio)
    assert a.windows >= 3


@pytest.mark.slow
@needs_base
def test_two_languages_base_fp32():
    audio = np.concatenate([jfk(), silence(1.0), speech("zh_aishell1_BAC009S0724W0121.wav")])
    same_tokens("base", mx.float32, audio)


@pytest.mark.parametrize("attention", [None, "rounded"], ids=["fused", "rounded"])
@pytest.mark.parametrize("dtype", [mx.float32, mx.float16], ids=["fp32", "fp16"])
def test_logits_bit_identical(dtype, attention):
    """One window of JFK, teacher-forced through stock's decoder and the fused one (the
    prompt pass, then single-token flat steps): every encoder output and logit is bit for bit
    stock's. On the CPU with either attention op (the fused one falls back to the rounded
    graph there). On a GPU (fp16, rounded attention) the encoder's output and the prompt's
    logits are stock's; the flat steps after them are not (likely MLX's matmul kernels for
    the static cache's strides summing in another order: `rewritten`'s docstring)."""
    gpu = mx.default_device() != mx.cpu
    if gpu and (dtype == mx.float32 or attention is None):
        pytest.skip("on a GPU only fp16 with rounded attention rounds as stock's graph")
    base, _ = pair("tiny.en", dtype)
    fused, _ = rewrite_whisper(base.whisper, attention=attention)
    mel = first_window_mel(SAMPLES / "jfk.wav", dtype)
    fa, fb = base.whisper.encoder(mel), fused.encoder(mel)
    assert mx.array_equal(fa, fb)
    sot = [50257]  # tiny.en's start of transcript; then <|0.00|> and "And so my fellow Americans, ask not..."
    text = [50363, 843, 523, 616, 5891, 3399, 11, 1265, 407, 644, 534, 1499, 460, 466, 329, 345]
    stock, ours = Inference(base.whisper), StaticInference(fused)
    assert mx.array_equal(stock.logits(mx.array([sot]), fa), ours.logits(mx.array([sot]), fa))
    if gpu:
        return
    for t in text:
        step = mx.array([[t]])
        assert mx.array_equal(stock.logits(step, fa), ours.logits(step, fa))
    step = fused.decoder.__dict__["_whisperfast_step"]  # the flat step ran the single tokens
    assert step.exact == (attention == "rounded")
    if dtype == mx.float32 and cpu_simd_builds_here() and cpu_simd.chosen(dtype) is not None:
        # the logits went through cpu_simd's chain_matmul where it gives MLX's bits (checked here,
        # at one row), else through MLX's product: equal above either way
        assert isinstance(step.logits, CheckedChain) and 1 in step.logits.same


@pytest.mark.parametrize("dtype", [mx.float32, mx.float16], ids=["fp32", "fp16"])
def test_a_long_prompt_gives_stocks_logits(dtype):
    """A window's previous text (a prompt over the CUDA kernel's 8 tokens, which the module
    pass runs) through stock's decoder and the rewritten one, on stock's features of JFK: the
    prompt's logits are stock's, bit for bit, and on the CPU so are the single-token steps
    after it. The rewritten decoder attends on the prompt's own keys and values (on the
    cache's slices the BLAS summed otherwise from 9 positions on), and on a CUDA GPU with
    mlx-whisper's graph (MLX's fused SDPA of several queries builds a cuDNN graph for every
    new length)."""
    from mlx_whisper.tokenizer import get_tokenizer

    base, _ = pair("tiny.en", dtype)
    fused, _ = rewrite_whisper(base.whisper)
    features = base.whisper.encoder(first_window_mel(SAMPLES / "jfk.wav", dtype))
    tok = get_tokenizer(False, language="en")
    text = tok.encode(" My fellow citizens, we meet today to speak plainly about the nation and its future.")
    prompt = mx.array([[tok.sot_prev, *text, *tok.sot_sequence_including_notimestamps]])
    assert prompt.shape[1] > 8
    stock, ours = Inference(base.whisper), StaticInference(fused)
    want, got = stock.logits(prompt, features).astype(mx.float32), ours.logits(prompt, features)
    assert mx.array_equal(got, want), f"largest difference {float(mx.abs(got - want).max())}"
    if mx.default_device() != mx.cpu:
        return  # the flat steps' fused SDPA: test_logits_bit_identical's docstring
    for t in [50363, 843, 523, 616, 5891]:  # <|0.00|> And so my fellow
        step = mx.array([[t]])
        assert mx.array_equal(stock.logits(step, features).astype(mx.float32), ours.logits(step, features))


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_format_and_content_variants_fp16(variant, tmp_path):
    same_tokens("tiny.en", mx.float16, VARIANTS[variant](tmp_path))


@pytest.mark.slow
def test_sampled_fallback_fp16():
    same_tokens("tiny.en", mx.float16, noisy_jfk())


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [mx.float32, mx.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("model", ["tiny.en", pytest.param("base", marks=needs_base)])
def test_long_form_600s(model, dtype):
    """Ten minutes with the default fallback, seeded: in fp16 on a GPU, base parts from stock
    at a tie of stock's own (README), which the contract allows and this test checks is one."""
    audio, _ = long_clip(600.0)
    same_tokens(model, dtype, audio)


@pytest.mark.slow
@needs_base
@pytest.mark.parametrize("dtype", [mx.float32, mx.float16], ids=["fp32", "fp16"])
def test_two_languages_and_noise_base(dtype):
    audio = np.concatenate([noisy_jfk(), silence(1.0), speech("zh_aishell1_BAC009S0724W0121.wav")])
    same_tokens("base", dtype, audio)


@pytest.mark.parametrize("bits", [8, 4])
def test_quantized_model_fast_equals_stock(bits):
    """`--fast` on a quantized model (it crashed: the flat step read packed weights as floats)."""
    import mlx.nn as nn

    from whisperfast.pipeline import load, rewritten

    base = load("tiny.en")
    nn.quantize(base.whisper, group_size=64, bits=bits)
    fused = rewritten(base)
    a, b = transcribe(base, jfk()), transcribe(fused, jfk())
    assert a.tokens == b.tokens and "country" in a.text
    # The report says where the quantized layers run: on the CPU dequantized; on a CUDA GPU the
    # decode kernel reads them packed, and it ran (its launches counted).
    notes = fused.rewrites["notes"]
    if mx.default_device() == mx.cpu:
        assert any("run dequantized on the CPU" in n for n in notes), notes
    elif cuda_available():
        assert any(f"quantized decoder ({bits}-bit, groups of 64) on the CUDA decode kernel" in n for n in notes), notes
        assert fused.whisper.decoder.__dict__["_whisperfast_cuda"].launches >= len(b.tokens)
    assert not any("CUDA decode kernel" in n for n in rewritten(load("tiny.en")).rewrites["notes"])
