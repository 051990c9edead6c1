#!/usr/bin/env bash
# The GPU record: op-level and model-level equality tests, SDPA kernel paths, and the bench
# (tiny.en and base, fp16 and fp32, JFK and a 60 s clip). Run from the repo root on the GPU
# machine after its wheels are installed; writes into ${WORK:-/tmp/gpuwork}.
set -u
out=${WORK:-/tmp/gpuwork}; mkdir -p "$out"
py=python3
export PYTHONUNBUFFERED=1
# The device sets PYTHONDONTWRITEBYTECODE and the staged wheels come without bytecode, so every
# fresh process would compile ~265 modules (0.3-0.45 s, benchmarks/h200-warmup/); a user's
# install has them compiled after its first run.
$py -m compileall -q whisperfast ${PYTHONPATH%%:*} > /dev/null 2>&1 || true
# bench_trees "TREE ..." OUT [ARGS...]: the warm JFK bench (tiny.en, fp16, stock and fused, 10 runs, ARGS added) run
# inside each tree (a folder holding a whisperfast/, e.g. a git archive), two rounds, the second in reverse order;
# each table row prefixed with its round and tree, into OUT (every tree's whole output, errors too, into OUT.raw)
bench_trees() {
  local trees=$1 dest=$2; shift 2
  $py -m compileall -q $trees > /dev/null 2>&1 || true
  for round in 1 2; do
    for t in $trees; do
      (cd $t && $py -m whisperfast bench "$OLDPWD/samples/jfk.wav" --dtype float16 --lanes stock,fused --runs 10 --no-kernels \
        "$@" 2>&1 | tee -a "$dest.raw" | grep -E "^│ (stock|fused)" | sed "s|^|$round $t |")
    done
    trees=$(echo $trees | tr ' ' '\n' | tac | tr '\n' ' ')
  done 2>&1 | tee "$dest"
}
# cold_prep "TREE ...": before fresh-process runs, the device line, the trees' bytecode, the 600 s clip, and both
# models converted once (the runs then read the caches)
cold_prep() {
  $py -m whisperfast info --json > "$out/info.json"
  $py -m compileall -q $1 > /dev/null 2>&1 || true
  $py benchmarks/make_clip.py /tmp/clip600.wav 600 > /dev/null
  for m in tiny.en base; do $py -m whisperfast transcribe samples/jfk.wav -m $m -q --fast > /dev/null; done
}
# cold_benches: issue 13's record at this tree: the cold bench (fresh processes, caches warm on disk), JFK 5 runs, the
# 600 s clip 3 (tiny.en, base), each table's rows printed
cold_benches() {
  cold_prep "whisperfast"
  $py -m whisperfast bench --cold --runs 5 --json > "$out/cold-jfk.json" 2> "$out/cold-jfk.txt"
  for m in tiny.en base; do
    $py -m whisperfast bench /tmp/clip600.wav -m $m --cold --runs 3 --json > "$out/cold-600s-$m.json" 2> "$out/cold-600s-$m.txt"
  done
  grep -hE "^│ (stock|fused)|Error" "$out"/cold-*.txt
}
# fresh_batched: fresh `transcribe --fast --batch-size 16` processes, wall clock around each: the 60-minute clip three
# times (the first may compile kernels for row counts not seen yet), then the 600 s clip twice; a JSON line each
fresh_batched() {
  $py - <<'PY' 2>&1
import json, os, subprocess, sys, time
for args in (["/tmp/clip3600.wav"], ["/tmp/clip3600.wav"], ["/tmp/clip3600.wav"], ["/tmp/clip600.wav"], ["/tmp/clip600.wav"]):
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "whisperfast", "transcribe", *args, "--fast", "-q", "--json", "--batch-size",
                        os.environ.get("FRESH_BATCH", "16")],
                       capture_output=True, text=True)
    wall = time.perf_counter() - t0
    d = json.loads(r.stdout) if r.returncode == 0 else {}
    d = d[0] if isinstance(d, list) else d
    print(json.dumps(dict(args=args, rc=r.returncode, wall_s=wall, timings=d.get("timings"), windows=d.get("windows"),
                          words=len(d.get("text", "").split()), err=r.stderr[-300:])), flush=True)
PY
}
# batched_trees: the warm batched 600 s bench ($MODELS, default tiny.en and base; fp16, fused, 32 a batch, 5 runs after a
# warm-up) in each of $TREES (default: ab-t/main and this tree), $ROUNDS rounds (default 2), each in reverse order of the
# one before; JSON and table into $out, the lanes' rows printed
batched_trees() {
  local trees="${TREES:-ab-t/main .}"
  for round in $(seq ${ROUNDS:-2}); do
    for t in $trees; do
      local name=${t//\//_}; [ "$t" = . ] && name=tree
      for m in ${MODELS:-tiny.en base}; do
        (cd $t && $py -m whisperfast bench /tmp/clip600.wav -m $m --dtype float16 --lanes fused --runs 5 --warmup 1 --json \
          --no-kernels --batch-size 32 > "$out/bench-$m-r$round-$name.json" 2> "$out/bench-$m-r$round-$name.txt")
        grep -E "^│ fused" "$out/bench-$m-r$round-$name.txt" | sed "s|^|$round $t $m |"
      done
    done
    trees=$(echo $trees | tr ' ' '\n' | tac | tr '\n' ' ')
  done 2>&1 | tee "$out/bench_ab.txt"
}
# vad_trees "CLIP ...": vad_gpu_probe.py (the VAD alone over each clip, then the LSTM kernel by cluster size) inside
# ab-t/main and this tree, each line prefixed with its tree, into $out/vad_probe.txt
vad_trees() {
  for t in ab-t/main .; do
    (cd $t && PYTHONPATH=.:$PYTHONPATH timeout ${T1:-60} $py benchmarks/vad_gpu_probe.py $1 --runs 5 2>&1 | sed "s|^|$t |")
  done 2>&1 | tee "$out/vad_probe.txt" | cut -c1-300
}
# fresh_trees: fresh `transcribe --fast --batch-size 32` processes over the 60-minute clip, ab-t/main and this tree
# alternated, four each (each tree's first compiles its kernels); a JSON line each
fresh_trees() {
  timeout ${T3:-120} $py - <<'PY' 2>&1 | tee "$out/fresh_ab.jsonl"
import json, subprocess, sys, time
for i in range(4):
    for tree in ("ab-t/main", "."):
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "whisperfast", "transcribe", "/tmp/clip3600.wav", "--fast", "-q", "--json",
                            "--batch-size", "32"], capture_output=True, text=True, cwd=tree)
        wall = time.perf_counter() - t0
        d = json.loads(r.stdout) if r.returncode == 0 else {}
        d = d[0] if isinstance(d, list) else d
        print(json.dumps(dict(run=i, tree=tree, rc=r.returncode, wall_s=round(wall, 3), words=len(d.get("text", "").split()),
                              timings={k: round(v, 3) for k, v in (d.get("timings") or {}).items()}, err=r.stderr[-200:])), flush=True)
PY
}
# fresh_hour RUNS OUT SECONDS: RUNS fresh processes on the 60-minute clip (--fast, 32 a batch), one after another, a JSON
# line each (wall, the transcription's timings, words) into OUT, within SECONDS
fresh_hour() {
  timeout $3 $py - "$1" <<'PY' 2>&1 | tee "$2"
import json, subprocess, sys, time
for i in range(int(sys.argv[1])):
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "whisperfast", "transcribe", "/tmp/clip3600.wav", "--fast", "-q", "--json",
                        "--batch-size", "32"], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    d = json.loads(r.stdout) if r.returncode == 0 else {}
    d = d[0] if isinstance(d, list) else d
    print(json.dumps(dict(run=i, rc=r.returncode, wall_s=round(wall, 3), words=len(d.get("text", "").split()),
                          timings={k: round(v, 3) for k, v in (d.get("timings") or {}).items()}, err=r.stderr[-300:])),
          flush=True)
PY
}
# phase_rows: rows_phases.py's JSON lines, each prefixed by its tree, as one short line each (tree, model, rows, µs by phase)
phase_rows() {
  $py -c '
import json, sys
for line in sys.stdin:
    tree, _, rest = line.partition(" ")
    try:
        d = json.loads(rest)
    except ValueError:
        print(line.rstrip()[:200]); continue
    print(tree, d["model"], d["rows"], " ".join(f"{k[:5]}={v:.0f}" for k, v in d["phase_us"].items()))'
}
# bits_phases BASE "TREE:MODEL ...": the device line, the 600 s clip; the kernel's outputs bit for bit (step_bits.py) in
# the tree BASE and this one, compared; then batched mode's step by phase (rows_phases.py MODEL float16 batched) in each
# TREE:MODEL, into $out/phases.txt, a short line each printed
bits_phases() {
  local base=$1 pairs=$2
  $py -m whisperfast info --json > "$out/info.json"
  $py -m compileall -q ab-t > /dev/null 2>&1 || true
  $py benchmarks/make_clip.py /tmp/clip600.wav 600 > /dev/null
  for t in $base .; do
    (cd $t && PYTHONPATH=.:$PYTHONPATH timeout ${T0:-100} $py "$OLDPWD/benchmarks/step_bits.py" > "$out/bits-${t//\//_}.jsonl" 2>&1)
  done
  cmp -s "$out/bits-${base//\//_}.jsonl" "$out/bits-..jsonl" && echo "bits: the same ($(wc -l < "$out/bits-..jsonl") cases)" \
    || { echo "bits: DIFFER"; diff "$out/bits-${base//\//_}.jsonl" "$out/bits-..jsonl" | head -c 600; }
  for tm in $pairs; do
    local t=${tm%%:*} m=${tm#*:}
    (cd $t && PYTHONPATH=.:$PYTHONPATH timeout ${T1:-50} $py benchmarks/rows_phases.py $m float16 batched 2>&1 | sed "s|^|$t |")
  done 2>&1 | tee "$out/phases.txt" | phase_rows
}
# both_vads MODEL: the batched 600 s clip at 16 a batch with the VAD on onnxruntime (WHISPERFAST_VAD_GPU=0), then on the GPU
both_vads() {
  local m=$1
  for v in 0 1; do
    WHISPERFAST_VAD_GPU=$v $py -m whisperfast bench /tmp/clip600.wav -m $m --dtype float16 --lanes fused --runs 3 --warmup 1 \
      --json --no-kernels --batch-size 16 > "$out/bench-$m-600s-b16-vadgpu$v.json" 2> "$out/bench-$m-600s-b16-vadgpu$v.txt"
    grep -E "^│ fused|audio-seconds" "$out/bench-$m-600s-b16-vadgpu$v.txt" | sed "s|^|$m vadgpu=$v |"
  done
}
# batched_benches: the batched 600 s clip (fp16, fused, 3 runs after a warm-up), tiny.en and base at 16 a batch, then
# tiny.en at 32: JSON and table into $out, the lanes' rows printed
batched_benches() {
  for m in tiny.en base; do
    $py -m whisperfast bench /tmp/clip600.wav -m $m --dtype float16 --lanes fused --runs 3 --warmup 1 \
      --json --no-kernels --batch-size 16 > "$out/bench-$m-600s-b16.json" 2> "$out/bench-$m-600s-b16.txt"
    grep -E "^│ fused|audio-seconds" "$out/bench-$m-600s-b16.txt" | sed "s|^|$m |"
  done
  $py -m whisperfast bench /tmp/clip600.wav --dtype float16 --lanes fused --runs 3 --warmup 1 --json --no-kernels \
    --batch-size 32 > "$out/bench-tiny.en-600s-b32.json" 2> "$out/bench-tiny.en-600s-b32.txt"
  grep -E "^│ fused|audio-seconds" "$out/bench-tiny.en-600s-b32.txt" | sed "s|^|tiny.en b32 |"
}
# peers_wheels: the peer lanes' wheels (.stage/part7: openai-whisper, pywhispercpp and what they import) into a folder
# last on PYTHONPATH, so that the machine's own packages (torch, transformers, numba, tqdm) stay the ones imported
peers_wheels() {
  $py -m pip install -q --no-index --no-deps --no-compile --target /tmp/site7 .stage/part7/*.whl 2>&1 | tail -2
  export PYTHONPATH=$PYTHONPATH:/tmp/site7
}
case "${1:-all}" in
tests|all)
  $py -m whisperfast info --json > "$out/info.json"; cat "$out/info.json"
  $py benchmarks/sdpa_paths.py 2>&1 | tee "$out/sdpa_paths.txt"
  $py -m pytest -q -p no:cacheprovider tests/test_kernels.py tests/test_rewrite.py tests/test_decoding.py tests/test_equality.py -m "slow or not slow" 2>&1 | tee "$out/gpu_tests.txt" | tail -25
  ;;
esac
case "${1:-all}" in
trust)  # issue 12's GPU record: every GPU test (the slow group too), the held-out variants, seeded long form
  $py -m whisperfast info --json > "$out/info.json"
  $py -m pytest -q -p no:cacheprovider -m "slow or not slow" -rf tests/test_cuda_step.py tests/test_decoding.py \
    tests/test_equality.py tests/test_heldout.py tests/test_large_shapes.py 2>&1 | tee "$out/gpu_tests.txt" | tail -40
  ;;
seeded)  # stock vs fused on the 600 s clip, each lane seeded alike, fallback on and off
  $py benchmarks/make_clip.py /tmp/clip600.wav 600
  for m in tiny.en base; do for dt in float16 float32; do
    $py benchmarks/seeded_eq.py $m /tmp/clip600.wav $dt
  done; done 2>&1 | tee "$out/seeded_600s.jsonl"
  ;;
cold)  # fresh processes, wall clock around each: JFK, --fast and stock, alternated
  $py - <<'PY' 2>&1 | tee "$out/cold_jfk.jsonl"
import json, subprocess, sys, time
for i in range(3):
    for args in (["--fast"], []):
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "whisperfast", "transcribe", "samples/jfk.wav", "-q", "--json", *args],
                           capture_output=True, text=True)
        wall = time.perf_counter() - t0
        total = json.loads(r.stdout)["timings"]["total"] if r.returncode == 0 else None
        print(json.dumps({"run": i, "args": args, "wall_s": round(wall, 3), "total_s": total, "rc": r.returncode}), flush=True)
PY
  ;;
esac
case "${1:-all}" in
coldprobe)  # issue 13: fresh processes on JFK (run 1 of --fast fills the kernel cache), where the first GPU
  # calls go and whether a warm-up thread during the imports takes them off; then the kernel and beam tests
  $py -m whisperfast info --json > "$out/info.json"
  $py -m whisperfast bench --cold --runs 3 --json > "$out/bench_cold-jfk.json" 2> "$out/bench_cold-jfk.txt"; tail -12 "$out/bench_cold-jfk.txt"
  $py benchmarks/cold_gpu_probe.py 3 2>&1 | tee "$out/cold_gpu_probe.jsonl" | tail -60
  $py -X importtime -m whisperfast transcribe samples/jfk.wav --fast -q --json 2> "$out/importtime_fast_jfk.txt" > "$out/jfk_fast.json"
  timeout 300 $py -m pytest -q -p no:cacheprovider -m "slow or not slow" -rf tests/test_cuda_beams.py tests/test_beam.py \
    tests/test_cuda_step.py tests/test_tokenizer.py tests/test_imports.py 2>&1 | tee "$out/gpu_tests.txt" | tail -15
  ;;
esac
case "${1:-all}" in
warmup)  # issue 13: fresh processes with the CLI's GPU warm-up thread (runtime.warm_up_gpu) and without it
  # (WHISPERFAST_GPU_WARMUP=0), alternated; JFK, then the 600 s clip with tiny.en and base
  $py -m whisperfast info --json > "$out/info.json"
  $py -m pytest -q -p no:cacheprovider tests/test_coldstart.py tests/test_imports.py 2>&1 | tail -3
  $py benchmarks/make_clip.py /tmp/clip600.wav 600 > /dev/null
  $py -m whisperfast transcribe samples/jfk.wav --fast -q > /dev/null  # the kernel cache filled once
  for i in 1 2; do for w in 1 0; do
    WHISPERFAST_GPU_WARMUP=$w $py -m whisperfast bench --cold --runs 3 --json > "$out/cold-jfk-w$w-$i.json" 2> "$out/cold-jfk-w$w-$i.txt"
    echo "jfk warmup=$w round $i"; grep -E "^│ (stock|fused)" "$out/cold-jfk-w$w-$i.txt"
  done; done
  for m in tiny.en base; do for w in 1 0; do
    WHISPERFAST_GPU_WARMUP=$w $py -m whisperfast bench /tmp/clip600.wav -m $m --cold --runs 2 --json > "$out/cold-600s-$m-w$w.json" 2> "$out/cold-600s-$m-w$w.txt"
    echo "600 s $m warmup=$w"; grep -E "^│ (stock|fused)|^run" "$out/cold-600s-$m-w$w.txt"
  done; done
  ;;
esac
case "${1:-all}" in
firstrun)  # issue 13's first run after install: whisperfast's kernel cache and MLX's PTX cache cleared (the
  # page cache stays warm), then fresh JFK processes, --fast first; then issue 14's beam 5 in fresh processes
  rm -rf "${XDG_CACHE_HOME:-$HOME/.cache}/whisperfast/kernels" "${TMPDIR:-/tmp}/mlx"
  $py - <<'PY' 2>&1 | tee "$out/firstrun_jfk.jsonl"
import json, subprocess, sys, time
for i in range(3):
    for args in (["--fast"], [], ["--fast", "--beam-size", "5"], ["--beam-size", "5"]):
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "whisperfast", "transcribe", "samples/jfk.wav", "-q", "--json", *args],
                           capture_output=True, text=True)
        wall = time.perf_counter() - t0
        d = json.loads(r.stdout) if r.returncode == 0 else {}
        print(json.dumps({"run": i, "args": args, "wall_s": round(wall, 3), "timings": d.get("timings"),
                          "text": d.get("text"), "rc": r.returncode, "err": r.stderr[-300:] if r.returncode else ""}), flush=True)
PY
  ;;
esac
case "${1:-all}" in
graphs-cold)  # issue 13: fresh processes with MLX's CUDA graphs on (default) and off, alternated: the 600 s
  # clip with base (its sampled windows run on stock's graph, a new shape every token) and tiny.en, then JFK
  $py benchmarks/make_clip.py /tmp/clip600.wav 600 > /dev/null
  $py -m whisperfast transcribe samples/jfk.wav --fast -q > /dev/null
  for spec in "/tmp/clip600.wav base 2" "/tmp/clip600.wav tiny.en 2" "samples/jfk.wav tiny.en 3"; do
    set -- $spec
    for g in 1 0; do
      MLX_USE_CUDA_GRAPHS=$g $py -m whisperfast bench "$1" -m "$2" --cold --runs "$3" --json > "$out/graphs$g-$2-$(basename $1 .wav).json" 2> /tmp/t.txt
      echo "$1 $2 graphs=$g"; grep -E "^│ (stock|fused)|^run" /tmp/t.txt
    done
  done
  ;;
esac
case "${1:-all}" in
cache)  # issue 13: the kernel cache's tests (a second process compiles nothing; MLX runs what the cache
  # published), then fresh processes on JFK, --fast and stock alternated, the kernel cache cleared
  # once first: run 0 of --fast compiles, runs 1-2 read the cache (each line's kernel_cache says so)
  $py -m pytest -q -p no:cacheprovider -m "slow or not slow" -rs -s tests/test_cuda_cache.py 2>&1 | tee "$out/cache_tests.txt" | tail -15
  $py - <<'PY' 2>&1 | tee "$out/cold_cache_jfk.jsonl"
import dataclasses, json, shutil, sys, tempfile
from pathlib import Path
from whisperfast import coldstart
from whisperfast.kernels.cuda_cache import mlx_cache_dir
from whisperfast.models import DEFAULT_MODEL, cache_dir
shutil.rmtree(cache_dir() / "kernels", ignore_errors=True)
for p in mlx_cache_dir().glob("custom_kernel_wf_*"):
    shutil.rmtree(p) if p.is_dir() else p.unlink()
cmd = coldstart.child_command(Path("samples/jfk.wav"), DEFAULT_MODEL, None, None, sys.executable)
with tempfile.TemporaryDirectory() as tmp:
    for i in range(3):
        for lane in ("fused", "stock"):
            run, _ = coldstart.run_once(cmd, lane, i, Path(tmp) / "report.json")
            print(json.dumps(dataclasses.asdict(run)), flush=True)
PY
  $py -m whisperfast bench --cold --runs 3 --json > "$out/bench_cold.json" 2> "$out/bench_cold.txt"; cat "$out/bench_cold.txt"
  ;;
esac
summary() {
  # file {lane: (total ms, decode ms/token, encode ms)} speedup {lane: matches_stock}
  $py -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[1], {k: (round(v['total_ms']['median'],1), round(v['decode_ms_per_token']['median'],3), round(v['encode_ms']['median'],2)) for k,v in d['lanes'].items()}, d['speedup'], {k: v['matches_stock'] for k,v in d['lanes'].items()})" "$1"
}
case "${1:-all}" in
ab)  # MLX's CUDA graphs on and off, alternated between processes (the setting is read once)
  for i in 1 2; do for e in "" MLX_USE_CUDA_GRAPHS=0; do
    n=${e:-graphs}; n=${n//=/-}
    env $e $py -m whisperfast bench samples/jfk.wav --dtype float16 --lanes stock,fused --runs 7 --warmup 2 --json --no-kernels > "$out/ab-$n-$i.json" 2>/dev/null
    summary "$out/ab-$n-$i.json"
  done; done
  ;;
esac
case "${1:-all}" in
round|round-tests)  # issue 12's last item, the kernel rounding as stock in fp16: every GPU equality test, then
  # base fp16 on the 600 s clip seeded (fallback on, then temperature 0). (Two modes, for 10-minute limits.)
  $py -m pytest -q -p no:cacheprovider -m "slow or not slow" tests/test_cuda_step.py tests/test_equality.py \
    tests/test_heldout.py -rf 2>&1 | tee "$out/round_tests.txt" | tail -40
  $py benchmarks/make_clip.py /tmp/clip600.wav 600
  $py benchmarks/seeded_eq.py base /tmp/clip600.wav float16 2>&1 | tee "$out/round_seeded_base_fp16.jsonl"
  ;;
esac
case "${1:-all}" in
round|round-bench)  # the warm bench, JFK fp16 (before this change: tiny.en 11.0 ms, base 21.2 ms)
  for m in tiny.en base; do
    $py -m whisperfast bench samples/jfk.wav -m $m --dtype float16 --lanes stock,fused --runs 7 --warmup 2 --json \
      --no-kernels > "$out/round-bench-$m-float16-jfk.json" 2>/dev/null
    summary "$out/round-bench-$m-float16-jfk.json"
  done
  ;;
esac
case "${1:-all}" in
rows)  # the decode step with more rows than a group of 3: batches of 5 and 16 windows against stock row by row
  # (tiny.en fp32, fp16) and the launch tests (B = 5 among them), then per-step time for B = 1, 3, 5, 16, 32
  $py -m pytest -q -p no:cacheprovider -m "slow or not slow" -rf tests/test_cuda_rows.py tests/test_cuda_step.py \
    2>&1 | tee "$out/rows_tests.txt" | tail -25
  for m in tiny.en base; do $py benchmarks/rows_step.py $m float16; done 2>&1 | tee "$out/rows_step.txt"
  ;;
esac
case "${1:-all}" in
final|final-tests)  # the record of the one-launch step: tests, then profiles and the bench with the kernel and without it (the flat step)
  $py -m pytest -q -p no:cacheprovider tests/test_cuda_step.py tests/test_decoding.py tests/test_equality.py -m "slow or not slow" 2>&1 | tee "$out/gpu_tests.txt" | tail -5
  ;;
esac
case "${1:-all}" in
final|final-bench)  # (two modes, for machines that stop a command after 10 minutes)
  $py benchmarks/make_clip.py /tmp/clip60.wav
  for m in tiny.en base; do
    $py benchmarks/cuda_step_profile.py $m float16 > "$out/profile-$m.json"
    for a in samples/jfk.wav /tmp/clip60.wav; do
      n=$(basename $a .wav); r="--runs 7 --warmup 2"; [ $n = clip60 ] && r="--runs 3 --warmup 1"
      for e in 1 0; do
        f="$out/$([ $e = 1 ] && echo kernel || echo flat)-$m-float16-$n.json"
        WHISPERFAST_CUDA_STEP=$e $py -m whisperfast bench $a -m $m --dtype float16 --lanes stock,fused $r --json --no-kernels > "$f" 2>/dev/null
        summary "$f"
      done
    done
  done
  ;;
esac
case "${1:-all}" in
bench|all)
  $py benchmarks/make_clip.py /tmp/clip60.wav
  for m in tiny.en base; do for dt in float16 float32; do
    $py -m whisperfast bench samples/jfk.wav -m $m --dtype $dt --runs 7 --warmup 2 --json --no-kernels > "$out/bench-$m-$dt-jfk.json" 2>/dev/null
    summary "$out/bench-$m-$dt-jfk.json"
  done; done
  for m in tiny.en base; do for dt in float16 float32; do
    $py -m whisperfast bench /tmp/clip60.wav -m $m --dtype $dt --runs 3 --warmup 1 --json --no-kernels > "$out/bench-$m-$dt-clip60.json" 2>/dev/null
    summary "$out/bench-$m-$dt-clip60.json"
  done; done
  $py -m whisperfast bench samples/jfk.wav --dtype float16 --runs 7 --warmup 2 --json --plot "$out/bench-tiny.en-float16-jfk.png" > "$out/bench-tiny.en-float16-jfk-kernels.json" 2>"$out/bench-table.txt"
  cat "$out/bench-table.txt"
  ;;
esac
case "${1:-all}" in
exact)  # the session record's tests: every GPU test (slow ones too) of the kernel, its rows, equality, the
  # held-out variants, beams, the long-form loop and batched mode, and the kernel cache
  $py -m whisperfast info --json > "$out/info.json"
  $py -m pytest -q -p no:cacheprovider -m "slow or not slow" -rf tests/test_cuda_step.py tests/test_cuda_rows.py \
    tests/test_equality.py tests/test_heldout.py tests/test_beam.py tests/test_cuda_cache.py 2>&1 | tee "$out/exact_tests.txt" | tail -30
  ;;
esac
case "${1:-all}" in
record)  # the session record's numbers: seeded 600 s equality (fallback on and off), the warm bench on JFK,
  # beam 5 against greedy, per-step time by rows, the 600 s clip batched, fresh processes on the 600 s clip
  $py benchmarks/make_clip.py /tmp/clip600.wav 600
  for m in tiny.en base; do $py benchmarks/seeded_eq.py $m /tmp/clip600.wav float16; done 2>&1 | tee "$out/seeded_600s.jsonl"
  for m in tiny.en base; do
    $py -m whisperfast bench samples/jfk.wav -m $m --dtype float16 --lanes stock,fused --runs 7 --warmup 2 --json \
      --no-kernels > "$out/bench-$m-float16-jfk.json" 2>/dev/null
    summary "$out/bench-$m-float16-jfk.json"
    $py benchmarks/beam_cost.py $m float16 7 > "$out/beam_cost-$m-float16.json"; tail -c 400 "$out/beam_cost-$m-float16.json"
  done
  $py benchmarks/rows_step.py tiny.en float16 2>&1 | tail -8 | tee "$out/rows_step.txt"
  for m in tiny.en base; do
    $py -m whisperfast bench /tmp/clip600.wav -m $m --dtype float16 --lanes stock,fused --runs 3 --warmup 1 --json \
      --no-kernels --batch-size 16 > "$out/bench-$m-float16-600s-batch16.json" 2>"$out/bench-$m-600s-batch16.txt"
    tail -8 "$out/bench-$m-600s-batch16.txt"
  done
  ;;
esac
case "${1:-all}" in
cold600)  # issue 13 on long audio: fresh processes, the 600 s clip, --fast and stock alternated (kernel cache warm)
  $py benchmarks/make_clip.py /tmp/clip600.wav 600
  for m in tiny.en base; do
    $py -m whisperfast bench /tmp/clip600.wav -m $m --cold --runs 2 --json > "$out/bench_cold-$m-600s.json" 2> "$out/bench_cold-$m-600s.txt"
    tail -6 "$out/bench_cold-$m-600s.txt"
  done
  ;;
esac
case "${1:-all}" in
engine)  # the decode/ wing (issue 14): registers and per-phase time by rows, the kernel's and the engines' tests,
  # the seeded 600 s clip with sampled windows on the stock engine (issue 12), beam 5 on the kernel's forward pass
  $py benchmarks/ptxas_report.py tiny.en float16 2>&1 | tee "$out/ptxas.txt"
  $py benchmarks/rows_phases.py tiny.en float16 2>&1 | tee "$out/rows_phases.jsonl"
  $py -m pytest -q -p no:cacheprovider -m "slow or not slow" -rf tests/test_cuda_step.py tests/test_cuda_rows.py \
    tests/test_cuda_knobs.py tests/test_beam.py tests/test_decoding.py 2>&1 | tee "$out/engine_tests.txt" | tail -25
  $py benchmarks/make_clip.py /tmp/clip600.wav 600
  $py benchmarks/seeded_eq.py base /tmp/clip600.wav float16 2>&1 | tee "$out/seeded_base_fp16.jsonl"
  for m in tiny.en base; do $py benchmarks/beam_cost.py $m float16 7 > "$out/beam_cost-$m.json"; tail -c 300 "$out/beam_cost-$m.json"; done
  ;;
esac
case "${1:-all}" in
engine2)  # the equality tests (every sample, the held-out variants), the kernel cache, the warm bench, batched with VAD
  $py -m pytest -q -p no:cacheprovider -m "slow or not slow" -rf tests/test_equality.py tests/test_heldout.py \
    tests/test_cuda_cache.py 2>&1 | tee "$out/equality_tests.txt" | tail -25
  for m in tiny.en base; do
    $py -m whisperfast bench samples/jfk.wav -m $m --dtype float16 --lanes stock,fused --runs 7 --warmup 2 --json \
      --no-kernels > "$out/bench-$m-float16-jfk.json" 2>/dev/null
    summary "$out/bench-$m-float16-jfk.json"
  done
  $py benchmarks/make_clip.py /tmp/clip600.wav 600
  for m in tiny.en base; do
    $py -m whisperfast bench /tmp/clip600.wav -m $m --dtype float16 --lanes fused --runs 3 --warmup 1 --json \
      --no-kernels --batch-size 16 > "$out/bench-$m-float16-600s-batch16.json" 2>"$out/bench-$m-600s-batch16.txt"
    tail -4 "$out/bench-$m-600s-batch16.txt"
  done
  ;;
esac

case "${1:-all}" in
contract)  # issue 12's contract (tests/contract.py, README "The equality guarantee") on the GPU: the contract's
  # own tests, every equality test, the held-out variants and beams, slow ones too, but the 600 s clip
  $py -m whisperfast info --json > "$out/info.json"
  timeout 540 $py -m pytest -q -p no:cacheprovider -m "slow or not slow" -rf tests/test_contract.py tests/test_equality.py \
    tests/test_heldout.py tests/test_beam.py -k "not 600s" 2>&1 | tee "$out/contract_tests.txt" | tail -25
  ;;
esac
case "${1:-all}" in
contract600)  # the 600 s clip under the contract (tiny.en and base, fp32 and fp16, fallback on, seeded), then
  # issue 13's fresh processes (bench --cold, lanes alternated, kernel cache warm): JFK and the 600 s clip
  timeout 400 $py -m pytest -q -p no:cacheprovider -m "slow or not slow" -rf tests/test_heldout.py -k 600s 2>&1 \
    | tee "$out/contract_600s.txt" | tail -25
  $py benchmarks/make_clip.py /tmp/clip600.wav 600
  $py -m whisperfast bench samples/jfk.wav --cold --runs 3 --json > "$out/bench_cold-jfk.json" 2> "$out/bench_cold-jfk.txt"
  tail -8 "$out/bench_cold-jfk.txt"
  for m in tiny.en base; do
    $py -m whisperfast bench /tmp/clip600.wav -m $m --cold --runs 2 --json > "$out/bench_cold-$m-600s.json" 2> "$out/bench_cold-$m-600s.txt"
    tail -6 "$out/bench_cold-$m-600s.txt"
  done
  ;;
esac
case "${1:-all}" in
beams)  # issue 14: openai's beam update on the device (beam_update): the kernel against the host's update,
  # fused beams against stock beams (every test_beam test too), then the bench, beam 5 beside greedy, and
  # openai-whisper's own beam 5 on the same weights (OW: the folder holding its whisper/ package)
  # (and the greedy step's tests: the forward pass of beams and samples skips the filters' picks, PICK)
  $py -m pytest -q -p no:cacheprovider -m "slow or not slow" -rf tests/test_cuda_beams.py tests/test_beam.py \
    tests/test_cuda_step.py tests/test_cuda_cache.py 2>&1 | tee "$out/beam_tests.txt" | tail -25
  for m in tiny.en base; do
    $py -m whisperfast bench samples/jfk.wav -m $m --dtype float16 --lanes stock,fused --beam-size 5 --runs 5 --json \
      --no-kernels > "$out/bench-beam5-$m-float16-jfk.json" 2> "$out/bench-beam5-$m-float16-jfk.txt"
    cat "$out/bench-beam5-$m-float16-jfk.txt" | tail -12
  done
  $py benchmarks/beam_steps.py 2>&1 | tee "$out/beam_steps.txt"
  [ -n "${OW:-}" ] && $py benchmarks/openai_beam_peer.py "$OW" tiny.en samples/jfk.wav 2>&1 | tee "$out/openai_beam_peer.jsonl"
  ;;
esac
case "${1:-all}" in
session7)  # issue 17: the kernel on quantized decoders (its tests first), then decode ms/token 8/4-bit vs float
  # (quant_gpu.py); issue 13 at HEAD: fresh processes, JFK and the 600 s clip, tiny.en and base, lanes alternated
  $py -m whisperfast info --json > "$out/info.json"
  timeout 240 $py -m pytest -q -p no:cacheprovider -m "slow or not slow" -rf tests/test_cuda_step.py tests/test_quantize.py \
    tests/test_heldout.py tests/test_large_shapes.py -k "quantiz or larger" 2>&1 | tee "$out/quant_tests.txt" | tail -20
  timeout 200 $py benchmarks/quant_gpu.py "$out" 5 2>&1 | tee "$out/quant_gpu.jsonl"
  $py benchmarks/make_clip.py /tmp/clip600.wav 600 > /dev/null
  $py -m whisperfast transcribe samples/jfk.wav --fast -q > /dev/null  # the kernel cache filled once
  $py -m whisperfast bench --cold --runs 5 --json > "$out/cold-jfk.json" 2> "$out/cold-jfk.txt"; grep -E "^│ (stock|fused)" "$out/cold-jfk.txt"
  for m in tiny.en base; do
    $py -m whisperfast transcribe /tmp/clip600.wav -m $m --fast -q > /dev/null
    $py -m whisperfast bench /tmp/clip600.wav -m $m --cold --runs 2 --json > "$out/cold-600s-$m.json" 2> "$out/cold-600s-$m.txt"
    echo "600 s $m"; grep -E "^│ (stock|fused)" "$out/cold-600s-$m.txt"
  done
  ;;
esac
case "${1:-all}" in
session7-tests)  # every GPU test of the kernel (rows, beams, its cache), the decoding engine, equality and the
  # held-out variants (the slow group too, but the 600 s clip; the quantized ones ran in session7)
  timeout 560 $py -m pytest -q -p no:cacheprovider -m "slow or not slow" -rf tests/test_cuda_step.py tests/test_cuda_rows.py \
    tests/test_cuda_beams.py tests/test_cuda_cache.py tests/test_decoding.py tests/test_beam.py tests/test_equality.py \
    tests/test_heldout.py -k "not 600s and not quantiz" 2>&1 | tee "$out/gpu_tests.txt" | tail -30
  ;;
esac
case "${1:-all}" in
session7-quant)  # issue 17 again after dot_qrow's four chains: the quantized tests (kernel against the flat step,
  # fused against stock on every sample and the larger shapes), then decode ms/token (quant_gpu.py, greedy)
  timeout 185 $py -m pytest -q -p no:cacheprovider -m "slow or not slow" -rf tests/test_cuda_step.py tests/test_quantize.py \
    tests/test_heldout.py tests/test_large_shapes.py tests/test_beam.py -k "quantiz or larger or packing or forward_pass_for" \
    2>&1 | tee "$out/quant_tests.txt" | tail -15
  timeout 275 $py benchmarks/quant_gpu.py "$out" 5 2>&1 | tee "$out/quant_gpu.jsonl"
  ;;
esac
case "${1:-all}" in
session9)  # issue 13: a fresh machine's first runs (empty caches), where a fresh 600 s transcription loses time
  # window by window (fresh_windows.py), the warm-up as one thread, two, or none (warmup_ab.py), JFK cold bench
  $py -m whisperfast info --json > "$out/info.json"
  # first after install (MLX's JIT cache, the kernel cache and the model conversion empty), then again
  $py - <<'PY' 2>&1 | tee "$out/first-runs.jsonl"
import json, subprocess, sys, time
for args in (["--fast"], [], ["--fast"], []):
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "whisperfast", "transcribe", "samples/jfk.wav", "-q", "--json", *args],
                       capture_output=True, text=True)
    wall = time.perf_counter() - t0
    d = json.loads(r.stdout) if r.returncode == 0 else {}
    print(json.dumps({"args": args, "wall_s": round(wall, 3), "timings": d.get("timings"), "text": d.get("text"),
                      "rc": r.returncode, "err": r.stderr[-300:] if r.returncode else ""}), flush=True)
PY
  $py benchmarks/make_clip.py /tmp/clip600.wav 600 > /dev/null
  for m in tiny.en base; do
    $py -m whisperfast transcribe /tmp/clip600.wav -m $m --fast -q > /dev/null  # the kernel cache filled once
    $py benchmarks/fresh_windows.py $m /tmp/clip600.wav 3 > "$out/fresh-windows-$m.jsonl" 2>&1; grep wall_s "$out/fresh-windows-$m.jsonl"
  done
  AB_VARIANTS=now,split,off $py benchmarks/warmup_ab.py 5 samples/jfk.wav 2>&1 | tee "$out/warmup-split-ab.jsonl" | grep median
  $py -m whisperfast bench --cold --runs 5 --json > "$out/cold-jfk.json" 2> "$out/cold-jfk.txt"; grep -E "^│ (stock|fused)" "$out/cold-jfk.txt"
  ;;
esac
case "${1:-all}" in
session9b)  # after the prompt's rounded attention on CUDA and the two-thread warm-up: what a new prompt length
  # costs (prompt_first_calls.py), the 600 s windows again, the cold bench (JFK, 600 s tiny.en and base)
  $py -m whisperfast info --json > "$out/info.json"
  $py -m whisperfast transcribe samples/jfk.wav --fast -q > /dev/null; $py -m whisperfast transcribe samples/jfk.wav -q > /dev/null
  $py benchmarks/prompt_first_calls.py 2>&1 | tee "$out/prompt-first-calls.jsonl" | python3 -c "
import json, sys
for l in sys.stdin:
    d = json.loads(l); print(d['lane'], d.get('first_sum_s'), d.get('again_sum_s'), 'exit', d.get('exit_s'), d.get('err', ''))"
  $py benchmarks/make_clip.py /tmp/clip600.wav 600 > /dev/null
  for m in tiny.en base; do
    $py -m whisperfast transcribe /tmp/clip600.wav -m $m --fast -q > /dev/null  # the kernel cache filled once
    $py benchmarks/fresh_windows.py $m /tmp/clip600.wav 2 > "$out/fresh-windows-$m.jsonl" 2>&1; grep wall_s "$out/fresh-windows-$m.jsonl"
  done
  # (at a735134 with the two-thread warm-up as the CLI's: its rows "now" and "one" are today's split and now)
  AB_VARIANTS=split,now $py benchmarks/warmup_ab.py 4 samples/jfk.wav 2>&1 | tee "$out/warmup-ab.jsonl" | grep median
  $py -m whisperfast bench --cold --runs 5 --json > "$out/cold-jfk.json" 2> /tmp/cold.txt; grep -E "^│ (stock|fused)" /tmp/cold.txt
  for m in tiny.en base; do
    $py -m whisperfast bench /tmp/clip600.wav -m $m --cold --runs 2 --json > "$out/cold-600s-$m.json" 2> /tmp/cold.txt
    echo "600 s $m"; grep -E "^│ (stock|fused)" /tmp/cold.txt
  done
  ;;
esac
case "${1:-all}" in
session9-tests)  # the GPU tests a prompt's attention touches: the long-form and held-out equality tests (the
  # 600 s clip too); then (session9-tests2) the kernel's, the samples' equality, beams (whose prompts the module pass runs)
  timeout 570 $py -m pytest -q -p no:cacheprovider -m "slow or not slow" -rf tests/test_heldout.py -k "not quantiz" \
    2>&1 | tee "$out/gpu_tests_heldout.txt" | tail -20
  ;;
esac
case "${1:-all}" in
session9-tests2)
  timeout 570 $py -m pytest -q -p no:cacheprovider -m "slow or not slow" -rf tests/test_cuda_step.py tests/test_equality.py \
    tests/test_beam.py tests/test_cuda_beams.py tests/test_coldstart.py tests/test_decoding.py -k "not quantiz" \
    2>&1 | tee "$out/gpu_tests.txt" | tail -20
  ;;
esac
case "${1:-all}" in
session9c)  # HEAD's record: the 600 s clip window by window (the first prompt's prefill, filters, update timed),
  # and the cold bench of the 600 s clip, tiny.en and base
  $py -m whisperfast info --json > "$out/info.json"
  $py benchmarks/make_clip.py /tmp/clip600.wav 600 > /dev/null
  for m in tiny.en base; do $py -m whisperfast transcribe /tmp/clip600.wav -m $m --fast -q > /dev/null; done
  $py benchmarks/fresh_windows.py tiny.en /tmp/clip600.wav 2 > "$out/fresh-windows-detail-tiny.en.jsonl" 2>&1
  grep wall_s "$out/fresh-windows-detail-tiny.en.jsonl"
  for m in tiny.en base; do
    $py -m whisperfast bench /tmp/clip600.wav -m $m --cold --runs 3 --json > "$out/cold-600s-$m.json" 2> "$out/cold-600s-$m.txt"
    echo "600 s $m"; grep -E "^│ (stock|fused)|Error" "$out/cold-600s-$m.txt"
  done
  ;;
esac
case "${1:-all}" in
session9-warm)  # the warm bench of the 600 s clip after the prompt's change: stock and fused in one process, alternated
  $py benchmarks/make_clip.py /tmp/clip600.wav 600 > /dev/null
  for m in tiny.en base; do
    $py -m whisperfast bench /tmp/clip600.wav -m $m --dtype float16 --lanes stock,fused --runs 3 --warmup 1 --json \
      --no-kernels > "$out/warm-600s-$m.json" 2> "$out/warm-600s-$m.txt"; tail -8 "$out/warm-600s-$m.txt"
  done
  ;;
esac
case "${1:-all}" in
session10)  # issue 13's first run after install: what compiles, and on which line (first_run_probe.py, caches
  # emptied for each part), how NVRTC compiles scale on threads, the GELU pair's bits on the GPU
  $py -m whisperfast info --json > "$out/info.json"
  $py benchmarks/make_clip.py /tmp/clip600.wav 600 > /dev/null
  for m in tiny.en base; do $py -m whisperfast transcribe samples/jfk.wav -m $m -q > /dev/null; done  # conversions
  $py -m pytest -q -p no:cacheprovider tests/test_kernels.py -k gelu 2>&1 | tail -3
  $py benchmarks/first_run_probe.py samples/jfk.wav tiny.en > "$out/first-run-jfk-tiny.en.jsonl" 2>&1
  LANES=fast,stock $py benchmarks/first_run_probe.py samples/jfk.wav base > "$out/first-run-jfk-base.jsonl" 2>&1
  LANES=fast $py benchmarks/first_run_probe.py /tmp/clip600.wav tiny.en > "$out/first-run-600s-tiny.en.jsonl" 2>&1
  grep -h '"plain"' "$out"/first-run-*.jsonl | cut -c1-200
  ;;
esac
case "${1:-all}" in
session10b)  # after the fast lane's first run stopped meeting MLX's JIT (composed GELU, no indexed reads or
  # writes, one kernel for detection and decode, int32 tokens): the GPU tests it touches
  $py -m whisperfast info --json > "$out/info.json"
  for m in tiny.en base; do $py -m whisperfast transcribe samples/jfk.wav -m $m -q > /dev/null; done  # conversions
  $py -m pytest -q -p no:cacheprovider -m "slow or not slow" -rf tests/test_first_run.py tests/test_kernels.py \
    tests/test_decoding.py tests/test_cuda_step.py tests/test_cuda_cache.py tests/test_coldstart.py \
    -k "not quantiz" 2>&1 | tee "$out/gpu_tests.txt" | tail -8
  ;;
session10c)  # the probe again (first runs: JFK tiny.en and base, the 600 s clip), then JFK's cold bench (caches warm)
  $py -m whisperfast info --json > "$out/info.json"
  $py benchmarks/make_clip.py /tmp/clip600.wav 600 > /dev/null
  for m in tiny.en base; do $py -m whisperfast transcribe samples/jfk.wav -m $m -q > /dev/null; done  # conversions
  $py benchmarks/first_run_probe.py samples/jfk.wav tiny.en > "$out/first-run-jfk-tiny.en.jsonl" 2>&1
  LANES=fast,stock $py benchmarks/first_run_probe.py samples/jfk.wav base > "$out/first-run-jfk-base.jsonl" 2>&1
  LANES=fast,stock $py benchmarks/first_run_probe.py /tmp/clip600.wav tiny.en > "$out/first-run-600s-tiny.en.jsonl" 2>&1
  grep -h '"plain"' "$out"/first-run-*.jsonl | cut -c1-200
  $py -m whisperfast bench --cold --runs 5 --json > "$out/cold-jfk.json" 2> "$out/cold-jfk.txt"; grep -E "^│ (stock|fused)" "$out/cold-jfk.txt"
  ;;
session10d)  # the equality tests the greedy update and the encoder touch, long form and held-out input included
  $py benchmarks/make_clip.py /tmp/clip600.wav 600 > /dev/null
  $py -m pytest -q -p no:cacheprovider -m "slow or not slow" -rf tests/test_equality.py tests/test_heldout.py \
    tests/test_longform.py -k "not quantiz" 2>&1 | tee "$out/gpu_tests_equality.txt" | tail -8
  ;;
session10e)  # the kernels compiled against the lean stand-in headers: every kernel test (quantized too), a first
  # run's compiles (the probe), JFK's cold bench
  $py -m whisperfast info --json > "$out/info.json"
  $py benchmarks/make_clip.py /tmp/clip600.wav 600 > /dev/null
  for m in tiny.en base; do $py -m whisperfast transcribe samples/jfk.wav -m $m -q > /dev/null; done  # conversions
  timeout 300 $py -m pytest -q -p no:cacheprovider -m "slow or not slow" -rf tests/test_first_run.py tests/test_cuda_cache.py \
    tests/test_cuda_step.py tests/test_cuda_beams.py tests/test_cuda_rows.py 2>&1 | tee "$out/gpu_tests.txt" | tail -4
  $py benchmarks/nvrtc_includes.py 2 > "$out/nvrtc-includes.jsonl" 2>&1
  LANES=fast,stock $py benchmarks/first_run_probe.py samples/jfk.wav tiny.en > "$out/first-run-jfk-tiny.en.jsonl" 2>&1
  LANES=fast,stock $py benchmarks/first_run_probe.py samples/jfk.wav base > "$out/first-run-jfk-base.jsonl" 2>&1
  LANES=fast $py benchmarks/first_run_probe.py /tmp/clip600.wav tiny.en > "$out/first-run-600s-tiny.en.jsonl" 2>&1
  grep -h '"plain"' "$out"/first-run-*.jsonl | cut -c1-160
  $py -m whisperfast bench --cold --runs 5 --json > "$out/cold-jfk.json" 2> "$out/cold-jfk.txt"; grep -E "^│ (stock|fused)" "$out/cold-jfk.txt"
  timeout 150 $py -m pytest -q -p no:cacheprovider -rf tests/test_equality.py -k "not quantiz" 2>&1 | tee "$out/gpu_tests_equality.txt" | tail -3
  ;;
session10f)  # the prompt's module pass off MLX's JIT too (its decoder blocks' GELU composed, the embedding a one-hot
  # product): the first-run tests with a long prompt, the prompt's logits against stock's, the 600 s clip's first run
  $py benchmarks/make_clip.py /tmp/clip600.wav 600 > /dev/null
  $py -m whisperfast transcribe samples/jfk.wav -q > /dev/null  # tiny.en's conversion
  timeout 120 $py -m pytest -q -p no:cacheprovider -m "slow or not slow" -rf tests/test_first_run.py tests/test_heldout.py \
    -k "(first_fast_run and tiny) or long_prompt or one_hot or written_out" 2>&1 | tee "$out/gpu_tests_prompt.txt" | tail -4
  LANES=fast $py benchmarks/first_run_probe.py /tmp/clip600.wav tiny.en > "$out/first-run-600s-tiny.en.jsonl" 2>&1
  grep -h '"plain"' "$out"/first-run-*.jsonl | cut -c1-160
  ;;
esac
case "${1:-all}" in
session11)  # issue 13, fresh processes with warm caches: the warm-up on the thread that transcribes (the imports on a
  # second) and the CUDA context's teardown handed to a child, A/B against the tree before (ab-old/, git archive of
  # ba6b894) and with the hand-off off; then the cold bench (its child now cli.main, as installed); the GPU tests touched
  $py -m whisperfast info --json > "$out/info.json"
  $py -m compileall -q ab-old > /dev/null 2>&1 || true
  $py benchmarks/make_clip.py /tmp/clip600.wav 600 > /dev/null
  for m in tiny.en base; do $py -m whisperfast transcribe samples/jfk.wav -m $m -q > /dev/null; done  # conversions
  timeout 150 $py -m pytest -q -p no:cacheprovider -rf tests/test_coldstart.py tests/test_first_run.py \
    2>&1 | tee "$out/gpu_tests.txt" | tail -3
  lanes="ab-old,.,.@WHISPERFAST_GPU_TEARDOWN_HANDOFF=0"
  $py benchmarks/fresh_ab.py 7 "$lanes" samples/jfk.wav > "$out/fresh-ab-jfk.jsonl" 2>&1
  $py benchmarks/fresh_ab.py 4 "$lanes" /tmp/clip600.wav > "$out/fresh-ab-600s-tiny.en.jsonl" 2>&1
  $py benchmarks/fresh_ab.py 3 "ab-old,." /tmp/clip600.wav:base > "$out/fresh-ab-600s-base.jsonl" 2>&1
  grep -h median "$out"/fresh-ab-*.jsonl
  ;;
session11c)  # the stamps of a fresh process (fresh_timeline.py): the tree before (ab-old/), the warm-up thread with the
  # hand-off (ab-thread/), the warm-up on the transcribing thread with the hand-off (.); then HEAD's cold bench
  $py -m whisperfast info --json > "$out/info.json"
  $py -m compileall -q ab-old ab-thread > /dev/null 2>&1 || true
  $py benchmarks/make_clip.py /tmp/clip600.wav 600 > /dev/null
  for m in tiny.en base; do $py -m whisperfast transcribe samples/jfk.wav -m $m -q > /dev/null; done  # conversions
  $py benchmarks/fresh_timeline.py 7 "ab-old,ab-thread,." samples/jfk.wav --stock > "$out/timeline-jfk.jsonl" 2>&1
  $py benchmarks/fresh_timeline.py 4 "ab-old,ab-thread,." /tmp/clip600.wav > "$out/timeline-600s-tiny.en.jsonl" 2>&1
  grep -h median "$out"/timeline-*.jsonl | cut -c1-700
  $py -m whisperfast bench --cold --runs 5 --json > "$out/cold-jfk.json" 2> "$out/cold-jfk.txt"
  for m in tiny.en base; do
    $py -m whisperfast bench /tmp/clip600.wav -m $m --cold --runs 3 --json > "$out/cold-600s-$m.json" 2> "$out/cold-600s-$m.txt"
  done
  grep -hE "^│ (stock|fused)|Error" "$out"/cold-*.txt
  ;;
session11e)  # HEAD's record (the warm-up thread as before, the teardown handed off): the cold bench of JFK and the
  # 600 s clip; whether an early CUDA context would help (driver_first_probe.py); then session11d; the tests touched
  $py -m whisperfast info --json > "$out/info.json"
  $py benchmarks/make_clip.py /tmp/clip600.wav 600 > /dev/null
  for m in tiny.en base; do $py -m whisperfast transcribe samples/jfk.wav -m $m -q > /dev/null; done  # conversions
  $py -m whisperfast bench --cold --runs 5 --json > "$out/cold-jfk.json" 2> "$out/cold-jfk.txt"
  for m in tiny.en base; do
    $py -m whisperfast bench /tmp/clip600.wav -m $m --cold --runs 3 --json > "$out/cold-600s-$m.json" 2> "$out/cold-600s-$m.txt"
  done
  grep -hE "^│ (stock|fused)|Error" "$out"/cold-*.txt
  $py benchmarks/driver_first_probe.py 6 > "$out/driver-first.jsonl" 2>&1; grep median "$out/driver-first.jsonl"
  bash "$0" session11d
  timeout 150 $py -m pytest -q -p no:cacheprovider -rf tests/test_coldstart.py tests/test_first_run.py 2>&1 | tail -2
  ;;
session11d)  # the first-run paths not probed yet (beam 5, tiny.en and base), the cold bench from empty caches
  for m in tiny.en base; do
    ARGS="--beam-size 5" OPTIONS='{"beam_size": 5}' LANES=fast,stock $py benchmarks/first_run_probe.py samples/jfk.wav $m \
      > "$out/first-run-beam5-jfk-$m.jsonl" 2>&1
  done
  grep -h '"plain"' "$out"/first-run-*.jsonl | cut -c1-160
  $py -m whisperfast bench --cold --empty-caches --runs 3 --json > "$out/cold-empty-jfk.json" 2> "$out/cold-empty-jfk.txt"
  grep -hE "^│ (stock|fused)|Error" "$out"/cold-empty-*.txt
  ;;
esac
case "${1:-all}" in
session11f)  # the early CUDA context (02f9ebf) against the tree before it (ab-prev/, b84f776): fresh processes' stamps,
  # JFK and the 600 s clip; a beam-5 first run (its compiles named); the tests touched
  $py -m whisperfast info --json > "$out/info.json"
  $py -m compileall -q ab-prev > /dev/null 2>&1 || true
  $py benchmarks/make_clip.py /tmp/clip600.wav 600 > /dev/null
  $py -m whisperfast transcribe samples/jfk.wav -q --fast > /dev/null  # the conversion, the kernel cache
  timeout 150 $py -m pytest -q -p no:cacheprovider -rf tests/test_coldstart.py tests/test_first_run.py 2>&1 | tee "$out/gpu_tests.txt" | tail -2
  $py benchmarks/fresh_timeline.py 7 "ab-prev,." samples/jfk.wav --stock > "$out/timeline-jfk.jsonl" 2>&1
  $py benchmarks/fresh_timeline.py 4 "ab-prev,." /tmp/clip600.wav > "$out/timeline-600s-tiny.en.jsonl" 2>&1
  grep -h median "$out"/timeline-*.jsonl | cut -c1-700
  ARGS="--beam-size 5" OPTIONS='{"beam_size": 5}' LANES=fast $py benchmarks/first_run_probe.py samples/jfk.wav tiny.en \
    > "$out/first-run-beam5-jfk-tiny.en.jsonl" 2>&1
  grep -h '"plain"' "$out"/first-run-*.jsonl | cut -c1-300
  ;;
esac
case "${1:-all}" in
session11g)  # the beam update's `completed` read without a Gather (MLX's gather_bool JIT, 2.2 s of a first beam run):
  # the first-run tests (beam 5 too), the device beam tests, the probe's beam-5 first run
  $py -m whisperfast transcribe samples/jfk.wav -q > /dev/null  # the conversion
  timeout 300 $py -m pytest -q -p no:cacheprovider -rf tests/test_first_run.py tests/test_cuda_beams.py 2>&1 | tee "$out/gpu_tests.txt" | tail -3
  ARGS="--beam-size 5" OPTIONS='{"beam_size": 5}' LANES=fast,stock $py benchmarks/first_run_probe.py samples/jfk.wav tiny.en \
    > "$out/first-run-beam5-jfk-tiny.en.jsonl" 2>&1
  grep -h '"plain"' "$out"/first-run-*.jsonl | cut -c1-300
  ;;
esac
case "${1:-all}" in
session12-vocab)  # --quantize 4's 8-bit vocabulary once the kernel reads it at its own width (decode_step.cu's EB): the
  # quantized tests (the kernel against the flat step at q8, q4 and q4 with an 8-bit vocabulary, their NVRTC compiles,
  # fused against stock with the kernel decoding), then the bench at 8 and 4 bits
  $py -m whisperfast info --json > "$out/info.json"
  timeout 400 $py -m pytest -q -p no:cacheprovider -m "slow or not slow" -rf tests/test_cuda_step.py tests/test_cuda_cache.py \
    tests/test_quantize.py -k "quant or decode_step_q" 2>&1 | tee "$out/gpu_tests_vocab.txt" | tail -5
  for b in 8 4; do
    $py -m whisperfast bench samples/jfk.wav -m base --quantize $b --lanes stock,fused --runs 5 --no-kernels --json \
      > "$out/bench-base-q$b.json" 2> "$out/bench-base-q$b.txt"; tail -6 "$out/bench-base-q$b.txt"
  done
  ;;
esac
case "${1:-all}" in
session12a)  # issue 13: transcribe's MLX calls on the warm-up's thread, the tokenizer built meanwhile (4637b0d), against
  # the tree before (ab-old/, 6f58233) and HEAD with the calls back on the main thread (ab-tok/: the tokenizer alone);
  # fresh processes' stamps, JFK and the 600 s clip; the cold-start tests on CUDA; libs_first_probe.py
  cold_prep "ab-old ab-tok"
  timeout 150 $py -m pytest -q -p no:cacheprovider -rf tests/test_coldstart.py tests/test_first_run.py 2>&1 | tee "$out/gpu_tests.txt" | tail -2
  $py benchmarks/fresh_timeline.py 7 "ab-old,ab-tok,." samples/jfk.wav --stock > "$out/timeline-jfk.jsonl" 2>&1
  $py benchmarks/fresh_timeline.py 4 "ab-old,." /tmp/clip600.wav > "$out/timeline-600s-tiny.en.jsonl" 2>&1
  grep -h median "$out"/timeline-*.jsonl | cut -c1-900
  $py benchmarks/libs_first_probe.py 6 > "$out/libs-first.jsonl" 2>&1; grep median "$out/libs-first.jsonl"
  ;;
esac
case "${1:-all}" in
session12b)  # the GPU tests of the cold start (the Ctrl-C test fixed), then the load: the embedded model's fp16 entry read as
  # its ~200 arrays (HEAD) against one flat array (ab-flat/: a flat copy in the stored dtype too, its own cache)
  cold_prep ab-flat
  timeout 300 $py -m pytest -q -p no:cacheprovider -rf tests/test_coldstart.py tests/test_first_run.py 2>&1 | tee "$out/gpu_tests.txt" | tail -2
  $py benchmarks/fresh_timeline.py 7 ".,ab-flat@WHISPERFAST_CACHE=/tmp/cache-flat" samples/jfk.wav --stock > "$out/timeline-jfk.jsonl" 2>&1
  $py benchmarks/fresh_timeline.py 4 ".,ab-flat@WHISPERFAST_CACHE=/tmp/cache-flat" /tmp/clip600.wav > "$out/timeline-600s-tiny.en.jsonl" 2>&1
  grep -h median "$out"/timeline-*.jsonl | cut -c1-900
  ;;
session12c)  # HEAD's cold bench: JFK 5 runs, the 600 s clip 3 (tiny.en, base)
  $py benchmarks/make_clip.py /tmp/clip600.wav 600 > /dev/null
  $py -m whisperfast bench --cold --runs 5 --json > "$out/cold-jfk.json" 2> "$out/cold-jfk.txt"
  for m in tiny.en base; do
    $py -m whisperfast bench /tmp/clip600.wav -m $m --cold --runs 3 --json > "$out/cold-600s-$m.json" 2> "$out/cold-600s-$m.txt"
  done
  grep -hE "^│ (stock|fused)|Error" "$out"/cold-*.txt
  ;;
esac
case "${1:-all}" in
session12d)  # MLX's CUDA graphs off (MLX_USE_CUDA_GRAPHS=0) for a one-shot process: fresh processes' stamps against HEAD
  # as it is, JFK and the 600 s clip; then the warm bench (JFK, tiny.en) with graphs on and off
  $py -m whisperfast info --json > "$out/info.json"
  $py benchmarks/make_clip.py /tmp/clip600.wav 600 > /dev/null
  $py -m whisperfast transcribe samples/jfk.wav -q --fast > /dev/null  # the conversion, the kernel cache
  lanes=".,.@MLX_USE_CUDA_GRAPHS=0"
  $py benchmarks/fresh_timeline.py 7 "$lanes" samples/jfk.wav > "$out/timeline-jfk.jsonl" 2>&1
  $py benchmarks/fresh_timeline.py 4 "$lanes" /tmp/clip600.wav > "$out/timeline-600s-tiny.en.jsonl" 2>&1
  grep -h median "$out"/timeline-*.jsonl | cut -c1-400
  for g in 1 0; do
    MLX_USE_CUDA_GRAPHS=$g $py -m whisperfast bench samples/jfk.wav --lanes stock,fused --runs 5 --no-kernels --json \
      > "$out/bench-graphs$g.json" 2> "$out/bench-graphs$g.txt"; grep -E "^│ (stock|fused)" "$out/bench-graphs$g.txt"
  done
  ;;
esac
case "${1:-all}" in
session12e)  # issue 14's numbers at HEAD, warm: JFK greedy and beam 5, stock and fused, tiny.en and base (15 runs, lanes
  # alternated, one process a model)
  $py -m whisperfast info --json > "$out/info.json"
  for m in tiny.en base; do
    $py -m whisperfast bench samples/jfk.wav -m $m --dtype float16 --lanes stock,fused --beam-size 5 --runs 15 --no-kernels \
      --json > "$out/beam5-jfk-$m.json" 2> "$out/beam5-jfk-$m.txt"; grep -E "^│ |^speed|beam" "$out/beam5-jfk-$m.txt"
  done
  ;;
esac
case "${1:-all}" in
session12f)  # is tiny.en's warm fused greedy slower than it was? the same bench in trees from 573822b (h200-beams: 9.4 ms)
  # to HEAD (ab-t/<commit>/, git archives), two rounds, the second in reverse order
  bench_trees "ab-t/573822b ab-t/dceb2ce ab-t/c83b300 ab-t/b71e4da ab-t/a775ed6 ab-t/2171843 ab-t/ba6b894 ." \
    "$out/trees-tiny.en.txt"
  ;;
esac
case "${1:-all}" in
session12g)  # session12f found the step between a775ed6 and 2171843: its three commits, two rounds
  bench_trees "ab-t/a775ed6 ab-t/a053f98 ab-t/baf5db6 ab-t/2171843" "$out/bisect-tiny.en.txt"
  ;;
esac
case "${1:-all}" in
cross-rows)  # wip/cross-rows: a cross-attention item takes several rows of one audio (attend_rows), the keys and values
  # read once: the kernel's logits against the flat step (forward: one audio's rows), beams as stock's, a first run
  # without JIT; where a step's time goes; the warm JFK bench against main (ab-t/main: git archive of main)
  $py -m whisperfast info --json > "$out/info.json"
  timeout 250 $py -m pytest -q -p no:cacheprovider -rf -m "slow or not slow" tests/test_cuda_beams.py tests/test_first_run.py \
    tests/test_cuda_step.py -k "forward or beams or first or prompt" 2>&1 | tee "$out/gpu_tests.txt" | tail -4
  for m in tiny.en base; do $py benchmarks/rows_phases.py $m float16 forward; done 2>&1 | tee "$out/rows_phases.jsonl"
  for t in ab-t/main .; do echo "tree $t"; (cd $t && $py $OLDPWD/benchmarks/beam_steps.py); done 2>&1 \
    | tee "$out/beam_steps.txt"
  bench_trees "ab-t/main ." "$out/cross-tiny.en.txt" --beam-size 5
  bench_trees "ab-t/main ." "$out/cross-base.txt" -m base --beam-size 5
  ;;
session15)  # issue 14: a step's layer norms with one barrier per statistic for all rows, merge_heads two outputs a
  # thread, the logits' rows read as T. Same bits as the tree before (step_bits.py in both), where a step goes in
  # both trees, the warm JFK bench (tiny.en) against it
  $py -m whisperfast info --json > "$out/info.json"
  ln -sfn "$PWD/samples" ab-t/main/samples
  for t in ab-t/main .; do
    (cd $t && PYTHONPATH=.:$PYTHONPATH timeout 200 $py $OLDPWD/benchmarks/step_bits.py) > "$out/bits-$(basename $t).jsonl" 2>&1
  done
  if diff "$out/bits-main.jsonl" "$out/bits-..jsonl" > "$out/bits-diff.txt"; then echo "bits: same"; else echo "bits: DIFFER"; fi
  wc -l "$out"/bits-*.jsonl
  for t in ab-t/main .; do
    for m in tiny.en base; do (cd $t && PYTHONPATH=.:$PYTHONPATH $py $OLDPWD/benchmarks/rows_phases.py $m float16 forward \
      | sed "s|^|$t |"); done
  done 2>&1 | tee "$out/rows_phases.txt"
  bench_trees "ab-t/main ." "$out/tiny.en.txt" --beam-size 5
  ;;
session15-halves)  # issue 14, an experiment (ab-t/halves: cross-attention items of a row two a block, a half each,
  # registers capped by __launch_bounds__): the same bits as this tree, where a step goes, the tiny.en JFK beam bench
  $py -m whisperfast info --json > "$out/info.json"
  ln -sfn "$PWD/samples" ab-t/halves/samples
  for t in . ab-t/halves; do
    (cd $t && PYTHONPATH=.:$PYTHONPATH timeout 200 $py $OLDPWD/benchmarks/step_bits.py) > "$out/bits-$(basename $t).jsonl" 2>&1
  done
  if diff "$out/bits-..jsonl" "$out/bits-halves.jsonl" > "$out/bits-diff.txt"; then echo "bits: same"; else echo "bits: DIFFER"; fi
  for t in . ab-t/halves; do
    for m in tiny.en base; do (cd $t && PYTHONPATH=.:$PYTHONPATH $py $OLDPWD/benchmarks/rows_phases.py $m float16 forward \
      | sed "s|^|$t |"); done
  done 2>&1 | tee "$out/rows_phases.txt"
  bench_trees ". ab-t/halves" "$out/tiny.en.txt" --beam-size 5
  ;;
session16-peers)  # issue 15 (WORK=/tmp/s16, then tar): a GPU peer for batched mode in the same run as whisperfast's:
  # transformers (torch fp16 SDPA, 30 s windows, N a generate call) on the 600 s clip, tiny.en and base (h200-session16/peers/)
  $py -m whisperfast info --json > "$out/info.json"
  $py benchmarks/make_clip.py /tmp/clip600.wav 600 > /dev/null
  batched_benches
  timeout 200 $py benchmarks/peer_transformers.py /tmp/clip600.wav tiny.en 16 32 2>&1 | tee "$out/peer_transformers.jsonl" | cut -c1-400
  timeout 120 $py benchmarks/peer_transformers.py /tmp/clip600.wav base 16 2>&1 | tee -a "$out/peer_transformers.jsonl" | cut -c1-400
  ;;
session16-lstm)  # issue 15 (WORK=/tmp/s16, then tar): the LSTM reading h four floats a load (h200-session16/lstm/): its tests,
  # the probe with a group's parts, the batched 600 s clip (VAD on the GPU), fresh 60-minute and 600 s runs
  $py -m whisperfast info --json > "$out/info.json"
  timeout 100 $py -m pytest -p no:cacheprovider -rf tests/test_silero.py 2>&1 | tee "$out/gpu_tests.txt" | tail -3
  $py benchmarks/make_clip.py /tmp/clip600.wav 600 > /dev/null; $py benchmarks/make_clip.py /tmp/clip3600.wav 3600 > /dev/null
  $py benchmarks/vad_gpu_probe.py /tmp/clip600.wav /tmp/clip3600.wav 2>&1 | tee "$out/vad_gpu_probe.jsonl"
  batched_benches
  fresh_batched | tee "$out/fresh_3600s.jsonl"
  ;;
session16-kernels)  # issue 15 (WORK=/tmp/s16, then tar): the VAD's frame-by-frame part in one kernel (silero_cuda.py), the LSTM with one barrier a
  # step (h200-session16/kernels/; again with R interleaved and the Chunker's buffer in parts, final/): tests (and batched mode's), the probe, the batched 600 s clip (VAD on the GPU or onnxruntime), fresh 60-minute runs
  $py -m whisperfast info --json > "$out/info.json"
  timeout 200 $py -m pytest -p no:cacheprovider -rf tests/test_silero.py tests/test_batched.py -m "not slow" 2>&1 \
    | tee "$out/gpu_tests.txt" | tail -8
  $py benchmarks/make_clip.py /tmp/clip600.wav 600 > /dev/null; $py benchmarks/make_clip.py /tmp/clip3600.wav 3600 > /dev/null
  $py benchmarks/vad_gpu_probe.py /tmp/clip600.wav /tmp/clip3600.wav 2>&1 | tee "$out/vad_gpu_probe.jsonl"
  for m in tiny.en base; do
    both_vads $m
  done
  $py -m whisperfast bench /tmp/clip600.wav --dtype float16 --lanes fused --runs 3 --warmup 1 --json --no-kernels \
    --batch-size 32 > "$out/bench-tiny.en-600s-b32.json" 2> "$out/bench-tiny.en-600s-b32.txt"
  grep -E "^│ fused|audio-seconds" "$out/bench-tiny.en-600s-b32.txt" | sed "s|^|tiny.en b32 |"
  for m in tiny.en base; do  # sequential mode, warm, for the WER beside batched mode's
    $py -m whisperfast bench /tmp/clip600.wav -m $m --dtype float16 --lanes fused --runs 1 --warmup 1 --json --no-kernels \
      > "$out/bench-$m-600s-sequential.json" 2> "$out/bench-$m-600s-sequential.txt"
    grep -E "^│ fused" "$out/bench-$m-600s-sequential.txt" | sed "s|^|$m sequential |"
  done
  fresh_batched | tee "$out/fresh_3600s.jsonl"
  ;;
session24)  # issue 13: the CUDA driver's module loading (never set by whisperfast: lazy by default since CUDA 12.2, unless the
  # machine sets it) and its JIT cache, fresh JFK processes lane by lane (default, EAGER, LAZY, stock) and the first
  # calls' probe under each; then issue 13's cold bench at this tree; then, under LIMIT, the tests this session's code
  # touches (the decoding task, batched mode; the CPU batch step's own tests skip on a GPU)
  $py -m whisperfast info --json > "$out/info.json"
  { env | grep -E "^(CUDA|MLX|HOME|XDG)"; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
    du -sh ~/.nv/ComputeCache 2>&1; } | tee "$out/env.txt"
  cold_prep "whisperfast"
  $py benchmarks/fresh_ab.py 5 ".,.@CUDA_MODULE_LOADING=EAGER,.@CUDA_MODULE_LOADING=LAZY" samples/jfk.wav > "$out/loading-ab.jsonl" 2>&1
  tail -4 "$out/loading-ab.jsonl"
  for v in EAGER LAZY; do
    CUDA_MODULE_LOADING=$v $py benchmarks/cold_gpu_probe.py 2 > "$out/probe-$v.jsonl" 2>&1
    $py -c "import json, sys; t = open(sys.argv[1]).read(); m = json.loads(t[t.index('{\n \"medians\"'):])['medians']
print(sys.argv[2], json.dumps({k: {n: v for n, v in r.items() if 'again' not in n} for k, r in m.items()}))" "$out/probe-$v.jsonl" $v \
      || tail -c 1500 "$out/probe-$v.jsonl"
  done
  cold_benches
  timeout ${LIMIT:-200} $py -m pytest -q -p no:cacheprovider -rf -m "slow or not slow" tests/test_decoding.py tests/test_batched.py \
    tests/test_cpu_batch.py 2>&1 | tee "$out/gpu_tests.txt" | grep -E "^(FAILED|ERROR)|passed|failed" | tail -12
  ;;
session24b)  # the second call: the CPU batch test's GPU skip; issue 13's first run after install (caches cleared: the
  # firstrun mode); the cold bench again; issue 15's batched 600 s clip, tiny.en, 32 a batch (warm)
  $py -m pytest -q -p no:cacheprovider tests/test_cpu_batch.py 2>&1 | tail -2
  bash "$0" firstrun > /dev/null 2>&1
  $py -c "import json, sys
for l in open(sys.argv[1]): d = json.loads(l); print(d['run'], ' '.join(d['args']) or 'stock', d['wall_s'], d['rc'])" "$out/firstrun_jfk.jsonl"
  cold_benches
  $py -m whisperfast bench /tmp/clip600.wav --dtype float16 --lanes fused --runs 3 --warmup 1 --json --no-kernels \
    --batch-size 32 > "$out/bench-tiny.en-600s-b32.json" 2> "$out/bench-tiny.en-600s-b32.txt"
  grep -E "^│ fused|audio-seconds" "$out/bench-tiny.en-600s-b32.txt" | sed "s|^|tiny.en b32 |"
  ;;
session22)  # one call at 58c66ac: the cold bench (JFK 5 runs; the 600 s clip 3, tiny.en and base), then session21-tests' files under LIMIT
  cold_benches
  bash "$0" session21-tests
  ;;
session22-tests)  # the second call (VAD packages staged too): what session22's tests left, batched mode first, under LIMIT;
  # then the batched 600 s clip, tiny.en, 32 a batch (issue 15)
  $py -m whisperfast info --json > "$out/info.json"
  timeout ${LIMIT:-420} $py -m pytest -v -p no:cacheprovider -rf -m "slow or not slow" tests/test_batched.py tests/test_quantize.py \
    tests/test_silero.py tests/test_large_shapes.py tests/test_longform.py 2>&1 \
    | tee "$out/gpu_tests_2.txt" | grep -E "PASSED|FAILED|ERROR|SKIPPED" | awk '{print $2}' | sort | uniq -c
  grep -E "^(FAILED|ERROR)|passed|failed" "$out/gpu_tests_2.txt" | tail -12
  $py benchmarks/make_clip.py /tmp/clip600.wav 600 > /dev/null
  $py -m whisperfast bench /tmp/clip600.wav --dtype float16 --lanes fused --runs 3 --warmup 1 --json --no-kernels \
    --batch-size 32 > "$out/bench-tiny.en-600s-b32.json" 2> "$out/bench-tiny.en-600s-b32.txt"
  grep -E "^│ fused|audio-seconds" "$out/bench-tiny.en-600s-b32.txt" | sed "s|^|tiny.en b32 |"
  ;;
session21-quick)  # one call: the cold bench (JFK 5 runs, the 600 s clip 3, tiny.en), then session21-tests' files under LIMIT
  cold_prep "whisperfast"
  $py -m whisperfast bench --cold --runs 5 --json > "$out/cold-jfk.json" 2> "$out/cold-jfk.txt"
  $py -m whisperfast bench /tmp/clip600.wav --cold --runs 3 --json > "$out/cold-600s-tiny.en.json" 2> "$out/cold-600s-tiny.en.txt"
  grep -hE "^│ (stock|fused)|Error" "$out"/cold-*.txt
  bash "$0" session21-tests
  ;;
session21-tests)  # what the last GPU runs left out, at this tree: the held-out variants, batched mode, quantized models,
  # large shapes, the VAD, long form (slow ones included), under one time limit; -v so the log says how far it got
  $py -m whisperfast info --json > "$out/info.json"; cat "$out/info.json"
  timeout ${LIMIT:-540} $py -m pytest -v -p no:cacheprovider -rf -m "slow or not slow" tests/test_heldout.py tests/test_batched.py \
    tests/test_quantize.py tests/test_large_shapes.py tests/test_silero.py tests/test_longform.py 2>&1 \
    | tee "$out/gpu_tests.txt" | grep -E "PASSED|FAILED|ERROR|SKIPPED" | awk '{print $2}' | sort | uniq -c
  grep -E "^(FAILED|ERROR)|passed|failed" "$out/gpu_tests.txt" | tail -12
  ;;
session21-cold)  # issue 13 at this tree: the cold bench (fresh processes, caches warm on disk), JFK 5 runs, the 600 s clip 3
  # (tiny.en, base); then the cold-start and first-run tests and the rest of the GPU tests left out before
  cold_benches
  timeout ${LIMIT:-300} $py -m pytest -v -p no:cacheprovider -rf -m "slow or not slow" tests/test_coldstart.py tests/test_first_run.py \
    tests/test_cuda_knobs.py tests/test_kernels.py tests/test_rewrite.py tests/test_transcribe.py tests/test_beam.py 2>&1 \
    | tee "$out/gpu_tests_2.txt" | grep -E "^(FAILED|ERROR)|passed|failed" | tail -12
  ;;
session16)  # issue 15: Silero VAD on the GPU (silero.py, kernels/lstm.py): its tests, the probe against onnxruntime
  # (600 s and 60 min), the batched 600 s clip with the VAD on either, sequential for the WER, fresh 60-minute processes
  $py -m whisperfast info --json > "$out/info.json"
  timeout 120 $py -m pytest -v -p no:cacheprovider -rf tests/test_silero.py 2>&1 | tee "$out/gpu_tests.txt" | tail -14
  $py benchmarks/make_clip.py /tmp/clip600.wav 600 > /dev/null; $py benchmarks/make_clip.py /tmp/clip3600.wav 3600 > /dev/null
  $py benchmarks/vad_gpu_probe.py /tmp/clip600.wav /tmp/clip3600.wav 2>&1 | tee "$out/vad_gpu_probe.jsonl"
  for m in tiny.en base; do
    both_vads $m
    $py -m whisperfast bench /tmp/clip600.wav -m $m --dtype float16 --lanes fused --runs 1 --warmup 0 --json --no-kernels \
      > "$out/bench-$m-600s-sequential.json" 2> "$out/bench-$m-600s-sequential.txt"
    grep -E "^│ fused" "$out/bench-$m-600s-sequential.txt" | sed "s|^|$m sequential |"
  done
  $py -m whisperfast bench /tmp/clip600.wav --dtype float16 --lanes fused --runs 3 --warmup 1 --json --no-kernels \
    --batch-size 32 > "$out/bench-tiny.en-600s-b32.json" 2> "$out/bench-tiny.en-600s-b32.txt"
  grep -E "^│ fused|audio-seconds" "$out/bench-tiny.en-600s-b32.txt" | sed "s|^|tiny.en b32 |"
  $py - <<'PY' 2>&1 | tee "$out/fresh_3600s.jsonl"
import json, subprocess, sys, time
for args in (["/tmp/clip600.wav"], ["/tmp/clip3600.wav"], ["/tmp/clip3600.wav"], ["/tmp/clip3600.wav", "--batch-size", "32"]):
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "whisperfast", "transcribe", *args[:1], "--fast", "-q", "--json",
                        *(args[1:] or ["--batch-size", "16"])], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    d = json.loads(r.stdout) if r.returncode == 0 else {}
    d = d[0] if isinstance(d, list) else d
    print(json.dumps(dict(args=args, rc=r.returncode, wall_s=wall, timings=d.get("timings"), windows=d.get("windows"),
                          words=len(d.get("text", "").split()), err=r.stderr[-300:])), flush=True)
PY
  ;;
session15-final)  # issue 14: half-block cross-attention items and the launch bound, shared items only past two rounds
  # of them: the same bits as the session's start (ab-t/main), where a step goes against the experiment's policy
  # (ab-t/halves: base's 5 beams shared), the JFK beam bench of both models against the start
  $py -m whisperfast info --json > "$out/info.json"
  ln -sfn "$PWD/samples" ab-t/main/samples; ln -sfn "$PWD/samples" ab-t/halves/samples
  for t in ab-t/main .; do
    (cd $t && PYTHONPATH=.:$PYTHONPATH timeout 200 $py $OLDPWD/benchmarks/step_bits.py) > "$out/bits-$(basename $t).jsonl" 2>&1
  done
  if diff "$out/bits-main.jsonl" "$out/bits-..jsonl" > "$out/bits-diff.txt"; then echo "bits: same"; else echo "bits: DIFFER"; fi
  for t in ab-t/halves .; do
    for m in tiny.en base; do (cd $t && PYTHONPATH=.:$PYTHONPATH $py $OLDPWD/benchmarks/rows_phases.py $m float16 forward \
      | sed "s|^|$t |"); done
  done 2>&1 | tee "$out/rows_phases.txt"
  bench_trees "ab-t/main ." "$out/tiny.en.txt" --beam-size 5
  bench_trees "ab-t/main ." "$out/base.txt" -m base --beam-size 5
  ;;
session15-tests)  # the kernel's GPU tests: beams, rows, the equality tests, the step against the flat one
  $py -m whisperfast info --json > "$out/info.json"
  timeout 520 $py -m pytest -v -p no:cacheprovider -rf tests/test_cuda_beams.py tests/test_cuda_rows.py \
    tests/test_equality.py tests/test_cuda_step.py tests/test_first_run.py -k "not test_cuda_logits_match_the_flat_step or -30- or 1--" 2>&1 \
    | tee "$out/gpu_tests.txt" | tail -8
  ;;
session15-check)  # the probes' shared driver (step_driver.py): step_bits.py's hashes (to compare with final/'s) and
  # rows_phases.py on tiny.en
  $py -m whisperfast info --json > "$out/info.json"
  timeout 200 $py benchmarks/step_bits.py > "$out/bits.jsonl" 2>&1; wc -l "$out/bits.jsonl"
  $py benchmarks/rows_phases.py tiny.en float16 forward 2>&1 | tee "$out/rows_phases.jsonl"
  ;;
session15-more)  # the rest of the kernel's GPU tests at the launch bound (the one-block greedy update, larger shapes with
  # 12-20 heads, the cache, the knobs); fresh processes (bench --cold: JFK, the 600 s clip); the batched 600 s clip
  # where the VAD's packages are there
  cold_prep .
  timeout 300 $py -m pytest -v -p no:cacheprovider -rf -m "slow or not slow" tests/test_cuda_step.py tests/test_large_shapes.py \
    tests/test_cuda_cache.py tests/test_cuda_knobs.py -k "greedy_kernel or larger_shapes or test_cuda_cache or knobs" 2>&1 \
    | tee "$out/gpu_tests.txt" | tail -8
  $py -m whisperfast bench --cold --runs 3 --json > "$out/bench_cold-jfk.json" 2> "$out/bench_cold-jfk.txt"
  tail -12 "$out/bench_cold-jfk.txt"
  $py -m whisperfast bench /tmp/clip600.wav --cold --runs 2 --json > "$out/bench_cold-600s.json" 2> "$out/bench_cold-600s.txt"
  tail -12 "$out/bench_cold-600s.txt"
  if $py -c "import onnxruntime, onnx" 2>/dev/null; then
    $py -m whisperfast bench /tmp/clip600.wav --dtype float16 --lanes fused --runs 3 --warmup 1 --json --no-kernels \
      --batch-size 16 > "$out/bench-tiny.en-600s-batch16.json" 2> "$out/bench-tiny.en-600s-batch16.txt"
    tail -8 "$out/bench-tiny.en-600s-batch16.txt"
  else
    echo "no onnxruntime/onnx here: batched mode not run"
  fi
  ;;
session14)  # issue 14: beam_update without the caches' gather (each row's history through a path table) and with one
  # pass over its chunk; cross-attention items taking an audio's rows where single rows would take the grid over two
  # rounds (SHARE); greedy's one-row picks in registers. Tests, where a step goes, the warm JFK bench against main
  $py -m whisperfast info --json > "$out/info.json"
  timeout 270 $py -m pytest -v -p no:cacheprovider -rf -m "slow or not slow" tests/test_cuda_beams.py tests/test_first_run.py tests/test_beam.py \
    tests/test_cuda_step.py -k "not test_cuda_logits_match_the_flat_step or (forward and 30)" 2>&1 \
    | tee "$out/gpu_tests.txt" | tail -6
  for m in tiny.en base; do $py benchmarks/rows_phases.py $m float16 forward; done 2>&1 | tee "$out/rows_phases.jsonl"
  for t in ab-t/main .; do echo "tree $t"; (cd $t && $py $OLDPWD/benchmarks/beam_steps.py); done 2>&1 \
    | tee "$out/beam_steps.txt"
  bench_trees "ab-t/main ." "$out/tiny.en.txt" --beam-size 5
  bench_trees "ab-t/main ." "$out/base.txt" -m base --beam-size 5
  ;;
session14-rest)  # what session14's test run did not reach (its limit cut test_cuda_step): the greedy kernel's logits at
  # 1 and 3 rows (filter_add's picks by constants at one row), the prompt, the one-block greedy update, JFK, one
  # compile for every prompt length, the quantized logits; then the JFK bench again, this tree alone, three rounds
  $py -m whisperfast info --json > "$out/info.json"
  timeout 200 $py -m pytest -v -p no:cacheprovider -rf -m "slow or not slow" tests/test_cuda_step.py \
    -k "not test_cuda_logits_match_the_flat_step or (greedy and (1-dtype or 3-dtype) and not -30-)" 2>&1 \
    | tee "$out/gpu_tests.txt" | tail -4
  for m in tiny.en base; do
    for round in 1 2 3; do
      $py -m whisperfast bench samples/jfk.wav -m $m --dtype float16 --lanes stock,fused --runs 10 --no-kernels \
        --beam-size 5 2>&1 | grep -E "^│ (stock|fused)" | sed "s|^|$m $round |"
    done
  done 2>&1 | tee "$out/bench.txt"
  ;;
session13-tests)  # issue 14: the forward pass of beams and samples in one group of rows (no picks) and one cross K/V
  # per audio: the kernel's logits against the flat step (with and without the picks, 1 to 8 rows, packed too), beams
  # as the host's and stock's, a first run without MLX's JIT; then where a step's time goes, with and without the picks
  $py -m whisperfast info --json > "$out/info.json"
  timeout 400 $py -m pytest -q -p no:cacheprovider -rf -m "slow or not slow" tests/test_cuda_step.py tests/test_cuda_beams.py \
    tests/test_beam.py tests/test_first_run.py 2>&1 | tee "$out/gpu_tests.txt" | tail -8
  for m in tiny.en base; do
    $py benchmarks/rows_phases.py $m float16 forward
    $py benchmarks/rows_phases.py $m float16
  done 2>&1 | tee "$out/rows_phases.jsonl"
  ;;
session13-bench)  # the warm JFK bench, greedy and beam 5, in the working tree against HEAD before it (ab-t/head),
  # the flag fix's parent (ab-t/prev) and a775ed6 (before the greedy slowdown); base against ab-t/head
  bench_trees "ab-t/a775ed6 ab-t/prev ab-t/head ." "$out/trees-tiny.en.txt" --beam-size 5
  bench_trees "ab-t/head ." "$out/trees-base.txt" -m base --beam-size 5
  ;;
session13-bisect)  # tiny.en's warm greedy slowdown at a053f98, its two decode-side changes undone one at a time on
  # the current tree (ab-t/cur): the fast encoder's composed GELU (ab-t/enc: model.encoder), the flag a view or cast
  # copy (ab-t/flag0: completed[0]), both (ab-t/both); a775ed6 beside them
  bench_trees "ab-t/a775ed6 ab-t/cur ab-t/enc ab-t/flag0 ab-t/both" "$out/bisect-tiny.en.txt"
  ;;
session13-bisect)  # tiny.en's warm greedy slowdown at a053f98, its two decode-side changes undone one at a time on
  # the current tree (ab-t/cur): the fast encoder's composed GELU (ab-t/enc: model.encoder), the flag a view or cast
  # copy (ab-t/flag0: completed[0]), both (ab-t/both); a775ed6 beside them
  bench_trees "ab-t/a775ed6 ab-t/cur ab-t/enc ab-t/flag0 ab-t/both" "$out/bisect-tiny.en.txt"
  ;;
session13-final)  # the kernels' flag one byte (launch.FLAG_SHAPE): a first run meets no MLX JIT kernel, the prompt's
  # flag, beams as the host's and stock's; then the warm JFK bench, greedy and beam 5, tiny.en and base, against the
  # session's start (ab-t/start: git archive of 0482f61)
  $py -m whisperfast info --json > "$out/info.json"
  timeout 150 $py -m pytest -q -p no:cacheprovider -rf -m "slow or not slow" tests/test_first_run.py tests/test_cuda_beams.py \
    tests/test_cuda_step.py -k "not logits_match" 2>&1 | tee "$out/gpu_tests.txt" | tail -4
  bench_trees "ab-t/start ." "$out/final-tiny.en.txt" --beam-size 5
  bench_trees "." "$out/final-base.txt" -m base --beam-size 5
  ;;
session13-flag)  # launch.host_flag (the loop reads a 1-byte copy of the kernel's `completed`): first, that a first run
  # still meets none of MLX's JIT kernels and the kernels still decode as stock (tests); then the warm JFK bench,
  # greedy and beam 5, against the tree before it (ab-t/prev/: git archive of the commit before) and a775ed6 (ab-t/a775ed6/)
  $py -m whisperfast info --json > "$out/info.json"
  timeout 300 $py -m pytest -q -p no:cacheprovider -rf tests/test_first_run.py tests/test_cuda_step.py tests/test_cuda_beams.py \
    2>&1 | tee "$out/gpu_tests.txt" | tail -3
  bench_trees "ab-t/a775ed6 ab-t/prev ." "$out/flag-tiny.en.txt" --beam-size 5
  ;;
session25)  # issue 15 on the H200 in one call (the peers' wheels in .stage/part7, carried): the 600 s clip, tiny.en, 32 a
  # batch, whisperfast batched against transformers' chunked pipeline (32 a batch), openai-whisper (torch fp16, one file
  # at a time) and whisper.cpp (pywhispercpp's CPU build, 16 threads), WER against the clip's text; large-v3-turbo's
  # shapes (random weights) batched, 600 s, 32 a batch; fresh 60-minute processes at 32 a batch
  peers_wheels
  $py -m whisperfast info --json > "$out/info.json"
  { nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
    $py -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
    $py -c "import numba; print('numba', numba.__version__)" 2>&1 | tail -1; } | tee "$out/env.txt"
  lanes=fused,transformers,openai-whisper,whisper.cpp
  $py -c "import numba" 2>/dev/null || lanes=fused,transformers,whisper.cpp  # openai-whisper imports numba
  timeout ${T1:-240} $py benchmarks/peers.py "$out/peers-tiny.en-600s-b32.json" --seconds 600 -m tiny.en --batch-size 32 \
    --lanes $lanes 2> "$out/peers-tiny.en.log" || tail -5 "$out/peers-tiny.en.log"
  timeout ${T2:-150} $py benchmarks/peers.py "$out/turbo-random-600s-b32.json" --seconds 600 --random large-v3-turbo \
    --batch-size 32 --runs 3 --warmup 1 2> "$out/turbo.log" || tail -5 "$out/turbo.log"
  # the batched decode's waves (rows, tokens, seconds per decode call: the chunks, then the rests rows left out)
  timeout ${T4:-90} $py benchmarks/batched/profile.py --seconds 600 --batch-size 32 --fast --dtype float16 --runs 2 \
    > "$out/profile-600s-b32.json" 2> "$out/profile.log" || tail -5 "$out/profile.log"
  $py -c "import json, sys
d = json.load(open(sys.argv[1])); print('profile', d['median'])
for c in d['runs']['batched'][-1]['decode_calls']: print(c['rows'], c['temperature'], max(c['tokens']), round(c['s'], 4))" \
    "$out/profile-600s-b32.json" 2>&1 | tail -12
  $py benchmarks/make_clip.py /tmp/clip3600.wav 3600 > /dev/null; $py benchmarks/make_clip.py /tmp/clip600.wav 600 > /dev/null
  FRESH_BATCH=32 timeout ${T3:-120} bash -c "$(declare -f fresh_batched); py=$py; fresh_batched" > "$out/fresh_3600s_b32.jsonl"
  $py -c "import json, sys
for l in open(sys.argv[1]): d = json.loads(l); print(d['args'], d['rc'], round(d['wall_s'], 3), {k: round(v, 3) for k, v in (d['timings'] or {}).items()}, d['err'][-200:])" "$out/fresh_3600s_b32.jsonl"
  ;;
session25b)  # the second call: base's peers on the 600 s clip, and the 60-minute clip with tiny.en, whisperfast batched
  # against transformers' pipeline
  peers_wheels
  $py benchmarks/peers.py "$out/peers-base-600s-b32.json" --seconds 600 -m base --batch-size 32 \
    --lanes fused,transformers,openai-whisper 2> "$out/peers-base.log" || tail -5 "$out/peers-base.log"
  $py benchmarks/peers.py "$out/peers-tiny.en-3600s-b32.json" --seconds 3600 -m tiny.en --batch-size 32 \
    --lanes fused,transformers 2> "$out/peers-3600.log" || tail -5 "$out/peers-3600.log"
  ;;
session27)  # HEAD on the GPU after session 26's last CUDA changes (cuda/step.kernel_picks by group size, language
  # detection's prompt on the decode's kernel), none of which had run on one: the CUDA and batched tests; where a
  # fresh 60-minute processes, knob 1000 against 3 (batched/fresh_pick_probe.sh); where a batched step's time goes
  # (rows_phases.py batched: 8, 16, 32 rows of separate audio)
  $py -m whisperfast info --json > "$out/info.json"
  timeout ${T1:-300} $py -m pytest -q -p no:cacheprovider -rf -m "slow or not slow" tests/test_cuda_rows.py \
    tests/test_cuda_cache.py tests/test_cuda_step.py tests/test_cuda_knobs.py tests/test_batched.py tests/test_decoding.py \
    2>&1 | tee "$out/gpu_tests.txt" | tail -8
  timeout ${T2:-150} bash benchmarks/batched/fresh_pick_probe.sh 2>&1 | tee "$out/fresh_pick.txt"
  for m in tiny.en base; do timeout ${T3:-80} $py benchmarks/rows_phases.py $m float16 batched; done 2>&1 | tee "$out/rows_phases.txt"
  ;;
session27b)  # cuda/step.greedy_rows (a greedy batch past the picks padded to whole groups: few row counts compiled): on a
  # machine's empty kernel caches, the first process over the 60-minute clip at 32 a batch, then three more; where a
  # fresh batched process's time goes (fresh_timeline.py, 3 runs); then the tests it touches, and the register check
  # with its ptxas report shown where it finds no count
  $py -m whisperfast info --json > "$out/info.json"
  $py benchmarks/make_clip.py /tmp/clip3600.wav 3600 > /dev/null
  # the VAD's kernels and the one-row step compiled first, as session27's first batched process found them
  $py -m whisperfast transcribe samples/jfk.wav --fast --vad -q > /dev/null
  fresh_hour 4 "$out/fresh_first.jsonl" ${T1:-150}
  TIMELINE_ARGS="--batch-size 32" timeout ${T2:-90} $py benchmarks/fresh_timeline.py 3 . /tmp/clip3600.wav 2>&1 \
    | tee "$out/timeline-3600s-b32.jsonl" | tail -1
  timeout ${T3:-240} $py -m pytest -q -p no:cacheprovider -rf -m "slow or not slow" tests/test_cuda_rows.py tests/test_batched.py \
    tests/test_decoding.py 2>&1 | tee "$out/gpu_tests.txt" | tail -5
  timeout ${T4:-60} $py -m pytest -q -p no:cacheprovider -rf -x -m "slow or not slow" tests/test_cuda_cache.py -k "fits and tiny-float" \
    2>&1 | tee "$out/register_test.txt" | tail -30
  ;;
session28)  # the VAD's groups queued on the device (74833c4) against the tree before (ab-t/main: git archive of 79d4930):
  # the VAD's and batched mode's tests; the VAD alone over 600 s and 60 min (vad_gpu_probe.py) in each tree; the warm
  # batched 600 s bench (tiny.en, base; 32 a batch) in each tree, two rounds, the second in reverse order; fresh
  # 60-minute processes (32 a batch), the trees alternated
  $py -m whisperfast info --json > "$out/info.json"
  $py benchmarks/make_clip.py /tmp/clip600.wav 600 > /dev/null
  $py benchmarks/make_clip.py /tmp/clip3600.wav 3600 > /dev/null
  $py -m compileall -q ab-t/main > /dev/null 2>&1 || true
  timeout ${T1:-200} $py -m pytest -q -p no:cacheprovider -rf -m "slow or not slow" tests/test_silero.py tests/test_batched.py \
    2>&1 | tee "$out/gpu_tests.txt" | tail -4
  for t in ab-t/main .; do
    PYTHONPATH=$t:$PYTHONPATH timeout ${T2:-60} $py benchmarks/vad_gpu_probe.py /tmp/clip600.wav /tmp/clip3600.wav --runs 3 \
      2>&1 | sed "s|^|$t |"
  done | tee "$out/vad_probe.txt" | cut -c1-400
  batched_trees
  fresh_trees
  ;;
session28b)  # HEAD (the VAD's queued groups, kernel_pays, cross_chunks) against the session's start (ab-t/main: git
  # archive of 79d4930): the tests these touch; the warm batched 600 s bench (tiny.en, base; 32 a batch), two rounds,
  # the second in reverse order; large-v3-turbo's random shapes (peers.py --random, 32 a batch) in each tree; fresh
  # 60-minute processes (32 a batch), the trees alternated
  $py -m whisperfast info --json > "$out/info.json"
  $py benchmarks/make_clip.py /tmp/clip600.wav 600 > /dev/null
  $py benchmarks/make_clip.py /tmp/clip3600.wav 3600 > /dev/null
  $py -m compileall -q ab-t/main > /dev/null 2>&1 || true
  timeout ${T1:-240} $py -m pytest -q -p no:cacheprovider -rf -m "slow or not slow" tests/test_config.py tests/test_cuda_rows.py \
    tests/test_batched.py tests/test_cuda_knobs.py 2>&1 | tee "$out/gpu_tests.txt" | tail -4
  batched_trees
  # (peers.py imports this tree's whisperfast: the kernel at every row count and 8 chunks by the knobs stand for the start)
  for knobs in "WHISPERFAST_KERNEL_LAYER_BYTES=1000000000000 WHISPERFAST_CROSS_CHUNKS=8" "WHISPERFAST_DEBUG="; do
    env $knobs timeout ${T2:-90} $py benchmarks/peers.py "$out/turbo-${knobs%%=*}.json" --seconds 600 \
      --random large-v3-turbo --batch-size 32 2>&1 | grep "real time" | sed "s|^|$knobs |"
  done 2>&1 | tee "$out/turbo_ab.txt"
  fresh_trees
  ;;
session28peers)  # faster-whisper's batched pipeline on the GPU against whisperfast, the 600 s clip at 32 a batch. CTranslate2's
  # wheel loads libcublas.so.12, which this CUDA 13 image lacks: stage ctranslate2, faster-whisper, av and
  # nvidia-cublas-cu12 (pip download, as stage-wheels.sh does), install them with --target $FW_SITE first
  site=${FW_SITE:-/tmp/site2}
  for m in tiny.en base; do
    PYTHONPATH=$site:$PYTHONPATH LD_LIBRARY_PATH=$site/nvidia/cublas/lib:${LD_LIBRARY_PATH:-} timeout ${T1:-120} \
      $py benchmarks/peers.py "$out/peers-fw-$m.json" -m $m --seconds 600 --batch-size 32 --lanes fused,faster-whisper \
      --runs 2 --warmup 1 2>&1 | grep -v Warn | tail -6
  done
  ;;
session29)  # batched mode's rows go on where speech remains (rules.HeldEnd) against the tree before (ab-t/main: git
  # archive of bea949c: whisperfast/, benchmarks/, tests/, samples/): the tests it touches (the kernel's filters, its beams and
  # registers, batched mode's); the warm batched 600 s bench (tiny.en, base; 32 a batch) in each tree, two rounds, the
  # second in reverse order; large-v3-turbo's random shapes (peers.py --random, 32 a batch) in each tree
  $py -m whisperfast info --json > "$out/info.json"
  $py benchmarks/make_clip.py /tmp/clip600.wav 600 > /dev/null
  $py -m compileall -q ab-t/main > /dev/null 2>&1 || true
  timeout ${T1:-300} $py -m pytest -q -p no:cacheprovider -rf -m "slow or not slow" tests/test_cuda_step.py \
    tests/test_batched.py tests/test_cuda_beams.py tests/test_cuda_cache.py 2>&1 | tee "$out/gpu_tests.txt" | tail -6
  batched_trees
  for t in ab-t/main .; do
    (cd $t && PYTHONPATH=.:$PYTHONPATH timeout ${T2:-90} $py benchmarks/peers.py "$out/turbo-${t//\//_}.json" --seconds 600 \
      --random large-v3-turbo --batch-size 32 2>&1 | grep "real time" | sed "s|^|$t |")
  done 2>&1 | tee "$out/turbo_ab.txt"
  ;;
session39)  # a batch's log-mels in one graph on a GPU (mels.py: each chunk's row queued as it is cut), 16-bit PCM read as
  # its integers, fewer host copies of the audio on the VAD's way, against ab-t/main (git archive of cf52158): the
  # log-mel both ways (mel_probe.py); the tests of batched mode, the VAD and audio (T4); the warm batched 600 s bench
  # (MODELS, default tiny.en and base; 32 a batch) in both trees, ROUNDS rounds; fresh 60-minute processes
  $py -m whisperfast info --json > "$out/info.json"
  $py -m compileall -q ab-t > /dev/null 2>&1 || true
  $py benchmarks/make_clip.py /tmp/clip600.wav 600 > /dev/null
  $py benchmarks/make_clip.py /tmp/clip3600.wav 3600 > /dev/null
  timeout ${T2:-40} $py benchmarks/batched/mel_probe.py /tmp/clip600.wav 2>&1 | tee "$out/mel_probe.jsonl"
  [ "${T4:-0}" -gt 0 ] && timeout $T4 $py -m pytest -q -p no:cacheprovider -rf tests/test_batched.py tests/test_silero.py \
    tests/test_audio.py 2>&1 | tee "$out/gpu_tests.txt" | tail -5
  ROUNDS=${ROUNDS:-2} batched_trees
  T3=${T3:-100} fresh_trees | cut -c1-230
  ;;
uploads)  # for the next step of benchmarks/h100-session39/: each op of a chunk's log-mel, and what putting 30 s of
  # samples on the device costs the host, float32 or int16 (batched/op_cost_probe.py)
  timeout 60 $py benchmarks/batched/op_cost_probe.py 2>&1 | tee "$out/op_cost.jsonl"
  ;;
session44c)  # the session's final tree on a GPU: decoding and batched tests (not slow: T5 s; engine.py's and
  # task.py's signatures changed for batched mode's bf16 flag), the warm batched 600 s bench (tiny.en, base, 32 a batch),
  # then fresh 60-minute processes (32 a batch, T3 s)
  timeout ${T5:-240} $py -m pytest -q -p no:cacheprovider -rf -m "not slow" tests/test_decoding.py tests/test_batched.py 2>&1 \
    | tee "$out/tests.txt" | tail -4
  $py benchmarks/make_clip.py /tmp/clip3600.wav 3600 > /dev/null; $py benchmarks/make_clip.py /tmp/clip600.wav 600 > /dev/null
  for m in tiny.en base; do
    timeout 90 $py -m whisperfast bench /tmp/clip600.wav -m $m --dtype float16 --lanes fused --runs 5 --warmup 1 --json \
      --no-kernels --batch-size 32 > "$out/bench-$m.json" 2> "$out/bench-$m.txt"
    grep -E "^│ fused" "$out/bench-$m.txt" | sed "s|^|$m |"
  done
  FRESH_BATCH=32 timeout ${T3:-120} bash -c "$(declare -f fresh_batched); py=$py; fresh_batched" > "$out/fresh_3600s_b32.jsonl"
  $py -c "import json, sys
for l in open(sys.argv[1]): d = json.loads(l); print(d['args'], d['rc'], round(d['wall_s'], 3), d['words'], d['err'][-200:])" "$out/fresh_3600s_b32.jsonl"
  ;;
session44b)  # the probes call 1 could not run (source_probe.py, mel_probe.py, fixed), then batched mode's GPU tests
  # (test_batched.py, test_pinned.py, not slow: T5 s) after d152dca's CPU change touched encode's and the prompt's paths
  $py benchmarks/make_clip.py /tmp/clip600.wav 600 > /dev/null
  timeout 60 $py benchmarks/source_probe.py 2>&1 | tee "$out/source_probe.json"
  timeout 90 $py benchmarks/mel_probe.py /tmp/clip600.wav 2>&1 | tee "$out/mel_probe.json"
  timeout ${T5:-240} $py -m pytest -q -p no:cacheprovider -rf -m "not slow" tests/test_batched.py tests/test_pinned.py 2>&1 \
    | tee "$out/batched_tests.txt" | tail -4
  ;;
session44)  # the host's share of a warm batched 600 s transcription: loop_probe.py (tiny.en at 20 rows, MLX's CUDA graphs
  # on and off), source_probe.py (a custom kernel's launch against its source's length), mel_probe.py (a chunk's log-mel:
  # mels.queue against one compiled graph of a fixed shape), pipeline_profile.py (tiny.en, 32 a batch), the warm batched
  # bench with graphs on and off (tiny.en and base), then loop_probe.py for base at 20 rows
  $py benchmarks/make_clip.py /tmp/clip600.wav 600 > /dev/null
  for g in 1 0; do MLX_USE_CUDA_GRAPHS=$g timeout ${T1:-75} $py benchmarks/loop_probe.py tiny.en float16 20; done 2>&1 \
    | tee "$out/loop_probe.jsonl" | cut -c1-600
  timeout 60 $py benchmarks/source_probe.py 2>&1 | tee "$out/source_probe.json"
  timeout 60 $py benchmarks/mel_probe.py /tmp/clip600.wav 2>&1 | tee "$out/mel_probe.json"
  timeout 90 $py benchmarks/pipeline_profile.py tiny.en float16 /tmp/clip600.wav 5 32 > "$out/profile600.txt" 2>&1
  head -1 "$out/profile600.txt"
  for g in 1 0; do
    for m in tiny.en base; do
      MLX_USE_CUDA_GRAPHS=$g timeout 90 $py -m whisperfast bench /tmp/clip600.wav -m $m --dtype float16 --lanes fused --runs 5 \
        --warmup 1 --json --no-kernels --batch-size 32 > "$out/graphs$g-$m.json" 2> "$out/graphs$g-$m.txt"
      grep -E "^│ fused" "$out/graphs$g-$m.txt" | sed "s|^|graphs=$g $m |"
    done
  done 2>&1 | tee "$out/graphs_ab.txt"
  for g in 1 0; do MLX_USE_CUDA_GRAPHS=$g timeout ${T1:-75} $py benchmarks/loop_probe.py base float16 20; done 2>&1 \
    | tee -a "$out/loop_probe.jsonl" | cut -c1-600
  ;;
session42b)  # loop_probe.py (a wide greedy decode's step beyond the kernel's: evaluated one by one, the loop's way,
  # `completed` read every 4th step, all queued) for tiny.en and base at 20 rows and tiny.en at 32, with MLX's CUDA graphs
  # (the default) and without (MLX_USE_CUDA_GRAPHS=0); then the warm batched 600 s bench (32 a batch) in this tree, graphs
  # on and off alternated, ROUNDS rounds (default 1)
  $py benchmarks/make_clip.py /tmp/clip600.wav 600 > /dev/null
  for g in 1 0; do
    for spec in ${SPECS:-"tiny.en:20" "base:20" "tiny.en:32"}; do
      set -- ${spec/:/ }
      MLX_USE_CUDA_GRAPHS=$g timeout ${T1:-60} $py benchmarks/loop_probe.py $1 float16 $2
    done
  done 2>&1 | tee "$out/loop_probe.jsonl" | cut -c1-500
  [ "${ROUNDS:-1}" -gt 0 ] && for round in $(seq ${ROUNDS:-1}); do
    for g in 1 0; do
      for m in tiny.en base; do
        MLX_USE_CUDA_GRAPHS=$g $py -m whisperfast bench /tmp/clip600.wav -m $m --dtype float16 --lanes fused --runs 5 \
          --warmup 1 --json --no-kernels --batch-size 32 > "$out/graphs$g-$m-r$round.json" 2> "$out/graphs$g-$m-r$round.txt"
        grep -E "^│ fused" "$out/graphs$g-$m-r$round.txt" | sed "s|^|$round graphs=$g $m |"
      done
    done
  done 2>&1 | tee "$out/graphs_ab.txt"
  ;;
session42)  # what session 41 could not run: the committed pinned uploads (7cec98d) through their tests and batched
  # mode's (T5); the warm batched 600 s bench against ab-t/main (git archive of 585d8e1) on the float32 clip (ROUNDS,
  # default 2) and the 16-bit one (a round), fresh 60-minute processes (T3 s); then where a wide greedy step's time goes
  # beyond the kernel's (rows_step.py: step_ms, both launches and the host, against kernel_us), tiny.en and base
  timeout ${T5:-150} $py -m pytest -q -p no:cacheprovider -rf -m "not slow" tests/test_pinned.py tests/test_batched.py 2>&1 \
    | tee "$out/pinned_tests.txt" | tail -3
  T4=0 T3=${T3:-70} ROUNDS=${ROUNDS:-2} PCM16=1 bash "$0" session40
  for m in tiny.en base; do timeout ${T6:-90} $py benchmarks/rows_step.py $m float16 2>&1 | tee "$out/rows_step-$m.json"; done
  ;;
session41)  # blocks to the device through pinned memory (kernels/pinned.py) against ab-t/main (git archive of 585d8e1):
  # the probe (MLX's copy against the pinned buffer, 600 s of 10 s blocks), its tests and batched mode's (T5), then session40's
  # case without its tests (its TREES, ROUNDS, PCM16, T3 knobs)
  timeout 60 $py benchmarks/batched/pinned_probe.py 2>&1 | tee "$out/pinned_probe.jsonl"
  timeout ${T5:-150} $py -m pytest -q -p no:cacheprovider -rf -m "not slow" tests/test_pinned.py tests/test_batched.py 2>&1 \
    | tee "$out/pinned_tests.txt" | tail -3
  T4=0 bash "$0" session40
  ;;
session40)  # the audio put on the device once (chunker.Chunker's `device`: each block as it is read; the VAD's groups and the
  # chunks cut there) against ab-t/main (git archive of bea9ef6): the tests of batched mode, the VAD and audio (T4); the
  # warm batched 600 s bench (MODELS, default tiny.en and base; 32 a batch) in TREES (default ab-t/main and this one),
  # ROUNDS rounds; with PCM16 set, one more round on the clip as a 16-bit file (into pcm16/), which the profile of this
  # tree's warm 600 s (pipeline_profile.py) and the fresh 60-minute processes in both trees (T3) then read
  $py -m whisperfast info --json > "$out/info.json"
  $py -m compileall -q ab-t > /dev/null 2>&1 || true
  $py benchmarks/make_clip.py /tmp/clip600.wav 600 > /dev/null
  $py benchmarks/make_clip.py /tmp/clip3600.wav 3600 > /dev/null
  [ "${T4:-0}" -gt 0 ] && timeout $T4 $py -m pytest -q -p no:cacheprovider -rf -m "not slow" tests/test_batched.py \
    tests/test_silero.py tests/test_audio.py 2>&1 | tee "$out/gpu_tests.txt" | tail -5
  TREES=${TREES:-ab-t/main .} ROUNDS=${ROUNDS:-2} batched_trees
  if [ -n "${PCM16:-}" ]; then  # the same clip as a 16-bit file (its integers to the device), 600 s and 60 minutes
    $py benchmarks/make_clip.py /tmp/clip600.wav 600 PCM_16 > /dev/null
    $py benchmarks/make_clip.py /tmp/clip3600.wav 3600 PCM_16 > /dev/null
    (out=$out/pcm16; mkdir -p $out; TREES=${TREES:-ab-t/main .} ROUNDS=1 batched_trees)
  fi
  timeout 90 $py benchmarks/pipeline_profile.py tiny.en float16 /tmp/clip600.wav 5 32 > "$out/profile600.txt" 2>&1
  head -40 "$out/profile600.txt" | cut -c1-200
  T3=${T3:-100} fresh_trees | cut -c1-230
  ;;
pcm16ab)  # the 600 s clip as a 16-bit WAV: its integers to the device (this tree) against ab-t/noint (this tree reading
  # float32 blocks, batched.py's one line), MODELS, ROUNDS rounds (default 3), each in reverse order of the one before
  $py -m compileall -q ab-t > /dev/null 2>&1 || true
  $py benchmarks/make_clip.py /tmp/clip600.wav 600 PCM_16 > /dev/null
  TREES=${TREES:-ab-t/noint .} ROUNDS=${ROUNDS:-3} batched_trees
  ;;
session39b)  # the host's cost of each op of a chunk's log-mel (op_cost_probe.py), the log-mel mlx-whisper's way and
  # mels.chunk_mel's (mel_probe.py, and its bits test); a profile of batched mode's warm 600 s (pipeline_profile.py, 32
  # a batch); the warm batched 600 s bench (tiny.en, base) in ab-t/main (cf52158) and this tree; large-v3-turbo's random
  # shapes (peers.py, 32 a batch) as chosen in this tree, and on the kernel at every row count in ab-t/nopick (this tree
  # with kernel_picks false past its pick rows: wide rows' groups side by side; TURBO=0 leaves them out)
  $py -m whisperfast info --json > "$out/info.json"
  $py -m compileall -q ab-t > /dev/null 2>&1 || true
  $py benchmarks/make_clip.py /tmp/clip600.wav 600 > /dev/null
  timeout 60 $py benchmarks/batched/op_cost_probe.py 2>&1 | tee "$out/op_cost.jsonl"
  timeout 60 $py benchmarks/batched/mel_probe.py /tmp/clip600.wav 2>&1 | tee "$out/mel_probe.jsonl"
  timeout ${T4:-120} $py -m pytest -q -p no:cacheprovider -rf tests/test_audio.py tests/test_batched.py \
    -k "16_bit or bit_for_bit or mels_stream or block_reader" 2>&1 | tee "$out/gpu_tests.txt" | tail -3
  timeout 90 $py benchmarks/pipeline_profile.py tiny.en float16 /tmp/clip600.wav 5 32 > "$out/profile600.txt" 2>&1
  head -40 "$out/profile600.txt" | cut -c1-150
  ROUNDS=${ROUNDS:-2} batched_trees
  # (the kernel at every row count in ab-t/nopick, against this tree as chosen: the flat step past 12 rows)
  [ "${TURBO:-1}" = 1 ] && for run in "ab-t/nopick WHISPERFAST_KERNEL_LAYER_BYTES=1000000000000" ". WHISPERFAST_DEBUG="; do
    set -- $run
    env PYTHONPATH=$1:$PYTHONPATH $2 timeout ${T2:-90} $py benchmarks/peers.py "$out/turbo-${1//\//_}.json" \
      --seconds 600 --random large-v3-turbo --batch-size 32 2>&1 | grep "real time" | sed "s|^|$run |"
  done 2>&1 | tee "$out/turbo.txt"
  ;;
session35b)  # session35a cut to what a short lease allows: the VAD's tests, the probe in both trees (600 s only), the
  # log-mel's split, the warm batched 600 s bench (tiny.en, one round) in ab-t/main, ab-t/cluster and this tree
  $py -m whisperfast info --json > "$out/info.json"
  $py benchmarks/make_clip.py /tmp/clip600.wav 600 > /dev/null
  timeout ${T0:-50} $py -m pytest -q -p no:cacheprovider -rf tests/test_silero.py 2>&1 | tee "$out/gpu_tests.txt" | tail -3
  T1=${T1:-40} vad_trees /tmp/clip600.wav
  timeout ${T2:-30} $py benchmarks/batched/mel_probe.py /tmp/clip600.wav 2>&1 | tee "$out/mel_probe.jsonl"
  TREES="ab-t/main ab-t/cluster ." MODELS=tiny.en ROUNDS=1 batched_trees
  ;;
session35a)  # the VAD's LSTM shared over a cluster of blocks, h handed between their shared memories (kernels/lstm.py),
  # against the tree before (ab-t/main: git archive of cab881a, with its own benchmarks/): the VAD's tests (the cluster's
  # bits); the VAD alone over 600 s and 60 min and the LSTM kernel by cluster size (vad_gpu_probe.py) in each tree; where
  # the log-mel's time goes (batched/mel_probe.py); the warm batched 600 s bench (MODELS, default tiny.en and base) in
  # ab-t/main, ab-t/cluster (git archive of 9b89433: a cluster of 4 by default, the mels as before) and this tree (the
  # chunks' mels queued as they are cut; lstm.CLUSTER, 1 until measured); fresh 60-minute processes; batched mode's
  # tests where time is left (T4)
  $py -m whisperfast info --json > "$out/info.json"
  $py -m compileall -q ab-t > /dev/null 2>&1 || true
  $py benchmarks/make_clip.py /tmp/clip600.wav 600 > /dev/null
  $py benchmarks/make_clip.py /tmp/clip3600.wav 3600 > /dev/null
  timeout ${T0:-60} $py -m pytest -q -p no:cacheprovider -rf tests/test_silero.py 2>&1 | tee "$out/gpu_tests.txt" | tail -3
  vad_trees "/tmp/clip600.wav /tmp/clip3600.wav"
  timeout ${T2:-40} $py benchmarks/batched/mel_probe.py /tmp/clip600.wav 2>&1 | tee "$out/mel_probe.jsonl"
  TREES="ab-t/main ab-t/cluster ." MODELS=${MODELS:-tiny.en base} batched_trees
  T3=${T3:-100} fresh_trees | cut -c1-230
  [ "${T4:-0}" -gt 0 ] && timeout $T4 $py -m pytest -q -p no:cacheprovider -rf tests/test_batched.py 2>&1 \
    | tee "$out/gpu_tests_batched.txt" | tail -3
  ;;
session34a)  # a wide batch's groups of rows side by side in the matrix phases, each on its own slice of the grid's blocks
  # (decode_step.cu's for_groups), and the logits' vocabulary rows on their way into L2 kAhead turns early
  # (common.cuh's rows_dot), against the tree before (ab-t/main: git archive of 4d1be80): the kernel's outputs bit for
  # bit in both (step_bits.py); batched mode's step by phase (rows_phases.py batched) in both, tiny.en and base, and
  # tiny.en in each change alone (ab-t/part, ab-t/pref) and with kAhead = 8 (ab-t/ahead8); the warm batched 600 s bench
  bits_phases ab-t/main "ab-t/main:tiny.en .:tiny.en ab-t/main:base .:base ab-t/part:tiny.en ab-t/pref:tiny.en ab-t/ahead8:tiny.en"
  batched_trees
  ;;
session34b)  # the change's tests on the device: the kernel's step, rows, beams, batched mode's (slow ones too); then
  # fresh 60-minute processes (32 a batch), ab-t/main and this tree alternated
  timeout ${T1:-420} $py -m pytest -q -p no:cacheprovider -rf -m "slow or not slow" tests/test_cuda_step.py \
    tests/test_cuda_rows.py tests/test_batched.py tests/test_cuda_beams.py 2>&1 | tee "$out/gpu_tests.txt" | tail -8
  $py benchmarks/make_clip.py /tmp/clip3600.wav 3600 > /dev/null
  T3=150 fresh_trees | cut -c1-230
  ;;
session34d)  # the cross K/V by layer, keys or values, and head (each head's rows one run of memory: decode_step.cu's
  # cross_rows, step.py's start) against the tree before it (ab-t/spread: git archive of c2d13ec): the kernel's outputs
  # bit for bit in both (step_bits.py); batched mode's step by phase (rows_phases.py batched: tiny.en, base); the warm
  # batched 600 s bench; the kernel's tests that read the cross K/V (rows, beams, batched mode's)
  bits_phases ab-t/spread "ab-t/spread:tiny.en .:tiny.en ab-t/spread:base .:base"
  TREES="ab-t/spread ." batched_trees
  timeout ${T2:-150} $py -m pytest -q -p no:cacheprovider -rf tests/test_cuda_rows.py tests/test_cuda_beams.py \
    tests/test_batched.py -k "rows or beam or jfk or fused_and_stock or share_a_batch or silent_gap" 2>&1 | tail -4
  ;;
session34c)  # the greedy launch's test again (its R = 2 check compared nan sums with array_equal: fixed), then
  # large-v3-turbo's random shapes (peers.py --random, 32 a batch) in ab-t/main and this tree, as chosen (the flat step
  # past the kernel's bytes a layer) and on the kernel at every row count (WHISPERFAST_KERNEL_LAYER_BYTES)
  timeout ${T1:-120} $py -m pytest -q -p no:cacheprovider -rf tests/test_cuda_step.py -k greedy 2>&1 | tail -3
  for t in ab-t/main .; do
    for knobs in "WHISPERFAST_DEBUG=" "WHISPERFAST_KERNEL_LAYER_BYTES=1000000000000"; do
      (cd $t && env $knobs PYTHONPATH=.:$PYTHONPATH timeout ${T2:-100} $py benchmarks/peers.py "$out/turbo-${t//\//_}-${knobs%%=*}.json" \
        --seconds 600 --random large-v3-turbo --batch-size 32 2>&1 | grep "real time" | sed "s|^|$t $knobs |")
    done
  done 2>&1 | tee "$out/turbo_ab.txt"
  ;;
session33a)  # the attention's value loads out sixteen at once and no history table read for rows of separate audio
  # (attention.cuh's kInFlight, decode_step.cu's self_row at PA = 1), against the tree before (ab-t/main: git archive of
  # 6da470e): the kernel's outputs bit for bit in both (step_bits.py), then batched mode's step by phase (rows_phases.py
  # batched: tiny.en, base) in both and in two probes of this tree, a long chunk's values (ab-t/noval) or keys
  # (ab-t/noscore) left unread, which price those loops
  $py -m whisperfast info --json > "$out/info.json"
  $py -m compileall -q ab-t > /dev/null 2>&1 || true
  for t in ab-t/main .; do
    (cd $t && PYTHONPATH=.:$PYTHONPATH timeout ${T0:-150} $py "$OLDPWD/benchmarks/step_bits.py" > "$out/bits-${t//\//_}.jsonl" 2>&1)
  done
  diff "$out/bits-ab-t_main.jsonl" "$out/bits-..jsonl" > "$out/bits.diff" && echo "bits: the same" || head -c 1500 "$out/bits.diff"
  for t in ab-t/main . ab-t/noval ab-t/noscore; do
    for m in tiny.en base; do
      (cd $t && PYTHONPATH=.:$PYTHONPATH timeout ${T1:-60} $py benchmarks/rows_phases.py $m float16 batched 2>&1 | sed "s|^|$t |")
    done
  done 2>&1 | tee "$out/phases.txt" | cut -c1-330
  ;;
session33d)  # a greedy batch wider than the step's picks takes its tokens from a launch of its own (filters.cuh's greedy,
  # step.py's greedy_picks) where MLX's ops picked them, with session33a's value loads, against the tree before (ab-t/main:
  # 6da470e): the warm batched 600 s bench (tiny.en, base; 32 a batch) in each tree, two rounds, the second in reverse
  # order; then the tests the change touches most (session33c runs them all)
  $py benchmarks/make_clip.py /tmp/clip600.wav 600 > /dev/null
  batched_trees
  timeout ${T1:-200} $py -m pytest -q -p no:cacheprovider -rf tests/test_cuda_rows.py tests/test_cuda_step.py \
    tests/test_batched.py -k "rows or greedy or jfk or fused_and_stock or share_a_batch or silent_gap or word_timestamps" \
    2>&1 | tee "$out/gpu_tests.txt" | tail -8
  ;;
session33c)  # the same change's tests: the kernel's step (the greedy launch against mlx-whisper's filters and update), rows,
  # beams, batched mode's (the cache's compile and register tests run on NVRTC without a GPU)
  timeout ${T1:-560} $py -m pytest -q -p no:cacheprovider -rf -m "slow or not slow" tests/test_cuda_step.py \
    tests/test_cuda_rows.py tests/test_batched.py tests/test_cuda_beams.py 2>&1 \
    | tee "$out/gpu_tests.txt" | tail -8
  ;;
session33e)  # fresh 60-minute processes (32 a batch): five at this tree (run 0 after session33c: kernels compiled by the
  # tests, not this row count's), then ab-t/main (6da470e) and this tree alternated, four each (ab-t/main's run 0 compiles)
  $py benchmarks/make_clip.py /tmp/clip3600.wav 3600 > /dev/null
  fresh_hour 5 "$out/fresh_3600.jsonl" 140 | cut -c1-260
  $py -m compileall -q ab-t/main > /dev/null 2>&1
  T3=130 fresh_trees | cut -c1-230
  ;;
session32)  # the warm batched 600 s bench (tiny.en, base; 32 a batch); the batched tests (the CPU's changes, the
  # encoder's pairs and the four-row chains, are not the GPU's); FRESH=1: fresh 60-minute processes. As run (ea8412f) it
  # first timed the chunks' log-mel in one graph (batched._mels, benchmarks/batched/pipeline_probe.py) against one graph
  # a chunk: slower on the GPU too, both reverted (benchmarks/h100-session32/)
  $py -m whisperfast info --json > "$out/info.json"
  $py benchmarks/make_clip.py /tmp/clip600.wav 600 > /dev/null
  for m in tiny.en base; do
    timeout ${T3:-60} $py -m whisperfast bench /tmp/clip600.wav -m $m --dtype float16 --lanes fused --runs 5 --warmup 1 \
      --json --no-kernels --batch-size 32 > "$out/bench-$m.json" 2> "$out/bench-$m.txt"
    grep -E "^│ fused|Error" "$out/bench-$m.txt" | sed "s|^|$m |"
  done 2>&1 | tee "$out/gpu_bench_600s.txt"
  timeout ${T1:-240} $py -m pytest -q -p no:cacheprovider -rf tests/test_batched.py 2>&1 | tee "$out/gpu_tests.txt" | tail -6
  [ "${FRESH:-0}" = 1 ] && $py benchmarks/make_clip.py /tmp/clip3600.wav 3600 > /dev/null && \
    $py -m compileall -q whisperfast > /dev/null 2>&1 && fresh_hour 5 "$out/fresh_3600.jsonl" ${T4:-150}  # run 0: empty kernel caches
  ;;
session31)  # the GPU VAD by group size (vad_group_probe.py, the 600 s and 60-minute clips), then the warm batched 600 s
  # bench at HEAD (tiny.en, 32 a batch), and (TESTS=1) the batched, VAD and equality tests: this session's changes are
  # the CPU's (the cross K/V in C), which the GPU does not take
  $py -m whisperfast info --json > "$out/info.json"
  $py benchmarks/make_clip.py /tmp/clip600.wav 600 > /dev/null
  $py benchmarks/make_clip.py /tmp/clip3600.wav 3600 > /dev/null
  timeout ${T0:-150} $py benchmarks/batched/vad_group_probe.py /tmp/clip600.wav /tmp/clip3600.wav --runs 5 2>&1 \
    | tee "$out/vad_groups.jsonl"
  for m in tiny.en; do
    timeout ${T3:-60} $py -m whisperfast bench /tmp/clip600.wav -m $m --dtype float16 --lanes fused --runs 5 --warmup 1 \
      --json --no-kernels --batch-size 32 > "$out/bench-$m.json" 2> "$out/bench-$m.txt"
    grep -E "^│ fused|vad|Error" "$out/bench-$m.txt" | sed "s|^|$m |"
  done 2>&1 | tee "$out/gpu_bench_600s.txt"
  [ "${TESTS:-0}" = 1 ] && timeout ${T1:-300} $py -m pytest -q -p no:cacheprovider -rf tests/test_batched.py \
    tests/test_silero.py tests/test_equality.py 2>&1 | tee "$out/gpu_tests.txt" | tail -6
  ;;
session30)  # HEAD on the GPU: 3bfd658 (decode_with keeps mlx-whisper's decode for the stock lane without timestamps) had
  # not run on one; this session's changes are the CPU's (Silero's convolutions in numpy, the batch's picks and packed
  # keys in C), which the GPU does not take. The batched, decoding, VAD and kernel-rows tests, the equality tests
  # (not slow), then (BENCH=1) the warm batched 600 s bench at HEAD (tiny.en, base; 32 a batch; gpu_bench_600s.txt)
  $py -m whisperfast info --json > "$out/info.json"
  timeout ${T1:-330} $py -m pytest -q -p no:cacheprovider -rf -m "slow or not slow" tests/test_batched.py \
    tests/test_decoding.py tests/test_silero.py tests/test_cuda_rows.py 2>&1 | tee "$out/gpu_tests.txt" | tail -6
  timeout ${T2:-200} $py -m pytest -q -p no:cacheprovider -rf tests/test_equality.py tests/test_contract.py 2>&1 \
    | tee "$out/gpu_equality.txt" | tail -6
  [ "${BENCH:-0}" = 1 ] && $py benchmarks/make_clip.py /tmp/clip600.wav 600 > /dev/null && for m in tiny.en base; do
    timeout ${T3:-60} $py -m whisperfast bench /tmp/clip600.wav -m $m --dtype float16 --lanes fused --runs 5 --warmup 1 \
      --json --no-kernels --batch-size 32 > "$out/bench-$m.json" 2> "$out/bench-$m.txt"
    grep -E "^│ fused" "$out/bench-$m.txt" | sed "s|^|$m |"
  done 2>&1 | tee "$out/gpu_bench_600s.txt"
  ;;
session29b)  # fresh 60-minute processes (32 a batch), ab-t/main and this tree alternated
  $py benchmarks/make_clip.py /tmp/clip3600.wav 3600 > /dev/null
  $py -m compileall -q ab-t/main > /dev/null 2>&1 || true
  fresh_trees
  ;;
esac
