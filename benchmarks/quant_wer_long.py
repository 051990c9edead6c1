"""Issue 17's accuracy check on a long clip: WER of float and `--quantize 8|4` models on
tests/test_transcribe.py's long clip of real speech (the English samples back to back with
0.6 s gaps), on the CPU.

    WHISPERFAST_BLAS=/lib/x86_64-linux-gnu/libopenblas.so.0 \
        .venv/bin/python benchmarks/quant_wer_long.py --simulate --seconds 600 \
        --out benchmarks/quant/wer-long.json [--models tiny.en,base]

`long_clip(seconds)` cuts the audio at `seconds` but its reference holds the whole text of
every sample it started, the one cut short included. By default (`--whole-samples`) the clip
is cut back to the start of that last sample instead (it then ends on the previous sample's
gap), and the reference is the text of the whole samples the audio holds, so no reference
word is missing from the audio. `--no-whole-samples` scores long_clip as it is.

One transcription of the whole clip per model and precision, default options (greedy, the
temperature fallback, seed 0), `language="en"`, stock lane; WER over the whole text after
tests/text.py's normalization. `sampled_windows`: windows decoded again at temperature > 0.
`--simulate`: as benchmarks/quant_wer.py's (dequantized weights, float matmuls).

A window that falls back samples at temperature > 0, and the draw decides its text: one seed's
WER is one draw. `--seed N` (default 0) seeds the transcription, but only the first one in a
process: mlx-whisper's compiled `categorical` keeps the noise its first trace drew (one per
shape and temperature, benchmarks/h200-session8/), so later seeds in the same process draw the
same numbers. Run one process per seed for several draws. `--temperature 0` turns the fallback off
(every window greedy: the transcript then follows from the weights alone); `--lane fused`
runs `--fast` (on the CPU: stock's float tokens, and a quantized model's layers dequantized
once at load, the values `--simulate` gives; several times faster than the stock lane).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import whisperfast  # noqa: F401  (BLAS preload before mlx)

import mlx.core as mx  # noqa: E402

from whisperfast import runtime  # noqa: E402
from whisperfast.audio import SAMPLE_RATE  # noqa: E402
from whisperfast.pipeline import TranscribeOptions, load, rewritten, transcribe  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests/: the clip and the WER the tests use
sys.path.insert(0, str(ROOT / "benchmarks"))
from quant_wer import dequantized  # noqa: E402
from tests.test_transcribe import clip_parts, long_clip  # noqa: E402
from tests.text import error_rate, units  # noqa: E402


def clip(seconds: float, whole: bool) -> tuple:
    """(audio, reference, description) of long_clip(seconds), cut back to whole samples if `whole`."""
    audio, ref = long_clip(seconds)
    parts = clip_parts(seconds)
    desc = {"long_clip_seconds": seconds, "parts": len(parts), "whole_samples": whole}
    row, a, start = parts[-1]
    if whole and start + len(a) / SAMPLE_RATE > seconds:
        audio = audio[: int(round(start * SAMPLE_RATE))]
        ref = " ".join(r["reference_transcript"] for r, _, _ in parts[:-1])
        desc.update(parts=len(parts) - 1, dropped_part=row["file"], dropped_part_seconds_in_clip=seconds - start)
    desc.update(seconds=len(audio) / SAMPLE_RATE, reference_words=len(units(ref)))
    return audio, ref, desc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="tiny.en,base")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--whole-samples", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--group-size", type=int, default=64)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--simulate", action="store_true",
                    help="run each quantized model on its dequantized weights (same values, float matmuls)")
    ap.add_argument("--seed", type=int, default=0, help="the seed (its draws hold for the process's first transcription)")
    ap.add_argument("--temperature", choices=["fallback", "0"], default="fallback")
    ap.add_argument("--lane", choices=["stock", "fused"], default="stock")
    ap.add_argument("--bits", default="float,8,4", help="comma-separated precisions: float, 8, 4")
    args = ap.parse_args()
    precisions = [None if b == "float" else int(b) for b in args.bits.split(",")]
    options = {} if args.temperature == "fallback" else {"temperature": (0.0,)}
    if args.out.exists():
        sys.exit(f"{args.out} exists; not overwriting it")
    audio, ref, desc = clip(args.seconds, args.whole_samples)
    n = desc["reference_words"]
    print(json.dumps(desc), flush=True)
    results, info = [], runtime.info()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name in args.models.split(","):
        for bits in precisions:
            model = load(name, dtype=getattr(mx, args.dtype), quantize=bits, group_size=args.group_size)
            if bits is not None and args.simulate:
                dequantized(model.whisper)
            if args.lane == "fused":
                model = rewritten(model)
            seed = args.seed
            t0 = time.perf_counter()
            t = transcribe(model, audio, TranscribeOptions(language="en", seed=seed, **options))
            e = round(error_rate(ref, t.text) * n)  # edits: the rate times the length
            res = {"model": name, "dtype": args.dtype, "bits": bits, "group_size": args.group_size if bits else None,
                   "matmuls": "dequantized" if bits is not None and (args.simulate or args.lane == "fused")
                   else "quantized" if bits else "float", "lane": args.lane, "seed": seed,
                   "temperature": args.temperature, "wer": e / n, "edits": e, "words": n,
                   "hyp_words": len(units(t.text)), "windows": t.windows, "sampled_windows": t.sampled_windows,
                   "seconds": time.perf_counter() - t0, "text": t.text}
            results.append(res)
            print(f"{name:8} {('float' if bits is None else f'{bits}-bit'):6} seed {seed} WER {100 * res['wer']:5.2f}% "
                  f"({e}/{n})  sampled {t.sampled_windows}/{t.windows} windows  {res['seconds']:.0f} s", flush=True)
            # after every row, so a run cut short keeps what it measured
            tmp = args.out.with_suffix(".partial")
            tmp.write_text(json.dumps({"device": info["device"], "mlx": info["mlx"], "blas": info["blas"]["blas"],
                                       "clip": desc, "reference": ref, "results": results}, indent=1), encoding="utf-8")
            os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
