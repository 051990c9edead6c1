"""`whisperfast bench` end to end on the CPU: report shape, equality flags, kernel diffs.
No timing is asserted: timings belong in benchmarks/, not in pass/fail tests."""

import importlib.util
import json
import math

from typer.testing import CliRunner

from whisperfast import bench
from whisperfast.cli import app

from .conftest import SAMPLES

LANE_KEYS = {"total_ms", "mel_ms", "encode_ms", "decode_ms", "decode_ms_per_token", "tokens", "tokens_per_s", "rtf",
             "peak_memory_mb", "transcript", "matches_stock", "windows", "sampled_windows", "audio_s_per_s", "vad_ms"}
KERNEL_KEYS = {"op", "shape", "dtype", "composed_ms", "fused_ms", "speedup", "max_abs_diff"}


def test_bench_end_to_end_json_and_plot(tmp_path):
    png = tmp_path / "bench.png"
    r = CliRunner().invoke(app, ["bench", str(SAMPLES / "jfk.wav"), "--runs", "1", "--warmup", "0", "--json", "--plot", str(png)])
    assert r.exit_code == 0, r.stderr
    d = json.loads(r.stdout)
    assert {"device", "mlx_version", "dtype", "model", "audio", "lanes", "speedup", "kernels"} <= set(d)
    assert d["device"] == "cpu" and d["dtype"] == "float32" and d["model"] == "tiny.en"
    assert set(d["lanes"]) == {"stock", "fused", "composed"}
    for name, lane in d["lanes"].items():
        assert set(lane) == LANE_KEYS, name
        assert set(lane["total_ms"]) == {"median", "min", "max"}
        assert lane["tokens"] > 20 and "fellow Americans" in lane["transcript"]
        assert (lane["windows"], lane["sampled_windows"]) == (1, 0)  # JFK: one window, decoded at temperature 0
        assert lane["matches_stock"] is True, name
    assert set(d["speedup"]) == {"fused vs stock", "composed vs stock"}
    assert any("CPU" in n for n in d["notes"])  # the CPU caveat is said, not hidden
    check_kernel_rows(d["kernels"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "speed-up fused vs stock" in r.stderr  # the table goes to stderr with --json


def test_a_plot_never_replaces_the_audio_nor_names_a_folder(tmp_path):
    """--plot named as the benchmarked audio replaced it with a PNG (--overwrite or not); an
    empty --plot passed typer's folder check and failed after the runs."""
    audio = tmp_path / "mine.wav"
    audio.write_bytes((SAMPLES / "jfk.wav").read_bytes())
    for plot, fragment in [(audio, "is also an input"), ("", "is a directory")]:  # (typer refuses a named folder)
        r = CliRunner().invoke(app, ["bench", str(audio), "--lanes", "stock", "--runs", "1", "--warmup", "0",
                                     "--no-kernels", "--plot", str(plot), "--overwrite"])
        lines = r.stderr.strip().splitlines()
        assert r.exit_code == 1 and len(lines) == 1 and lines[0].startswith("Error:") and fragment in lines[0], r.stderr
    assert audio.read_bytes() == (SAMPLES / "jfk.wav").read_bytes()


def test_bench_beam_lanes_beside_greedy():
    """--beam-size: each lane's beam twin, checked against stock's beam lane, with its cost
    against its own greedy lane said in the notes (issue 14: beam 5 on the CPU)."""
    r = CliRunner().invoke(app, ["bench", str(SAMPLES / "jfk.wav"), "--lanes", "stock,fused", "--beam-size", "5",
                                 "--runs", "1", "--warmup", "0", "--no-kernels", "--json"])
    assert r.exit_code == 0, r.stderr
    d = json.loads(r.stdout)
    assert list(d["lanes"]) == ["stock", "stock beam5", "fused", "fused beam5"]
    assert all(lane["matches_stock"] is True for lane in d["lanes"].values())
    assert "fellow Americans" in d["lanes"]["fused beam5"]["transcript"]
    assert set(d["speedup"]) == {"fused vs stock", "fused beam5 vs stock beam5"}
    assert any(n.startswith("fused beam5: ") and "the greedy lane's total" in n for n in d["notes"])
    bad = CliRunner().invoke(app, ["bench", "--beam-size", "0", "--no-kernels"])
    assert bad.exit_code == 2 and "Error:" in bad.stderr


ROPE_OPS = {"rope", "rope decode step", "rope_inv_freq llama3", "rope_inv_freq llama3 decode step"}
# float32: the two RoPE paths round the angle position * frequency in different orders, a few
# ulps (8, as in test_kernels.py's rope_tol) of the largest angle, ROPE_MAX_POSITION * 1; with
# inputs in [-1, 1] (bench.rope_cases) a rotated pair moves by at most sqrt(2) times that.
ROPE_TOL = 1e-5 + 2**0.5 * bench.ROPE_MAX_POSITION * 2.0**-23 * 8
OTHER_TOL = 1e-4  # norms and SDPA, float32 on the CPU


def check_kernel_rows(kernels):
    """Every row fused vs composed on the same inputs; the norms, SDPA and RoPE (both
    schedules, over a prompt and for a decode step) all present, each within float32's bound."""
    ops = {k["op"].split()[0] for k in kernels}
    assert {"rms_norm", "layer_norm", "sdpa", "rope", "rope_inv_freq"} <= ops
    assert ROPE_OPS <= {k["op"] for k in kernels}
    for k in kernels:
        assert set(k) == KERNEL_KEYS
        assert k["dtype"] == "float32" and math.isfinite(k["max_abs_diff"]), k
        assert k["max_abs_diff"] <= (ROPE_TOL if k["op"].startswith("rope") else OTHER_TOL), k


def test_bench_rejects_unknown_lane_and_missing_peer():
    # an unknown lane is a bad flag value (exit 2); a missing package is not (exit 1)
    r = CliRunner().invoke(app, ["bench", "--lanes", "stock,turbo", "--no-kernels"])
    assert r.exit_code == 2 and r.stderr.startswith("Error:") and "unknown lane" in r.stderr
    # optional peers, never dependencies: a lane whose package is missing is one Error line
    for lane, package in (("faster-whisper", "faster_whisper"), ("whisper.cpp", "pywhispercpp"),
                          ("openai-whisper", "whisper"), ("transformers", "transformers")):
        if importlib.util.find_spec(package) is None or importlib.util.find_spec("torch") is None and package in (
                "whisper", "transformers"):
            r = CliRunner().invoke(app, ["bench", "--lanes", f"stock,{lane}", "--no-kernels", "--runs", "1"])
            assert r.exit_code == 1 and r.stderr.startswith("Error:") and f"lane '{lane}' needs" in r.stderr, r.stderr


def test_kernels_only_has_no_lanes():
    r = CliRunner().invoke(app, ["bench", "--kernels", "--json", "--dtype", "float32"])  # the bounds are float32's
    assert r.exit_code == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["lanes"] == {}
    check_kernel_rows(d["kernels"])
