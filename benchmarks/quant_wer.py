"""Issue 17's accuracy check: WER against the human references in samples/manifest.tsv for
float and `--quantize 8|4` models, on the CPU, over the English samples.

    .venv/bin/python benchmarks/quant_wer.py --out benchmarks/quant/wer.json [--models tiny.en,base]

WER is pooled: word edits over all samples / reference words over all samples
(tests/text.py's error_rate normalization, per sample, then summed), so a 9-word sample
weighs less than a 36-word one. Each model's quantized variants come from whisperfast's cache
(made on the first run). Transcription: default options (greedy, the temperature fallback,
seed 0), stock lane; issue 17's equality check (fused == stock tokens) is tests/test_quantize.py's.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import whisperfast  # noqa: F401  (BLAS preload before mlx)

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
from mlx.utils import tree_map_with_path  # noqa: E402

from whisperfast import runtime  # noqa: E402
from whisperfast.audio import load_audio  # noqa: E402
from whisperfast.pipeline import TranscribeOptions, load, transcribe  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests/text.py: the WER the tests use
from tests.text import error_rate, units  # noqa: E402

SAMPLES = ROOT / "samples"
PRECISIONS = (None, 8, 4)  # float, 8-bit, 4-bit


def dequantized(whisper: nn.Module) -> None:
    """Every quantized layer replaced by a float one holding its dequantized weights: the model's
    values exactly, with BLAS matmuls instead of MLX's CPU quantized kernel (the sums' order differs)."""
    def swap(path, m):
        if isinstance(m, nn.QuantizedLinear):
            f = nn.Linear(1, 1, bias="bias" in m)
        elif isinstance(m, nn.QuantizedEmbedding):
            f = nn.Embedding(1, 1)
        else:
            return m
        f.weight = mx.dequantize(m.weight, m.scales, m.biases, m.group_size, m.bits).astype(m.scales.dtype)
        if "bias" in m:
            f.bias = m.bias
        return f

    whisper.update_modules(tree_map_with_path(swap, whisper.leaf_modules(), is_leaf=nn.Module.is_module))
    mx.eval(whisper.parameters())


def english_samples() -> list[dict]:
    with open(SAMPLES / "manifest.tsv", newline="", encoding="utf-8") as f:
        return [r for r in csv.DictReader(f, delimiter="\t") if r["language"] == "en"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="tiny.en,base")
    ap.add_argument("--dtypes", default="float32,float16")
    ap.add_argument("--group-size", type=int, default=64)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--simulate", action="store_true",
                    help="run each quantized model on its dequantized weights (same values, float matmuls): "
                         "on the CPU MLX's quantized matmuls are ~7x slower than BLAS")
    args = ap.parse_args()
    if args.out.exists():
        sys.exit(f"{args.out} exists; not overwriting it")
    rows = english_samples()
    audio = {r["file"]: load_audio(SAMPLES / r["file"]) for r in rows}
    results, info = [], runtime.info()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # dtype outermost: every model's float32 rows first (the CPU's compute dtype), then float16
    for dtype_name in args.dtypes.split(","):
        for name in args.models.split(","):
            for bits in PRECISIONS:
                model = load(name, dtype=getattr(mx, dtype_name), quantize=bits, group_size=args.group_size)
                if bits is not None and args.simulate:
                    dequantized(model.whisper)
                per, errs, words, t0 = [], 0, 0, time.perf_counter()
                for r in rows:
                    t = transcribe(model, audio[r["file"]], TranscribeOptions(language="en"))
                    n = len(units(r["reference_transcript"]))
                    e = round(error_rate(r["reference_transcript"], t.text) * n)  # edits: the rate times the length
                    errs, words = errs + e, words + n
                    per.append({"file": r["file"], "words": n, "edits": e, "wer": e / n, "text": t.text,
                                "sampled_windows": t.sampled_windows})
                res = {"model": name, "dtype": dtype_name, "bits": bits, "group_size": args.group_size if bits else None,
                       "matmuls": "dequantized" if bits is not None and args.simulate else "quantized" if bits else "float",
                       "wer": errs / words, "edits": errs, "words": words, "seconds": time.perf_counter() - t0, "samples": per}
                results.append(res)
                print(f"{name:8} {dtype_name:8} {('float' if bits is None else f'{bits}-bit'):6} WER {100 * res['wer']:5.2f}%"
                      f" ({errs}/{words})  {res['seconds']:.0f} s", flush=True)
                # after every row, so a run cut short keeps what it measured; only this run's
                # own file is replaced (a file there before the run was refused above)
                tmp = args.out.with_suffix(".partial")
                tmp.write_text(json.dumps({"device": info["device"], "mlx": info["mlx"], "blas": info["blas"]["blas"],
                                           "results": results}, indent=1), encoding="utf-8")
                os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
