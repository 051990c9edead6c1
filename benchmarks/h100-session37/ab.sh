#!/usr/bin/env bash
# A/B/C of the kernel's weight loads (run from the repo root with the trees in ab-t/): fused ms/token (quant_gpu.py, fused lane alone), before (dba79f2), bonly (a batch of loads issued before its sums, lanes past a row's end loading its last vector), after (bonly + 8-byte packed loads where a lane then dequantizes fewer values), rounds alternated
set -u
out=$OUT/ab; mkdir -p $out
py=python3
python3 -m compileall -q whisperfast ab-t/before/whisperfast ab-t/bonly/whisperfast /tmp/site >/dev/null 2>&1
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv > $out/gpu.txt
models=${MODELS:-tiny.en,base,large-v3-turbo-random}
order="before bonly after"
for r in $(seq 1 ${ROUNDS:-2}); do
  for t in $order; do
    if [ $t = after ]; then d=.; else d=ab-t/$t; fi
    (cd $d && timeout ${T:-200} $py benchmarks/quant_gpu.py $out/$t-r$r ${RUNS:-5} $models fused 2>&1 | grep -v "^\s*$" | tail -12 | sed "s|^|r$r $t |")
  done
  order=$(echo $order | tr ' ' '\n' | tac | tr '\n' ' ')
done 2>&1 | tee $out/rounds.txt | grep '"vs_float"\|Error\|Traceback\|error'

tar czf $OUT/ab.tgz -C $OUT ab && rm -rf $out
