#!/usr/bin/env bash
# The GPU record: op-level and model-level equality tests, SDPA kernel paths, and the bench
# (tiny.en and base, fp16 and fp32, JFK and a 60 s clip). Run from the repo root on the GPU
# machine after its wheels are installed; writes into ${WORK:-/tmp/gpuwork}.
set -u
out=${WORK:-/tmp/gpuwork}; mkdir -p "$out"
py=python3
export PYTHONUNBUFFERED=1
case "${1:-all}" in
tests|all)
  $py -m whisperfast info --json > "$out/info.json"; cat "$out/info.json"
  $py benchmarks/sdpa_paths.py 2>&1 | tee "$out/sdpa_paths.txt"
  $py -m pytest -q -p no:cacheprovider tests/test_kernels.py tests/test_rewrite.py tests/test_decoding.py tests/test_equality.py -m "slow or not slow" 2>&1 | tee "$out/gpu_tests.txt" | tail -25
  ;;
esac
summary() {
  $py -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[1], {k: (round(v['total_ms']['median'],1), round(v['decode_ms_per_token']['median'],2), round(v['encode_ms']['median'],2)) for k,v in d['lanes'].items()}, d['speedup'], {k: v['matches_stock'] for k,v in d['lanes'].items()})" "$1"
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
cuda)  # the CUDA decode step: its tests, then the bench with it off, as a kernel chain, as one launch
  $py -c "import mlx.core as mx; print(mx.device_info())"
  $py -m pytest -q -x -p no:cacheprovider tests/test_cuda_step.py ${CUDA_TESTS_K:+-k "$CUDA_TESTS_K"} 2>&1 | tee "$out/cuda_tests.txt" | tail -30
  for e in 0 kernels 1 "1 WHISPERFAST_STEP_BLOCKS=64" "1 WHISPERFAST_STEP_BLOCKS=128"; do
    n=${e// /-}; n=${n//WHISPERFAST_STEP_BLOCKS=/}
    env WHISPERFAST_CUDA_STEP=$e $py -m whisperfast bench samples/jfk.wav --dtype float16 --lanes stock,fused --runs 7 --warmup 2 --json --no-kernels > "$out/cuda-step-$n.json" 2>"$out/cuda-step-$n.err" || tail -5 "$out/cuda-step-$n.err"
    summary "$out/cuda-step-$n.json"
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
