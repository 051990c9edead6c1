"""Why putting samples on a CUDA device costs the host ~0.43 ms per 1.6 MB after a device op
(benchmarks/h100-session39/), where `mx.array` alone costs 0.14 ms. The first suspicion, from
MLX's CUDA allocator (mlx/backend/cuda/allocator.cpp): an array made from the host asks for
unified memory; the buffer cache may hand back a freed device buffer of the same size class,
which `move_to_unified_memory` replaces with fresh managed memory and a synchronous copy.
The H100 said otherwise (benchmarks/h100-session40/): a device op's freed output costs the
next host array nothing; what costs is managed memory's pages moving, ~0.3 ms a MB where the
host writes fresh memory (after mx.clear_cache) and ~0.45 ms a MB where the GPU reads what the
host wrote (`use`). So batched mode puts the audio there once, not less often per byte.

Cases, each for 10 s, 30 s and 65 s of float32 samples (the reader's blocks, a chunk, a GPU
VAD group), medians of 30 of the host's time to make the array and evaluate it, µs, one JSON
line each:
- `after_host`: the last buffer freed was the previous host array;
- `after_device`: a device op's output of the same size was freed just before;
- `after_device_cleared`: as after_device, then mx.clear_cache() (untimed): a fresh cudaMallocManaged;
- `after_device_other_size`: as after_device, but the host array 64 KB longer (another size class);
- `int16_after_device`: the samples as int16 (half the bytes, another class), scaled on the device;
- `use`, `use_other_size`: the host array and one op on it, evaluated, over and over (the
  op's output, freed, is the next array's buffer: the pipeline's way)."""

import json
import statistics
import time

import whisperfast  # noqa: F401

import mlx.core as mx
import numpy as np


def median_us(setup, make, runs: int = 31) -> float:
    ts = []
    for _ in range(runs):
        setup()
        t = time.perf_counter()
        a = make()
        mx.eval(a)
        ts.append(time.perf_counter() - t)
        del a
    return round(statistics.median(ts[1:]) * 1e6, 1)


def main() -> None:
    print(json.dumps({"device": str(mx.default_device()), "mlx": mx.__version__}), flush=True)
    rng = np.random.default_rng(0)
    for seconds in (10, 30, 65):
        n = seconds * 16000
        f32 = rng.standard_normal(n).astype(np.float32)
        longer = np.concatenate([f32, np.zeros(16384, np.float32)])
        i16 = (f32 * 3000).astype(np.int16)
        src = mx.array(f32)
        mx.eval(src)

        def nothing():
            pass

        def device_freed():
            d = src + 1  # a kernel's output of the same bytes, freed to the cache
            mx.eval(d)
            del d

        def device_freed_cleared():
            device_freed()
            mx.clear_cache()

        cases = {
            "after_host": (nothing, lambda: mx.array(f32)),
            "after_device": (device_freed, lambda: mx.array(f32)),
            "after_device_cleared": (device_freed_cleared, lambda: mx.array(f32)),
            "after_device_other_size": (device_freed, lambda: mx.array(longer)),
            "int16_after_device": (device_freed, lambda: mx.array(i16).astype(mx.float32) * (1 / 32768)),
            "use": (nothing, lambda: mx.array(f32) * 2),
            "use_other_size": (nothing, lambda: mx.array(longer)[:n] * 2),
        }
        row = {"seconds": seconds, "MB": round(f32.nbytes / 1e6, 2)}
        row.update({k: median_us(*v) for k, v in cases.items()})
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
