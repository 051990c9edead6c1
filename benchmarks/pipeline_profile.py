"""Where a whole fused transcription's host time goes, by Python function (cProfile): the
time in the kernel shows up where the host waits for it (`__bool__`, `tolist`, `mx.eval`).
With a batch size over 1, batched mode's transcription of the file (VAD on, its path: the
reading is in it too).
Usage: python benchmarks/pipeline_profile.py [model] [dtype] [audio] [runs] [batch size]"""

import cProfile
import pstats
import sys
import time

import whisperfast  # noqa: F401  (before mlx: the CPU BLAS preload)

from whisperfast.audio import load_audio
from whisperfast.batched import BatchOptions, transcribe_batched
from whisperfast.pipeline import load, transcribe
from whisperfast.runtime import parse_dtype

name, dtype, path, runs, batch = (sys.argv[1:] + ["tiny.en", "float16", "samples/jfk.wav", "10", "1"][len(sys.argv) - 1:])[:5]
runs, batch = int(runs), int(batch)
model = load(name, dtype=parse_dtype(dtype), fast=True)
if batch > 1:
    transcribe = lambda m, a: transcribe_batched(m, [a], batch=BatchOptions(batch_size=batch))[0]  # noqa: E731
    audio = path
else:
    audio = load_audio(path)
for _ in range(3):
    transcribe(model, audio)
t0 = time.perf_counter()
for _ in range(runs):
    t = transcribe(model, audio).timings
print(f"{name} {dtype} {path}: {(time.perf_counter() - t0) / runs * 1e3:.2f} ms a transcription unprofiled "
      f"(last: mel {t.mel * 1e3:.2f}, encode {t.encode * 1e3:.2f}, decode {t.decode * 1e3:.2f} ms, {t.tokens} tokens)")
profile = cProfile.Profile()
profile.enable()
for _ in range(runs):
    transcribe(model, audio)
profile.disable()
stats = pstats.Stats(profile)
rows = [(ct / runs * 1e3, tt / runs * 1e3, nc / runs, f"{fn.split('site-packages/')[-1]}:{line}({func})")
        for (fn, line, func), (cc, nc, tt, ct, _) in stats.stats.items()]
for key, title in ((0, "cumulative"), (1, "own")):
    print(f"-- by {title} ms a transcription (cumulative, own, calls)")
    for ct, tt, nc, where in sorted(rows, key=lambda r: -r[key])[:32]:
        print(f"{ct:8.3f} {tt:8.3f} {nc:7.1f}  {where}")
