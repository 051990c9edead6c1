"""A machine's first `--fast` run (issue 13). On CUDA, MLX's JIT compiles each of its indexing,
compiled and dynamic-slice kernels with NVRTC the first time a machine meets it, 2-4 s each
(benchmarks/h200-session10/); the fast lane meets none: it compiles its decode kernel alone, one
for the language detection and the decode alike. On the CPU, MLX compiles `mx.compile`d
functions (mlx.nn's GELU) with g++ the first time, 0.37 s; the fast lane compiles nothing."""

import json
import os
import re
import subprocess
import sys

import pytest

from .conftest import ROOT, SAMPLES, needs_cuda

_CHILD = """
import json, os, sys
import whisperfast
from whisperfast import pipeline
from whisperfast.kernels.cuda_cache import COUNTERS
from whisperfast.options import TranscribeOptions
options = TranscribeOptions(initial_prompt=sys.argv[3] or None, beam_size=int(sys.argv[4]) or None)
fused = pipeline.load(sys.argv[2], fast=True)
t = pipeline.transcribe(fused, sys.argv[1], options)
counters = COUNTERS.snapshot()
mlx = sorted(os.path.relpath(os.path.join(d, n), os.environ["MLX_PTX_CACHE_DIR"])
             for d, _, names in os.walk(os.environ["MLX_PTX_CACHE_DIR"]) for n in names if n.endswith(".ptx"))
stock = pipeline.transcribe(pipeline.load(sys.argv[2]), sys.argv[1], options)
step = fused.whisper.decoder.__dict__.get("_whisperfast_cuda")
print(json.dumps({"tokens": t.tokens, "stock": stock.tokens, "language": t.language, "counters": counters,
                  "mlx_modules": mlx, "launches": getattr(step, "launches", 0)}))
"""


PROMPT = "Presidential inaugural addresses, nineteen sixty-one: the speech that asked citizens for service."


@needs_cuda
@pytest.mark.parametrize("model,prompt,beams", [("tiny.en", "", 0), ("base", "", 0), ("tiny.en", PROMPT, 0), ("tiny.en", "", 5)])
def test_a_first_fast_run_compiles_its_own_kernels_and_nothing_of_mlxs(model, prompt, beams, tmp_path):
    """Empty caches (whisperfast's, MLX's PTX cache): the fast transcription of JFK leaves in
    MLX's cache whisperfast's decode step alone (base: its language detection ran on it too),
    and compiled it once; stock's tokens. With an initial prompt (over 8 tokens: the module pass
    runs it, as it runs every window's previous text in long audio) too. With 5 beams, the beam
    update too, two compiles (its tokens: test_cuda_beams.py's)."""
    env = {**os.environ, "WHISPERFAST_CACHE": str(tmp_path / "wf"), "MLX_PTX_CACHE_DIR": str(tmp_path / "mlx")}
    r = subprocess.run([sys.executable, "-c", _CHILD, str(SAMPLES / "jfk.wav"), model, prompt, str(beams)], env=env,
                       capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    print(json.dumps({k: v for k, v in out.items() if k not in ("tokens", "stock")}))
    assert out["launches"] > 0  # the kernel decoded
    kernels = ["beam_update", "decode_step"] if beams else ["decode_step"]
    assert out["counters"]["compiles"] == len(kernels) and out["counters"]["fallbacks"] == 0
    names = [re.fullmatch(r"custom_kernel_wf_([a-z_]+?)_[0-9a-f]{12}_.*\.ptx", m) for m in out["mlx_modules"]]
    assert all(names) and [n.group(1) for n in names] == kernels, out["mlx_modules"]
    if not beams:
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


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_the_one_hot_embedding_is_the_tables_rows(tiny, dtype):
    """decode/flat.embed's one-hot product (a prompt's embedding on CUDA, where an indexed read
    compiles a kernel on a machine's first run) gives the table's rows bit for bit, but for
    the sign of a -0.0 entry; tokens whose rows hold -0.0 among them."""
    import mlx.core as mx
    import numpy as np

    from whisperfast.decode.flat import embed

    embedding = tiny.whisper.decoder.token_embedding
    table = embedding.weight.astype(getattr(mx, dtype))
    embedding = type(embedding)(*table.shape)
    embedding.weight = table
    w = np.array(table.astype(mx.float32))
    negative_zero_rows = sorted(set(np.nonzero((w == 0) & np.signbit(w))[0].tolist()))
    assert negative_zero_rows  # the case the docstring names is here
    tokens = mx.array([[50257, 440, 0, *negative_zero_rows[:5], 51863, 440]], dtype=mx.int32)
    ours, theirs = embed(embedding, tokens, one_hot=True), embed(embedding, tokens, one_hot=False)
    assert ours.dtype == theirs.dtype == table.dtype and ours.shape == theirs.shape == (1, 10, 384)
    bits = lambda a: np.array(a.view(mx.uint16))  # noqa: E731
    differ = bits(ours) != bits(theirs)
    assert mx.array_equal(ours, theirs)  # as numbers: -0.0 == 0.0
    assert np.array_equal(np.nonzero(differ), np.nonzero((np.array(theirs.astype(mx.float32)) == 0)
                                                         & np.signbit(np.array(theirs.astype(mx.float32)))))
    assert differ.sum() >= 1  # the one-hot product ran
    # past ONE_HOT_MAX, the indexed read: a row with a -0.0 keeps its sign
    many = mx.full((1, 2 ** 26 // table.shape[0] + 1), negative_zero_rows[0], mx.int32)
    assert np.array_equal(bits(embed(embedding, many, one_hot=True)), bits(embedding(many)))


def test_a_written_out_decoder_block_is_the_blocks_own_call(tiny):
    """decode/flat._block, through which the prompt's module pass runs each decoder block (with
    the composed GELU on CUDA), against ResidualAttentionBlock.__call__: the same bits, and
    the same caches after, here with the composed GELU on the CPU."""
    import mlx.core as mx

    from whisperfast.audio import first_window_mel
    from whisperfast.decode.attention import KVCache
    from whisperfast.decode.flat import _block
    from whisperfast.kernels.ops import composed_gelu
    from whisperfast.pipeline import rewritten

    fused = rewritten(tiny).whisper
    xa = fused.encoder(first_window_mel(SAMPLES / "jfk.wav"))
    block, decoder = fused.decoder.blocks[0], fused.decoder
    x = decoder.token_embedding(mx.array([[50257, 50362, 440, 1770, 11]])) + decoder.positional_embedding[:5]
    out = []
    for call in (lambda x, cache: block(x, xa, mask=decoder._mask, kv_cache=cache)[:2],
                 lambda x, cache: _block(block, x, xa, decoder._mask, cache, composed_gelu)):
        cache = [KVCache(decoder.positional_embedding.shape[0]), None]
        y, (kv, cross) = call(mx.array(x), cache)
        out.append((y, kv.keys, kv.values, *cross))
    assert all(mx.array_equal(a, b) for a, b in zip(*out)) and not mx.array_equal(out[0][0], x)


def test_a_first_fast_run_on_the_cpu_compiles_nothing(tmp_path):
    """MLX keeps what it compiles for the CPU in <TMPDIR>/mlx/<version>/cpu: a fresh folder
    stays empty through a fast transcription of JFK (tiny.en, the CPU), which gives stock's text."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "whisperfast", "transcribe", str(SAMPLES / "jfk.wav"), "--fast", "-q",
                        "--device", "cpu"], env=env, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "fellow Americans" in r.stdout
    compiled = [p.name for p in tmp_path.rglob("*") if p.is_file() and "mlx" in p.parts]
    assert compiled == [], compiled
    stock = subprocess.run([sys.executable, "-m", "whisperfast", "transcribe", str(SAMPLES / "jfk.wav"), "-q",
                            "--device", "cpu"], env=env, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert stock.returncode == 0 and stock.stdout == r.stdout
    assert any(p.suffix == ".so" for p in tmp_path.rglob("*")), "stock's compiled GELU: the folder is where MLX writes"
