# Fresh processes over the 60-minute clip, 32 a batch, the kernel picking greedy tokens at any row count
# (knob 1000) against the forward pass only above 3 rows (knob 3: MLX's filters and update picked as run, before
# 210646e; since, a launch of their own), alternated;
# each knob's first process compiles its kernels (dropped from the medians). On the GPU machine, staged (gpu.sh).
source .stage/part6/install.sh > /dev/null
python3 benchmarks/make_clip.py /tmp/clip3600.wav 3600 > /dev/null
python3 - <<'PY'
import json, os, statistics, subprocess, sys, time
walls = {"1000": [], "3": []}
for i, k in enumerate(["1000", "3"] * 4):
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "whisperfast", "transcribe", "/tmp/clip3600.wav", "--fast", "-q", "--json",
                        "--batch-size", "32"], capture_output=True, text=True,
                       env={**os.environ, "WHISPERFAST_KERNEL_PICK_ROWS": k})
    wall = time.perf_counter() - t0
    d = json.loads(r.stdout) if r.returncode == 0 else {}
    d = d[0] if isinstance(d, list) else d
    t = {a: round(b, 3) for a, b in (d.get("timings") or {}).items()}
    print(k, r.returncode, round(wall, 3), t, len(d.get("text", "").split()), r.stderr[-200:], flush=True)
    if i >= 2:
        walls[k].append(wall)
print({k: round(statistics.median(v), 3) for k, v in walls.items()})
PY
