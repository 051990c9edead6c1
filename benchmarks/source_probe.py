"""What a custom CUDA kernel's source length costs the host at every launch: MLX builds the
whole source into each call's primitive and std::hashes it at eval (session 43's reading of
custom_kernel.cpp). One tiny kernel (out = inp + 1 over 256 floats), its header padded with a
comment to each size; per size the host's µs a call to build it, and a call built and
evaluated, medians of 400 after 50.

    python benchmarks/source_probe.py   (prints one JSON object)"""

import json
import statistics
import sys
import time

import whisperfast  # noqa: F401

import mlx.core as mx

cuda = getattr(mx, "cuda", None)
if cuda is None or not cuda.is_available():
    sys.exit("source_probe.py: needs MLX's CUDA backend")
SOURCE = "unsigned int i = threadIdx.x; out[i] = inp[i] + 1.0f;"
x = mx.zeros((256,))
mx.eval(x)
report = {"device": str(mx.default_device())}
for kb in (1, 20, 40, 83, 160):
    header = "// " + "x" * (kb * 1024) + "\n"
    k = mx.fast.cuda_kernel(name=f"probe{kb}", input_names=["inp"], output_names=["out"], source=SOURCE, header=header)

    def call():
        return k(inputs=[x], output_shapes=[(256,)], output_dtypes=[mx.float32], grid=(256, 1, 1),
                 threadgroup=(256, 1, 1))[0]

    builds, runs = [], []
    for i in range(450):
        t0 = time.perf_counter()
        y = call()
        t1 = time.perf_counter()
        mx.eval(y)
        t2 = time.perf_counter()
        if i >= 50:
            builds.append(t1 - t0), runs.append(t2 - t0)
    report[f"{kb}kb_build_us"] = round(statistics.median(builds) * 1e6, 1)
    report[f"{kb}kb_call_us"] = round(statistics.median(runs) * 1e6, 1)
print(json.dumps(report))
