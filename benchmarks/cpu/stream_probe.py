"""What a CPU decode step's streamed reads cost in the library's kernels (kernels/cpu_products.c),
one thread, on random data of tiny.en's shapes: the vocabulary's product (51864 x 384 float16
panels, wf_panel_rows) at 1, 4 and 8 rows, from cache and after a 600 MB write that evicts it;
and one cross-attention head (1500 keys x 64), its scores on packed keys (wf_panels_part) and
its weighted values (wf_chain_vt), in float32 and float16, over 192 heads (8 rows x 4 layers x
6 heads, ~74 MB a pass in float32). Medians of --runs; one JSON line a measurement.

    .venv/bin/python benchmarks/cpu/stream_probe.py [--runs 7]
"""

import argparse
import ctypes
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import whisperfast  # noqa: E402,F401  (BLAS before mlx)
import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402

from whisperfast.kernels import cpu_simd  # noqa: E402

_P, _L = ctypes.c_void_p, ctypes.c_long


def timed(fn, runs: int, before=None) -> float:
    times = []
    for _ in range(runs):
        if before is not None:
            before()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    kernels = cpu_simd.chosen(mx.float32)
    if kernels is None:
        sys.exit("Error: the library's kernels are not available here")
    lib = kernels.lib
    lib.wf_panel_rows.argtypes = [_P, _P, ctypes.c_int, _P, _P, _L, _L, _L, _L, _L]
    lib.wf_panels_part.argtypes = [_P, _P, ctypes.c_int, _P, _P, _L, _L, _L, _L]
    lib.wf_chain_vt.argtypes = lib.wf_chain_vt_half.argtypes = [_P, _P, _P, _L, _L]
    rng = np.random.default_rng(0)
    panel = lib.wf_panel_size()

    vocab, width = 51864, 384
    panels = -(-vocab // panel)
    weight = (rng.random(panels * panel * width, np.float32) - 0.5).astype(np.float16)
    big = np.ones(150_000_000, np.float32)

    def evict():
        big[::16] += 1  # a write over every cache line of 600 MB

    for rows in (1, 4, 8):
        x, y = rng.random((rows, width), np.float32), np.empty((rows, vocab), np.float32)
        run = lambda: lib.wf_panel_rows(x.ctypes.data, weight.ctypes.data, cpu_simd.PANELS_F16, None,  # noqa: E731
                                        y.ctypes.data, rows, 0, panels, vocab, width)
        for where, before in (("cache", None), ("memory", evict)):
            s = timed(run, args.runs, before)
            print(json.dumps({"op": "vocabulary", "rows": rows, "from": where, "ms": round(s * 1e3, 3),
                              "gb_per_s": round(weight.nbytes / s / 1e9, 1)}))

    T, hd, heads = 1500, 64, 192
    values = rng.random((heads, T, hd), np.float32)
    keys = rng.random((heads, -(-T // panel) * panel * hd), np.float32)
    p = rng.random(T, np.float32)
    p /= p.sum()
    q, scores, out = rng.random(hd, np.float32), np.empty(T, np.float32), np.empty(hd, np.float32)
    for half in (False, True):
        v, k = (values.astype(np.float16), keys.astype(np.float16)) if half else (values, keys)
        chain = lib.wf_chain_vt_half if half else lib.wf_chain_vt
        form = cpu_simd.PANELS_F16 if half else cpu_simd.PANELS_F32

        def head_values():
            for h in range(heads):
                chain(p.ctypes.data, v[h].ctypes.data, out.ctypes.data, T, hd)

        def head_scores():
            for h in range(heads):
                lib.wf_panels_part(q.ctypes.data, k[h].ctypes.data, form, None, scores.ctypes.data, T, hd, 0,
                                   -(-T // panel))

        for op, fn, arr in (("cross values", head_values, v), ("cross scores", head_scores, k)):
            s = timed(fn, args.runs, evict)
            print(json.dumps({"op": op, "dtype": "float16" if half else "float32", "us_per_head": round(s / heads * 1e6, 1),
                              "gb_per_s": round(arr.nbytes / s / 1e9, 1)}))


if __name__ == "__main__":
    main()
