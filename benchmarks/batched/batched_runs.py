"""Batched mode alone (`--batch-size 8`, VAD on) on the ~115 s clip, in the tree it is run from:
two untimed transcriptions, then N timed ones; prints [[wall s, encode s, decode s], ...] as
JSON. For alternating two trees (git archives) run after run, where run.py's three runs a lane
are too few to see a few per cent on a noisy machine:

    (cd /tmp/ab/before && python /path/to/batched_runs.py 5); (cd /tmp/ab/head && python ... 5)
"""

import json
import sys
import time

sys.path.insert(0, ".")  # the tree it is run from, not the installed one

import whisperfast  # noqa: E402,F401  (BLAS before mlx)

from tests.test_transcribe import long_clip  # noqa: E402
from whisperfast.batched import BatchOptions, transcribe_batched  # noqa: E402
from whisperfast.pipeline import load  # noqa: E402

model = load("tiny.en", fast=True)
audio = long_clip(115.0)[0]
for _ in range(2):
    transcribe_batched(model, [audio], batch=BatchOptions(8))
out = []
for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 5):
    t = time.perf_counter()
    r = transcribe_batched(model, [audio], batch=BatchOptions(8))[0]
    out.append((round(time.perf_counter() - t, 3), round(r.timings.encode, 3), round(r.timings.decode, 3)))
print(json.dumps(out))
