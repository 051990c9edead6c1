"""CPU: stock mlx-whisper as a user runs it (fp16 weights against fp32 activations, the
mlx-cpu wheel's reference BLAS) against whisperfast's CPU path (fp32, OpenBLAS), load to
text, JFK, tiny.en, each in a fresh process. Prints one JSON object."""

import json
import subprocess
import sys

STOCK = r"""
import time, json, mlx.core as mx   # mlx first: no BLAS preload, as plain mlx-whisper runs
import mlx_whisper, soundfile as sf
from whisperfast.models import _resolve
path = str(_resolve("tiny.en"))      # the converted embedded bundle, an mlx-whisper directory
audio, _ = sf.read("samples/jfk.wav", dtype="float32")
t0 = time.perf_counter()
r = mlx_whisper.transcribe(audio, path_or_hf_repo=path)   # fp16=True: mlx-whisper's default
print(json.dumps({"load_to_text_s": time.perf_counter() - t0, "text": r["text"].strip()}))
"""
OURS = r"""
import time, json, sys
from whisperfast.pipeline import load, transcribe
from whisperfast import _blas
m = load("tiny.en", fast="--fast" in sys.argv)
t = transcribe(m, "samples/jfk.wav")
print(json.dumps({"load_to_text_s": t.timings.load + t.timings.total, "load_s": t.timings.load, "total_s": t.timings.total,
                  "text": t.text, "blas": _blas.describe()["blas"], "dtype": t.dtype}))
"""
out = {}
lanes = (("stock mlx-whisper (fp16 weights, reference BLAS)", STOCK, []), ("whisperfast (fp32, optimized BLAS)", OURS, []),
         ("whisperfast --fast (+ attention heads across CPU streams)", OURS, ["--fast"]))
for name, code, flags in lanes:
    runs = [json.loads(subprocess.run([sys.executable, "-c", code, *flags], capture_output=True, text=True, check=True).stdout)
            for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 3)]
    out[name] = {"load_to_text_s": sorted(r["load_to_text_s"] for r in runs), **{k: v for k, v in runs[0].items() if k != "load_to_text_s"}}
print(json.dumps(out, indent=1))
