"""Where batched mode's log-mel time goes: the 600 s clip's chunks (batched._chunks, VAD on),
their mels as _run_batch makes them (one graph a chunk, stacked, evaluated once), timed apart:
building the graphs (host: the chunks' arrays put on the device, the ops recorded) and
evaluating them (the device, and the host waiting on it); then the same evaluated chunk by
chunk with mx.async_eval as each graph is built (what overlapping them with the VAD could
reach). Medians of RUNS, ms, one JSON line.

    python benchmarks/batched/mel_probe.py AUDIO [--runs N] [--n-mels 80]"""

import argparse
import json
import statistics
import time

import whisperfast  # noqa: F401  (BLAS preload)

import mlx.core as mx

from whisperfast import batched, vad
from whisperfast.mels import chunk_mel as _mel

parser = argparse.ArgumentParser()
parser.add_argument("audio")
parser.add_argument("--runs", type=int, default=7)
parser.add_argument("--n-mels", type=int, default=80)
args = parser.parse_args()

files = []
with batched._Progress(False) as progress:
    chunks = list(batched._chunks([args.audio], files, True, vad.BATCHED_VAD, progress))
build, run, whole, streamed = [], [], [], []
for i in range(args.runs + 1):
    t0 = time.perf_counter()
    mel = mx.stack([_mel(c.audio, args.n_mels) for c in chunks]).astype(mx.float16)
    t1 = time.perf_counter()
    mx.eval(mel)
    t2 = time.perf_counter()
    del mel
    t3 = time.perf_counter()
    parts = []
    for c in chunks:
        parts.append(_mel(c.audio, args.n_mels))
        mx.async_eval(parts[-1])
    t4 = time.perf_counter()
    mx.eval(mx.stack(parts).astype(mx.float16))
    t5 = time.perf_counter()
    if i:  # the first run meets the shapes' first calls
        build.append(t1 - t0), run.append(t2 - t1), whole.append(t2 - t0), streamed.append((t4 - t3, t5 - t4))
ms = lambda xs: round(statistics.median(xs) * 1e3, 2)  # noqa: E731
print(json.dumps(dict(audio=args.audio, chunks=len(chunks), build_ms=ms(build), eval_ms=ms(run), mel_ms=ms(whole),
                      async_build_ms=ms([a for a, _ in streamed]), async_tail_ms=ms([b for _, b in streamed]))), flush=True)
