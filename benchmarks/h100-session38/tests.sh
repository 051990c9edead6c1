# one call: the kernel's tests at HEAD (owed since session 37's 0e81d4e): the step against the flat
# step, fused against stock, then the quantized models and larger shapes as time allows
set -u
o=$OUT/tests.txt
timeout ${T1:-330} python3 -m pytest -q -p no:cacheprovider -m "slow or not slow" -rf tests/test_cuda_step.py \
  tests/test_equality.py -k "not 600" 2>&1 | tail -12 | tee $o
timeout ${T2:-220} python3 -m pytest -q -p no:cacheprovider -m "slow or not slow" -rf tests/test_quantize.py \
  tests/test_large_shapes.py 2>&1 | tail -12 | tee -a $o
