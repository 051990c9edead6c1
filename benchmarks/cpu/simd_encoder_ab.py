"""The fast engine's CPU encoder on JFK's first window with kernels/cpu_simd's softmax and GELU
and without them (WHISPERFAST_CPU_SIMD=1 / 0, alternated in one process, 3 rounds, best of 3
each): milliseconds a window. The outputs are the same bits either way
(tests/test_streams.py::test_cpu_encoder_is_stock_bit_for_bit).

Usage: python benchmarks/cpu/simd_encoder_ab.py [MODEL]"""

import json
import os
import sys
import time

import whisperfast  # noqa: F401  (the BLAS preload, before mlx)

import mlx.core as mx

from whisperfast import config
from whisperfast.audio import first_window_mel
from whisperfast.decode.encoder import encode
from whisperfast.kernels import cpu_simd
from whisperfast.pipeline import load

name = sys.argv[1] if len(sys.argv) > 1 else "tiny.en"
model = load(name, fast=True)
mel = first_window_mel("samples/jfk.wav", mx.float32)
best = {"simd": [], "mlx ops": []}
for _ in range(3):
    for lane, knob in (("mlx ops", "0"), ("simd", "1")):
        os.environ["WHISPERFAST_CPU_SIMD"] = knob
        config.reload()
        times = []
        for _ in range(3):
            t = time.perf_counter()
            mx.eval(encode(model.whisper, mel))
            times.append(time.perf_counter() - t)
        best[lane].append(round(min(times) * 1000, 1))
print(json.dumps({"model": name, "ms_a_window": best, "cpu_kernels": cpu_simd.loaded(config.config().cache / "kernels").describe()}))
