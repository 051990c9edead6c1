"""Model level: the fused model says exactly what mlx-whisper's model says, on real speech.

Run on the GPU too (benchmarks/README.md), where the fused kernels are real and a wrong
mask or scale would show."""

import mlx.core as mx
import numpy as np
import pytest

from whisperfast.audio import first_window_mel, load_audio
from whisperfast.pipeline import TranscribeOptions, load, rewritten, transcribe

from .conftest import SAMPLES, manifest, needs_base
from .contract import assert_same_or_stock_tie

FILES = [r["file"] for r in manifest()]
_cache = {}


def pair(name, dtype):
    key = (name, dtype)
    if key not in _cache:
        base = load(name, dtype=dtype)
        _cache[key] = (base, rewritten(base))
    return _cache[key]


def assert_same_tokens(name, dtype, file, options=TranscribeOptions()):
    base, fused = pair(name, dtype)
    audio = load_audio(SAMPLES / file)
    a, b = transcribe(base, audio, options), transcribe(fused, audio, options)
    assert_same_or_stock_tie(base, fused, audio, options, a, b)
    return a, b


@pytest.mark.parametrize("file", FILES)
def test_logits_agree_on_every_sample(file):
    base, fused = pair("tiny.en", mx.float32)
    mel = first_window_mel(SAMPLES / file)
    fa, fb = base.whisper.encoder(mel), fused.whisper.encoder(mel)
    tokens = mx.array([transcribe(base, load_audio(SAMPLES / file)).tokens[:40] or [50257]])
    la, lb = base.whisper.logits(tokens, fa), fused.whisper.logits(tokens, fb)
    assert float(mx.abs(fa - fb).max()) < 1e-3
    assert float(mx.abs(la - lb).max()) < 1e-2  # logits are O(10); fp32 reassociation only
    assert np.array_equal(np.array(la.argmax(-1)), np.array(lb.argmax(-1)))


@pytest.mark.parametrize("file", FILES)
def test_tiny_en_fp32_transcripts_identical(file):
    assert_same_tokens("tiny.en", mx.float32, file)


def test_tiny_en_fp16_jfk_identical():
    a, _ = assert_same_tokens("tiny.en", mx.float16, "jfk.wav")
    assert a.dtype == "float16" and "fellow Americans" in a.text


def test_tiny_en_bf16_jfk_identical():
    """bfloat16, a documented dtype: on the CPU the fused lane failed ("cpu_simd takes float32"),
    its encoder computing in float32 from the float32 mel with the model's bfloat16 weights."""
    if mx.default_device() != mx.cpu:
        pytest.skip("the CPU's encoder path (bfloat16 has not been through a GPU run)")
    a, _ = assert_same_tokens("tiny.en", mx.bfloat16, "jfk.wav")
    assert a.dtype == "bfloat16" and "fellow Americans" in a.text


@pytest.mark.slow
@pytest.mark.parametrize("file", FILES)
def test_tiny_en_fp16_transcripts_identical(file):
    assert_same_tokens("tiny.en", mx.float16, file)


def test_word_timestamps_identical():
    a, b = assert_same_tokens("tiny.en", mx.float32, "jfk.wav", TranscribeOptions(word_timestamps=True))
    words = lambda t: [(w.word, w.start, w.end) for s in t.segments for w in s.words]
    assert words(a) == words(b) and len(words(a)) == 22
    probs = lambda t: [w.probability for s in t.segments for w in s.words]
    assert np.allclose(probs(a), probs(b), atol=1e-3)
    # the rewritten model decodes whole; the words read the decoder as built (decode/words.Aligner)
    assert b.rewrites["counts"]["attention"]["skipped"] == 0


@needs_base
def test_base_fp32_jfk_and_mandarin_identical():
    assert_same_tokens("base", mx.float32, "jfk.wav")
    assert_same_tokens("base", mx.float32, "zh_aishell1_BAC009S0724W0121.wav")


@pytest.mark.slow
@needs_base
@pytest.mark.parametrize("dtype", [mx.float32, mx.float16])
@pytest.mark.parametrize("file", FILES)
def test_base_transcripts_identical(dtype, file):
    assert_same_tokens("base", dtype, file)
