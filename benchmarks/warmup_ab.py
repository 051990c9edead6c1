"""Fresh `whisperfast transcribe --fast` processes with the CLI's GPU warm-up thread in three
variants, alternated run by run (issue 13):
- now: as the CLI does it;
- early: the thread started before the CLI's own imports;
- main: the warm-up run on the main thread, where the CLI would start the thread (does a
  first call cost per thread?);
- split: the warm-up as two threads, the mel front end (cuFFT) on one and the encoder block
  (cuDNN, cuBLAS, SDPA) on the other. Faster, and it crashed a process now and then: MLX's
  CUDA graph captures do not survive another thread's calls (benchmarks/h200-session9/, where
  the "now" and "one" rows of split/warmup-ab.jsonl are this split and the one thread);
- off: WHISPERFAST_GPU_WARMUP=0.
Each child stamps (seconds since the parent spawned it) when the warm-up ran, when the CLI
joined it, and when the atexit hooks ran, on stderr. Prints one JSON line per run, then the medians.

Usage: [AB_VARIANTS=now,split,off] python benchmarks/warmup_ab.py RUNS AUDIO[:MODEL] ...

Runs on trees before 4637b0d, where the warm-up was a thread the CLI joined; since then it is
a runtime.GpuThread that also makes the command's MLX calls. For later trees, fresh_timeline.py
stamps the same steps."""

import json
import os
import statistics
import subprocess
import sys
import time

CHILD = r'''
import atexit, json, os, sys, time
t0 = float(os.environ["AB_T0"])
variant = sys.argv[1]
stamps = {}
def stamp(name):
    stamps[name] = round(time.time() - t0, 3)
atexit.register(lambda: (stamp("exit"), sys.stderr.write(json.dumps({"stamps": stamps}) + "\n")))
from whisperfast import runtime
import mlx.core as mx

inner = runtime._first_calls
def stamped(*args):
    stamp("warm-up start")
    inner(*args)
    stamp("warm-up end")
runtime._first_calls = stamped

class Joined:
    def __init__(self, thread):
        self.thread = thread
    def join(self):
        stamp("join start")
        if self.thread is not None:
            self.thread.join()
        stamp("join end")

if variant == "early":  # started before the CLI's own imports
    early = Joined(runtime.warm_up_gpu(mx.float16, "--fast" in sys.argv))
    runtime.warm_up_gpu = lambda dtype, fast=False: early
elif variant == "split":
    import threading
    class Both:
        def __init__(self, threads):
            self.threads = threads
        def join(self):
            stamp("join start")
            for t in self.threads:
                t.join()
            stamp("join end")
    def split(dtype, fast=False):
        def mel():
            stamp("mel start")
            mx.eval(runtime._first_mel())
            stamp("mel end")
        def block():
            stamp("block start")
            runtime._first_encoder_block(mx.zeros((1100, runtime.N_MELS)), dtype, fast)
            mx.synchronize()
            stamp("block end")
        threads = [threading.Thread(target=f, daemon=True) for f in (mel, block)]
        for t in threads:
            t.start()
        return Both(threads)
    runtime.warm_up_gpu = split
elif variant == "main":  # on the main thread, where the CLI would start the thread
    def on_main(dtype, fast=False):
        stamped(dtype, fast)
        return Joined(None)
    runtime.warm_up_gpu = on_main
else:
    start = runtime.warm_up_gpu
    runtime.warm_up_gpu = lambda dtype, fast=False: Joined(start(dtype, fast))
sys.argv = ["whisperfast", "transcribe", *sys.argv[2:]]
from whisperfast.cli import main
main()
'''


VARIANTS = tuple(os.environ.get("AB_VARIANTS", "now,split,off").split(","))


def run(variant, args):
    env = dict(os.environ, AB_T0=repr(time.time()))
    if variant == "off":
        env["WHISPERFAST_GPU_WARMUP"] = "0"
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", CHILD, variant, *args], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    stamps = [json.loads(line)["stamps"] for line in r.stderr.splitlines() if line.startswith('{"stamps"')]
    timings = json.loads(r.stdout.splitlines()[0])["timings"] if r.returncode == 0 else r.stderr[-500:]
    return {"variant": variant, "wall": round(wall, 3), "stamps": stamps[0] if stamps else None, "timings": timings}


def main():
    runs = int(sys.argv[1])
    for case in sys.argv[2:]:
        audio, model = (case.split(":") + ["tiny.en"])[:2]
        args = [audio, "-m", model, "--fast", "-q", "--json"]
        run("now", args)  # the kernel cache filled
        rows = []
        for i in range(runs):
            for variant in VARIANTS:
                row = {"case": f"{audio}:{model}", "run": i, **run(variant, args)}
                rows.append(row)
                print(json.dumps(row), flush=True)
        for variant in VARIANTS:
            mine = [r for r in rows if r["variant"] == variant and isinstance(r["timings"], dict)]
            med = {k: round(statistics.median(r["timings"][k] for r in mine), 3) for k in ("load", "mel", "encode", "decode", "total")}
            print(json.dumps({"case": f"{audio}:{model}", "variant": variant, "median_wall": round(statistics.median(r["wall"] for r in mine), 3),
                              "median": med}), flush=True)


if __name__ == "__main__":
    main()
