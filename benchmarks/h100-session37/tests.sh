# the kernel's tests at this tree: quantized models fused against stock and the larger shapes first,
# then the step against the flat step and fused against stock on JFK (fp16)
set -u
o=$OUT/tests.txt
timeout ${T1:-250} python3 -m pytest -q -p no:cacheprovider -m "slow or not slow" -rf tests/test_quantize.py \
  tests/test_large_shapes.py tests/test_heldout.py -k "quantiz or larger" 2>&1 | tail -8 | tee $o
timeout ${T2:-280} python3 -m pytest -q -p no:cacheprovider -m "slow or not slow" -rf tests/test_cuda_step.py \
  tests/test_equality.py -k "not 600" 2>&1 | tail -8 | tee -a $o
