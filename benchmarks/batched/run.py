"""Batched (--batch-size N, VAD on) against sequential on the ~115 s clip of real speech
(tests/test_transcribe.py::long_clip(115)): wall seconds per transcription, audio-seconds per
second, and WER against the clip's reference text. Lanes alternate run by run; one warm-up
transcription of JFK first, then --warmup untimed runs of each lane on the clip (default 1:
batched mode's first decode in a process checks its C step against MLX's and each row count's
products, as sequential mode's first window does on JFK). Writes JSON to stdout.

    .venv/bin/python benchmarks/batched/run.py --runs 3 [--fast] > benchmarks/batched/cpu.json
"""

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import whisperfast  # noqa: E402,F401  (BLAS before mlx)
import mlx.core as mx  # noqa: E402

from tests.test_transcribe import long_clip  # noqa: E402
from whisperfast import runtime  # noqa: E402
from whisperfast.batched import BatchOptions, transcribe_batched  # noqa: E402
from whisperfast.pipeline import load, rewritten, transcribe  # noqa: E402
from tests.text import error_rate  # noqa: E402


def setup():
    """The command line (--seconds, --batch-size, --runs, --model, --fast, --dtype), the model (warmed
    up on JFK) and the clip with its reference: shared with profile.py."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=115.0)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs of each lane on the clip first")
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--fast", action="store_true")
    ap.add_argument("--dtype", choices=("float32", "float16"), default="float32")
    args = ap.parse_args()
    model = load(args.model, dtype=getattr(mx, args.dtype))
    if args.fast:
        model = rewritten(model)
    audio, reference = long_clip(args.seconds)
    transcribe(model, ROOT / "samples" / "jfk.wav")  # warm-up
    return args, model, audio, reference


def main():
    args, model, audio, reference = setup()
    lanes = {"sequential": lambda: transcribe(model, audio),
             f"batched-{args.batch_size}": lambda: transcribe_batched(model, [audio], batch=BatchOptions(args.batch_size))[0]}
    walls = {k: [] for k in lanes}
    texts = {}
    for _ in range(args.warmup):
        for run in lanes.values():
            run()
    for _ in range(args.runs):
        for name, run in lanes.items():
            t0 = time.perf_counter()
            t = run()
            walls[name].append(time.perf_counter() - t0)
            texts[name] = t
            print(name, round(walls[name][-1], 2), file=sys.stderr)
    out = {"model": args.model, "dtype": args.dtype, "lane": "fused" if args.fast else "stock",
           "device": runtime.device_name(), "machine": platform.processor() or platform.machine(),
           "audio_seconds": args.seconds, "batch_size": args.batch_size, "runs": args.runs, "warmup": args.warmup,
           "lanes": {}}
    for name, ws in walls.items():
        t = texts[name]
        out["lanes"][name] = {"wall_s": ws, "median_s": statistics.median(ws),
                              "audio_s_per_s": args.seconds / statistics.median(ws),
                              "wer": error_rate(reference, t.text), "windows": t.windows,
                              "sampled_windows": t.sampled_windows, "timings": {k: getattr(t.timings, k) for k in
                                                                                 ("vad", "mel", "encode", "decode", "total")}}
    seq, bat = (out["lanes"][k]["median_s"] for k in walls)
    out["speedup"] = seq / bat
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
