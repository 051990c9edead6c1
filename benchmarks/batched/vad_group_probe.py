"""Silero VAD on the GPU (silero.py's port) by group size: the audio streamed in 30 s blocks as
batched mode streams it, through `SileroVAD.stream(frames_per_call)`, for each group size; the
best of RUNS seconds, the largest difference from the default group's probabilities (the LSTM's
state runs on across groups, so they should match to float rounding) and whether the speech
pieces are the same. One JSON line a clip and group. A CUDA machine.

    python benchmarks/batched/vad_group_probe.py AUDIO [AUDIO ...] [--groups 2048 4096 8192] [--runs 5]
"""

import argparse
import json
import time

import whisperfast  # noqa: F401  (BLAS preload)

import numpy as np

from whisperfast import vad
from whisperfast.audio import load_audio

parser = argparse.ArgumentParser()
parser.add_argument("audio", nargs="+")
parser.add_argument("--groups", type=int, nargs="+", default=[2048, 4096, 8192, 16384])
parser.add_argument("--runs", type=int, default=5)
args = parser.parse_args()

model = vad.SileroVAD(net=True)


def streamed(audio, group, block=30 * 16000):
    stream = model.stream(group)
    out = [stream(audio[i : i + block]) for i in range(0, len(audio), block)]
    return np.concatenate(out + [stream.finish()])


for group in args.groups:  # each group length's first launch and shapes, untimed
    streamed(np.zeros(16000 * 70, np.float32), group)
for path in args.audio:
    audio = load_audio(path)
    want = streamed(audio, model.group)
    pieces = {name: vad.get_speech_timestamps(audio, o, probs=want)
              for name, o in (("batched", vad.BATCHED_VAD), ("sequential", vad.VadOptions()))}
    times = {g: [] for g in args.groups}
    got = {}
    for _ in range(args.runs):  # the groups alternate run by run
        for g in args.groups:
            t = time.perf_counter()
            got[g] = streamed(audio, g)
            times[g].append(time.perf_counter() - t)
    for g in args.groups:
        same = {name: vad.get_speech_timestamps(audio, o, probs=got[g]) == pieces[name]
                for name, o in (("batched", vad.BATCHED_VAD), ("sequential", vad.VadOptions()))}
        print(json.dumps(dict(audio=path, seconds=len(audio) / 16000, group=g, default=g == model.group,
                              best_s=min(times[g]), median_s=float(np.median(times[g])),
                              max_abs_diff=float(np.abs(got[g] - want).max()), same_pieces=same)), flush=True)
