"""Registers and spills of the decode-step kernel per row count: ptxas's own report (NVRTC
with --ptxas-options=-v) for the exact source MLX compiles, for B = 1, 2, 3, 5, 8 rows.

Why: a step costs ~150 µs per row at any B on the H200 (benchmarks/h200-engine/final/
rows_step.txt), where the weights are read once per group of 3 rows; a kernel limited to 128
registers a thread (512 threads, one block per SM) that spills to local memory would explain it.

    python benchmarks/ptxas_report.py [MODEL] [DTYPE]  (a CUDA machine; prints one line per B)"""

import sys

import whisperfast  # noqa: F401  (BLAS preload)

import mlx.core as mx
from mlx_whisper.decoding import DecodingOptions

from whisperfast.audio import first_window_mel
from whisperfast.decode.task import StaticCacheTask
from whisperfast.kernels import cuda_cache
from whisperfast.pipeline import load
from whisperfast.runtime import parse_dtype

args = sys.argv[1:]
name, dtype = args[0] if args else "tiny.en", args[1] if len(args) > 1 else "float16"
model = load(name, dtype=parse_dtype(dtype), fast=True)
seen = []
get = cuda_cache.KernelCache.get


def capture(self, source, options, headers, names):
    seen.append((source, list(options), headers, list(names)))
    return get(self, source, options, headers, names)


cuda_cache.KernelCache.get = capture  # a probe: records what the kernel cache is asked to build
features = model.whisper.encoder(first_window_mel("samples/jfk.wav", parse_dtype(dtype)))
for rows in (1, 2, 3, 5, 8):
    before = len(seen)
    StaticCacheTask(model.whisper, DecodingOptions(language="en", fp16=dtype == "float16")).run(mx.repeat(features, rows, 0))
    compiler = cuda_cache.Compiler()
    for source, options, headers, names in seen[before:]:
        if "decode_step" not in names[0]:
            continue
        compiler.nvrtc.compile(source, options + ["--ptxas-options=-v"], headers, names)
        lines = [line.strip() for line in compiler.nvrtc.last_log.splitlines() if "registers" in line or "spill" in line]
        print(f"B={rows}: " + " | ".join(lines), flush=True)
