"""End to end on real speech: exact JFK words, WER on every dev sample against stock
mlx-whisper's on the same input, long-form with timestamps where the speech is, stereo."""

import importlib
import math

import mlx.core as mx
import numpy as np
import pytest
import soundfile as sf

from whisperfast.audio import SAMPLE_RATE, load_audio
from whisperfast.pipeline import TranscribeOptions, load, rewritten, transcribe
from .text import error_rate, normalize

from .conftest import SAMPLES, manifest, needs_base

JFK = "And so my fellow Americans ask not what your country can do for you ask what you can do for your country."


@pytest.fixture(scope="module")
def fused(tiny):
    return rewritten(tiny)


def stock_transcribe(model, audio: np.ndarray, options: TranscribeOptions) -> dict:
    """mlx_whisper.transcribe itself on `model`'s Whisper (lent through its ModelHolder), with
    `options` spelled as its keyword arguments and MLX's generator seeded as whisperfast seeds it."""
    mw = importlib.import_module("mlx_whisper.transcribe")
    o = options
    mx.random.seed(o.seed)
    mw.ModelHolder.model, mw.ModelHolder.model_path = model.whisper, "<stock>"
    try:
        return mw.transcribe(
            audio, path_or_hf_repo="<stock>", temperature=o.temperature,
            compression_ratio_threshold=o.compression_ratio_threshold, logprob_threshold=o.logprob_threshold,
            no_speech_threshold=o.no_speech_threshold, condition_on_previous_text=o.condition_on_previous_text,
            initial_prompt=o.initial_prompt, word_timestamps=o.word_timestamps,
            prepend_punctuations=o.prepend_punctuations, append_punctuations=o.append_punctuations,
            clip_timestamps=list(o.clip_timestamps), hallucination_silence_threshold=o.hallucination_silence_threshold,
            language=o.language, task=o.task, fp16=model.dtype == "float16", beam_size=o.beam_size, best_of=o.best_of,
            patience=o.patience, length_penalty=o.length_penalty, suppress_tokens=o.suppress_tokens,
            suppress_blank=o.suppress_blank)
    finally:
        mw.ModelHolder.model = mw.ModelHolder.model_path = None


def mlx_whisper_text(model, audio: np.ndarray) -> str:
    """Stock mlx-whisper's text with its default options."""
    return stock_transcribe(model, audio, TranscribeOptions())["text"].strip()


def test_jfk_exact_words(tiny):
    from mlx_whisper.tokenizer import get_tokenizer

    t = transcribe(tiny, SAMPLES / "jfk.wav")
    assert normalize(t.text) == normalize(JFK)
    assert t.language == "en" and t.dtype == "float32" and t.device == "cpu"
    tok = get_tokenizer(False)
    assert tok.decode([x for x in t.tokens if x < tok.eot]).strip() == t.text  # the tokens are the text's
    assert all(x != tok.eot for x in t.tokens) and t.timings.tokens >= len(t.tokens) + 1  # + each window's EOT
    # timings: seconds, finite and non-negative; total is mel + encode + decode, rtf total / audio
    times = [t.timings.load, t.timings.mel, t.timings.encode, t.timings.decode, t.timings.total, t.timings.rtf]
    assert all(math.isfinite(x) and x >= 0 for x in times), t.timings
    assert t.timings.total == pytest.approx(t.timings.mel + t.timings.encode + t.timings.decode)
    assert t.timings.rtf == pytest.approx(t.timings.total / t.duration)
    # mlx-whisper's max_initial_timestamp (1.0 s) bounds the first timestamp; the last is within the audio
    assert t.duration == 11.0
    assert 0.0 <= t.segments[0].start <= 1.0 and t.segments[-1].end <= t.duration


@pytest.mark.parametrize("row", [r for r in manifest() if r["language"] == "en"], ids=lambda r: r["file"])
def test_english_samples_wer(tiny, fused, row):
    """The fused model hears every sample at least as well as stock mlx-whisper does."""
    audio = load_audio(SAMPLES / row["file"])
    stock = error_rate(row["reference_transcript"], mlx_whisper_text(tiny, audio))
    ours = transcribe(fused, audio)
    assert error_rate(row["reference_transcript"], ours.text) <= stock, (ours.text, stock)
    # Both lanes read the same waveform, so the comparison alone would pass on audio that reached
    # the model broken; a transcript with fewer than half its reference's words wrong is of it.
    assert stock < 0.5, stock


def test_english_only_model_refuses_other_languages(tiny):
    from whisperfast.errors import WhisperfastError

    with pytest.raises(WhisperfastError, match="English-only"):
        transcribe(tiny, SAMPLES / "jfk.wav", TranscribeOptions(language="zh"))


@needs_base
def test_base_detects_language_and_transcribes():
    base = load("base")
    t = transcribe(base, SAMPLES / "jfk.wav")
    assert t.language == "en" and error_rate(JFK, t.text) == 0
    zh = transcribe(base, SAMPLES / "zh_aishell1_BAC009S0724W0121.wav")
    assert zh.language == "zh" and "協會分析" in zh.text  # base writes traditional characters here


def test_silence_gives_empty_transcript(tiny):
    t = transcribe(tiny, np.zeros(5 * SAMPLE_RATE, np.float32))
    assert t.text == "" and t.segments == []


def test_arrays_that_are_not_mono_float_samples_are_refused(tiny):
    """A (1, n) or (n, 2) array made MLX's STFT abort the process (or overflow its shape), and an
    int16 array was cast as it was, 32,768 times too loud; compare and batched mode share it."""
    from whisperfast.batched import BatchOptions, transcribe_batched
    from whisperfast.errors import AudioError
    from whisperfast.pipeline import compare

    jfk = load_audio(SAMPLES / "jfk.wav")
    for bad, message in [(jfk[None], r"shape \(n,\), got shape \(1, 176000\)"),
                         (np.stack([jfk, jfk], axis=1), r"got shape \(176000, 2\)"),
                         ((jfk * 32767).astype(np.int16), "float samples in \\[-1, 1\\], got int16")]:
        with pytest.raises(AudioError, match=message):
            transcribe(tiny, bad)
        with pytest.raises(AudioError, match=message):
            compare(tiny, tiny, bad)
        with pytest.raises(AudioError, match=message):
            transcribe_batched(tiny, [bad], batch=BatchOptions())
    assert error_rate(JFK, transcribe(tiny, jfk.astype(np.float64)).text) == 0  # float64 is cast


def test_stereo_44k_file_matches_mono(tiny, tmp_path):
    mono = load_audio(SAMPLES / "jfk.wav")
    from scipy.signal import resample_poly

    up = resample_poly(mono, 441, 160).astype(np.float32)
    p = tmp_path / "stereo.wav"
    sf.write(p, np.stack([up, up * 0.5], axis=1), 44100, subtype="PCM_16")
    assert normalize(transcribe(tiny, p).text) == normalize(JFK)


@pytest.mark.parametrize("fmt, subtype", [("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III")])
def test_compressed_formats(tiny, tmp_path, fmt, subtype):
    audio, sr = sf.read(SAMPLES / "jfk.wav", dtype="float32")
    p = tmp_path / f"jfk.{fmt.lower()}"
    sf.write(p, audio, sr, format=fmt, subtype=subtype)
    assert normalize(transcribe(tiny, p).text) == normalize(JFK)


def clip_parts(seconds: float = 60.0) -> list[tuple[dict, np.ndarray, float]]:
    """English samples back to back, with 0.6 s gaps, until `seconds`: (row, audio, start s)."""
    rows = [r for r in manifest() if r["language"] == "en"]
    parts, n = [], 0
    while n < seconds * SAMPLE_RATE:
        r = rows[len(parts) % len(rows)]
        a = load_audio(SAMPLES / r["file"])
        parts.append((r, a, n / SAMPLE_RATE))
        n += len(a) + int(0.6 * SAMPLE_RATE)
    return parts


def long_clip(seconds: float = 60.0) -> tuple[np.ndarray, str]:
    """The clip of `clip_parts`, cut at `seconds`, and its reference text."""
    parts, gap = clip_parts(seconds), np.zeros(int(0.6 * SAMPLE_RATE), np.float32)
    audio = np.concatenate([x for _, a, _ in parts for x in (a, gap)])
    return audio[: int(seconds * SAMPLE_RATE)], " ".join(r["reference_transcript"] for r, _, _ in parts)


# a phrase of each sample's speech, and the sample it comes from
PHRASES = {"fellow americans": "jfk.wav", "new home in the stars": "en_new_home_in_the_stars_deepspeech.wav",
           "greasy wash water": "en_ldc93s1_timit_16k.wav", "narrative would be tedious": "en_librispeech_2412-153948-0000.flac"}


def test_long_form_60s_with_timestamps(tiny):
    audio, _ = long_clip(60.0)
    t = transcribe(tiny, audio, TranscribeOptions(word_timestamps=True))
    assert t.duration == 60.0
    starts = [s.start for s in t.segments]
    assert starts == sorted(starts)
    words = [w for s in t.segments for w in s.words]
    assert all(a.start <= b.start for a, b in zip(words, words[1:]))
    # word timings come from aligning the window's frames, so they lie within the audio
    assert all(0.0 <= w.start <= w.end <= t.duration + 1e-6 for w in words)
    # where each sample is in the clip: every one wholly inside it (both 30 s windows) is
    # transcribed at its time, and each phrase is said within its own sample's span
    spans = [(r["file"], start, start + len(a) / SAMPLE_RATE) for r, a, start in clip_parts(60.0)]
    overlaps = lambda s, b, e: s.start < e and s.end > b
    for file, b, e in spans:
        if e <= t.duration:
            assert any(overlaps(s, b, e) for s in t.segments), (file, b, e)
    for phrase, file in PHRASES.items():
        said = [s for s in t.segments if phrase in normalize(s.text)]
        assert said, phrase
        assert all(any(overlaps(s, b, e) for f, b, e in spans if f == file) for s in said), (phrase, said)
