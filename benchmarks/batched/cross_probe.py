"""Every decoder layer's cross-attention keys and values (plus the keys packed for the decode
step's chains) for B windows of real features: MLX's ops (WhisperAttention.cross_kv, then
wf_pack_heads, as before session 31) against the one C call (decode/cpu_encoder.py's
NativeCross, which packs as it writes), alternated, medians. JSON lines to stdout.

    .venv/bin/python benchmarks/batched/cross_probe.py [--model tiny.en] [--rows 1 4 8] [--runs 7]
"""

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

from whisperfast.audio import first_window_mel  # noqa: E402
from whisperfast.decode.cpu_encoder import native_cross  # noqa: E402
from whisperfast.decode.encoder import encode  # noqa: E402
from whisperfast.pipeline import load, rewritten  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--rows", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    whisper = rewritten(load(args.model, dtype=mx.float32)).whisper
    blocks, native = whisper.decoder.blocks, native_cross(whisper.decoder)
    kernels = native.kernels
    feats = encode(whisper, first_window_mel(ROOT / "samples" / "jfk.wav", mx.float32))

    def mlx_ops(xa):
        made = [b.cross_attn.cross_kv(xa) for b in blocks]
        mx.eval(made)
        return made, [kernels.pack_heads(k) for k, _ in made]

    def c_call(xa):
        made = native(xa)
        return made, native.take_packed([k for k, _ in made])

    for rows in args.rows:
        xa = mx.concatenate([feats] * rows)
        mx.eval(xa)
        (a, pa), (b, pb) = mlx_ops(xa), c_call(xa)  # first calls, untimed; and the same bits
        same = all(np.array_equal(np.asarray(x), np.asarray(y)) for p, q in zip(a, b) for x, y in zip(p, q)) and \
            all(np.array_equal(x, y) for x, y in zip(pa, pb))
        times = {"mlx": [], "c": []}
        for _ in range(args.runs):
            for lane, fn in (("mlx", mlx_ops), ("c", c_call)):
                t = time.perf_counter()
                fn(xa)
                times[lane].append(time.perf_counter() - t)
        ms = {k: round(1e3 * statistics.median(v), 1) for k, v in times.items()}
        print(json.dumps({"model": args.model, "rows": rows, "same_bits": same, "mlx_ms": ms["mlx"], "c_ms": ms["c"],
                          "ratio": round(ms["mlx"] / ms["c"], 2)}), flush=True)


if __name__ == "__main__":
    main()
