"""The command line: output contracts and every error case, as a user meets them."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from whisperfast.cli import app

from .conftest import ROOT, SAMPLES

runner = CliRunner()
JFK = SAMPLES / "jfk.wav"


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, fragment):
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and fragment in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_json_output_has_the_documented_keys():
    r = run("transcribe", JFK, "--json")
    assert r.exit_code == 0, r.stderr
    d = json.loads(r.stdout)  # stdout is only JSON
    assert {"file", "text", "language", "segments", "model", "device", "dtype", "timings"} <= set(d)
    assert d["file"] == str(JFK)  # which input it is: with one failed among several, the order no longer tells
    assert set(d["timings"]) >= {"load", "mel", "encode", "decode", "total", "tokens", "rtf"}
    assert d["model"] == "tiny.en" and "fellow Americans" in d["text"]
    assert {"start", "end", "text"} <= set(d["segments"][0])
    assert "total" in r.stderr  # the timing table goes to stderr


def test_word_timestamps_in_json():
    d = json.loads(run("transcribe", JFK, "--json", "--word-timestamps", "-q").stdout)
    words = [w for s in d["segments"] for w in s["words"]]
    assert [w["word"].strip(" ,.") for w in words[:3]] == ["And", "so", "my"]
    assert all(w["start"] <= w["end"] for w in words)


def test_output_files_are_written_and_never_clobbered(tmp_path):
    r = run("transcribe", JFK, "-f", "all", "-o", tmp_path, "-q")
    assert r.exit_code == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jfk.json", "jfk.srt", "jfk.txt", "jfk.vtt"]
    assert (tmp_path / "jfk.vtt").read_text().startswith("WEBVTT")
    assert "00:00:00,000 -->" in (tmp_path / "jfk.srt").read_text()
    before = (tmp_path / "jfk.txt").read_text()
    assert "fellow Americans" in before
    again = run("transcribe", JFK, "-f", "txt", "-o", tmp_path)
    assert_one_line_error(again, "exists")
    assert (tmp_path / "jfk.txt").read_text() == before
    assert run("transcribe", JFK, "-f", "txt", "-o", tmp_path, "--overwrite", "-q").exit_code == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_unwritable_output_dir_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    # refused before any work (it used to print the transcript, then fail to write it)
    assert_one_line_error(run("transcribe", JFK, "-o", blocker / "sub", "-q"), "not a directory")
    assert_one_line_error(run("transcribe", JFK, "-o", "/proc/whisperfast-out", "-q"), "cannot write in /proc")


def _nan_wav(p):
    sf.write(p, np.array([0.0, np.nan] * 800, np.float32), 16000, subtype="FLOAT")


@pytest.mark.parametrize("name, make, fragment", [
    ("missing.wav", None, "no such file"),
    ("empty.wav", lambda p: p.write_bytes(b""), "file is empty"),
    ("zero.wav", lambda p: sf.write(p, np.zeros(0, np.float32), 16000), "no audio samples"),
    ("corrupt.wav", lambda p: p.write_bytes(os.urandom(4000)), "unsupported or corrupt"),
    ("notes.mp3", lambda p: p.write_text("not audio at all\n" * 50), "unsupported or corrupt"),
    ("nan.wav", _nan_wav, "NaN"),
    ("pipe.wav", lambda p: os.mkfifo(p), "not a regular file"),  # was "file is empty"
    # an MPEG header and nothing after: libsndfile's "does not exist or is not a regular file" was wrong
    ("hollow.mp3", lambda p: p.write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x10" + bytes(4000)), "could not open it"),
])
def test_bad_audio_fails_with_one_line(tmp_path, name, make, fragment):
    p = tmp_path / name
    if make:
        make(p)
    assert_one_line_error(run("transcribe", p, "-f", "txt"), fragment)
    assert not (tmp_path / (p.stem + ".txt")).exists()  # no half-written output


def test_names_with_brackets_are_printed_as_they_are(tmp_path):
    """rich read a message's brackets as markup: '[/x]' in a file name raised a traceback, and
    '[2]' or the install hint's "whisperfast[vad]" could lose them."""
    missing = tmp_path / "take[/red][2].wav"
    assert_one_line_error(run("transcribe", missing), f"{missing}: no such file")
    broken = tmp_path / "gar\nbage.wav"  # its line break written as \n: the line keeps the name and the reason
    assert_one_line_error(run("transcribe", broken), f"{tmp_path}/gar\\nbage.wav: no such file")
    real = tmp_path / "jfk[bold].wav"
    real.write_bytes(JFK.read_bytes())
    r = run("transcribe", real, "-f", "txt", "-o", tmp_path)
    assert r.exit_code == 0 and "fellow Americans" in r.stdout, r.stderr
    assert r.stderr.startswith("jfk[bold].wav ·"), r.stderr  # its header line, name intact
    assert (tmp_path / "jfk[bold].txt").exists()


def test_silence_is_an_empty_transcript(tmp_path):
    p = tmp_path / "silence.wav"
    sf.write(p, np.zeros(3 * 16000, np.float32), 16000)
    r = run("transcribe", p, "--json", "-q")
    assert r.exit_code == 0 and json.loads(r.stdout)["text"] == ""


def test_one_bad_file_does_not_stop_the_others(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"")
    r = run("transcribe", bad, JFK, "-q")
    assert r.exit_code == 1
    assert "fellow Americans" in r.stdout and "Error:" in r.stderr


@pytest.mark.parametrize("model, fragment", [
    ("no-such-model", "unknown model"),
    ("mlx-community/whisper-no-such-repo", "unreachable"),  # HF_HUB_OFFLINE=1 (conftest)
    ("", "an empty name"),  # was "": not a model directory (the current folder)
])
def test_bad_model_fails_with_one_line(model, fragment):
    assert_one_line_error(run("transcribe", JFK, "--model", model), fragment)


def assert_usage_error(result, fragment):
    """One `Error:` line and exit 2: a bad flag value."""
    assert result.exit_code == 2 and result.stdout == "", result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and fragment in lines[0], result.stderr


def test_a_warning_is_one_line_on_stderr(tmp_path):
    whole = JFK.read_bytes()
    (tmp_path / "half.wav").write_bytes(whole[: len(whole) // 2])
    r = run("transcribe", tmp_path / "half.wav", "-q", "--json")
    assert r.exit_code == 0, r.output
    assert "fellow Americans" in json.loads(r.stdout)["text"]  # stdout: the JSON alone
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning:") and "ends early" in lines[0], r.stderr


def test_a_damaged_mp3_is_one_warning_line(tmp_path, capfd):
    from .test_audio import damaged_mp3

    _, bad = damaged_mp3(tmp_path)
    capfd.readouterr()
    r = run("transcribe", bad, "-q", "--json")
    assert r.exit_code == 0, r.output
    assert "fellow Americans" in json.loads(r.stdout)["text"]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning:") and "MP3 decoder met damaged data" in lines[0], r.stderr
    assert "libmpg123" not in capfd.readouterr().err  # nothing past the CLI's own stderr either


def test_unknown_language_and_gpu_on_cpu_build():
    assert_usage_error(run("transcribe", JFK, "--language", "klingon"), "unknown language")
    assert_usage_error(run("transcribe", JFK, "--language", "de"), "English-only")
    assert_one_line_error(run("transcribe", JFK, "--device", "gpu"), "no GPU backend")


@pytest.mark.parametrize("args, fragment", [
    (["--lanes", "bogus"], "unknown lane(s) bogus"),
    (["--lanes", ""], "names no lane"),
    (["--cold", JFK, JFK], "one audio file"),
    (["--cold", "--lanes", "fused,whisper.cpp", JFK], "for --cold"),
])
def test_bench_bad_flags_are_usage_errors(args, fragment):
    assert_usage_error(run("bench", *args), fragment)


def test_bench_seed_out_of_range_is_a_usage_error():
    for seed in ("-1", str(2**64)):
        for command in ("bench", "transcribe"):
            r = run(command, JFK, "--seed", seed)
            assert r.exit_code == 2 and "Traceback" not in r.output and "--seed" in r.output, r.output


def test_bench_plot_is_checked_before_the_runs(tmp_path):
    # an existing file is kept unless --overwrite; a folder that is not there fails before any run
    kept = tmp_path / "plot.png"
    kept.write_text("keep")
    args = ("bench", JFK, "--runs", "1", "--warmup", "0", "--no-kernels", "--lanes", "fused", "--plot")
    assert_one_line_error(run(*args, kept), "exists (pass --overwrite")
    assert kept.read_text() == "keep"
    assert_one_line_error(run(*args, "/proc/plot.png"), "cannot write in /proc")  # root's os.access says yes there
    r = run(*args, kept, "--overwrite")
    assert r.exit_code == 0, r.output
    assert kept.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.iterdir() if p.name != "plot.png"]  # no probe or temporary file left


@pytest.mark.parametrize("args", [["transcribe"], ["transcribe", JFK, "--task", "summarize"], ["frobnicate"]])
def test_usage_errors_exit_2(args):
    assert run(*args).exit_code == 2


def test_models_and_info():
    d = json.loads(run("models", "--json").stdout)
    assert any(m["name"] == "tiny.en" and m["available"] for m in d)
    info = json.loads(run("info", "--json").stdout)
    assert info["mlx"] and info["device"] == "cpu" and "blas" in info


def test_installed_entry_point_in_a_subprocess(tmp_path):
    """The real console script (cli.main, which ends the process with os._exit): exit codes,
    streams and written files, as a shell sees them."""
    exe = [sys.executable, "-m", "whisperfast"]
    ok = subprocess.run([*exe, "transcribe", str(JFK), "-q"], capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0 and "fellow Americans" in ok.stdout and ok.stderr == ""
    out = tmp_path / "out"
    js = subprocess.run([*exe, "transcribe", str(JFK), "-q", "--json", "-f", "srt", "-o", str(out)], capture_output=True,
                        text=True, cwd=ROOT)
    assert js.returncode == 0 and "fellow Americans" in json.loads(js.stdout)["text"]  # all of it, flushed
    assert (out / "jfk.srt").read_text().rstrip().endswith("for your country")
    bad = subprocess.run([*exe, "transcribe", str(tmp_path / "nope.wav")], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 1 and bad.stderr.startswith("Error:") and "Traceback" not in bad.stderr
    usage = subprocess.run([*exe, "transcribe"], capture_output=True, text=True, cwd=ROOT)
    assert usage.returncode == 2 and "Missing argument" in usage.stderr


def test_compare_reports_both_lanes_and_their_agreement():
    r = run("transcribe", JFK, "--compare", "--json")
    assert r.exit_code == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["tokens_match"] is True and d["transcripts_match"] is True
    assert d["baseline"]["text"] == d["fused"]["text"] == d["text"]
    assert set(d["baseline"]["timings"]) == set(d["fused"]["timings"]) >= {"load", "mel", "encode", "decode", "total"}
    assert d["rewrites"]["counts"]["attention"]["rewritten"] == 12
    assert d["rewrites"]["counts"]["rope"]["sites"] == 0
    assert "baseline" in r.stderr and "speed-up" in r.stderr and "ratio near 1.0" in r.stderr
    assert d["baseline"]["windows"] == d["fused"]["windows"] == 1
    assert d["baseline"]["sampled_windows"] == d["fused"]["sampled_windows"] == 0  # JFK decodes at temperature 0


def test_language_by_name_on_an_english_only_model():
    """`--language english` named the language tiny.en speaks, and was refused."""
    r = run("transcribe", JFK, "--language", "English", "--seed", "7", "-q")
    assert r.exit_code == 0, r.stderr
    assert "fellow Americans" in r.stdout
    assert_usage_error(run("transcribe", JFK, "--language", "german"), "English-only")


def test_fast_with_word_timestamps_rewrites_every_layer():
    # the decode runs on the rewritten model whole; the words read their attention weights from
    # the decoder as built (decode/words.Aligner), which shares its weights
    d = json.loads(run("transcribe", JFK, "--fast", "--word-timestamps", "--json", "-q").stdout)
    assert d["rewrites"]["counts"]["attention"]["skipped"] == 0, d["rewrites"]["counts"]
    words = [w for s in d["segments"] for w in s["words"]]
    assert len(words) == 22 and words[0]["word"].strip() == "And" and words[-1]["end"] > 10


# ---- two inputs, one output name ------------------------------------------------------------

@pytest.fixture
def no_model_load(monkeypatch):
    """Refusals must come before any work: loading the model fails the test."""
    from whisperfast import pipeline

    def load(*a, **k):
        raise AssertionError("the model was loaded before the refusal")

    monkeypatch.setattr(pipeline, "load", load)


def _copy(src, dest):
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(src.read_bytes())
    return dest


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_two_inputs_with_one_output_name_are_refused_up_front(tmp_path, no_model_load, overwrite):
    a, b = _copy(JFK, tmp_path / "a" / "x.wav"), _copy(JFK, tmp_path / "b" / "x.wav")
    out = tmp_path / "out"
    r = run("transcribe", a, b, "-f", "txt", "-o", out, *overwrite)
    assert_one_line_error(r, "would both write")
    assert str(a) in r.stderr and str(b) in r.stderr and str(out / "x.txt") in r.stderr
    assert not out.exists()


def test_same_stem_in_one_folder_is_refused(tmp_path, no_model_load):
    wav = _copy(JFK, tmp_path / "x.wav")
    flac = _copy(SAMPLES / "en_librispeech_2412-153948-0000.flac", tmp_path / "x.flac")
    r = run("transcribe", wav, flac, "-f", "all")
    assert_one_line_error(r, "would both write")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.flac", "x.wav"]


def test_the_same_input_twice_is_refused_when_files_are_written(tmp_path, no_model_load):
    wav = _copy(JFK, tmp_path / "a" / "x.wav")
    same = tmp_path / "a" / ".." / "a" / "x.wav"
    assert_one_line_error(run("transcribe", wav, same, "-o", tmp_path / "out"), "is given twice")
    assert not (tmp_path / "out").exists()


def test_a_file_that_appears_during_the_work_is_not_replaced(tmp_path, monkeypatch):
    """The up-front check passes; the file appears while transcribing; the write must not replace it."""
    from whisperfast import pipeline

    real = pipeline.transcribe
    dest = tmp_path / "jfk.txt"

    def transcribe(*a, **k):
        dest.write_text("someone else's\n")
        return real(*a, **k)

    monkeypatch.setattr(pipeline, "transcribe", transcribe)
    r = run("transcribe", JFK, "-o", tmp_path, "-q")
    assert r.exit_code == 1 and "fellow Americans" in r.stdout  # the transcript still reaches stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and "exists" in lines[0], r.stderr
    assert dest.read_text() == "someone else's\n"
    assert [p.name for p in tmp_path.iterdir()] == ["jfk.txt"]  # no temp file left
    r = run("transcribe", JFK, "-o", tmp_path, "-q", "--overwrite")  # --overwrite replaces it
    assert r.exit_code == 0 and "fellow Americans" in dest.read_text()


def test_written_files_get_the_users_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        r = run("transcribe", JFK, "-f", "all", "-o", tmp_path, "-q")
    finally:
        os.umask(old)
    assert r.exit_code == 0, r.stderr
    assert {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()} == dict.fromkeys(
        ["jfk.txt", "jfk.srt", "jfk.vtt", "jfk.json"], 0o644)


# ---- the long-form loop's options ----------------------------------------------------------

def test_decoding_flags_reach_the_loop(monkeypatch):
    from whisperfast import pipeline

    real, seen = pipeline.transcribe, []

    def transcribe(model, audio, options):
        seen.append(options)
        return real(model, audio, options)

    monkeypatch.setattr(pipeline, "transcribe", transcribe)
    r = run("transcribe", JFK, "-q", "--temperature", "0,0.5", "--best-of", "2", "--initial-prompt", "Kennedy",
            "--no-condition-on-previous-text", "--compression-ratio-threshold", "none", "--logprob-threshold", "-2",
            "--no-speech-threshold", "0.5", "--word-timestamps", "--hallucination-silence-threshold", "1.5",
            "--clip-timestamps", "0,4")
    assert r.exit_code == 0, r.stderr
    (o,) = seen
    assert (o.temperature, o.best_of, o.beam_size, o.initial_prompt, o.condition_on_previous_text) == ((0.0, 0.5), 2, None, "Kennedy", False)
    assert (o.compression_ratio_threshold, o.logprob_threshold, o.no_speech_threshold) == (None, -2.0, 0.5)
    assert (o.hallucination_silence_threshold, o.clip_timestamps) == (1.5, (0.0, 4.0))
    assert "fellow Americans" in r.stdout and "country" not in r.stdout  # the first 4 s only


@pytest.mark.parametrize("args, fragment", [
    (["--beam-size", "0"], "beam_size"),
    (["--beam-size", "two"], "--beam-size takes an integer"),
    (["--best-of", "0"], "best_of"),
    (["--beam-size", "3000000000"], "beam_size must be a whole number from 1 to 256"),  # was a TypeError from MLX
    (["--initial-prompt", "Hi <|endoftext|>"], "special token such as <|endoftext|>"),  # an internal error, after the load
    (["--patience", "1.0"], "patience needs beam_size"),
    (["--length-penalty", "2"], "length_penalty"),
    (["--temperature", "0,hot"], "--temperature takes comma-separated numbers"),
    (["--temperature", "-1"], "temperature"),
    (["--no-speech-threshold", "7"], "no_speech_threshold"),
    (["--compression-ratio-threshold", "0"], "compression_ratio_threshold"),
    (["--hallucination-silence-threshold", "2"], "needs word_timestamps"),
    (["--clip-timestamps", "5,2"], "clip_timestamps"),
])
def test_bad_decoding_flags_are_one_line_usage_errors(args, fragment, no_model_load):
    r = run("transcribe", JFK, *args)
    assert r.exit_code == 2 and r.stdout == "", r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and fragment in lines[0], r.stderr


def test_options_refuse_what_the_decode_cannot_take():
    """TranscribeOptions checks once what failed deep in a decode: beam_size 2.5 or True (an
    MLX argument error, a slice error), a temperature given as one string (read character by
    character)."""
    from whisperfast.errors import WhisperfastError
    from whisperfast.options import TranscribeOptions

    for bad in (dict(beam_size=2.5), dict(beam_size=True), dict(best_of=1.5), dict(beam_size=257),
                dict(temperature="0.5")):
        with pytest.raises(WhisperfastError):
            TranscribeOptions(**bad)
    assert TranscribeOptions(beam_size=np.int64(5), best_of=256).beam_size == 5


def _cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "whisperfast", *map(str, args)], text=True, timeout=300, **kwargs)


def test_transcripts_reach_stdout_while_the_files_bar_shows():
    """With stderr a terminal, rich's bar took sys.stdout while it showed: the transcripts of
    several files went to the terminal, and `> out.txt` stayed empty."""
    import pty
    import threading

    leader, follower = pty.openpty()

    def drain():  # the terminal's reader: a full pty buffer would stop the bar, and the child with it
        try:
            while os.read(leader, 4096):
                pass
        except OSError:  # EIO once the child's end closes
            pass

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        r = _cli("transcribe", JFK, SAMPLES / "en_ldc93s1_timit_16k.wav", stdout=subprocess.PIPE, stderr=follower)
    finally:
        os.close(follower)
        reader.join(timeout=10)
        os.close(leader)
    assert r.returncode == 0 and "fellow Americans" in r.stdout and "greasy wash water" in r.stdout, r.stdout


def test_a_stdout_that_fails_loses_no_file(tmp_path):
    """The transcript was printed before the files were written: a full disk on stdout gave a
    traceback and no file, and a reader that left (`| true`) ended the run, the files unwritten."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here (macOS)")
    with open("/dev/full", "w") as full:
        r = _cli("transcribe", "-q", "-f", "txt", "-o", tmp_path / "a", JFK, stdout=full, stderr=subprocess.PIPE)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1 and lines[0].startswith("Error: cannot write the transcript to stdout"), r.stderr
    assert "fellow Americans" in (tmp_path / "a" / "jfk.txt").read_text()
    timit = SAMPLES / "en_ldc93s1_timit_16k.wav"
    # a reader that leaves at once (`| true`)
    p = subprocess.Popen([sys.executable, "-m", "whisperfast", "transcribe", "-q", "-f", "txt", "-o", tmp_path / "b", JFK,
                          timit], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p.stdout.close()
    assert p.wait(timeout=300) == 0
    assert p.stderr.read() == ""
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["en_ldc93s1_timit_16k.txt", "jfk.txt"]


def test_outputs_a_dangling_link_or_an_overlong_name_would_fail_are_refused_first(tmp_path, no_model_load):
    """Both passed the up-front checks and failed after the transcription: a dangling link at
    the output's name ("it appeared while transcribing") or as -o (File exists), and a name
    over 255 bytes."""
    (tmp_path / "jfk.srt").symlink_to(tmp_path / "nowhere" / "x")
    _copy(JFK, tmp_path / "jfk.wav")
    assert_one_line_error(run("transcribe", tmp_path / "jfk.wav", "-f", "srt"), "jfk.srt exists (pass --overwrite")
    (tmp_path / "out").symlink_to(tmp_path / "nowhere")
    assert_one_line_error(run("transcribe", JFK, "-o", tmp_path / "out"), "not a directory")
    long = tmp_path / ("S" * 251 + ".m4a")  # its .json (251 + 5 bytes) cannot be
    long.write_bytes(b"x")
    assert_one_line_error(run("transcribe", long, "-f", "json"), "its name is over 255 bytes")


def test_a_long_legal_name_gets_every_format(tmp_path):
    """A 233-byte stem: its files' names are legal, but the temporary names beside them were
    not (18 bytes more), so .json failed after .txt, .srt and .vtt were written."""
    audio = tmp_path / ("S" * 233 + ".wav")
    _copy(JFK, audio)
    r = run("transcribe", audio, "-f", "all", "-q")
    assert r.exit_code == 0, r.stderr
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json", ".srt", ".txt", ".vtt", ".wav"]


def test_odd_files_are_one_line_or_transcribed(tmp_path):
    """A damaged MP3 whose decoder printed a "Note: Hit end of ..." line of its own beside the
    Error line; a header claiming 1 Hz (its resampling grew to gigabytes); a file whose name is
    not UTF-8 (refused as corrupt: soundfile encoded the name as UTF-8)."""
    mp3 = tmp_path / "damaged.mp3"
    mp3.write_bytes(b"ID3" + np.random.default_rng(0).bytes(100))
    rate1 = tmp_path / "rate1.wav"
    sf.write(rate1, np.zeros(16000, np.float32), 1)
    for path, fragment in [(mp3, "unsupported or corrupt audio"), (rate1, "sample rate of 1 Hz, under 1000")]:
        r = _cli("transcribe", "-q", path, capture_output=True)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 1 and len(lines) == 1 and lines[0].startswith("Error:") and fragment in lines[0], r.stderr
    odd = os.path.join(os.fsencode(tmp_path), b"bad\xff\xfe.wav")
    try:
        with open(odd, "wb") as f:
            f.write(JFK.read_bytes())
    except OSError:
        pytest.skip("this file system takes only UTF-8 names (macOS)")
    r = subprocess.run([sys.executable, "-m", "whisperfast", "transcribe", "-q", odd], capture_output=True, timeout=300)
    assert r.returncode == 0 and b"fellow Americans" in r.stdout, r.stderr
