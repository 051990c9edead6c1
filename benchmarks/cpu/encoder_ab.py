"""Seconds for one 30 s window through the fast engine's encoder (Engine.encode, as a
transcription runs it), tiny.en fp32, JFK: run once per tree with PYTHONPATH=TREE, trees
alternated (benchmarks/cpu/profile.md §7).

    WHISPERFAST_BLAS=... PYTHONPATH=TREE python benchmarks/cpu/encoder_ab.py MODEL   (one JSON line)"""
import json, statistics, sys, time
import whisperfast
import mlx.core as mx
from whisperfast.audio import first_window_mel
from whisperfast.pipeline import load, rewritten
name = sys.argv[1]
fused = rewritten(load(name, dtype=mx.float32))
engine = fused.engine()
mel = first_window_mel(__import__("pathlib").Path(__file__).resolve().parents[2] / "samples" / "jfk.wav")[0]
mx.eval(engine.encode(mel))
ts = []
for _ in range(5):
    t = time.perf_counter(); mx.eval(engine.encode(mel)); ts.append(time.perf_counter() - t)
print(json.dumps({"tree": whisperfast.__file__, "median": round(statistics.median(ts), 4), "runs": [round(x, 4) for x in ts]}))
