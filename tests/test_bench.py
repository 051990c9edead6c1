"""`whisperfast bench` end to end on the CPU: report shape, equality flags, kernel diffs.
No timing is asserted: timings belong in benchmarks/, not in pass/fail tests."""

import importlib.util
import json

from typer.testing import CliRunner

from whisperfast.cli import app

from .conftest import SAMPLES

LANE_KEYS = {"total_ms", "mel_ms", "encode_ms", "decode_ms", "decode_ms_per_token", "tokens", "tokens_per_s", "rtf",
             "peak_memory_mb", "transcript", "matches_stock"}
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
        assert lane["matches_stock"] is True, name
    assert set(d["speedup"]) == {"fused vs stock", "composed vs stock"}
    assert any("CPU" in n for n in d["notes"])  # the CPU caveat is said, not hidden
    assert len(d["kernels"]) >= 10
    for k in d["kernels"]:
        assert set(k) == KERNEL_KEYS
        assert k["max_abs_diff"] <= 1e-4, k  # float32 on the CPU
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "speed-up fused vs stock" in r.stderr  # the table goes to stderr with --json


def test_bench_rejects_unknown_lane_and_missing_peer():
    r = CliRunner().invoke(app, ["bench", "--lanes", "stock,turbo", "--no-kernels"])
    assert r.exit_code == 1 and r.stderr.startswith("Error:") and "unknown lane" in r.stderr
    if importlib.util.find_spec("faster_whisper") is None:  # an optional peer, never a dependency
        r = CliRunner().invoke(app, ["bench", "--lanes", "stock,faster-whisper", "--no-kernels", "--runs", "1"])
        assert r.exit_code == 1 and "needs the faster-whisper package" in r.stderr


def test_kernels_only_has_no_lanes():
    r = CliRunner().invoke(app, ["bench", "--kernels", "--json"])
    d = json.loads(r.stdout)
    assert r.exit_code == 0 and d["lanes"] == {} and d["kernels"]
