"""VAD and batched transcription (issue 15) on real speech: where the speech is, chunks from
several files in one batch, timestamps back in each file's time, no text in silence, the
stock and fused lanes alike, the CLI's flags; the WER bound on the ~115 s clip is slow."""

import json
import subprocess
import sys
import threading

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from whisperfast import batched, chunker, mels, vad
from whisperfast.audio import SAMPLE_RATE, load_audio
from whisperfast.batched import BatchOptions, transcribe_batched
from whisperfast.cli import app
from whisperfast.decode.rules import HeldEnd
from whisperfast.errors import WhisperfastError
from whisperfast.pipeline import TranscribeOptions, rewritten, transcribe
from .text import error_rate, normalize

from .conftest import ROOT, SAMPLES
from .test_transcribe import JFK, long_clip

TIMIT = "She had your dark suit in greasy wash water all year."
GAP = 20.0  # seconds of silence between two utterances


@pytest.fixture(scope="module")
def jfk():
    return load_audio(SAMPLES / "jfk.wav")


@pytest.fixture(scope="module")
def timit():
    return load_audio(SAMPLES / "en_ldc93s1_timit_16k.wav")


@pytest.fixture(scope="module")
def gapped(jfk, timit):
    """JFK, GAP s of silence (faint noise, not digital zeros), the TIMIT sentence; and where
    each utterance is, in seconds."""
    noise = np.random.default_rng(0).normal(0, 1e-3, int(GAP * SAMPLE_RATE)).astype(np.float32)
    a = np.concatenate([jfk, noise, timit])
    j, g = len(jfk) / SAMPLE_RATE, GAP
    return a, (0.0, j), (j + g, j + g + len(timit) / SAMPLE_RATE)


def test_vad_finds_speech_in_jfk_and_none_in_silence(jfk):
    pieces = vad.get_speech_timestamps(jfk)
    assert pieces and pieces[0]["start"] < SAMPLE_RATE and pieces[-1]["end"] > 9 * SAMPLE_RATE
    assert vad.get_speech_timestamps(np.zeros(10 * SAMPLE_RATE, np.float32)) == []
    noise = np.random.default_rng(0).normal(0, 1e-3, 10 * SAMPLE_RATE).astype(np.float32)
    assert vad.get_speech_timestamps(noise) == []


@pytest.mark.parametrize("threads", [1, 3])
def test_the_cut_model_gives_the_whole_models_probabilities(gapped, threads, tmp_path, knobs):
    """vad.split_model cuts Silero's graph between its frame-by-frame convolutions and its LSTM,
    once, into the cache: the convolutions on slices of each group's frames (on 3 threads: 3
    slices side by side), then the LSTM, give the whole model's probabilities bit for bit, on
    speech, faint noise and a last group cut short."""
    knobs(WHISPERFAST_CACHE=str(tmp_path))
    audio = gapped[0][: len(gapped[0]) - 1000]
    whole, cut = vad.SileroVAD(split=False, net=False), vad.SileroVAD(threads=threads, net=False, host=False)
    assert whole.lstm is None and cut.lstm is not None and cut.threads == threads
    assert sorted(p.name for p in tmp_path.glob("vad/*/*.onnx")) == ["convolutions.onnx", "lstm.onnx"]
    want = whole(audio)
    assert len(want) == -(-len(audio) // vad.FRAME) and want.max() > 0.9 and want.min() < 0.1
    slices = []  # the slices the threads took, on 3 threads
    if cut._pool is not None:
        pool_map = cut._pool.map
        cut._pool.map = lambda f, parts: pool_map(f, slices.extend(parts) or parts)
    assert np.array_equal(cut(audio), want)
    assert bool(slices) == (threads > 1) and len(slices) % threads == 0  # each group in `threads` slices


@pytest.mark.parametrize("why", ["no onnx", "a cache that cannot be written"])
def test_without_the_cut_the_whole_model_runs(tmp_path, knobs, monkeypatch, jfk, why):
    """No onnx package, or a cache folder that is a file: no cut model, the whole model runs,
    the same probabilities, nothing raised."""
    if why == "no onnx":
        knobs(WHISPERFAST_CACHE=str(tmp_path))
        monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx -> ImportError
    else:
        (tmp_path / "cache").write_text("not a folder")
        knobs(WHISPERFAST_CACHE=str(tmp_path / "cache"))
    model = vad.SileroVAD(threads=2, net=False)
    assert model.lstm is None and not list(tmp_path.glob("**/*.onnx"))
    assert np.array_equal(model(jfk), vad.SileroVAD(split=False, net=False)(jfk))


def test_chunks_fit_30_s_and_map_back(gapped):
    audio, (_, j_end), (t_start, t_end) = gapped
    chunks = vad.collect_chunks(vad.get_speech_timestamps(audio, vad.BATCHED_VAD), batched.CHUNK_SAMPLES)
    assert chunks and all(c.samples <= batched.CHUNK_SAMPLES for c in chunks)
    pieces = [p for c in chunks for p in c.pieces]
    assert all(a[1] <= b[0] for a, b in zip(pieces, pieces[1:]))  # in order, not overlapping
    # nothing of the gap's middle is kept (the VAD pads speech by 0.4 s)
    assert not any(s < (t_start - 1) * SAMPLE_RATE and e > (j_end + 1) * SAMPLE_RATE for s, e in pieces)
    m = vad.SpeechMap(((16000, 32000), (80000, 96000)))  # 1-2 s and 5-6 s of a file
    assert m.to_file_time(0.5) == 1.5 and m.to_file_time(1.5) == 5.5
    assert m.to_file_time(1.0, is_end=True) == 2.0 and m.to_file_time(1.0) == 5.0  # the seam
    assert m.to_file_time(9.0, is_end=True) == 6.0  # clamped to the last piece
    # a segment that starts less than 1 s before a cut is of the piece after it; pieces that
    # touch in the file (0-2 s and 2-2.5 s) are one stretch of audio, not a cut to snap to
    m = vad.SpeechMap(((0, 32000), (32000, 40000), (160000, 208000)))  # 0-2 s, 2-2.5 s, 10-13 s
    assert m.span_to_file(1.8, 5.0) == (10.0, 12.5)  # was (2.0, 12.5): across the cut's 7.5 s
    assert m.span_to_file(0.5, 3.2) == (0.5, 2.5)  # ends within 1 s past the cut: of the piece before
    assert m.span_to_file(1.0, 2.4) == (1.0, 2.4)  # across the touching seam: as it is


@pytest.mark.parametrize("block", [1000, 16_000, 777_777])
@pytest.mark.parametrize("options", [vad.BATCHED_VAD, vad.VadOptions(), None], ids=["batched", "sequential", "off"])
def test_streamed_chunks_are_the_whole_files(gapped, block, options):
    # the Chunker, fed blocks of any size, finds the chunks found on the whole audio, with the
    # same samples, while keeping at most about two chunks of audio, and the VAD's group of
    # frames not yet run (on a CUDA GPU 65 s, vad.SileroVAD), which lies in its buffer too
    audio = np.concatenate([gapped[0], gapped[0][: 25 * SAMPLE_RATE], gapped[0], gapped[0], gapped[0]])
    if options is None:
        whole = chunker.fixed_chunks(len(audio), batched.CHUNK_SAMPLES)
    else:
        whole = vad.collect_chunks(vad.get_speech_timestamps(audio, options), batched.CHUNK_SAMPLES)
    cutter, streamed, kept = chunker.Chunker(options, batched.CHUNK_SAMPLES), [], 0
    for start in range(0, len(audio), block):
        streamed += cutter(audio[start : start + block])
        kept = max(kept, cutter.kept)
    streamed += cutter.finish()
    assert len(whole) >= 3 and [m for m, _ in streamed] == whole
    assert all(np.array_equal(samples, m.audio(audio)) for m, samples in streamed)
    assert cutter.n == len(audio)
    if options != vad.VadOptions():  # sequential's pieces have no length limit (max_speech_duration_s)
        group = vad.vad_model().group * vad.FRAME if options else 0
        assert kept <= 3 * batched.CHUNK_SAMPLES + 2 * group + block, kept / SAMPLE_RATE



@pytest.mark.parametrize("block", [16_000, 777_777])
@pytest.mark.parametrize("port", [False, True], ids=["onnxruntime", "port"])
def test_chunks_cut_on_the_device_are_the_hosts(gapped, block, port, tmp_path, knobs):
    """chunker.Chunker's `device` (a CUDA GPU's way: each block put on the device once, the
    VAD's groups and the chunks cut from those arrays) against the host's cuts, with the VAD's
    MLX port (its groups joined on the device) and with onnxruntime (which reads them back):
    the same chunks, each's samples the same bits, as MLX arrays; as many samples counted kept
    (what the device then holds: test_pieces_cut_on_the_device_let_go_of_their_blocks).
    Blocks of a 16-bit file's integers (scaled on the device, or on the host) give them too."""
    import mlx.core as mx

    from whisperfast.audio import scaled

    knobs(WHISPERFAST_CACHE=str(tmp_path))
    model = vad.SileroVAD(net=port)
    assert (model.net is not None) == port
    joined = np.concatenate([gapped[0], gapped[0][: 25 * SAMPLE_RATE], gapped[0], gapped[0], gapped[0]])
    integers = np.clip(np.round(joined * 32768), -32768, 32767).astype(np.int16)  # as a 16-bit file holds it
    audio = scaled(integers)
    got = {}
    for device, samples in ((False, audio), (True, audio), (True, integers), (False, integers)):
        cutter, chunks, kept = chunker.Chunker(vad.BATCHED_VAD, batched.CHUNK_SAMPLES, device, model), [], 0
        for start in range(0, len(audio), block):
            chunks += cutter(samples[start : start + block])
            kept = max(kept, cutter.kept)
        got[device, samples.dtype == np.int16] = chunks + cutter.finish(), kept
    host, host_kept = got[False, False]
    assert len(host) >= 3 and all(np.array_equal(y, m.audio(audio)) for m, y in host)
    for (device, _), (chunks, kept) in got.items():
        assert [m for m, _ in chunks] == [m for m, _ in host] and kept == host_kept
        assert all(isinstance(x, mx.array if device else np.ndarray) and np.array_equal(np.asarray(x), y)
                   for (_, x), (_, y) in zip(chunks, host))


def test_pieces_cut_on_the_device_let_go_of_their_blocks(jfk):
    """On the device, a piece waiting for its chunk to close is a copy of its own samples, not
    a view of the 10 s blocks it came from (an MLX slice keeps its whole array, even once
    evaluated): words 20 s apart, 20 of them to a chunk, kept ~15x the words' own samples in
    silence. The device holds about what the Chunker counts as kept."""
    import mlx.core as mx

    word = jfk[int(0.3 * SAMPLE_RATE) : SAMPLE_RATE]
    noise = np.random.default_rng(0).normal(0, 1e-3, 20 * SAMPLE_RATE).astype(np.float32)
    audio = np.tile(np.concatenate([word, noise]), 24)  # 8 minutes
    block = 10 * SAMPLE_RATE
    cutter = chunker.Chunker(vad.BATCHED_VAD, batched.CHUNK_SAMPLES, True, vad.SileroVAD(net=False))
    mx.synchronize()
    base, most, kept, chunks = mx.get_active_memory(), 0, 0, []
    for start in range(0, len(audio), block):
        chunks += [(m, mx.array(x)) for m, x in cutter(audio[start : start + block])]
        mx.synchronize()
        most, kept = max(most, mx.get_active_memory() - base - sum(x.nbytes for _, x in chunks)), max(kept, cutter.kept)
    assert chunks and max(len(m.pieces) for m, _ in chunks) >= 15
    assert kept < 60 * SAMPLE_RATE  # words, the VAD's group and a block or two: not the silence
    assert most <= 4 * (kept + 2 * block), (most / 2**20, kept / SAMPLE_RATE)


def test_samples_keep_what_a_flat_buffer_kept():
    """chunker.Samples (blocks kept as they came) against the flat array the Chunker used to
    join at every block: the same samples taken, the same start and length, over random
    appends (empty ones too), takes and drops; a take of samples let go raises."""
    rng = np.random.default_rng(1)
    for _ in range(200):
        kept, flat, start, n = chunker.Samples(), np.zeros(0, np.float32), 0, 0
        for _ in range(30):
            op = rng.integers(3)
            if op == 0:
                block = rng.normal(size=int(rng.integers(0, 50))).astype(np.float32)
                kept.append(block)
                flat, n = np.concatenate([flat, block]), n + len(block)
            elif op == 1 and n > start:
                a = int(rng.integers(start, n + 1))
                b = int(rng.integers(a, n + 20))
                assert np.array_equal(kept.take(a, b), flat[a - start : b - start])
            else:
                keep = max(int(rng.integers(0, n + 1)), start)
                kept.drop_before(keep)
                flat, start = flat[keep - start :], keep
            assert (kept.start, len(kept)) == (start, len(flat))
        if start > 0:
            with pytest.raises(ValueError):
                kept.take(start - 1, start)

def test_chunk_segments_parse_timestamps():
    from mlx_whisper.tokenizer import get_tokenizer

    tok = get_tokenizer(False)
    ts = lambda s: tok.timestamp_begin + round(s / 0.02)  # noqa: E731
    words = tok.encode(" hello world")
    m = vad.SpeechMap(((0, 5 * SAMPLE_RATE), (20 * SAMPLE_RATE, 30 * SAMPLE_RATE)))  # 15 s of speech
    segs = batched.chunk_segments(tok, [ts(0.0), *words, ts(2.0), ts(6.0), *words, ts(8.0), ts(9.0), *words], m)
    assert [(s.start, s.end) for s in segs] == [(0.0, 2.0), (21.0, 23.0), (24.0, 30.0)]  # the last runs to the end
    assert all(s.text == " hello world" for s in segs) and segs[0].tokens[0] == ts(0.0)
    assert batched.chunk_segments(tok, [ts(0.0), ts(3.0)], m) == []  # no text, no segment
    one = batched.chunk_segments(tok, words, m, without_timestamps=True)
    assert [(s.start, s.end) for s in one] == [(0.0, 30.0)]
    # where a row may end: not on an opened segment (two timestamps) with 1 s or more of the
    # chunk's speech after the first; after a single closing timestamp ("no speech after") it may
    rule = HeldEnd(tok, 0, [batched.must_reach(m)])
    assert rule.held([ts(0.0), *words, ts(4.0), ts(4.0)], 0) and rule.held([ts(0.0), *words, ts(14.0), ts(14.5)], 0)
    assert not rule.held([ts(0.0), *words, ts(4.0)], 0) and not rule.held([ts(0.0), *words], 0)
    assert not rule.held([ts(0.0), *words, ts(14.02), ts(14.5)], 0)  # under 1 s left
    assert batched.must_reach(vad.SpeechMap(((0, SAMPLE_RATE // 2),))) == 0  # never held


def test_several_files_share_a_batch(tiny, jfk, timit, monkeypatch):
    rows = []
    real = batched.decode_window
    monkeypatch.setattr(batched, "decode_window", lambda m, f, o, **k: rows.append(f.shape[0]) or real(m, f, o, **k))
    a, b = transcribe_batched(tiny, [SAMPLES / "jfk.wav", timit], batch=BatchOptions(batch_size=8))
    assert rows[0] >= 2  # one batch held rows of both files
    assert error_rate(JFK, a.text) <= 0.05 and error_rate(TIMIT, b.text) <= 0.2, (a.text, b.text)
    assert a.duration == 11.0 and b.duration == pytest.approx(len(timit) / SAMPLE_RATE)
    for t in (a, b):
        assert t.segments and all(0 <= s.start <= s.end <= t.duration + 1e-6 for s in t.segments)
        assert [s.start for s in t.segments] == sorted(s.start for s in t.segments)
        assert t.tokens == [x for s in t.segments for x in s.tokens] and t.language == "en"
        assert t.timings.total == pytest.approx(t.timings.vad + t.timings.mel + t.timings.encode + t.timings.decode)


def test_no_text_in_a_silent_gap_and_times_map_back(tiny, gapped):
    audio, (j0, j1), (t0, t1) = gapped
    for t in (transcribe_batched(tiny, [audio], batch=BatchOptions(batch_size=4))[0],
              transcribe(tiny, audio, TranscribeOptions(vad=True))):
        assert t.duration == pytest.approx(len(audio) / SAMPLE_RATE)
        # every segment lies within the speech it came from (the VAD pads 0.4 s)
        for s in t.segments:
            assert j0 - 0.5 <= s.start and s.end <= j1 + 0.5 or t0 - 0.5 <= s.start and s.end <= t1 + 0.5, s
        assert "fellow americans" in normalize(t.text) and "greasy wash" in normalize(t.text), t.text
        assert any(s.start >= t0 - 0.5 for s in t.segments)  # TIMIT at its own time, past the gap
        assert t.timings.vad > 0


def test_a_chunk_is_read_as_sequential_mode_reads_a_window(tiny, jfk, timit):
    # a chunk under 30 s is padded as sequential mode pads its last window (the log-mel's
    # zeros, not the log-mel of silence): without VAD a short file is one window either way,
    # and the two modes give the same tokens; 5 s of silence gives no text (it gave "you")
    for audio in (jfk, timit):
        batch = transcribe_batched(tiny, [audio], TranscribeOptions(vad=False), BatchOptions(2))[0]
        assert batch.tokens == transcribe(tiny, audio).tokens
    silence = np.zeros(5 * SAMPLE_RATE, np.float32)
    assert transcribe_batched(tiny, [silence, silence], TranscribeOptions(vad=False), BatchOptions(2))[0].text == ""
    # a last chunk of under one log-mel frame (a file 80 samples past 30 s) is no window of its
    # own: it was padding alone, heard as ". . ."
    tail = np.concatenate([np.tile(jfk, 3)[: 30 * SAMPLE_RATE], np.zeros(80, np.float32)])
    t = transcribe_batched(tiny, [tail], TranscribeOptions(vad=False), BatchOptions(2))[0]
    assert t.segments and all(s.start < 30.0 for s in t.segments) and t.duration == pytest.approx(30.005)


def test_sequential_vad_off_by_default_keeps_stock_tokens(tiny, jfk):
    on, off = transcribe(tiny, jfk, TranscribeOptions(vad=True)), transcribe(tiny, jfk)
    assert off.timings.vad == 0 and normalize(on.text) == normalize(off.text)


def test_silent_file_gives_an_empty_transcript(tiny):
    silence = np.zeros(5 * SAMPLE_RATE, np.float32)
    for t in (transcribe_batched(tiny, [silence])[0], transcribe(tiny, silence, TranscribeOptions(vad=True))):
        assert t.text == "" and t.segments == [] and t.duration == 5.0


def test_fused_and_stock_lanes_give_the_same_tokens(tiny, jfk, timit):
    audios, opts = [jfk, timit], BatchOptions(batch_size=2)
    stock = transcribe_batched(tiny, audios, batch=opts)
    fused = transcribe_batched(rewritten(tiny), audios, batch=opts)
    assert [t.tokens for t in stock] == [t.tokens for t in fused]


def test_audio_on_the_device_gives_the_same_transcript(tiny, tmp_path):
    """BatchOptions.device_audio (a CUDA GPU's default: a 16-bit file's integers put on the
    device once, scaled there, the chunks cut there) against the host's reading and cuts: the
    same tokens and segments; the default is the device on CUDA only."""
    from whisperfast.kernels.ops import on_cuda

    assert BatchOptions().audio_on_device() == on_cuda()
    audio, reference = long_clip(115.0)
    path = tmp_path / "clip.wav"
    sf.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
    fast = rewritten(tiny)
    host, dev = (transcribe_batched(fast, [path], batch=BatchOptions(batch_size=4, device_audio=d))[0]
                 for d in (False, True))
    assert host.windows >= 3 and error_rate(reference, host.text) < 0.15
    assert dev.tokens == host.tokens and dev.segments == host.segments


def test_encoder_rows_do_not_change_the_transcript(tiny, jfk, timit):
    # on the CPU chunks are encoded one at a time through MLX's ops by default (less memory,
    # same time), two at a time where the C encoder runs them one a thread; the whole batch in
    # one encoder call gives the same words
    import mlx.core as mx
    from whisperfast.decode.cpu_encoder import native_encoder

    fast = rewritten(tiny)
    on_cpu = mx.default_device() == mx.cpu
    native = native_encoder(fast.whisper.encoder) if on_cpu else None
    pairs = native is not None and native.kernels.threads > 1
    assert BatchOptions(batch_size=4).rows_per_encode(tiny.whisper) == (1 if on_cpu else 4)
    assert BatchOptions(batch_size=4).rows_per_encode(fast.whisper) == (2 if pairs else 1 if on_cpu else 4)
    assert BatchOptions(batch_size=4, encoder_rows=3).rows_per_encode(fast.whisper) == 3
    if on_cpu:  # the C encoder takes float32 only: a float16 model's windows go through MLX's ops one at a time
        from whisperfast.pipeline import load

        assert BatchOptions(batch_size=4).rows_per_encode(rewritten(load("tiny.en", dtype=mx.float16)).whisper) == 1
    one, whole = (transcribe_batched(tiny, [jfk, timit], batch=BatchOptions(2, encoder_rows=k)) for k in (None, 2))
    assert [normalize(t.text) for t in one] == [normalize(t.text) for t in whole]
    if pairs:  # the fast lane's default (a pair, one window a thread, then one) against one a call: the same tokens
        paired, single = (transcribe_batched(fast, [jfk, timit, jfk], batch=BatchOptions(3, encoder_rows=k))
                          for k in (None, 1))
        assert [t.tokens for t in paired] == [t.tokens for t in single]


def test_a_chunks_log_mel_is_its_own_frames_then_zeros(timit):
    """mels.chunk_mel is log_mel_spectrogram(chunk, padding=N_FFT)'s frames up to the chunk's
    end, then zeros (not the log-mel of silence) to 3000 frames, for real speech of several
    lengths (30 s, a few seconds, a one-frame chunk, 190 and 201 samples, where stft's
    reflected padding runs into the chunk's zeros) and silence, 80 and 128 mels; and mels.queue
    gives the same on its stream."""
    import mlx.core as mx
    from mlx_whisper.audio import N_FFT, log_mel_spectrogram

    speech = np.concatenate([timit] * 12)[: batched.CHUNK_SAMPLES]
    assert len(speech) == batched.CHUNK_SAMPLES
    chunks = [speech, timit, speech[:160], speech[4000:4190], speech[8000:8201], np.zeros(3000, np.float32)]
    for n_mels in (80, 128):
        for c in chunks:
            mine = np.array(mels.chunk_mel(c, n_mels))
            theirs = np.array(log_mel_spectrogram(c, n_mels=n_mels, padding=N_FFT))[: len(c) // 160]
            assert mine.shape == (3000, n_mels) and len(theirs) == len(c) // 160
            assert np.array_equal(mine[: len(theirs)], theirs) and not mine[len(theirs) :].any()
            queued, seconds = mels.queue(c, n_mels)
            assert np.array_equal(np.array(queued), mine) and seconds > 0
    assert mx.default_device() == mels.stream().device


def test_no_vad_cuts_every_30_s(tiny, jfk):
    t = transcribe_batched(tiny, [np.concatenate([jfk, jfk, jfk])], TranscribeOptions(vad=False), BatchOptions(4))[0]
    # 30 s and 3 s, each JFK heard
    assert t.windows >= 2 and normalize(t.text).count("fellow americans") == 3, t.text
    assert all(0 <= s.start <= s.end <= 33.0 for s in t.segments)


def test_batched_options_are_checked():
    with pytest.raises(WhisperfastError, match="batch size"):
        BatchOptions(batch_size=0)
    with pytest.raises(WhisperfastError, match="encoder rows"):
        BatchOptions(encoder_rows=0)
    with pytest.raises(WhisperfastError, match="hallucination_silence_threshold"):
        batched.check_options(TranscribeOptions(word_timestamps=True, hallucination_silence_threshold=1.0))
    batched.check_options(TranscribeOptions(word_timestamps=True))
    with pytest.raises(WhisperfastError, match="VAD"):
        TranscribeOptions(vad=True, clip_timestamps="1,2")


def test_missing_vad_packages_name_the_extra(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(WhisperfastError, match="'vad' extra"):
        vad.model_path()


def check_words(t):
    """Every segment has words, in order, within it, whose text joined is the segment's."""
    assert t.segments
    for s in t.segments:
        assert s.words and "".join(w.word for w in s.words) == s.text, s
        assert all(s.start <= w.start <= w.end <= s.end for w in s.words), s
    words = [w for s in t.segments for w in s.words]
    assert all(a.end <= b.start + 1e-9 for a, b in zip(words, words[1:])), words
    return words


def test_word_timestamps_in_a_batch_of_several_files(tiny, gapped):
    audio, (j0, j1), (t0, t1) = gapped
    files = [SAMPLES / "jfk.wav", audio, SAMPLES / "en_ljspeech_LJ050-0131.wav"]  # the last read at 22.05 kHz
    rows = []
    real = batched.decode_window
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(batched, "decode_window", lambda m, f, o, **k: rows.append(f.shape[0]) or real(m, f, o, **k))
        jfk, gap, lj = transcribe_batched(tiny, files, TranscribeOptions(word_timestamps=True), BatchOptions(batch_size=4))
    assert rows[0] >= 3  # the three files' chunks in one batch
    # JFK's words at their times in the file: as sequential mode aligns them (its own
    # windows, no VAD), within a few alignment frames
    words, seq = check_words(jfk), [w for s in transcribe(tiny, SAMPLES / "jfk.wav", TranscribeOptions(word_timestamps=True)).segments for w in s.words]
    assert [normalize(w.word) for w in words] == [normalize(w.word) for w in seq]  # "country." or "country"
    assert np.median([abs(a.start - b.start) for a, b in zip(words, seq)]) <= 0.1
    # past the 20 s of silence, the TIMIT sentence's words are at its time in the file
    words = check_words(gap)
    assert all(j0 - 0.5 <= w.start and w.end <= j1 + 0.5 or t0 - 0.5 <= w.start and w.end <= t1 + 0.5 for w in words), words
    assert [w.word for w in words if w.start >= t0 - 0.5][:3] == [" She", " had", " your"]
    assert "review" in normalize("".join(w.word for w in check_words(lj)))


runner = CliRunner()


@pytest.mark.parametrize("args, fragment", [(["--batch-size", "0"], "at least 1"), (["--batch-size", "x"], "integer"),
                                            (["--batch-size", "2", "--word-timestamps", "--hallucination-silence-threshold",
                                              "1"], "hallucination"),
                                            (["--batch-size", "2", "--compare"], "--compare"),
                                            (["--vad", "--clip-timestamps", "1,2"], "VAD")])
def test_cli_bad_batch_flags_exit_2(args, fragment):
    r = runner.invoke(app, ["transcribe", str(SAMPLES / "jfk.wav"), *args])
    assert r.exit_code == 2 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and fragment in lines[0], r.stderr


def test_cli_batch_size_word_timestamps_json():
    r = runner.invoke(app, ["transcribe", str(SAMPLES / "jfk.wav"), "--batch-size", "2", "--word-timestamps", "--json", "-q"])
    assert r.exit_code == 0, r.stderr
    segments = json.loads(r.stdout)["segments"]
    assert segments and all("".join(w["word"] for w in s["words"]) == s["text"] for s in segments)


def test_cli_batch_size_json_per_file():
    files = [SAMPLES / "jfk.wav", SAMPLES / "en_ldc93s1_timit_16k.wav"]
    r = runner.invoke(app, ["transcribe", *map(str, files), "--batch-size", "4", "--json", "-q"])
    assert r.exit_code == 0, r.stderr
    a, b = (json.loads(line) for line in r.stdout.splitlines())
    assert "fellow Americans" in a["text"] and "greasy wash water" in b["text"]
    assert a["timings"]["vad"] > 0 and a["segments"][0]["start"] < 1.0


@pytest.mark.slow
def test_batched_wer_within_1_point_of_sequential_on_115_s(tiny):
    audio, reference = long_clip(115.0)
    seq = error_rate(reference, transcribe(tiny, audio).text)
    bat = transcribe_batched(tiny, [audio], batch=BatchOptions(batch_size=8))[0]
    assert error_rate(reference, bat.text) <= seq + 0.01, (seq, bat.text)
    assert [s.start for s in bat.segments] == sorted(s.start for s in bat.segments)


@pytest.mark.slow
def test_rows_go_on_where_speech_remains(tiny, knobs):
    """On the ~115 s clip Whisper ends rows early, opening a segment it gives no text with a
    second or more of the chunk's speech after it, where sequential mode would seek and decode
    again. Bound by each chunk's must_reach, such a row goes on instead: every row the same
    tokens up to the first such end (until then both decodes are the same steps), that row
    those tokens and the rest of its speech transcribed after them, none ending so. On the CPU
    the stock lane, and the fused lane's MLX step (whose batch drops its ended rows, the bounds
    with them), give the same tokens as the C step."""
    import mlx.core as mx
    from mlx_whisper.decoding import DecodingOptions
    from mlx_whisper.tokenizer import get_tokenizer

    from whisperfast.decode import decode_window, encode

    audio, _ = long_clip(115.0)
    cut = chunker.Chunker(vad.BATCHED_VAD, batched.CHUNK_SAMPLES)
    chunks = cut(audio) + cut.finish()
    fused = rewritten(tiny)
    dtype = mx.float16 if tiny.dtype == "float16" else mx.float32
    mel = mx.stack([mels.chunk_mel(x, tiny.whisper.dims.n_mels) for _, x in chunks]).astype(dtype)
    features = encode(fused.whisper, mel)
    reach = [batched.must_reach(m) for m, _ in chunks]
    options = DecodingOptions(language="en", fp16=tiny.dtype == "float16")
    free = [r.tokens for r in decode_window(fused.whisper, features, options)]
    bound = [r.tokens for r in decode_window(fused.whisper, features, options, must_reach=reach)]
    rule = HeldEnd(get_tokenizer(False), 0, reach)
    early = [i for i, t in enumerate(free) if rule.held(t, i)]
    assert early, free
    first = min(early, key=lambda i: len(free[i]))
    k = len(free[first])
    assert bound[first][:k] == free[first] and len(bound[first]) > k + 3
    for i, (a, b) in enumerate(zip(free, bound)):
        assert not rule.held(b, i)
        assert b[:k] == a[:k]
        if len(a) < k:  # ended before: the same decode
            assert b == a
    assert sum(map(len, bound)) > sum(map(len, free))
    if mx.default_device() == mx.cpu:  # the lanes' bits are the same there (a GPU's fp16 may part at a near-tie)
        assert [r.tokens for r in decode_window(tiny.whisper, features, options, must_reach=reach)] == bound
        knobs(WHISPERFAST_CPU_STEP="0")
        assert [r.tokens for r in decode_window(fused.whisper, features, options, must_reach=reach)] == bound


def test_bench_batch_size_reports_audio_seconds_per_second(tiny, jfk, timit):
    from whisperfast.bench import run_pipeline

    lanes, notes = run_pipeline(tiny, [jfk, timit], ("stock",), runs=1, warmup=0, batch_size=2)
    lane = lanes["stock"]
    assert lane.audio_s_per_s == pytest.approx((len(jfk) + len(timit)) / SAMPLE_RATE * 1000 / lane.total_ms.median)
    assert "fellow Americans" in lane.transcript and lane.windows == 2
    assert 0 < lane.vad_ms.median < lane.total_ms.median  # the VAD's share, in the bench's own column


def test_cli_bench_bad_batch_size_exits_2():
    r = runner.invoke(app, ["bench", "--batch-size", "0", "--no-kernels"])
    assert r.exit_code == 2 and r.stderr.strip().startswith("Error:") and "--batch-size" in r.stderr


def write_long_file(path, minutes: int, rate: int = 22050, speech_every: int = 10):
    """A FLAC file of `minutes` at `rate` Hz, written a block at a time: every `speech_every`
    minutes the ~60 s clip of real speech (long_clip(60)), faint noise (not digital zeros)
    between; a 1-minute file is the clip alone. Returns how many times the clip is in it."""
    from scipy.signal import resample_poly

    clip, _ = long_clip(60.0)
    clip = resample_poly(clip, rate // 50, SAMPLE_RATE // 50).astype(np.float32)  # 22.05 kHz: read resampled
    rng, times = np.random.default_rng(0), 0
    with sf.SoundFile(str(path), "w", samplerate=rate, channels=1, format="FLAC") as f:
        for start in range(0, minutes, speech_every):
            f.write(clip)
            times += 1
            for _ in range(min(speech_every, minutes - start) - 1):
                f.write(rng.normal(0, 1e-3, 60 * rate).astype(np.float32))
    return times


# Run in a fresh process: its peak resident memory is the transcription's alone. /proc's
# clear_refs "5" resets the peak (VmHWM) after loading, so the transcription's own peak is
# read too; ru_maxrss is the whole process's, loading included.
PEAK_RSS = """
import json, resource, sys
import whisperfast
from whisperfast.batched import BatchOptions, transcribe_batched
from whisperfast.pipeline import load

def status(key):
    return next(int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith(key + ":"))

model = load(sys.argv[3], fast=sys.argv[4] == "fast")
loaded = status("VmRSS")
try:
    open("/proc/self/clear_refs", "w").write("5")
    reset = True
except OSError:
    reset = False
t = transcribe_batched(model, [sys.argv[1]], batch=BatchOptions(int(sys.argv[2])))[0]
print(json.dumps(dict(peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, loaded_mb=loaded,
                      transcribe_peak_mb=status("VmHWM") if reset else None, duration=t.duration,
                      windows=t.windows, text=t.text)))
"""


def peak_rss(path, batch_size: int, model: str = "tiny.en", cwd=ROOT, fast: bool = False) -> dict:
    """Batched transcription of `path` in a fresh process (`cwd`'s whisperfast), on the stock
    model or the fast one: its memory."""
    r = subprocess.run([sys.executable, "-c", PEAK_RSS, str(path), str(batch_size), model, "fast" if fast else "stock"],
                       cwd=cwd, capture_output=True, text=True, check=True)
    return json.loads(r.stdout.splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("fast", [False, True], ids=["stock", "fast"])
def test_peak_memory_of_an_hour_within_1_3x_of_a_minute(tmp_path, fast):
    # issue 15's bound. Both files are read at 22.05 kHz and resampled; the hour holds the
    # minute's speech six times. Batches of 2: both files fill them, so the encoder's batch
    # (the largest allocation) is the same, and only the audio's length differs. The fast
    # model on the CPU keeps each batch's C step (its caches, keys, scratch) only while it runs.
    minute, hour = tmp_path / "minute.flac", tmp_path / "hour.flac"
    write_long_file(minute, 1)
    times = write_long_file(hour, 60)
    small, large = peak_rss(minute, 2, fast=fast), peak_rss(hour, 2, fast=fast)
    assert small["duration"] == pytest.approx(60.0) and large["duration"] == pytest.approx(3600.0)
    # the hour was transcribed: the minute's speech, each time it comes
    said = normalize(small["text"]).count("fellow americans")
    assert said >= 1 and normalize(large["text"]).count("fellow americans") == times * said and times == 6, large["text"]
    assert large["peak_mb"] <= 1.3 * small["peak_mb"], (small, large)
    if small["transcribe_peak_mb"] is not None:
        assert large["transcribe_peak_mb"] <= 1.3 * small["transcribe_peak_mb"], (small, large)



def test_a_progress_bar_over_every_files_audio(tiny, jfk, timit, capsys):
    """With progress on (the CLI's on a terminal), batched mode draws tqdm's bar on stderr over
    the seconds of every file, its total growing as each opens, full at their sum once the last
    batch is done; without, nothing."""
    # a file (its length from its header) and an array
    transcribe_batched(tiny, [SAMPLES / "jfk.wav", timit], TranscribeOptions(progress=True), BatchOptions(batch_size=2))
    err = capsys.readouterr().err
    total = (len(jfk) + len(timit)) / SAMPLE_RATE
    assert "100%" in err and f"{total:.0f}/{total:.0f} s of audio" in err, err
    transcribe_batched(tiny, [jfk], batch=BatchOptions(batch_size=2))
    assert "s of audio" not in capsys.readouterr().err


def test_the_mels_stream_is_made_once_per_thread():
    """Each transcription queues its chunks' mels on the same stream of its thread (an MLX stream
    is never freed: on the CPU each is a thread), and another thread gets one of its own."""
    import mlx.core as mx

    first = mels.stream()
    assert mels.stream() is first and first.device == mx.default_device()
    other = []
    worker = threading.Thread(target=lambda: other.append(mels.stream()))
    worker.start()
    worker.join()
    assert other and other[0] is not first and other[0] != first


def test_a_file_that_fails_among_many_loses_no_others_transcript(tiny, tmp_path):
    """A NaN near a file's end raised out of the whole batch: every other file's transcript
    and output files were lost, where sequential mode wrote them and reported the one."""

    jfk = SAMPLES / "jfk.wav"
    bad = tmp_path / "nan_end.wav"
    audio = load_audio(jfk)
    audio[-100] = np.nan
    sf.write(bad, audio, SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(WhisperfastError, match="NaN"):  # the library's default: at once
        transcribe_batched(tiny, [jfk, bad], batch=BatchOptions(batch_size=2))
    out = transcribe_batched(tiny, [jfk, bad, tmp_path / "missing.wav", jfk], batch=BatchOptions(batch_size=2),
                             errors="return")
    assert "fellow Americans" in out[0].text and out[3].text == out[0].text
    assert "NaN" in str(out[1]) and "no such file" in str(out[2])
    r = CliRunner().invoke(app, ["transcribe", "-q", "--batch-size", "2", "-f", "txt", "-o", str(tmp_path / "o"),
                                 str(jfk), str(bad)])
    assert r.exit_code == 1 and "fellow Americans" in r.stdout
    assert r.stderr.strip().splitlines() == [f"Error: {bad}: contains NaN or infinite samples"], r.stderr
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["jfk.txt"]


def test_sequential_vad_keeps_each_word_in_its_segment(tiny, jfk, timit):
    """A word the alignment put across a seam mapped to both sides of the silence cut out:
    TIMIT's "year." ran from 18.6 s to 31.3 s over 12 s of silence, and its subtitle cue with it."""
    home = load_audio(SAMPLES / "en_new_home_in_the_stars_deepspeech.wav")
    z = lambda s: np.zeros(int(s * SAMPLE_RATE), np.float32)  # noqa: E731
    parts = [z(2), jfk, z(3), timit, z(12), home, z(2)]
    audio = np.concatenate(parts)
    edges = np.cumsum([0] + [len(p) for p in parts]) / SAMPLE_RATE
    speech = [(edges[i], edges[i + 1]) for i in (1, 3, 5)]
    t = transcribe(tiny, audio, TranscribeOptions(vad=True, word_timestamps=True))
    words = [(w, s) for s in t.segments for w in s.words]
    assert len(words) > 30
    for w, s in words:
        assert s.start <= w.start <= w.end <= s.end, (w, s)
        assert any(a - 0.5 <= w.start and w.end <= b + 0.5 for a, b in speech), w
