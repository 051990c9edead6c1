"""Silero VAD's time, the whole model on one thread against the model cut in two
(`vad.split_model`: the convolutions in slices on N threads, then the LSTM), streamed as
batched mode streams it (`vad.ProbStream`), best of 3. Every variant's probabilities are
compared with the whole model's: they must be equal, bit for bit. (The eighth session's
version of this script varied onnxruntime's intra-op threads instead: `vad-threads-*.jsonl`.)

    python benchmarks/batched/vad_threads_probe.py AUDIO(.wav|.npy) [N,N,...]"""

import json
import os
import sys
import time

import numpy as np

from whisperfast import vad

path = sys.argv[1]
audio = np.load(path) if path.endswith(".npy") else __import__("soundfile").read(path, dtype="float32")[0]
counts = [int(n) for n in sys.argv[2].split(",")] if len(sys.argv) > 2 else [1, 2, 4, 8]
print(json.dumps({"audio_s": len(audio) / vad.SAMPLE_RATE, "cpus": os.cpu_count(),
                  "affinity": len(os.sched_getaffinity(0))}), flush=True)
ref = None
for label, model in [("whole", vad.SileroVAD(split=False, threads=1))] + [
        (f"cut, {n} threads", vad.SileroVAD(threads=n)) for n in counts]:
    times = []
    for _ in range(3):
        t = time.perf_counter()
        probs = model(audio)
        times.append(time.perf_counter() - t)
    ref = probs if ref is None else ref
    print(json.dumps({"model": label, "cut": model.lstm is not None, "best_s": round(min(times), 4),
                      "runs_s": [round(x, 4) for x in times], "same_as_whole": bool(np.array_equal(probs, ref))}),
          flush=True)
