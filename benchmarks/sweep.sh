#!/usr/bin/env bash
# MLX CUDA runtime knobs against the per-token overhead: benchmarks/overhead.py and the
# stock/fused bench (tiny.en fp16 JFK) under each setting. On the GPU machine, from the repo root.
set -u
out=${1:-/tmp/sweep}; mkdir -p "$out"
export PYTHONUNBUFFERED=1
strings "$(python3 -c 'import mlx.core as mx, os; print(os.path.dirname(mx.__file__))')"/lib/libmlx.so 2>/dev/null | grep -o '^MLX_[A-Z_]*$' | sort -u > "$out/mlx_env_vars.txt"
cat "$out/mlx_env_vars.txt" | tr '\n' ' '; echo
for e in "" MLX_USE_CUDA_GRAPHS=0 MLX_MAX_OPS_PER_BUFFER=100 MLX_MAX_OPS_PER_BUFFER=400 MLX_MAX_OPS_PER_BUFFER=5; do
  n=${e:-default}; n=${n//=/-}
  env $e python3 benchmarks/overhead.py tiny.en float16 > "$out/overhead-$n.json" 2> "$out/overhead-$n.err"
  env $e python3 -m whisperfast bench samples/jfk.wav --lanes stock,fused --runs 5 --warmup 1 --no-kernels --json > "$out/bench-$n.json" 2>/dev/null
  python3 - "$out" "$n" <<'PY'
import json, sys
o, n = sys.argv[1:]
try:
    d = json.load(open(f"{o}/overhead-{n}.json"))
    print(n, "floor", {k: v["us_per_op"] for k, v in d["floor"].items()}, "prims", d["step_primitives"]["total"],
          "loop", {k: v["ms_per_step"] for k, v in d["greedy_loop"].items()})
except Exception as e:
    print(n, "overhead failed", e, open(f"{o}/overhead-{n}.err").read()[-800:])
try:
    b = json.load(open(f"{o}/bench-{n}.json"))
    print(n, "bench", {k: (round(v["total_ms"]["median"], 1), round(v["decode_ms_per_token"]["median"], 2), v["matches_stock"]) for k, v in b["lanes"].items()})
except Exception as e:
    print(n, "bench failed", e)
PY
done
