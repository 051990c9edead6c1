"""Issue 17's GPU rows: decode ms/token of the fused lane, 8-bit and 4-bit against float, for
tiny.en and base (real weights) and large-v3-turbo's shapes (seeded random weights, built as
tests/test_large_shapes.py builds them), with the stock lane of each beside it. Greedy at
temperature 0 without conditioning (the random model's text would fall back to sampling, whose
windows run on the stock model in fp16), JFK, fp16. In one process: per (model, bits) the stock
and fused lanes alternate run by run after a warm-up; medians.

    python benchmarks/quant_gpu.py OUT_DIR [RUNS] [MODELS] [LANES]
        (a CUDA machine; MODELS a comma-separated subset of tiny.en,base,large-v3-turbo-random;
        LANES stock,fused (the default) or fused alone, for A/B rounds of two trees' kernels;
        prints a JSON line per (model, bits) and a summary line per model; writes
        OUT_DIR/quant_gpu.json)"""

import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import whisperfast  # noqa: E402,F401  (BLAS preload)

import mlx.core as mx  # noqa: E402

from tests.test_large_shapes import random_model  # noqa: E402
from whisperfast.pipeline import TranscribeOptions, load, rewritten, transcribe  # noqa: E402

out = Path(sys.argv[1])
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
wanted = sys.argv[3].split(",") if len(sys.argv) > 3 else ["tiny.en", "base", "large-v3-turbo-random"]
lane_names = sys.argv[4].split(",") if len(sys.argv) > 4 else ["stock", "fused"]
out.mkdir(parents=True, exist_ok=True)
options = TranscribeOptions(language="en", temperature=(0.0,), condition_on_previous_text=False)
audio = "samples/jfk.wav"
rows = []
with tempfile.TemporaryDirectory() as tmp:
    turbo = random_model(Path(tmp), "large-v3-turbo") if "large-v3-turbo-random" in wanted else None
    for name, model in (("tiny.en", "tiny.en"), ("base", "base"), ("large-v3-turbo-random", str(turbo))):
        if name not in wanted:
            continue
        per_token = {}
        for bits in (None, 8, 4):
            stock = load(model, dtype=mx.float16, quantize=bits)
            lanes = {lane: stock if lane == "stock" else rewritten(stock) for lane in lane_names}
            times = {lane: [] for lane in lanes}
            tokens = {}
            for lane, m in lanes.items():  # warm-up
                tokens[lane] = transcribe(m, audio, options).tokens
            for _ in range(runs):
                for lane, m in lanes.items():
                    t = transcribe(m, audio, options).timings
                    times[lane].append((t.decode / max(t.tokens, 1) * 1e3, t.total * 1e3))
            row = {"model": name, "bits": bits or "float", "runs": runs,
                   "same_tokens": tokens["fused"] == tokens["stock"] if "stock" in tokens else None,
                   "tokens": len(tokens["fused"]),
                   "kernel_notes": [n for n in lanes["fused"].rewrites["notes"] if "quantized" in n]}
            for lane in lanes:
                row[lane] = {"decode_ms_per_token": round(statistics.median(x for x, _ in times[lane]), 4),
                             "total_ms": round(statistics.median(y for _, y in times[lane]), 2)}
            per_token[bits or "float"] = row["fused"]["decode_ms_per_token"]
            rows.append(row)
            print(json.dumps(row), flush=True)
            del lanes, stock
        summary = {"model": name, "fused_ms_per_token": per_token,
                   "vs_float": {b: round(v / per_token["float"], 3) for b, v in per_token.items()}}
        rows.append(summary)
        print(json.dumps(summary), flush=True)
(out / "quant_gpu.json").write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=1))
