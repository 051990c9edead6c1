# The CUDA kernel picking greedy tokens itself at any row count (knob 1000: groups of 3 rows) against the
# forward pass only above 3 rows (knob 3: groups of 8, MLX's filters and update as run, before 210646e; since, a
# launch of their own): step time by rows, the
# 600 s clip batched 32 a batch, and the batched and decoding tests. On the GPU machine, staged (gpu.sh).
source .stage/part6/install.sh
python3 benchmarks/make_clip.py /tmp/clip600.wav 600 > /dev/null
for k in 1000 3; do echo "== knob $k"; WHISPERFAST_KERNEL_PICK_ROWS=$k timeout 80 python3 benchmarks/batched/rows_scaling.py --rows 1,4,8,16,20,32 --runs 5 | python3 -c "
import json,sys
for l in sys.stdin: d=json.loads(l); print(d['model'], d['rows'], d['ms_per_step'], d['us_per_row_step'], d['same_tokens'])"; done
for k in 1000 3; do WHISPERFAST_KERNEL_PICK_ROWS=$k timeout 60 python3 -m whisperfast bench /tmp/clip600.wav --dtype float16 --lanes fused --runs 3 --warmup 1 --batch-size 32 --json 2>/dev/null > $OUT/bench-k$k.json; python3 -c "
import json,sys; l=json.load(open(sys.argv[1]))['lanes']['fused']; print('knob', sys.argv[2], {k: round(l[k]['median'], 1) for k in ('total_ms', 'vad_ms', 'mel_ms', 'encode_ms', 'decode_ms')}, l['tokens'], l['windows'])" $OUT/bench-k$k.json $k; done
WHISPERFAST_KERNEL_PICK_ROWS=3 timeout 60 python3 benchmarks/batched/rows_scaling.py -m base --rows 8,20,32 --runs 5
timeout 200 python3 -m pytest -q -p no:cacheprovider -x tests/test_batched.py tests/test_decoding.py 2>&1 | tail -4
