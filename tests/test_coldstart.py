"""`whisperfast bench --cold` (whisperfast/coldstart.py): fresh processes per run and lane."""

import ctypes
import json
import os
from pathlib import Path
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from whisperfast import coldstart
from whisperfast.errors import WhisperfastError

from .conftest import ROOT, SAMPLES

_IMPORTTIME = """import time: self [us] | cumulative | imported package
import time:       120 |        120 |   _io
import time:       300 |        420 | io
noise on stderr
import time:      1000 |       5000 |     numpy.core
import time:      2000 |       9000 |   numpy
import time:        10 |      12000 | whisperfast
"""


def test_import_seconds_sums_the_top_level_imports():
    assert coldstart.import_seconds(_IMPORTTIME) == pytest.approx((420 + 12000) / 1e6)
    assert coldstart.import_seconds("") == 0


def test_the_child_is_the_whisperfast_command_with_the_lanes_flag():
    cmd = coldstart.child_command(SAMPLES / "jfk.wav", "tiny.en", "float16", None, "python")
    assert cmd[:5] == ["python", "-X", "importtime", "-m", "whisperfast.cli.cold_child"]
    assert cmd[5:] == ["transcribe", str(SAMPLES / "jfk.wav"), "-q", "--json", "--model", "tiny.en", "--dtype", "float16"]
    # a relative name is made absolute, so that one beginning with "-" is not read as an option
    assert coldstart.child_command(Path("-take.wav"), "tiny.en", None, None, "python")[6] == str(Path.cwd() / "-take.wav")
    assert coldstart.LANES == {"stock": [], "fused": ["--fast"]}


def test_bad_lanes_and_missing_audio_are_errors(tmp_path):
    with pytest.raises(WhisperfastError, match="--cold runs the lanes stock, fused; not composed"):
        coldstart.run(SAMPLES / "jfk.wav", "tiny.en", lanes=("stock", "composed"))
    with pytest.raises(WhisperfastError, match="no such file"):
        coldstart.run(tmp_path / "none.wav", "tiny.en")


def test_a_failing_child_is_one_error_with_its_last_words(tmp_path):
    with pytest.raises(WhisperfastError, match=r"fused run 1: the child exited 1: .*Error: .*no-such-model"):
        coldstart.run(SAMPLES / "jfk.wav", "no-such-model", lanes=("fused",), runs=1)


def test_the_child_writes_its_kernel_cache_counters_at_exit(tmp_path):
    report = tmp_path / "r.json"
    r = subprocess.run([sys.executable, "-m", "whisperfast.cli.cold_child", str(report), "models", "--json"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    json.loads(r.stdout)  # the command's own output, untouched
    from whisperfast.config import config

    # no kernel ran: no kernel cache was imported; the child's whisperfast cache folder
    assert json.loads(report.read_text()) == {"kernel_cache": None, "cache": str(config().cache)}


@pytest.mark.slow  # two fresh transcriptions of JFK: ~30 s on 2 CPU cores
def test_bench_cold_one_run_on_jfk(tmp_path):
    r = subprocess.run([sys.executable, "-m", "whisperfast", "bench", str(SAMPLES / "jfk.wav"), "--cold", "--runs", "1",
                        "--json"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)  # stdout is the JSON alone
    assert list(report["lanes"]) == ["stock", "fused"] and report["runs"] == 1
    assert [(s["lane"], s["run"]) for s in report["samples"]] == [("stock", 0), ("fused", 0)]
    for s in report["samples"]:
        assert s["wall_s"] > s["transcribe_s"] > 0 and s["wall_s"] > s["load_s"] > 0 and s["import_s"] > 0
        assert s["tokens"] > 0 and s["matches_stock"] is True
    assert all(lane["matches_stock"] for lane in report["lanes"].values())
    assert "cold: median" in r.stderr and "run 1 fused" in r.stderr


@pytest.mark.slow  # two fresh transcriptions of JFK, each converting tiny.en: ~40 s on 2 CPU cores
def test_bench_cold_with_empty_caches_gives_every_run_its_own(tmp_path):
    """--empty-caches: each run's child converts the model into an empty cache of its own,
    removed after; the user's cache (here an empty folder) is never written."""
    import os

    user = tmp_path / "user-cache"
    user.mkdir()
    r = subprocess.run([sys.executable, "-m", "whisperfast", "bench", str(SAMPLES / "jfk.wav"), "--cold", "--empty-caches",
                        "--runs", "1", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "WHISPERFAST_CACHE": str(user)})
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["empty_caches"] is True and "empty caches each run" in r.stderr
    caches = [s["cache"] for s in report["samples"]]
    assert len(caches) == 2 and len(set(caches)) == 2 and str(user) not in caches
    assert not any(Path(c).exists() for c in caches)  # removed after
    assert list(user.iterdir()) == []
    assert all(s["matches_stock"] and s["tokens"] > 0 for s in report["samples"])


def test_bench_cold_refuses_what_it_cannot_time_in_one_error_line():
    from typer.testing import CliRunner

    from whisperfast.cli import app

    jfk = str(SAMPLES / "jfk.wav")
    for args, said in ((["bench", jfk, jfk, "--cold"], "--cold times one audio file"),
                       (["bench", jfk, "--cold", "--lanes", "composed"], "unknown lane(s) composed for --cold")):
        r = CliRunner().invoke(app, args)  # bad flag values: exit 2
        assert r.exit_code == 2 and r.stdout == "" and r.stderr.startswith("Error:") and said in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    r = CliRunner().invoke(app, ["bench", jfk, "--empty-caches"])  # a usage error: exit 2
    assert r.exit_code == 2 and r.stderr.strip() == "Error: --empty-caches goes with --cold", r.stderr


def test_the_gpu_warm_up_starts_only_on_a_cuda_gpu_and_a_knob_turns_it_off(knobs):
    import mlx.core as mx

    from whisperfast import runtime

    on_cuda = mx.default_device() == mx.gpu and runtime.gpu_backend() == "cuda"
    thread = runtime.warm_up_gpu(mx.float16)
    assert (thread is not None) == on_cuda
    if thread is not None:
        assert thread.run(threading.current_thread) is not threading.current_thread()
    knobs(WHISPERFAST_GPU_WARMUP="0")
    assert runtime.warm_up_gpu(mx.float16) is None


def test_the_gpu_thread_runs_its_first_call_then_each_job_in_turn_on_itself():
    """runtime.GpuThread: the warm-up, then the caller's calls, one at a time on the thread, each
    one's value or exception (typer's Exit, a BaseException, too) back to the caller."""
    from whisperfast import runtime

    seen = []
    gate = threading.Event()
    gpu = runtime.GpuThread(lambda: (gate.wait(10), seen.append(("first", threading.current_thread().name))))
    gate.set()
    assert gpu.run(lambda a, b=0: (seen.append(("job", threading.current_thread().name)), a + b)[1], 2, b=3) == 5
    assert seen == [("first", "whisperfast-gpu"), ("job", "whisperfast-gpu")]

    def fail(error):
        raise error

    with pytest.raises(ValueError, match="bad"):
        gpu.run(fail, ValueError("bad"))
    with pytest.raises(SystemExit):
        gpu.run(fail, SystemExit(1))
    assert gpu.run(lambda: "still serving") == "still serving"
    assert runtime.GpuThread(lambda: fail(SystemExit(3))).run(lambda: "after a failed warm-up") == "after a failed warm-up"


def test_ctrl_c_while_the_gpu_thread_works_interrupts_the_job_and_unwinds_it():
    """A Ctrl-C that reaches the caller while it waits stops the job too, at its next line, so
    that its `finally` clauses run (a temp file removed), and the caller sees KeyboardInterrupt."""
    import signal

    from whisperfast import runtime

    assert threading.current_thread() is threading.main_thread()  # where Python delivers SIGINT
    unwound, started, ran_out = threading.Event(), threading.Event(), threading.Event()

    def long_job():
        try:
            started.set()
            deadline = time.monotonic() + 30  # bounded: a SIGINT that never arrives fails the test, not hangs it
            while time.monotonic() < deadline:
                time.sleep(0.01)
            ran_out.set()
        finally:
            unwound.set()

    gpu = runtime.GpuThread(lambda: None)
    timer = threading.Thread(target=lambda: started.wait(10) and os.kill(os.getpid(), signal.SIGINT))
    # Python's own handler: a process started in the background (a CI job, the GPU machine's
    # runner) may inherit SIGINT ignored
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            gpu.run(long_job)
        timer.join()
    finally:
        signal.signal(signal.SIGINT, previous)
    # interrupted, not run to its end: the caller's wait wakes for the SIGINT whichever thread
    # the kernel handed it to
    assert unwound.is_set() and not ran_out.is_set()
    assert gpu.run(lambda: "serving") == "serving"


def test_ctrl_c_during_the_warm_up_cancels_the_queued_job_and_the_thread_still_serves():
    """A job queued behind the warm-up and cancelled by Ctrl-C never starts; the caller gets its
    KeyboardInterrupt once the warm-up is done (not after UNWIND_SECONDS), and a later job runs."""
    import signal

    from whisperfast import runtime

    warming, ran = threading.Event(), []
    gpu = runtime.GpuThread(lambda: (warming.set(), time.sleep(0.5)))
    timer = threading.Thread(target=lambda: warming.wait(10) and (time.sleep(0.1), os.kill(os.getpid(), signal.SIGINT)))
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        timer.start()
        t0 = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            gpu.run(ran.append, "cancelled job")
        waited = time.monotonic() - t0
        timer.join()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert ran == [] and waited < runtime.UNWIND_SECONDS
    assert gpu.run(lambda: ran.append("next job") or "served") == "served" and ran == ["next job"]


def test_the_cli_makes_mlx_calls_on_the_gpu_thread_and_builds_the_tokenizer_meanwhile(monkeypatch):
    """With a GPU thread (here one made on the CPU), `transcribe` loads and transcribes on it,
    and builds the model's tokenizer on its own thread first (host work, while a GPU warms up)."""
    from typer.testing import CliRunner

    from whisperfast import pipeline, runtime, tokenizer
    from whisperfast.cli import app

    pipeline.load("tiny.en")  # converted, so its config is on disk for models.text_vocabulary
    threads, built = {}, []
    for name in ("load", "transcribe", "warm_tokenizer"):
        fn = getattr(pipeline, name)
        monkeypatch.setattr(pipeline, name, lambda *a, _fn=fn, _name=name, **k: (
            threads.setdefault(_name, threading.current_thread().name), _fn(*a, **k),
            built.append(tokenizer.get_tokenizer.cache_info().currsize) if _name == "warm_tokenizer" else None)[1])
    monkeypatch.setattr(runtime, "warm_up_gpu", lambda dtype, fast=False: runtime.GpuThread(lambda: None))
    tokenizer.get_tokenizer.cache_clear()
    r = CliRunner().invoke(app, ["transcribe", str(SAMPLES / "jfk.wav"), "--fast", "-q"])
    assert r.exit_code == 0, r.stderr
    assert "ask not what your country can do for you" in r.stdout.lower()
    main = threading.current_thread().name
    assert threads == {"warm_tokenizer": main, "load": "whisperfast-gpu", "transcribe": "whisperfast-gpu"}
    assert built == [1]  # the main thread built it, before the GPU thread loaded
    assert tokenizer.get_tokenizer.cache_info().hits >= 1  # and load found it


def test_a_models_text_vocabulary_is_read_from_its_config_alone():
    """models.text_vocabulary: what mlx-whisper's Whisper derives from n_vocab, for a model on disk
    (tiny.en, English-only; a multilingual config), and None where it would take more than a read."""
    import json

    from whisperfast import models, pipeline

    loaded = pipeline.load("tiny.en")  # converted on this machine, if it was not yet
    assert models.text_vocabulary("tiny.en") == (loaded.whisper.is_multilingual, loaded.whisper.num_languages) == (False, 99)
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "config.json").write_text(json.dumps({"n_vocab": 51866}))  # large-v3's
        assert models.text_vocabulary(d) == (True, 100)
        (Path(d) / "config.json").write_text("{")
        assert models.text_vocabulary(d) is None
    assert models.text_vocabulary("no/such-model") is None


def test_the_gpu_warm_up_graph_runs_and_leaves_the_random_state_alone():
    """Its ops fit together (here on whatever device runs the tests), and a seeded draw after it
    is the draw without it: sampling stays reproducible."""
    import mlx.core as mx

    from whisperfast import runtime

    mx.random.seed(7)
    before = mx.random.uniform(shape=(4,))
    for fast in (True, False):
        mx.random.seed(7)
        runtime._first_calls(mx.float32, fast)
        assert mx.array_equal(mx.random.uniform(shape=(4,)), before)


def test_main_starts_the_warm_up_early_only_for_a_plain_transcribe(monkeypatch):
    """cli.main starts `transcribe`'s warm-up before typer loads, in the default dtype; any other
    command, --help, and a --device or --dtype (which the command parses itself) start none."""
    from whisperfast import cli, models, runtime

    calls = []
    monkeypatch.setattr(runtime, "warm_up_gpu", lambda dtype, fast: calls.append((dtype, fast)) or "the thread")
    assert cli._early_warm_up(["transcribe", "a.wav", "--fast", "-q"]) == "the thread"
    assert cli._early_warm_up(["transcribe", "a.wav", "-q"]) == "the thread"
    assert calls == [(models.default_dtype(), True), (models.default_dtype(), False)]
    for args in ([], ["bench", "a.wav"], ["transcribe", "--help"], ["transcribe", "a.wav", "-h"],
                 ["transcribe", "a.wav", "--dtype", "float32"], ["transcribe", "a.wav", "--device=cpu"]):
        assert cli._early_warm_up(args) is None, args
    assert len(calls) == 2


def test_the_teardown_keeper_holds_only_kept_files_and_ends_after_its_parent(tmp_path):
    """runtime._fork_keeper, which hands a CUDA context's teardown to a child (here keeping a
    file of the test's in place of the driver's): the parent's reader sees EOF when the parent
    ends (the child closed stdout), the child keeps its kept file open until then, and ends."""
    kept = tmp_path / "kept"
    kept.write_text("x")
    code = f"""
import os, sys, time
from whisperfast import runtime
held = os.open({str(kept)!r}, os.O_RDONLY)
pid = runtime._fork_keeper(({str(kept)!r},))
print(pid, flush=True)
deadline = time.monotonic() + 20
while True:  # until the child has closed what it does not keep (or the deadline: then what it holds)
    fds = set()
    for fd in os.listdir(f"/proc/{{pid}}/fd"):
        try:
            fds.add(os.readlink(f"/proc/{{pid}}/fd/{{fd}}"))
        except OSError:  # closed meanwhile
            pass
    files = sorted(f for f in fds if not f.startswith("pipe:"))
    if files == [{str(kept)!r}] or time.monotonic() > deadline:
        break
    time.sleep(0.02)
print(files, flush=True)
os._exit(0)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    pid_line, files_line = r.stdout.splitlines()
    assert files_line == repr([str(kept)])  # stdin, stdout, stderr and every other file closed
    pid = int(pid_line)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # gone, or a zombie waiting for its new parent to reap it
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            break
        if state == "Z":
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"the keeper {pid} outlived its parent by 10 s")


def test_the_teardown_is_handed_off_only_on_a_cuda_gpu(knobs):
    import mlx.core as mx

    from whisperfast import runtime

    on_cuda = mx.default_device() == mx.gpu and runtime.gpu_backend() == "cuda"
    knobs(WHISPERFAST_GPU_TEARDOWN_HANDOFF="0")
    assert runtime.hand_off_teardown() is None
    if not on_cuda:  # on CUDA every fresh CLI process of the GPU tests hands its teardown off (test_first_run.py)
        knobs(WHISPERFAST_GPU_TEARDOWN_HANDOFF="1")
        assert runtime.hand_off_teardown() is None


def test_main_makes_the_cuda_context_while_mlx_loads_and_joins_it_before_the_warm_up(monkeypatch, knobs):
    from whisperfast import _cuda_context, cli, runtime

    events = []

    class Context:
        def join(self):
            events.append("joined")

    monkeypatch.setattr(_cuda_context, "start", lambda: events.append("started") or Context())
    monkeypatch.setattr(runtime, "warm_up_gpu", lambda dtype, fast: events.append("warm-up") or "the thread")
    assert cli._early_warm_up(["transcribe", "a.wav", "--fast"]) == "the thread"
    assert events == ["started", "joined", "warm-up"]
    assert cli._early_warm_up(["info"]) is None and len(events) == 3
    knobs(WHISPERFAST_GPU_WARMUP="0")  # no warm-up, no early context
    cli._early_warm_up(["transcribe", "a.wav"])
    assert events[3:] == ["warm-up"]


def test_the_early_cuda_context_is_made_only_for_mlxs_cuda_build():
    """_cuda_context finds MLX's CUDA build by its metadata's folder, as importlib.metadata does;
    where it is installed, a fresh process that made the context first computes on the GPU as
    MLX alone does."""
    import importlib.metadata as md

    from whisperfast import _cuda_context

    cuda_build = any((d.metadata["Name"] or "").lower().replace("_", "-").startswith("mlx-cuda") for d in md.distributions())
    assert _cuda_context.mlx_cuda_installed() == cuda_build
    if not cuda_build:
        assert _cuda_context.start() is None
        try:
            ctypes.CDLL("libcuda.so.1")
        except OSError:  # no driver: the thread's call reports it made nothing, and raises nothing
            assert _cuda_context.retain_primary_context() is False
        return
    code = """
import whisperfast
from whisperfast import _cuda_context
made = _cuda_context.retain_primary_context()
import mlx.core as mx
x = mx.arange(12, dtype=mx.float32).reshape(3, 4)
print(made, (x @ x.T).tolist() == mx.matmul(x, x.T, stream=mx.cpu).tolist(), mx.default_device())
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    made, same, device = r.stdout.split(maxsplit=2)
    if "gpu" in device:
        assert made == "True"
    assert same == "True"


def test_transcribe_hands_its_mlx_calls_to_the_gpu_thread_that_main_started():
    from typer.testing import CliRunner

    from whisperfast.cli import app

    class Started:  # cli.main's runtime.GpuThread, as the command receives it
        ran = []

        def run(self, fn, *args, **kwargs):
            Started.ran.append(fn.__name__)
            return fn(*args, **kwargs)

    r = CliRunner().invoke(app, ["transcribe", str(SAMPLES / "jfk.wav"), "-q"], obj=Started())
    assert r.exit_code == 0, r.stderr
    assert "country" in r.stdout and Started.ran == ["load", "transcribe"]
