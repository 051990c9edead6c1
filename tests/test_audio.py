"""Decoding, downmixing, resampling and validation of audio files."""

import numpy as np
import pytest
import soundfile as sf

from whisperfast.audio import SAMPLE_RATE, load_audio, to_mono_16k
from whisperfast.errors import AudioError

from .conftest import SAMPLES


def test_16k_mono_passes_through():
    a = load_audio(SAMPLES / "jfk.wav")
    ref, sr = sf.read(SAMPLES / "jfk.wav", dtype="float32")
    assert sr == SAMPLE_RATE and np.array_equal(a, ref)


def test_resamples_22k_to_16k():
    a = load_audio(SAMPLES / "en_ljspeech_LJ050-0131.wav")
    info = sf.info(SAMPLES / "en_ljspeech_LJ050-0131.wav")
    assert info.samplerate == 22050
    assert len(a) == pytest.approx(info.frames * SAMPLE_RATE / 22050, abs=1)


def test_resampling_keeps_a_tone_at_its_pitch():
    t = np.arange(44100) / 44100
    a = to_mono_16k(np.sin(2 * np.pi * 440 * t), 44100)
    spectrum = np.abs(np.fft.rfft(a))
    assert len(a) == SAMPLE_RATE and abs(np.argmax(spectrum) - 440) <= 1


def test_stereo_is_averaged():
    left = np.linspace(-1, 1, 1600, dtype=np.float32)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    assert np.allclose(to_mono_16k(stereo, SAMPLE_RATE), left / 2)


def test_flac_and_float_wav_read(tmp_path):
    assert load_audio(SAMPLES / "en_librispeech_2412-153948-0000.flac").dtype == np.float32
    p = tmp_path / "f.wav"
    sf.write(p, np.zeros(1600, np.float32) + 0.25, SAMPLE_RATE, subtype="FLOAT")
    assert np.allclose(load_audio(p), 0.25)


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "no such file"),
    (lambda p: p.write_bytes(b""), "file is empty"),
    (lambda p: p.write_bytes(b"RIFF\x00\x00\x00\x00garbage" * 10), "unsupported or corrupt"),
    (lambda p: sf.write(p, np.zeros(0, np.float32), SAMPLE_RATE), "no audio samples"),
    (lambda p: sf.write(p, np.array([0.1, np.nan, 0.2], np.float32), SAMPLE_RATE, subtype="FLOAT"), "NaN"),
    (lambda p: sf.write(p, np.array([0.1, np.inf, 0.2], np.float32), SAMPLE_RATE, subtype="FLOAT"), "NaN or infinite"),
])
def test_bad_audio_is_refused_with_a_reason(tmp_path, make, message):
    p = tmp_path / "bad.wav"
    make(p)
    with pytest.raises(AudioError, match=message):
        load_audio(p)
