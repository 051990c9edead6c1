"""Where a fresh `--fast` process's first GPU calls go (issue 13), and whether running them
early, on a thread while Python imports, takes them off the transcription.

Usage: python benchmarks/cold_gpu_probe.py RUNS [MODEL] [AUDIO]
Modes, each a fresh child, alternated run by run:
- plain: import, load (fp16, fast), transcribe AUDIO twice (first call, then warm);
- prims: after `import mlx.core`, each first GPU op alone (context, FFT, conv, GELU, layer
  norm, matmul, SDPA at tiny.en's shapes), timed once cold and once again; then as plain;
- thread: the same ops on a thread started after `import mlx.core`, while the main thread
  imports the rest; joined before the model loads; then as plain.
Prints one JSON line per child: its stamps (seconds) and the parent's wall clock."""

import json
import statistics
import subprocess
import sys
import time

CHILD = r'''
import json, sys, threading, time
t0 = float(sys.argv[2])
mode, model, audio = sys.argv[1], sys.argv[3], sys.argv[4]
T = {"python started": time.time() - t0}
t = time.perf_counter()
import whisperfast  # the BLAS preload, as the CLI does first
import mlx.core as mx
T["import mlx.core"] = time.perf_counter() - t

def prims(out, tag=""):
    import mlx.nn as nn
    from mlx_whisper.audio import log_mel_spectrogram
    dt = mx.float16
    def timed(name, fn):
        t = time.perf_counter(); mx.eval(fn()); out[name + tag] = time.perf_counter() - t
    timed("context (first eval)", lambda: mx.zeros((4,)) + 1)
    timed("mel of 41 s of zeros", lambda: log_mel_spectrogram(mx.zeros((16000 * 41,))))
    timed("conv1d 80->384", lambda: mx.conv1d(mx.zeros((1, 3000, 80), dt), mx.zeros((384, 3, 80), dt), padding=1))
    timed("conv1d stride 2", lambda: mx.conv1d(mx.zeros((1, 3000, 384), dt), mx.zeros((384, 3, 384), dt), stride=2, padding=1))
    timed("gelu", lambda: nn.gelu(mx.zeros((1, 1500, 1536), dt)))
    timed("layer_norm", lambda: mx.fast.layer_norm(mx.zeros((1, 1500, 384), dt), mx.ones((384,), dt), mx.zeros((384,), dt), 1e-5))
    timed("addmm 1500x384x1152", lambda: mx.addmm(mx.zeros((1152,), dt), mx.zeros((1500, 384), dt), mx.zeros((384, 1152), dt)))
    timed("sdpa 6x1500x64", lambda: mx.fast.scaled_dot_product_attention(*(mx.zeros((1, 6, 1500, 64), dt),) * 3, scale=0.125))

warm = {}
th = None
if mode == "prims":
    prims(T); prims(T, " (again)")
elif mode == "thread":
    th = threading.Thread(target=prims, args=(warm,)); th.start()
t = time.perf_counter()
from whisperfast import pipeline
from whisperfast.options import TranscribeOptions
T["import whisperfast.pipeline"] = time.perf_counter() - t
if th is not None:
    t = time.perf_counter(); th.join(); T["join"] = time.perf_counter() - t
    T.update({"thread: " + k: v for k, v in warm.items()})
t = time.perf_counter()
loaded = pipeline.load(model, dtype=mx.float16, fast=True)
T["load"] = time.perf_counter() - t
for run in ("first", "warm"):
    r = pipeline.transcribe(loaded, audio, TranscribeOptions())
    for k in ("mel", "encode", "decode", "total"):
        T[f"{run} {k}"] = getattr(r.timings, k)
T["text"] = r.text
T["end"] = time.time() - t0
print(json.dumps(T))
'''


def main() -> None:
    runs = int(sys.argv[1])
    model = sys.argv[2] if len(sys.argv) > 2 else "tiny.en"
    audio = sys.argv[3] if len(sys.argv) > 3 else "samples/jfk.wav"
    rows = {m: [] for m in ("plain", "prims", "thread")}
    for i in range(runs):
        for mode in rows:
            t0 = time.time()
            p = subprocess.run([sys.executable, "-c", CHILD, mode, repr(t0), model, audio], capture_output=True, text=True)
            wall = time.time() - t0
            if p.returncode:
                print(json.dumps({"mode": mode, "run": i, "error": p.stderr[-2000:]}), flush=True)
                continue
            row = {"mode": mode, "run": i, "wall": round(wall, 3), **json.loads(p.stdout.strip().splitlines()[-1])}
            rows[mode].append(row)
            print(json.dumps(row), flush=True)
    summary = {m: {k: round(statistics.median(r[k] for r in rs), 4) for k in rs[0] if isinstance(rs[0][k], float)}
               for m, rs in rows.items() if rs}
    print(json.dumps({"medians": summary}, indent=1))


if __name__ == "__main__":
    main()
