"""Batched mode's host side on a clip (a CUDA machine, or any): the chunks' log-mel one graph a
chunk (`batched._mel`, stacked) against one graph for all (`batched._mels`), alternated, the
best and median of RUNS each, their largest difference and whether every value is the same;
then a cProfile of one warm transcription (`--batch-size`, default 32), its top functions by own
time and by cumulative time. JSON lines, then the profiles.

    python benchmarks/batched/pipeline_probe.py AUDIO [--model tiny.en] [--runs 10]
"""

import sys

sys.path[0] = "."  # the tree it is run from; this folder's profile.py would shadow the standard library's

import argparse  # noqa: E402
import cProfile  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import pstats  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import whisperfast  # noqa: E402,F401  (BLAS before mlx)
import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

from whisperfast import batched, chunker, vad  # noqa: E402
from whisperfast.audio import load_audio  # noqa: E402
from whisperfast.batched import BatchOptions, transcribe_batched  # noqa: E402
from whisperfast.pipeline import load  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("audio")
parser.add_argument("--model", default="tiny.en")
parser.add_argument("--runs", type=int, default=10)
parser.add_argument("--batch-size", type=int, default=32)
args = parser.parse_args()

model = load(args.model, dtype=mx.float16 if mx.default_device() == mx.gpu else mx.float32, fast=True)
audio = load_audio(args.audio)
cut = chunker.Chunker(vad.BATCHED_VAD, batched.CHUNK_SAMPLES)
chunks = [x for _, x in cut(audio) + cut.finish()][: args.batch_size]
n_mels = model.whisper.dims.n_mels


def one_a_chunk():
    return mx.stack([batched._mel(c, n_mels) for c in chunks])


def all_at_once():
    return batched._mels(chunks, n_mels)


lanes = {"one_a_chunk": one_a_chunk, "all_at_once": all_at_once}
a, b = one_a_chunk(), all_at_once()
mx.eval(a, b)
same = bool(np.array_equal(np.array(a).view(np.uint32), np.array(b).view(np.uint32)))
times = {k: [] for k in lanes}
for r in range(args.runs + 1):
    for name, f in (lanes.items() if r % 2 == 0 else reversed(lanes.items())):
        t = time.perf_counter()
        mx.eval(f())
        if r:  # the first round warms both
            times[name].append(time.perf_counter() - t)
print(json.dumps({"chunks": len(chunks), "device": str(mx.default_device()), "same_bits": same,
                  "max_diff": float(mx.abs(a - b).max()),
                  **{k: {"best_ms": round(min(v) * 1e3, 3), "median_ms": round(statistics.median(v) * 1e3, 3)}
                     for k, v in times.items()}}), flush=True)

for _ in range(2):
    transcribe_batched(model, [args.audio], batch=BatchOptions(args.batch_size))
profile = cProfile.Profile()
profile.enable()
t = transcribe_batched(model, [args.audio], batch=BatchOptions(args.batch_size))[0]
profile.disable()
print(json.dumps({"timings": {k: round(getattr(t.timings, k) * 1e3, 2) for k in ("vad", "mel", "encode", "decode", "total")}}))
for key in ("tottime", "cumulative"):
    s = io.StringIO()
    pstats.Stats(profile, stream=s).sort_stats(key).print_stats(35)
    print(s.getvalue())
