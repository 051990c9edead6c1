"""Whether the warm greedy decode of a window is slower right after its encoder pass than on
its own (benchmarks/h200-session13/: the bench's decode of JFK took ~10 ms where decode_window
alone took ~6). tiny.en fp16, fused. Per variant, `reps` rounds of: the window's encoder
pass (evaluated), then its greedy decode; medians of each, ms. Variants: the encoder as the
fast engine runs it on CUDA (decode/encoder.encode, composed GELU) or the model's own
(model.encoder, mlx.nn's GELU); the decode straight after, after mx.synchronize(), or on
features encoded once before the loop. Last, the pipeline's own timings on JFK.

    python benchmarks/encode_decode_probe.py [REPS]   (a CUDA machine; one JSON line per variant)"""

import json
import statistics
import sys
import time

import whisperfast  # noqa: F401  (BLAS preload)

import mlx.core as mx
from mlx_whisper.decoding import DecodingOptions

from whisperfast.audio import first_window_mel
from whisperfast.decode import decode_window
from whisperfast.decode.encoder import encode
from whisperfast.pipeline import load, transcribe

reps = int((sys.argv[1:] + ["15"])[0])
loaded = load("tiny.en", dtype=mx.float16, fast=True)
model = loaded.whisper
mel = first_window_mel("samples/jfk.wav", mx.float16)
mel = mel if mel.ndim == 3 else mel[None]
options = DecodingOptions(language="en", fp16=True)
encoders = {"fast engine's encode (composed GELU)": lambda: mx.squeeze(encode(model, mel), 0),
            "model.encoder (mlx.nn GELU)": lambda: model.encoder(mel)[0]}
once = encoders["fast engine's encode (composed GELU)"]()
mx.eval(once)
for enc_name, enc in encoders.items():
    for mode in ("straight after", "after synchronize", "features encoded once"):
        enc_ms, dec_ms = [], []
        for i in range(reps + 1):
            t0 = time.perf_counter()
            features = enc() if mode != "features encoded once" else once
            mx.eval(features)
            t1 = time.perf_counter()
            if mode == "after synchronize":
                mx.synchronize()
            t2 = time.perf_counter()
            result = decode_window(model, features, options)
            t3 = time.perf_counter()
            if i:
                enc_ms.append((t1 - t0) * 1000)
                dec_ms.append((t3 - t2) * 1000)
        print(json.dumps({"encoder": enc_name, "decode": mode, "encode_ms": round(statistics.median(enc_ms), 2),
                          "decode_ms": round(statistics.median(dec_ms), 2), "text": result.text[:40]}), flush=True)
runs = [transcribe(loaded, "samples/jfk.wav").timings for _ in range(reps + 1)][1:]
print(json.dumps({"pipeline.transcribe": {k: round(statistics.median(getattr(t, k) for t in runs) * 1000, 2)
                                          for k in ("mel", "encode", "decode", "total")}}), flush=True)
