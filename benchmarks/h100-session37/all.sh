# one call: the quantized kernel against the flat step, the A/B/C rounds, then the kernel's tests as time allows
set -u
start=$(date +%s)
timeout 120 python3 -m pytest -q -p no:cacheprovider -x tests/test_cuda_step.py -k "quantized_logits" 2>&1 | tail -3 | tee $OUT/quick.txt
ROUNDS=2 RUNS=3 T=100 timeout 330 bash ab-t/ab.sh
left=$((560 - $(date +%s) + start))
echo "left for tests: $left s"
if [ $left -gt 40 ]; then T1=$((left * 45 / 100)) T2=$((left * 50 / 100)) bash ab-t/tests.sh; fi
