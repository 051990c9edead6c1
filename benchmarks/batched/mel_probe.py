"""Where batched mode's log-mel time goes: the 600 s clip's chunks (batched._chunks, VAD on),
their log-mels two ways: `mlx_whisper` (log_mel_spectrogram(chunk, padding=N_FFT), its frames up
to the chunk's end, pad_or_trim: batched mode's until session 39) and `mels` (mels.chunk_mel:
the stft's signal laid out on the host). Each timed apart: building the graphs (host: the
chunks' arrays put on the device, the ops recorded) and evaluating them (the device, and the
host waiting on it); then as batched mode runs them (`queued`: each queued with mx.async_eval
as it comes, then stacked). The ways alternate run by run; medians of RUNS, ms, one JSON line a
way; then whether the two gave the same bits.

    python benchmarks/batched/mel_probe.py AUDIO [--runs N] [--n-mels 80]"""

import argparse
import json
import statistics
import time

import whisperfast  # noqa: F401  (BLAS preload)

import mlx.core as mx
import numpy as np
from mlx_whisper.audio import HOP_LENGTH, N_FFT, N_FRAMES, log_mel_spectrogram, pad_or_trim

from whisperfast import batched, mels, vad

parser = argparse.ArgumentParser()
parser.add_argument("audio")
parser.add_argument("--runs", type=int, default=7)
parser.add_argument("--n-mels", type=int, default=80)
args = parser.parse_args()


def mlx_whisper_mel(audio, n_mels):
    frames = log_mel_spectrogram(audio, n_mels=n_mels, padding=N_FFT)[: len(audio) // HOP_LENGTH]
    return pad_or_trim(frames, N_FRAMES, axis=-2)


files = []
with batched._Progress(False) as progress:
    chunks = [c.audio for c in batched._chunks([args.audio], files, True, vad.BATCHED_VAD, progress)]
ways = {"mlx_whisper": mlx_whisper_mel, "mels": mels.chunk_mel}
times = {w: {"build": [], "eval": [], "queued_build": [], "queued_tail": []} for w in ways}
out = {}
stream = mels.stream()
for i in range(args.runs + 1):
    for way, mel_of in ways.items():
        t0 = time.perf_counter()
        mel = mx.stack([mel_of(c, args.n_mels) for c in chunks]).astype(mx.float16)
        t1 = time.perf_counter()
        mx.eval(mel)
        t2 = time.perf_counter()
        out[way] = np.array(mel)
        del mel
        t3 = time.perf_counter()
        queued = []
        for c in chunks:
            with mx.stream(stream):
                queued.append(mel_of(c, args.n_mels))
            mx.async_eval(queued[-1])
        t4 = time.perf_counter()
        mx.eval(mx.stack(queued).astype(mx.float16))
        t5 = time.perf_counter()
        if i:  # the first run meets the shapes' first calls
            for k, v in (("build", t1 - t0), ("eval", t2 - t1), ("queued_build", t4 - t3), ("queued_tail", t5 - t4)):
                times[way][k].append(v)
ms = lambda xs: round(statistics.median(xs) * 1e3, 2)  # noqa: E731
for way, t in times.items():
    print(json.dumps(dict(audio=args.audio, chunks=len(chunks), way=way, **{f"{k}_ms": ms(v) for k, v in t.items()})),
          flush=True)
print(json.dumps(dict(same_bits=bool(np.array_equal(out["mlx_whisper"], out["mels"])))), flush=True)
