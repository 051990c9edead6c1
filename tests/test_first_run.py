"""A machine's first `--fast` run on CUDA (issue 13): MLX's JIT compiles each of its indexing,
compiled and dynamic-slice kernels with NVRTC the first time a machine meets it, 2-4 s each
(benchmarks/h200-session10/). The fast lane of a window with a short prompt meets none: it
compiles its decode kernel alone, one for the language detection and the decode alike."""

import json
import os
import subprocess
import sys

import pytest

from .conftest import ROOT, SAMPLES, needs_cuda

_CHILD = """
import json, os, sys
import whisperfast
from whisperfast import pipeline
from whisperfast.kernels.cuda_cache import COUNTERS
fused = pipeline.load(sys.argv[2], fast=True)
t = pipeline.transcribe(fused, sys.argv[1])
counters = COUNTERS.snapshot()
mlx = sorted(os.path.relpath(os.path.join(d, n), os.environ["MLX_PTX_CACHE_DIR"])
             for d, _, names in os.walk(os.environ["MLX_PTX_CACHE_DIR"]) for n in names if n.endswith(".ptx"))
stock = pipeline.transcribe(pipeline.load(sys.argv[2]), sys.argv[1])
step = fused.whisper.decoder.__dict__.get("_whisperfast_cuda")
print(json.dumps({"tokens": t.tokens, "stock": stock.tokens, "language": t.language, "counters": counters,
                  "mlx_modules": mlx, "launches": getattr(step, "launches", 0)}))
"""


@needs_cuda
@pytest.mark.parametrize("model", ["tiny.en", "base"])
def test_a_first_fast_run_compiles_its_decode_kernel_and_nothing_of_mlxs(model, tmp_path):
    """Empty caches (whisperfast's, MLX's PTX cache): the fast transcription of JFK leaves one
    kernel in MLX's cache, whisperfast's decode step (base: its language detection ran on it
    too), and compiled that once; stock's tokens."""
    env = {**os.environ, "WHISPERFAST_CACHE": str(tmp_path / "wf"), "MLX_PTX_CACHE_DIR": str(tmp_path / "mlx")}
    r = subprocess.run([sys.executable, "-c", _CHILD, str(SAMPLES / "jfk.wav"), model], env=env, capture_output=True,
                       text=True, cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    print(json.dumps({k: v for k, v in out.items() if k not in ("tokens", "stock")}))
    assert out["launches"] > 0  # the kernel decoded
    assert out["counters"]["compiles"] == 1 and out["counters"]["fallbacks"] == 0
    assert len(out["mlx_modules"]) == 1 and out["mlx_modules"][0].startswith("custom_kernel_wf_decode_step_")
    assert out["tokens"] == out["stock"]
    assert out["language"] == "en"


@needs_cuda
@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_the_fast_encoder_on_cuda_is_the_models_own_bit_for_bit(dtype):
    """decode/encoder.encode runs a fast model's encoder with the composed GELU on CUDA: the
    features are those of the model's own forward pass (mlx.nn's compiled GELU)."""
    import mlx.core as mx

    from whisperfast.audio import first_window_mel
    from whisperfast.decode.encoder import encode
    from whisperfast.pipeline import load
    from whisperfast.runtime import parse_dtype

    fused = load("tiny.en", dtype=parse_dtype(dtype), fast=True).whisper
    mel = first_window_mel(SAMPLES / "jfk.wav", parse_dtype(dtype))
    ours, theirs = encode(fused, mel), fused.encoder(mel)
    assert ours.shape == theirs.shape == (1, 1500, 384)
    assert mx.array_equal(ours, theirs)
