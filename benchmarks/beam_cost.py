"""What beam search costs against greedy decoding: one JFK window through
decoding.decode_window, greedy and beam 5, on the stock lane (mlx-whisper's decode; its
DecodingTask with beam search, StockBeamTask) and the fused lane (StaticCacheTask). The
encoder runs once per lane, outside the timings; each decode is warmed up once, then timed
`reps` times (median, ms).
Usage: python benchmarks/beam_cost.py [model] [dtype] [reps]   (prints one JSON object)"""

import json
import statistics
import sys
import time
from pathlib import Path

import whisperfast  # noqa: F401  (before mlx: the CPU BLAS preload)

import mlx.core as mx
from mlx_whisper.decoding import DecodingOptions

from whisperfast.audio import first_window_mel
from whisperfast.decode import decode_window
from whisperfast.pipeline import load, rewritten
from whisperfast.runtime import parse_dtype

args = sys.argv[1:] + ["tiny.en", "float32", "5"][len(sys.argv) - 1:]  # the defaults of those not given
name, dtype, reps = args[0], args[1], int(args[2])
stock = load(name, dtype=parse_dtype(dtype))
mel = first_window_mel(Path(__file__).resolve().parent.parent / "samples" / "jfk.wav").astype(parse_dtype(dtype))
fp16 = dtype == "float16"
strategies = {"greedy": DecodingOptions(language="en", fp16=fp16),
              "beam5": DecodingOptions(language="en", fp16=fp16, beam_size=5)}
report = {"device": str(mx.default_device()), "model": name, "dtype": dtype, "reps": reps, "lanes": {}}

for lane, model in (("stock", stock.whisper), ("fused", rewritten(stock).whisper)):
    features = model.encoder(mel)[0]
    mx.eval(features)
    row = {}
    for strategy, options in strategies.items():
        result = decode_window(model, features, options)  # warm-up (and the kernels' first builds)
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            result = decode_window(model, features, options)
            times.append((time.perf_counter() - t0) * 1000)
        row[strategy] = {"median_ms": round(statistics.median(times), 1), "min_ms": round(min(times), 1),
                         "tokens": len(result.tokens) + 1, "text": result.text}
    row["beam5_over_greedy"] = round(row["beam5"]["median_ms"] / row["greedy"]["median_ms"], 2)
    report["lanes"][lane] = row
report["fused_over_stock"] = {s: round(report["lanes"]["fused"][s]["median_ms"] / report["lanes"]["stock"][s]["median_ms"], 2)
                              for s in strategies}
print(json.dumps(report, indent=1))
