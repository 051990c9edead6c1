"""What a block of samples costs on its way to a CUDA device: MLX's own copy (managed memory,
pinned.to_device) against kernels/pinned.py (a pinned buffer a kernel reads in place).

600 s of audio as batched mode reads it, 60 blocks of 10 s, each put on the device and one op
run on it (its sum, as the VAD's group join reads a block), queued as the Chunker queues them,
then everything evaluated. One JSON line a case: the host's time for the whole 600 s (median
of 9 after one warm-up), µs a block, and whether every block's values equal MLX's copy's.
Cases: MLX's copy; pinned; pinned with no op after it (`bare`); the pinned buffers' host copies alone (`memmove`), and
the seconds the host waited for a buffer (`waited_ms`, over every run). Also what making and
closing a PinnedUpload costs.

    python3 benchmarks/batched/pinned_probe.py"""

import ctypes
import json
import statistics
import time

import whisperfast  # noqa: F401

import mlx.core as mx
import numpy as np

from whisperfast.batched import PINNED_BYTES
from whisperfast.kernels.pinned import PinnedUpload, to_device

BLOCK, BLOCKS = 160_000, 60


def run(upload, blocks, op: bool = True) -> float:
    t = time.perf_counter()
    outs = []
    for b in blocks:
        x = upload(b)
        if op:
            x = mx.sum(x)
            mx.async_eval(x)
        outs.append(x)
    mx.eval(outs)
    return time.perf_counter() - t


def main() -> None:
    print(json.dumps({"device": str(mx.default_device()), "mlx": mx.__version__}), flush=True)
    rng = np.random.default_rng(0)
    t = []
    for _ in range(10):
        t0 = time.perf_counter()
        stage = PinnedUpload.make(PINNED_BYTES)
        t1 = time.perf_counter()
        stage.close()
        t.append((t1 - t0, time.perf_counter() - t1))
    print(json.dumps({"case": "make_close", "make_ms": round(statistics.median(a for a, _ in t) * 1e3, 3),
                      "close_ms": round(statistics.median(b for _, b in t) * 1e3, 3)}), flush=True)
    stage = PinnedUpload.make(PINNED_BYTES)
    for dtype in (np.int16, np.float32):
        blocks = [(rng.integers(-20000, 20000, BLOCK).astype(np.int16) if dtype == np.int16
                   else (rng.standard_normal(BLOCK) * 0.1).astype(np.float32)) for _ in range(BLOCKS)]
        same = all(np.array_equal(np.array(stage(b)), np.array(to_device(b))) for b in blocks[:8])
        cases = (("mlx_copy", to_device, True), ("pinned", stage, True), ("bare", stage, False))
        for name, fn, op in cases + cases:
            stage.waited = 0.0
            run(fn, blocks, op)
            ts = [run(fn, blocks, op) for _ in range(9)]
            med = statistics.median(ts)
            print(json.dumps({"case": name, "dtype": np.dtype(dtype).name, "ms_600s": round(med * 1e3, 2),
                              "us_block": round(med / BLOCKS * 1e6, 1), "min_ms": round(min(ts) * 1e3, 2),
                              "waited_ms": round(stage.waited * 1e3, 2), "same_values": same}), flush=True)
        ts = []
        for _ in range(9):
            t0 = time.perf_counter()
            for k, b in enumerate(blocks):
                ctypes.memmove(stage.pointers[k % len(stage.pointers)], b.ctypes.data, b.nbytes)
            ts.append(time.perf_counter() - t0)
        print(json.dumps({"case": "memmove", "dtype": np.dtype(dtype).name,
                          "ms_600s": round(statistics.median(ts) * 1e3, 2)}), flush=True)
    stage.close()


if __name__ == "__main__":
    main()
