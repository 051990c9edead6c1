"""whisperfast's long-form loop (whisperfast/longform.py) against its oracle, stock
`mlx_whisper.transcribe`, run on the same unrewritten model with the same options and seed:
the loop must give stock's tokens exactly, on the stock model and on the fused one (on the CPU
the fused model's arithmetic is stock's, bit for bit: tests/test_heldout.py)."""

import mlx.core as mx
import numpy as np
import pytest

from whisperfast.audio import load_audio
from whisperfast.errors import WhisperfastError
from whisperfast.pipeline import TranscribeOptions, transcribe

from .test_equality import pair
from .test_heldout import jfk, noisy_jfk, silence, speech
from .conftest import SAMPLES
from .test_transcribe import long_clip, stock_transcribe
from .text import normalize


def long_65s():
    return long_clip(65.0)[0]


def speech_silence_speech():
    """JFK, 25 s of silence across the window boundary, more speech: 47 s."""
    return np.concatenate([jfk(), silence(25), speech("en_ljspeech_LJ050-0131.wav")])


# name: (audio, options); every case runs tiny.en in float32
CASES = {
    "defaults": (jfk, TranscribeOptions()),
    "initial-prompt": (jfk, TranscribeOptions(initial_prompt="President Kennedy's inaugural address, January 1961.")),
    "no-condition-65s": (long_65s, TranscribeOptions(condition_on_previous_text=False)),
    # the first decode fails the logprob threshold: the window is sampled at 0.3 (and maybe 0.9)
    "temperatures-noisy": (noisy_jfk, TranscribeOptions(temperature=(0.0, 0.3, 0.9))),
    # two clips: mlx-whisper 0.4.3 starts the second where the first stopped, not at 7.5 s
    "clip-timestamps": (jfk, TranscribeOptions(clip_timestamps="1.5,6,7.5")),
    "words-hallucination-silence": (speech_silence_speech,
                                    TranscribeOptions(word_timestamps=True, hallucination_silence_threshold=1.0)),
}
_stock = {}


def stock_result(case: str) -> dict:
    """Stock's transcript of a case, once per session."""
    if case not in _stock:
        make, options = CASES[case]
        base, _ = pair("tiny.en", mx.float32)
        _stock[case] = stock_transcribe(base, make(), options)
    return _stock[case]


def assert_same_as_stock(ours, stock: dict) -> None:
    assert ours.tokens == [t for s in stock["segments"] for t in s["tokens"]], (ours.text, stock["text"])
    assert ours.text == stock["text"].strip() and ours.language == stock["language"]
    assert [(s.start, s.end, s.text) for s in ours.segments] == [(s["start"], s["end"], s["text"]) for s in stock["segments"]]
    if any("words" in s for s in stock["segments"]):
        words = [(w.word, w.start, w.end) for s in ours.segments for w in s.words or []]
        assert words == [(w["word"], w["start"], w["end"]) for s in stock["segments"] for w in s.get("words", [])]
        probs = [w.probability for s in ours.segments for w in s.words or []]
        assert np.allclose(probs, [w["probability"] for s in stock["segments"] for w in s.get("words", [])], atol=1e-3)


# the long cases' stock lane runs with the slow tests; their fast lane (the oracle too) always
LONG = {"no-condition-65s", "words-hallucination-silence"}


@pytest.mark.parametrize("case, lane", [
    pytest.param(case, lane, id=f"{case}-{lane}", marks=[pytest.mark.slow] if lane == "stock" and case in LONG else [])
    for case in CASES for lane in ("fast", "stock")])
def test_loop_gives_stock_tokens(case, lane):
    make, options = CASES[case]
    base, fused = pair("tiny.en", mx.float32)
    ours = transcribe(base if lane == "stock" else fused, make(), options)
    assert_same_as_stock(ours, stock_result(case))
    assert ours.text  # speech was heard
    if case == "temperatures-noisy":
        assert ours.sampled_windows >= 1  # the fallback really sampled
    if case == "no-condition-65s":
        assert ours.windows >= 3


@pytest.mark.slow  # fp16 matmuls on the CPU are slow
def test_fp16_casts_like_stock():
    """fp16: stock casts each window's mel to float16 and the decoder checks the features' dtype."""
    base, _ = pair("tiny.en", mx.float16)
    options = TranscribeOptions()
    ours = transcribe(base, jfk(), options)
    assert ours.dtype == "float16"
    assert_same_as_stock(ours, stock_transcribe(base, jfk(), options))


@pytest.mark.parametrize("kwargs, fragment", [
    ({"beam_size": 0}, "beam_size"),
    ({"best_of": 0}, "best_of"),
    ({"patience": 1.0}, "patience needs beam_size"),
    ({"beam_size": 2, "patience": 0.0}, "patience"),
    ({"length_penalty": 1.5}, "length_penalty"),
    ({"temperature": ()}, "temperature"),
    ({"temperature": (0.0, -0.2)}, "temperature"),
    ({"compression_ratio_threshold": -1.0}, "compression_ratio_threshold"),
    ({"no_speech_threshold": 1.5}, "no_speech_threshold"),
    ({"hallucination_silence_threshold": 2.0}, "needs word_timestamps"),
    ({"word_timestamps": True, "hallucination_silence_threshold": -2.0}, "hallucination_silence_threshold"),
    ({"clip_timestamps": "a,b"}, "clip_timestamps"),
    ({"clip_timestamps": "5,2"}, "increase"),
    ({"clip_timestamps": "0,5,4"}, "increase"),
    ({"clip_timestamps": [-1.0]}, "clip_timestamps"),
    ({"suppress_tokens": "-1,x"}, "suppress_tokens"),
    ({"task": "summarize"}, "unknown task"),
    ({"seed": -1}, "seed"),
    ({"seed": 2**64}, "seed"),
])
def test_invalid_options_are_refused_up_front(kwargs, fragment):
    with pytest.raises(WhisperfastError, match=fragment):
        TranscribeOptions(**kwargs)


def test_clips_are_cut_to_the_audio():
    # in the audio, mlx-whisper's clips; every end cut to the audio (mlx-whisper cut the last
    # only, and decoded the padding past the end: a made-up sentence every 2 s)
    from whisperfast.longform import seek_clips

    assert seek_clips((1.5, 6.0, 7.5), 1100) == [(150, 600), (750, 1100)]
    assert seek_clips((1.0, 2.0, 3.0, 30.0, 31.0), 292) == [(100, 200), (300, 292), (3100, 292)]
    assert seek_clips((0.0, 30.0), 292) == [(0, 292)]


def test_a_clip_past_the_end_adds_nothing(tiny):
    timit = load_audio(SAMPLES / "en_ldc93s1_timit_16k.wav")  # 2.92 s
    t = transcribe(tiny, timit, TranscribeOptions(clip_timestamps="0,2,3,30,31"))
    # 0-2 s, then (mlx-whisper's loop) on from where it stopped to the end, TIMIT's sentence
    # once; it used to go on past the end, "That's what all year." every 2 s up to 30 s
    assert len(t.segments) == 2 and all(s.start < 2.92 for s in t.segments), t.segments
    assert normalize(t.text).count("all year") == 1, t.text
    assert not transcribe(tiny, timit, TranscribeOptions(clip_timestamps="5")).segments  # all past the end


def test_valid_options_are_normalized():
    o = TranscribeOptions(temperature=0.5, clip_timestamps="0,5.5,7", beam_size=2, best_of=3, patience=1.0,
                          length_penalty=0.0, compression_ratio_threshold=None, logprob_threshold=None,
                          no_speech_threshold=None)
    assert o.temperature == (0.5,) and o.clip_timestamps == (0.0, 5.5, 7.0)
    assert TranscribeOptions(clip_timestamps=[1, 2]).clip_timestamps == (1.0, 2.0)
    assert TranscribeOptions(clip_timestamps="").clip_timestamps == ()


def test_beam_options_at_temperature_0_and_best_of_above(monkeypatch):
    """As mlx-whisper's decode_with_fallback: beam_size and patience go to the temperature-0
    decode only, best_of to the sampled ones. Every decode here fails the logprob threshold,
    so the window tries each temperature (a stand-in decoder: only the options are checked)."""
    from mlx_whisper.decoding import DecodingResult

    from whisperfast.decode import Engine

    seen = []

    def decode(engine, features, options, mel=None, thresholds=()):
        dims = engine.model.dims
        assert features.shape == (dims.n_audio_ctx, dims.n_audio_state)  # encoded once, by the loop
        assert mel.shape == (3000, dims.n_mels)  # the window's own mel, for the engine's choice
        seen.append((options.temperature, options.beam_size, options.patience, options.best_of, options.prompt))
        return DecodingResult(audio_features=features, language="en", avg_logprob=-5.0, no_speech_prob=0.0,
                              compression_ratio=1.0, temperature=options.temperature)

    monkeypatch.setattr(Engine, "decode", decode)
    base, _ = pair("tiny.en", mx.float32)
    t = transcribe(base, jfk(), TranscribeOptions(temperature=(0.0, 0.4, 0.8), beam_size=3, patience=1.5, best_of=2))
    assert seen == [(0.0, 3, 1.5, None, []), (0.4, None, None, 2, []), (0.8, None, None, 2, [])]
    assert (t.windows, t.sampled_windows, t.text) == (1, 2, "")
