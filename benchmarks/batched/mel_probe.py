"""Where batched mode's log-mel time goes, both ways of mels.Mels: the 600 s clip's chunks
(batched._chunks, VAD on), their log-mels (a) one graph a chunk (`chunk`, the CPU's way) and (b)
each chunk's row, then one graph for the batch (`whole`, a GPU's), each timed apart: building
the graphs (host: the chunks' arrays put on the device, the ops recorded) and evaluating them
(the device, and the host waiting on it); then as batched mode runs them (`queued`: each
chunk's part queued with mx.async_eval as it comes, then the batch's). The ways alternate run by
run; medians of RUNS, ms, one JSON line a way; and the largest difference between the ways.

    python benchmarks/batched/mel_probe.py AUDIO [--runs N] [--n-mels 80]"""

import argparse
import json
import statistics
import time

import whisperfast  # noqa: F401  (BLAS preload)

import mlx.core as mx
import numpy as np

from whisperfast import batched, mels, vad

parser = argparse.ArgumentParser()
parser.add_argument("audio")
parser.add_argument("--runs", type=int, default=7)
parser.add_argument("--n-mels", type=int, default=80)
args = parser.parse_args()

files = []
with batched._Progress(False) as progress:
    chunks = [c.audio for c in batched._chunks([args.audio], files, True, vad.BATCHED_VAD, progress)]
lengths = [len(c) for c in chunks]
times = {w: {"build": [], "eval": [], "queued_build": [], "queued_tail": []} for w in ("chunk", "whole")}
out = {}
for i in range(args.runs + 1):
    for way in ("chunk", "whole"):
        m = mels.Mels(args.n_mels, whole=way == "whole")
        t0 = time.perf_counter()
        queued = [mels.row(c) if m.whole else mels.chunk_mel(c, args.n_mels) for c in chunks]
        mel = m.batch(queued, lengths).astype(mx.float16)
        t1 = time.perf_counter()
        mx.eval(mel)
        t2 = time.perf_counter()
        out[way] = np.array(mel)
        del mel, queued
        t3 = time.perf_counter()
        queued = [m.queue(c)[0] for c in chunks]
        t4 = time.perf_counter()
        mx.eval(m.batch(queued, lengths).astype(mx.float16))
        t5 = time.perf_counter()
        if i:  # the first run meets the shapes' first calls
            for k, v in (("build", t1 - t0), ("eval", t2 - t1), ("queued_build", t4 - t3), ("queued_tail", t5 - t4)):
                times[way][k].append(v)
ms = lambda xs: round(statistics.median(xs) * 1e3, 2)  # noqa: E731
for way, t in times.items():
    print(json.dumps(dict(audio=args.audio, chunks=len(chunks), way=way, **{f"{k}_ms": ms(v) for k, v in t.items()})),
          flush=True)
diff = np.abs(out["chunk"].astype(np.float32) - out["whole"].astype(np.float32)).max()
print(json.dumps(dict(max_abs_difference_fp16=float(diff))), flush=True)
