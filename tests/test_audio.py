"""Decoding, downmixing, resampling and validation of audio files."""

import numpy as np
import pytest
import soundfile as sf

from whisperfast.audio import SAMPLE_RATE, AudioReader, Resampler, load_audio, to_mono_16k
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


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "AIFF"])
@pytest.mark.parametrize("channels", [1, 2])
def test_16_bit_pcm_reads_as_libsndfiles_float_samples(tmp_path, monkeypatch, fmt, channels):
    """16-bit PCM is read as its integers and scaled by 2^-15 (audio._read): the values of
    libsndfile's own float read, whole and in blocks, every integer from -32768 to 32767
    included, mono and stereo."""
    audio, sr = sf.read(SAMPLES / "jfk.wav", dtype="int16")
    ramp = np.arange(-32768, 32768, dtype=np.int16)
    samples = np.concatenate([audio, ramp])
    data = samples[:, None] if channels == 1 else np.stack([samples, samples[::-1]], axis=1)
    p = tmp_path / f"x.{fmt.lower()}"
    sf.write(p, data, sr, format=fmt, subtype="PCM_16")
    floats = sf.read(p, dtype="float32", always_2d=True)[0]
    assert sf.info(p).subtype == "PCM_16" and floats.min() == -1.0 and len(floats) == len(samples)
    expected = to_mono_16k(floats, sr)
    asked, read = [], sf.SoundFile.read
    monkeypatch.setattr(sf.SoundFile, "read", lambda f, *a, **k: asked.append(k.get("dtype")) or read(f, *a, **k))
    whole = load_audio(p)
    _, streamed = read_blocks(p, 0.37)
    assert asked and set(asked) == {"int16"}  # the integers were read, by both readers
    assert whole.dtype == streamed.dtype == np.float32
    assert np.array_equal(whole, expected) and np.array_equal(streamed, expected)
    # blocks of the integers themselves (batched mode on a GPU scales them on the device),
    # mono only (stereo is downmixed in float32): scaled on the host or by MLX, the same values
    from whisperfast.audio import scaled
    from whisperfast.kernels.pinned import to_device

    raw = list(AudioReader(p, 0.37).blocks(integers=True))
    assert {b.dtype for b in raw} == {np.dtype(np.int16) if channels == 1 else np.dtype(np.float32)}
    if channels == 1:
        assert np.array_equal(np.concatenate(raw), samples)
        assert np.array_equal(np.concatenate([scaled(b) for b in raw]), expected)
        on_device = np.concatenate([np.asarray(to_device(b)) for b in raw])
        assert on_device.dtype == np.float32 and np.array_equal(on_device, expected)
    else:
        assert np.array_equal(np.concatenate(raw), expected)


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "no such file"),
    (lambda p: p.write_bytes(b""), "file is empty"),
    (lambda p: p.write_bytes(b"RIFF\x00\x00\x00\x00garbage" * 10), "unsupported or corrupt"),
    (lambda p: sf.write(p, np.zeros(0, np.float32), SAMPLE_RATE), "no audio samples"),
    (lambda p: sf.write(p, np.array([0.1, np.nan, 0.2], np.float32), SAMPLE_RATE, subtype="FLOAT"), "NaN"),
    (lambda p: sf.write(p, np.array([0.1, np.inf, 0.2], np.float32), SAMPLE_RATE, subtype="FLOAT"), "NaN or infinite"),
])
@pytest.mark.parametrize("read", [load_audio, lambda p: list(AudioReader(p).blocks())], ids=["whole", "blocks"])
def test_bad_audio_is_refused_with_a_reason(tmp_path, make, message, read):
    p = tmp_path / "bad.wav"
    make(p)
    with pytest.raises(AudioError, match=message):
        read(p)


def read_blocks(path, block_seconds):
    blocks = list(AudioReader(path, block_seconds).blocks())
    return blocks, np.concatenate(blocks)


@pytest.mark.parametrize("name", ["jfk.wav", "en_librispeech_2412-153948-0000.flac", "en_ljspeech_LJ050-0131.wav"])
@pytest.mark.parametrize("block_seconds", [0.37, 10.0])
def test_block_reader_gives_the_whole_file_readers_samples(name, block_seconds):
    # at 16 kHz the same samples; at 22.05 kHz resample_poly's output on the whole file,
    # the streaming filter doing the same sums in the same order (so equal, not just close)
    blocks, streamed = read_blocks(SAMPLES / name, block_seconds)
    whole = load_audio(SAMPLES / name)
    assert streamed.dtype == np.float32 and np.array_equal(streamed, whole)
    assert len(blocks) > 1 and max(map(len, blocks)) <= block_seconds * SAMPLE_RATE + 1


@pytest.mark.parametrize("fmt, subtype", [("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III")])
def test_block_reader_reads_compressed_formats_as_whole(tmp_path, fmt, subtype):
    audio, sr = sf.read(SAMPLES / "jfk.wav", dtype="float32")
    p = tmp_path / f"jfk.{fmt.lower()}"
    sf.write(p, audio, sr, format=fmt, subtype=subtype)
    _, streamed = read_blocks(p, 0.5)
    # libsndfile's mpg123 decodes a few samples 1 ulp apart depending on how much one read
    # asks for (whole reads of different sizes differ too): close, not equal, for MP3
    assert len(streamed) == len(audio) and np.allclose(streamed, load_audio(p), rtol=0, atol=1e-6)


def test_block_reader_downmixes_and_resamples_stereo_44k(tmp_path):
    t = np.arange(3 * 44100) / 44100
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 1000 * t)], axis=1).astype(np.float32)
    p = tmp_path / "stereo.flac"
    sf.write(p, stereo, 44100)
    _, streamed = read_blocks(p, 0.25)
    assert len(streamed) == 3 * SAMPLE_RATE and np.array_equal(streamed, load_audio(p))


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 32000, 44100, 48000])
def test_resampler_in_blocks_equals_resample_poly(rate):
    from scipy.signal import resample_poly

    x = np.random.default_rng(rate).normal(0, 0.3, 3 * rate + 17).astype(np.float32)
    sizes = np.random.default_rng(1).integers(1, rate // 3, 100)
    r, out, at = Resampler(rate), [], 0
    for k in sizes:
        out.append(r(x[at : at + k]))
        at += k
    out += [r(x[at:]), r.finish()]
    ref = resample_poly(x, *(np.array([SAMPLE_RATE, rate]) // np.gcd(SAMPLE_RATE, rate)))
    assert np.array_equal(np.concatenate(out), ref.astype(np.float32))


def test_a_wav_cut_short_warns_and_gives_what_it_holds(tmp_path):
    # libsndfile reads a WAV whose data stops before its header's size says without a word
    import warnings

    from whisperfast.audio import TruncatedAudio

    whole = (SAMPLES / "jfk.wav").read_bytes()
    cut = tmp_path / "half.wav"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.warns(TruncatedAudio, match=r"header says 11\.00 s, it holds 5\.50 s"):
        audio = load_audio(cut)
    assert abs(len(audio) - 5.5 * SAMPLE_RATE) < SAMPLE_RATE // 100
    with pytest.warns(TruncatedAudio):
        assert sum(len(b) for b in AudioReader(cut).blocks()) == len(audio)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a whole file: no warning
        load_audio(SAMPLES / "jfk.wav")
        sf.write(tmp_path / "ok.wav", np.zeros(1600, np.float32), SAMPLE_RATE)
        load_audio(tmp_path / "ok.wav")


def damaged_mp3(tmp_path):
    """(JFK as an MP3, the same MP3 with one byte in ~1000 overwritten), or a skip where this
    libsndfile writes no MP3."""
    mp3 = tmp_path / "jfk.mp3"
    try:
        sf.write(mp3, load_audio(SAMPLES / "jfk.wav"), SAMPLE_RATE, format="MP3")
    except (sf.LibsndfileError, ValueError, TypeError, RuntimeError):
        pytest.skip("this libsndfile writes no MP3")
    data, rng = bytearray(mp3.read_bytes()), np.random.default_rng(1)
    for i in range(2000, len(data), 997):
        data[i] = int(rng.integers(256))
    bad = tmp_path / "damaged.mp3"
    bad.write_bytes(bytes(data))
    return mp3, bad


def test_a_damaged_mp3_is_one_warning_not_the_decoders_lines(tmp_path, capfd):
    # libmpg123 writes a line to the process's stderr for every damaged frame it conceals
    import warnings

    from whisperfast.audio import DamagedAudio

    whole, bad = damaged_mp3(tmp_path)
    capfd.readouterr()
    with pytest.warns(DamagedAudio, match=r"damaged\.mp3: the MP3 decoder met damaged data \d+ time\(s\) \(first: "):
        audio = load_audio(bad)
    assert len(audio) > 10 * SAMPLE_RATE  # decoded all the same: 11 s
    with pytest.warns(DamagedAudio):
        assert sum(len(b) for b in AudioReader(bad, block_seconds=2.0).blocks()) == len(audio)
    assert capfd.readouterr().err == ""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an MP3 whole: no warning
        load_audio(whole)


def test_an_intact_mp3_read_in_blocks_warns_of_nothing(tmp_path, capfd):
    # libmpg123, fed by libsndfile a block at a time, reports "part2_3_length too large for
    # available bit count" at some reads of an intact file: not damage (the same samples as
    # the whole read), so neither a warning nor a line on stderr
    import warnings

    whole, _ = damaged_mp3(tmp_path)
    capfd.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for seconds in (0.37, 1.0, 10.0):
            blocks = list(AudioReader(whole, block_seconds=seconds).blocks())
            assert np.allclose(np.concatenate(blocks), load_audio(whole), rtol=0, atol=1e-6)
    assert capfd.readouterr().err == ""


def test_an_mp3_cut_short_or_without_its_name_warns_once(tmp_path, capfd):
    # libmpg123 stops at a cut (or at damage it cannot pass), so the warning says how much of
    # the header's length it decoded; and an MP3 is known by its bytes, not only its name
    from whisperfast.audio import DamagedAudio

    whole, bad = damaged_mp3(tmp_path)
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 3])
    unnamed = tmp_path / "recording"
    unnamed.write_bytes(bad.read_bytes())
    capfd.readouterr()
    with pytest.warns(DamagedAudio, match=r"cut\.mp3: .*it decoded \d\.\d\d s of the 11\.00 s its header gives"):
        load_audio(cut)
    with pytest.warns(DamagedAudio, match=r"it decoded \d\.\d\d s of the 11\.00 s"):
        list(AudioReader(cut).blocks())
    with pytest.warns(DamagedAudio, match=r"recording: the MP3 decoder met damaged data"):
        load_audio(unnamed)
    assert capfd.readouterr().err == ""


def test_mp3_reads_in_threads_leave_stderr_where_it_was(tmp_path, capfd):
    # fd 2 is the process's: captures one at a time, each putting back what it found, and
    # what another writer put on stderr meanwhile goes back byte for byte
    import os
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    from whisperfast.audio import _DecoderLog

    _, bad = damaged_mp3(tmp_path)
    before = os.fstat(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with ThreadPoolExecutor(4) as pool:
            assert all(len(a) for a in pool.map(load_audio, [bad] * 8))
    after = os.fstat(2)
    assert (before.st_dev, before.st_ino) == (after.st_dev, after.st_ino)
    log = _DecoderLog(bad)
    capfd.readouterr()
    with log.capture():
        os.write(2, b"50%\r75%\ncaf\xe9 done\n[src/libmpg123/layer3.c:1] error: dequantization failed!\n")
    assert capfd.readouterr().err == "50%\r75%\ncaf\ufffd done\n"  # the others' bytes back, the decoder's line kept
    assert log.count == 1 and log.first == "error: dequantization failed!"
