"""Fresh `whisperfast transcribe --fast` processes with the CLI's GPU warm-up thread in three
variants, alternated run by run (issue 13):
- off: WHISPERFAST_GPU_WARMUP=0;
- v1: the warm-up of 4793d44 (ops only alike the real ones: a mel of 30 s zeros, `x @ w`);
- now: `runtime._first_calls` as it stands.
Each child stamps when its warm-up thread ran (seconds since the parent spawned it) on
stderr. Prints one JSON line per run, then the medians.

Usage: python benchmarks/warmup_ab.py RUNS AUDIO[:MODEL] ..."""

import json
import os
import statistics
import subprocess
import sys
import time

CHILD = r'''
import json, os, sys, time
t0 = float(os.environ["AB_T0"])
from whisperfast import runtime
import mlx.core as mx

def v1(dtype):
    frames = mx.as_strided(mx.zeros((480400,)), shape=(3001, 400), strides=(160, 1))
    spec = mx.fft.rfft(frames * mx.ones((400,)))[:-1].abs().square() @ mx.zeros((201, 80))
    log = mx.maximum(spec, 1e-10).log10()
    x = mx.conv1d(mx.maximum(log, log.max() - 8.0).astype(dtype)[None], mx.zeros((384, 3, 80), dtype), padding=1)
    x = mx.conv1d(x * mx.erf(x), mx.zeros((384, 3, 384), dtype), stride=2, padding=1)
    x = mx.fast.layer_norm(x, mx.ones((384,), dtype), mx.zeros((384,), dtype), 1e-5)
    q = mx.addmm(mx.zeros((384,), dtype), x, mx.zeros((384, 384), dtype)).reshape(1, 1500, 6, 64).transpose(0, 2, 1, 3)
    mx.eval(mx.fast.scaled_dot_product_attention(q, q, q, scale=0.125))

inner = v1 if sys.argv[1] == "v1" else runtime._first_calls
def stamped(dtype):
    a = time.time() - t0
    inner(dtype)
    sys.stderr.write(json.dumps({"warm_up": [round(a, 3), round(time.time() - t0, 3)]}) + "\n")
runtime._first_calls = stamped
sys.argv = ["whisperfast", "transcribe", *sys.argv[2:]]
from whisperfast.cli import main
main()
'''


def run(variant, args):
    env = dict(os.environ, AB_T0=repr(time.time()))
    if variant == "off":
        env["WHISPERFAST_GPU_WARMUP"] = "0"
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", CHILD, variant, *args], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    stamps = [json.loads(line)["warm_up"] for line in r.stderr.splitlines() if line.startswith('{"warm_up"')]
    timings = json.loads(r.stdout.splitlines()[0])["timings"] if r.returncode == 0 else r.stderr[-500:]
    return {"variant": variant, "wall": round(wall, 3), "warm_up": stamps[0] if stamps else None, "timings": timings}


def main():
    runs = int(sys.argv[1])
    for case in sys.argv[2:]:
        audio, model = (case.split(":") + ["tiny.en"])[:2]
        args = [audio, "-m", model, "--fast", "-q", "--json"]
        run("now", args)  # the kernel cache filled
        rows = []
        for i in range(runs):
            for variant in ("now", "v1", "off"):
                row = {"case": f"{audio}:{model}", "run": i, **run(variant, args)}
                rows.append(row)
                print(json.dumps(row), flush=True)
        for variant in ("now", "v1", "off"):
            mine = [r for r in rows if r["variant"] == variant and isinstance(r["timings"], dict)]
            med = {k: round(statistics.median(r["timings"][k] for r in mine), 3) for k in ("load", "mel", "encode", "decode", "total")}
            print(json.dumps({"case": f"{audio}:{model}", "variant": variant, "median_wall": round(statistics.median(r["wall"] for r in mine), 3),
                              "median": med}), flush=True)


if __name__ == "__main__":
    main()
