# one call: the decode step by grid size (grid_sweep.py, one process a size), then the warm
# batched 600 s bench (tiny.en, 32 a batch) at each size; round 2 in reverse order if time allows
set -u
start=$(date +%s)
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.sm --format=csv > $OUT/gpu.txt 2>&1
python3 -m compileall -q whisperfast ${PYTHONPATH%%:*} > /dev/null 2>&1 || true
python3 benchmarks/make_clip.py /tmp/clip600.wav 600 > /dev/null
sizes=${SIZES:-"132 66 44"}
for round in 1 2; do
  for G in $sizes; do
    [ $(( $(date +%s) - start )) -gt ${BUDGET:-540} ] && break 2
    WHISPERFAST_STEP_BLOCKS=$G timeout ${T1:-150} python3 benchmarks/grid_sweep.py 2>> $OUT/err.txt | sed "s/^/{\"round\": $round, \"G\": $G, \"r\": /; s/\$/}/" | tee -a $OUT/sweep.jsonl
    WHISPERFAST_STEP_BLOCKS=$G timeout ${T2:-60} python3 -m whisperfast bench /tmp/clip600.wav -m tiny.en --dtype float16 \
      --lanes fused --runs 5 --warmup 1 --no-kernels --batch-size 32 --json > $OUT/b600-$G-r$round.json 2>> $OUT/err.txt
    python3 -c "import json,sys; f=json.load(open(sys.argv[1]))['lanes']['fused']; print('b600 round $round G $G', *(k + ' ' + str(round(f[k]['median'], 2)) for k in ('total_ms', 'mel_ms', 'encode_ms', 'decode_ms')), 'tokens', f['tokens'])" $OUT/b600-$G-r$round.json 2>&1 | tail -1
  done
  sizes=$(echo $sizes | tr ' ' '\n' | tac | tr '\n' ' ')
done
tail -5 $OUT/err.txt
(cd $OUT && tar czf b600.tgz b600-*.json && rm -f b600-*.json)
