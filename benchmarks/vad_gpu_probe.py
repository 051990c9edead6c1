"""Silero VAD on the GPU (silero.py, the LSTM in one launch) against onnxruntime on the host,
over long audio streamed as batched mode streams it: seconds (best of RUNS), the largest
difference of the probabilities, and whether both give the same speech pieces; then the fused
LSTM kernel alone. One JSON line per measurement.

    python benchmarks/vad_gpu_probe.py AUDIO [AUDIO ...] [--runs N]   (a CUDA machine)"""

import argparse
import json
import time

import whisperfast  # noqa: F401  (BLAS preload)

import mlx.core as mx
import numpy as np

from whisperfast import silero_cuda, vad
from whisperfast.audio import load_audio
from whisperfast.kernels import lstm

parser = argparse.ArgumentParser()
parser.add_argument("audio", nargs="+")
parser.add_argument("--runs", type=int, default=3)
args = parser.parse_args()


def streamed(model, audio, block=30 * 16000):
    """Probabilities as the Chunker gets them: blocks of 30 s, as AudioReader gives them."""
    stream = model.stream()
    out = [stream(audio[i : i + block]) for i in range(0, len(audio), block)]
    return np.concatenate(out + [stream.finish()])


def best(model, audio, runs):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        probs = streamed(model, audio)
        times.append(time.perf_counter() - t)
    return probs, min(times), times


gpu, host = vad.SileroVAD(net=True), vad.SileroVAD(net=False, host=False)  # onnxruntime's convolutions
streamed(gpu, np.zeros(16000 * 70, np.float32))  # the kernel's first launch, the graphs' first shapes
for path in args.audio:
    audio = load_audio(path)
    seconds = len(audio) / 16000
    want, host_s, host_all = best(host, audio, 1 if seconds > 1000 else min(args.runs, 2))
    got, gpu_s, gpu_all = best(gpu, audio, args.runs)
    same = {name: vad.get_speech_timestamps(audio, o, probs=got) == vad.get_speech_timestamps(audio, o, probs=want)
            for name, o in (("batched", vad.BATCHED_VAD), ("sequential", vad.VadOptions()))}
    print(json.dumps(dict(audio=path, seconds=seconds, frames=len(want), onnxruntime_s=host_s, onnxruntime_runs=host_all,
                          gpu_s=gpu_s, gpu_runs=gpu_all, speedup=host_s / gpu_s,
                          max_abs_diff=float(np.abs(got - want).max()), same_pieces=same,
                          threads=host.threads, group_frames=gpu.group)), flush=True)

# one group's parts: the frames' kernel, the probabilities on the device, start() with its copies
net = gpu.net
group = load_audio(args.audio[0])[: 2048 * vad.FRAME]
frames, _ = vad.model_frames(group, np.zeros(vad.CONTEXT, np.float32))
h0 = c0 = mx.zeros((lstm.HIDDEN,))
for label, fn in (("input_projection", lambda f: silero_cuda.input_projection(f, net.cuda_weights)),
                  ("probabilities", lambda f: net.probabilities(f, h0, c0)[0])):
    fx = mx.array(frames)
    mx.eval(fn(fx))
    times = []
    for _ in range(5):
        t = time.perf_counter()
        mx.eval(fn(fx))
        times.append(time.perf_counter() - t)
    print(json.dumps(dict(part=label, frames=2048, best_s=min(times))), flush=True)
times = []
for _ in range(5):
    t = time.perf_counter()
    np.asarray(net.start(group, np.zeros(vad.CONTEXT, np.float32), h0, c0)[0])
    times.append(time.perf_counter() - t)
print(json.dumps(dict(part="start (numpy in and out)", frames=2048, best_s=min(times))), flush=True)

rng = np.random.default_rng(0)
cases = [(2048, 1, lstm.REG), (18750, 1, lstm.REG), (18750, 1, 64)] + [(18750, cl, None) for cl in (2, 4, 8)]
for steps, cluster, reg in cases:
    xw = mx.array(rng.normal(0, 1, (steps, 4 * lstm.HIDDEN)).astype(np.float32))
    r = mx.array(rng.normal(0, 0.15, (4 * lstm.HIDDEN, lstm.HIDDEN)).astype(np.float32))
    h = c = mx.zeros((lstm.HIDDEN,))
    ri = lstm.interleaved(r)
    one = lstm.lstm_fused(xw, r, h, c, ri, cluster=1)
    mx.eval(xw, r, ri, *one, *lstm.lstm_fused(xw, r, h, c, ri, reg, cluster))
    times = []
    for _ in range(5):
        t = time.perf_counter()
        got = lstm.lstm_fused(xw, r, h, c, ri, reg, cluster)
        mx.eval(*got)
        times.append(time.perf_counter() - t)
    same = all(np.array_equal(np.array(a), np.array(b)) for a, b in zip(got, one))
    print(json.dumps(dict(kernel="lstm_fused", steps=steps, cluster=cluster, reg=reg, best_s=min(times),
                          us_per_step=min(times) / steps * 1e6, bits_of_one_block=same)), flush=True)
