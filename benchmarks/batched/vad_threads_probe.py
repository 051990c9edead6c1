"""Silero VAD's time by onnxruntime thread count (issue 15: on the H200 the VAD on the host's
CPU was 1.35 s of a batched 600 s transcription of 1.65 s, on one thread). Each count runs the
whole audio through an onnxruntime session with that many intra-op threads (otherwise
`vad.SileroVAD`'s settings), streamed as batched mode streams it (`vad.ProbStream`), best of
3, and its probabilities are compared with the first count's: they must be equal, bit for bit.

    python benchmarks/batched/vad_threads_probe.py AUDIO(.wav|.npy) [MODEL.onnx] [N,N,...]"""

import json
import os
import sys
import time

import numpy as np

from whisperfast import vad


def session(threads: int, model):
    import onnxruntime

    opts = onnxruntime.SessionOptions()
    opts.inter_op_num_threads, opts.intra_op_num_threads = 1, threads
    opts.enable_cpu_mem_arena, opts.log_severity_level = False, 4
    return onnxruntime.InferenceSession(str(model or vad.model_path()), providers=["CPUExecutionProvider"],
                                        sess_options=opts)


path = sys.argv[1]
audio = np.load(path) if path.endswith(".npy") else __import__("soundfile").read(path, dtype="float32")[0]
model = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] != "-" else None
counts = [int(n) for n in sys.argv[3].split(",")] if len(sys.argv) > 3 else [1, 2, 4, 8, 16]
print(json.dumps({"audio_s": len(audio) / vad.SAMPLE_RATE, "cpus": os.cpu_count(),
                  "affinity": len(os.sched_getaffinity(0))}), flush=True)
ref = None
for n in counts:
    run, times = session(n, model), []
    for _ in range(3):
        t = time.perf_counter()
        stream = vad.ProbStream(run, 256)
        probs = np.concatenate([stream(audio), stream.finish()])
        times.append(time.perf_counter() - t)
    ref = probs if ref is None else ref
    print(json.dumps({"threads": n, "best_s": round(min(times), 4), "runs_s": [round(x, 4) for x in times],
                      "same_as_first": bool(np.array_equal(probs, ref))}), flush=True)
