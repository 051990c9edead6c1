"""Where tiny.en's warm greedy decode lost ~4 ms at a053f98 (benchmarks/h200-session13/): one
JFK window decoded greedily on the fused model (the CUDA kernel), the loop's `completed` flag
made each of the ways a053f98 and its successors made it, and the audio features as
engine.encode gives them now (a squeezed view) or as before (an indexed copy). A probe: it
swaps step.py's host_flag for each variant. Medians of `reps` decodes after one warm-up, ms.

    python benchmarks/flag_probe.py [MODEL] [REPS]   (a CUDA machine; one JSON line per variant)"""

import json
import statistics
import sys
import time

import whisperfast  # noqa: F401  (BLAS preload)

import mlx.core as mx
from mlx_whisper.decoding import DecodingOptions

from whisperfast.audio import first_window_mel
from whisperfast.decode import decode_window
from whisperfast.decode.cuda import beams, launch, step
from whisperfast.decode.encoder import encode
from whisperfast.pipeline import load

name, reps = (sys.argv[1:] + ["tiny.en", "15"])[:2]
model = load(name, dtype=mx.float16, fast=True).whisper
mel = first_window_mel("samples/jfk.wav", mx.float16)
encoded = encode(model, mel if mel.ndim == 3 else mel[None])
views = {"squeezed view": mx.squeeze(encoded, 0)}
run = step._run


def one_byte_flag(name, inputs, outputs, call, args, template, blocks, threads, shapes, dtypes):
    """step.py's launch with the kernel's `completed` output 1 byte, not padded to 16"""
    if name.startswith("decode_step"):
        shapes = [*shapes[:2], (1,), *shapes[3:]]
    return run(name, inputs, outputs, call, args, template, blocks, threads, shapes, dtypes)


flags = {"indexed [0] (a775ed6; a Gather)": (lambda c: c[0], run), "cast copy (HEAD)": (launch.host_flag, run),
         "the kernel's own 1-byte output": (lambda c: c, one_byte_flag),
         "1-byte output, indexed [0]": (lambda c: c[0], one_byte_flag)}
options = DecodingOptions(language="en", fp16=True)
for flag_name, flag in [*flags.items(), *reversed(flags.items())]:  # two rounds, the second reversed
    (step.host_flag, step._run), beams.host_flag = flag, flag[0]  # a probe's swap: the module-level names the step reads
    for view_name, features in views.items():
        mx.eval(features)
        result = decode_window(model, features, options)
        times = []
        for _ in range(int(reps)):
            t0 = time.perf_counter()
            result = decode_window(model, features, options)
            times.append((time.perf_counter() - t0) * 1000)
        print(json.dumps({"model": name, "flag": flag_name, "features": view_name, "median_ms": round(statistics.median(times), 2),
                          "min_ms": round(min(times), 2), "tokens": len(result.tokens), "text": result.text}), flush=True)
