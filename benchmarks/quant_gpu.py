"""Issue 17's GPU rows: decode ms/token of the fused lane, 8-bit and 4-bit against float, for
base (real weights) and large-v3-turbo's shapes (seeded random weights, built as
tests/test_large_shapes.py builds them). One `whisperfast bench` per (model, bits), each with
the stock lane beside the fused one; the ratios below compare medians of different bench runs
of the same process tree, so read them with the stock lane's drift in mind.

    python benchmarks/quant_gpu.py OUT_DIR [RUNS]   (a CUDA machine; prints a JSON line per run
                                                     and a summary line per model)"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.test_large_shapes import random_model  # noqa: E402

out = Path(sys.argv[1])
runs = sys.argv[2] if len(sys.argv) > 2 else "5"
out.mkdir(parents=True, exist_ok=True)
with tempfile.TemporaryDirectory() as tmp:
    turbo = random_model(Path(tmp), "large-v3-turbo")
    for name, model in (("base", "base"), ("large-v3-turbo-random", str(turbo))):
        per_token = {}
        for bits in (None, "8", "4"):
            tag = f"{name}-{bits or 'float'}"
            cmd = [sys.executable, "-m", "whisperfast", "bench", "samples/jfk.wav", "-m", model, "--dtype", "float16",
                   "--lanes", "stock,fused", "--runs", runs, "--warmup", "1", "--json", "--no-kernels"]
            cmd += ["--quantize", bits] if bits else []
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode:
                print(json.dumps({"run": tag, "rc": r.returncode, "err": r.stderr[-800:]}), flush=True)
                continue
            (out / f"quant-gpu-{tag}.json").write_text(r.stdout)
            lanes = json.loads(r.stdout)["lanes"]
            row = {lane: {"ms_per_token": round(v["decode_ms_per_token"]["median"], 4),
                          "total_ms": round(v["total_ms"]["median"], 2), "matches_stock": v.get("matches_stock")}
                   for lane, v in lanes.items()}
            per_token[bits or "float"] = row["fused"]["ms_per_token"]
            print(json.dumps({"run": tag, **row}), flush=True)
        if "float" in per_token:
            print(json.dumps({"model": name, "fused_ms_per_token": per_token,
                              "vs_float": {b: round(v / per_token["float"], 3) for b, v in per_token.items()}}), flush=True)
