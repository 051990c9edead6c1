"""Would creating the CUDA context early help a fresh process (issue 13)? A child either imports
mlx.core and runs the CLI's GPU warm-up (runtime._first_calls) as the CLI does ("plain"), or
first starts a thread that loads libcuda through ctypes and calls cuInit and
cuDevicePrimaryCtxRetain (the context MLX's runtime then uses), while the main thread imports
mlx.core ("driver"). ctypes releases the GIL in a foreign call, so the driver's work can overlap
the import's. Each child stamps seconds since its parent spawned it; modes alternate.

Usage: python benchmarks/driver_first_probe.py RUNS
Prints one JSON line per child, then each mode's median stamps."""

import json
import os
import statistics
import subprocess
import sys
import time

CHILD = r'''
import ctypes, json, os, sys, threading, time
t0 = float(os.environ["PROBE_T0"])
S = {}
def st(k):
    S[k] = round(time.time() - t0, 4)
st("python")
mode = sys.argv[1]
if mode == "driver":
    def driver():
        st("driver start")
        cu = ctypes.CDLL("libcuda.so.1")
        st("libcuda loaded")
        assert cu.cuInit(0) == 0
        st("cuInit")
        dev, ctx = ctypes.c_int(), ctypes.c_void_p()
        assert cu.cuDeviceGet(ctypes.byref(dev), 0) == 0
        assert cu.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) == 0
        st("primary context")
    thread = threading.Thread(target=driver)
    thread.start()
import whisperfast
st("whisperfast")
import mlx.core as mx
st("mlx.core")
from whisperfast import runtime
if mode == "driver":
    thread.join()
    st("driver joined")
mx.eval(mx.zeros((1,)) + 1)
st("first eval")
runtime._first_calls(mx.float16, True)
st("first calls")
print(json.dumps(S))
'''


def alternate(child: str, modes, runs: int):
    """Run `child` (python -c) once per mode a round, modes alternated, round 0 dropped (it fills
    the page cache); each child prints its stamps (seconds since PROBE_T0, its parent's spawn) as
    its last line. Prints one JSON line per child, then each mode's median stamps in time order."""
    seen = {m: [] for m in modes}
    for i in range(runs + 1):
        for mode in modes:
            t0 = time.time()
            r = subprocess.run([sys.executable, "-c", child, mode], capture_output=True, text=True,
                               env=dict(os.environ, PROBE_T0=repr(t0)))
            wall = round(time.time() - t0, 4)
            stamps = json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else {"error": r.stderr[-300:]}
            stamps["exit"] = wall
            if i:
                seen[mode].append(stamps)
                print(json.dumps({"mode": mode, "run": i, "stamps": stamps}), flush=True)
    for mode, all_stamps in seen.items():
        keys = sorted({k for s in all_stamps for k in s if k != "error"},
                      key=lambda k: statistics.median(s[k] for s in all_stamps if k in s))
        print(json.dumps({"mode": mode, "median": {k: round(statistics.median(s[k] for s in all_stamps if k in s), 3)
                                                   for k in keys}}), flush=True)


def main():
    alternate(CHILD, ("plain", "driver"), int(sys.argv[1]))


if __name__ == "__main__":
    main()
