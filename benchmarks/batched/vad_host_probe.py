"""Silero VAD's convolutions on the CPU: onnxruntime's cut model (a frame at a time, its groups in
slices on the cores) against silero.HostFrames (numpy products over a group's frames), both
before onnxruntime's LSTM. For the 115 s and 600 s clips (tests/test_transcribe.py::long_clip):
seconds (median of --runs, the two alternated), the largest difference from the whole model's
probabilities, and whether the speech pieces are the whole model's under both of faster-whisper's
settings. Then batched transcriptions of the 115 s clip (tiny.en fp32, --fast, 8 a batch) with
each VAD, alternated in one process: the medians of their wall and VAD seconds. JSON lines.

    WHISPERFAST_BLAS=... .venv/bin/python benchmarks/batched/vad_host_probe.py [--runs 5] [--rounds 10]"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import whisperfast  # noqa: E402,F401  (BLAS before mlx)
import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

from tests.test_transcribe import long_clip  # noqa: E402
from whisperfast import chunker, vad  # noqa: E402
from whisperfast.batched import BatchOptions, transcribe_batched  # noqa: E402
from whisperfast.pipeline import load, transcribe  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--runs", type=int, default=5)
ap.add_argument("--rounds", type=int, default=10)
args = ap.parse_args()
models = {"onnxruntime": vad.SileroVAD(net=False, host=False), "host": vad.SileroVAD(net=False)}
assert models["host"].host_frames is not None and models["onnxruntime"].host_frames is None
whole = vad.SileroVAD(net=False, split=False)
for seconds in (115.0, 600.0):
    audio = np.asarray(long_clip(seconds)[0], np.float32)
    want = whole(audio)
    times = {k: [] for k in models}
    for i in range(args.runs):
        for name in (list(models) if i % 2 == 0 else list(models)[::-1]):
            t0 = time.perf_counter()
            probs = models[name](audio)
            times[name].append(time.perf_counter() - t0)
    row = dict(seconds=seconds, frames=len(want), threads=models["onnxruntime"].threads)
    for name, m in models.items():
        probs = m(audio)
        row[name] = dict(median_s=round(statistics.median(times[name]), 4), runs=[round(t, 4) for t in times[name]],
                         max_difference=float(np.abs(probs - want).max()),
                         same_pieces=all(vad.get_speech_timestamps(audio, o, probs=probs) ==
                                         vad.get_speech_timestamps(audio, o, probs=want)
                                         for o in (vad.VadOptions(), vad.BATCHED_VAD)))
    print(json.dumps(row), flush=True)

model = load("tiny.en", dtype=mx.float32, fast=True)
audio = long_clip(115.0)[0]
transcribe(model, ROOT / "samples" / "jfk.wav")  # warm-up
chosen = {"name": "host"}
chunker.vad_model = lambda: models[chosen["name"]]  # noqa: E731  (the chunker asks for its VAD here)
walls, vads, texts = {k: [] for k in models}, {k: [] for k in models}, {k: set() for k in models}
transcribe_batched(model, [audio], batch=BatchOptions(8))
for i in range(args.rounds):
    for name in (list(models) if i % 2 == 0 else list(models)[::-1]):
        chosen["name"] = name
        t0 = time.perf_counter()
        t = transcribe_batched(model, [audio], batch=BatchOptions(8))[0]
        walls[name].append(time.perf_counter() - t0)
        vads[name].append(t.timings.vad)
        texts[name].add(t.text)
print(json.dumps(dict(batched_115s={name: dict(median_wall_s=round(statistics.median(walls[name]), 4),
                                               median_vad_s=round(statistics.median(vads[name]), 4),
                                               walls=[round(w, 3) for w in walls[name]]) for name in models},
                      same_text=len(set.union(*texts.values())) == 1, rounds=args.rounds)), flush=True)
