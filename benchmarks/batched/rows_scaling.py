"""How a batched decode's step time grows with its rows: JFK's encoder output repeated N times
(every row the same audio, so every row decodes the same tokens and ends together), decoded
greedily with timestamps by the engine the model has; ms per step and per row-step for each N.
One JSON line per N on stdout. With --flat, each N also on the flat step (MLX's ops: the
CUDA kernel switched off, WHISPERFAST_CUDA_STEP=0) in the same process, and the ratio.
--random NAME: tests/test_large_shapes.py's seeded random weights at NAME's shapes.

    python benchmarks/batched/rows_scaling.py [-m tiny.en] [--random large-v3-turbo] [--dtype float16]
        [--rows 1,2,4,8,16,32] [--flat]
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import whisperfast  # noqa: E402,F401  (BLAS before mlx)
import mlx.core as mx  # noqa: E402
from mlx_whisper.audio import N_FRAMES, log_mel_spectrogram, pad_or_trim  # noqa: E402
from mlx_whisper.decoding import DecodingOptions  # noqa: E402

from whisperfast import config, runtime  # noqa: E402
from whisperfast.audio import load_audio  # noqa: E402
from whisperfast.decode import decode_window, encode  # noqa: E402
from whisperfast.pipeline import load, rewritten  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-m", "--model", default="tiny.en")
    ap.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    ap.add_argument("--rows", default="1,2,4,8,16,32")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--random", help="a tests/test_large_shapes.py name: seeded random weights at its shapes")
    ap.add_argument("--flat", action="store_true", help="each row count on the flat step too")
    args = ap.parse_args()
    dtype = getattr(mx, args.dtype)
    if args.random:
        from tests.test_large_shapes import random_model

        args.model = str(random_model(Path(tempfile.mkdtemp()), args.random))
    model = rewritten(load(args.model, dtype=dtype))
    whisper = model.whisper
    mel = pad_or_trim(log_mel_spectrogram(load_audio(ROOT / "samples" / "jfk.wav"), n_mels=whisper.dims.n_mels),
                      N_FRAMES, axis=-2).astype(dtype)[None]
    features = encode(whisper, mel)
    mx.eval(features)
    options = DecodingOptions(language="en", fp16=args.dtype == "float16", temperature=0.0)

    def timed(batch):
        decode_window(whisper, batch, options)  # warm-up: kernels for this row count
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            out = decode_window(whisper, batch, options)
            times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1e3, max(len(r.tokens) for r in out) + 1, out

    for n in (int(x) for x in args.rows.split(",")):
        batch = mx.repeat(features, n, axis=0)
        mx.eval(batch)
        ms, steps, out = timed(batch)
        line = {"model": args.random or args.model, "dtype": args.dtype, "device": runtime.device_name(), "rows": n,
                "steps": steps, "ms": round(ms, 3), "ms_per_step": round(ms / steps, 4),
                "us_per_row_step": round(1e3 * ms / steps / n, 2), "same_tokens": len({tuple(r.tokens) for r in out}) == 1}
        if args.flat:
            os.environ["WHISPERFAST_CUDA_STEP"] = "0"
            config.reload()
            flat_ms, flat_steps, flat_out = timed(batch)
            del os.environ["WHISPERFAST_CUDA_STEP"]
            config.reload()
            line.update(flat_steps=flat_steps, flat_ms_per_step=round(flat_ms / flat_steps, 4),
                        flat_over_kernel=round(flat_ms / flat_steps / (ms / steps), 3),
                        flat_same_tokens=[r.tokens for r in flat_out] == [r.tokens for r in out])
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
