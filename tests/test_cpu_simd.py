"""kernels/cpu_simd: MLX's CPU float32 exp, softmax and GELU on x86 vectors, bit for bit MLX's;
built once per machine and cache folder, checked before it is kept, and refused with a reason
where it cannot be had."""

import shutil
import subprocess
import sys

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from whisperfast.config import config
from whisperfast.decode.cpu_step import tn16_rows
from whisperfast.files import write_atomic
from whisperfast.kernels import cpu_simd

from .conftest import cpu_simd_builds_here

BUILDS_HERE = cpu_simd_builds_here()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A fresh build in a folder of its own. Where the library can be built (x86-64 Linux with a
    C compiler) it must be: only a CPU without AVX2 or FMA may skip."""
    found = cpu_simd.load(tmp_path_factory.mktemp("kernels"), write_atomic, threads=2)
    if found.kernels is None:
        if BUILDS_HERE and "AVX2" not in found.how:
            pytest.fail(f"cpu_simd did not build here: {found.how}")
        pytest.skip(found.how)
    assert found.how == "built"
    return found.kernels


def bits(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float32)
    return np.where(np.isnan(a), np.float32(np.nan), a).view(np.uint32)  # one NaN for all NaNs


SPECIAL = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 1.1754942e-38, 88.0, -88.0, 88.00001,
                    -88.00001, 87.99999, -87.99999, 0.5, -0.5, 0.49999997, -0.49999997, 1.0, -1.0, 3.4028235e38,
                    -3.4028235e38, 0.34657359, -0.34657359, 6.0, -6.0, 10.5, -10.5], np.float32)


@pytest.mark.parametrize("op", ["exp", "gelu"])
def test_elementwise_ops_are_mlx_bit_for_bit(built, op):
    """Special values, the boundaries of MLX's exp (±88, the rounding of x·log2(e) at halves),
    then a million bit patterns spread over all 2^32 (the build's own check, taken again here;
    all 2^32 were compared once: benchmarks/cpu/session17/exhaustive.json), the vector tail included (odd sizes)."""
    ours, theirs = {"exp": (built.exp_, mx.exp), "gelu": (built.gelu_, nn.gelu)}[op]
    rng = np.random.default_rng(1)
    for x in (SPECIAL, (rng.standard_normal(1003) * 20).astype(np.float32),
              (np.arange(0, 1 << 32, 4099, dtype=np.uint64).astype(np.uint32)).view(np.float32)):
        assert np.array_equal(bits(ours(mx.array(x))), bits(theirs(mx.array(x))))


@pytest.mark.parametrize("shape", [(6, 1500, 1500), (13, 77), (1, 9), (3, 1, 51865), (5, 3)], ids=str)
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_softmax_is_mlx_bit_for_bit(built, shape, threads):
    """Rows of every length around the vectors' 8 and the groups' 8 rows, scores at the encoder's
    scale and wider, masked entries (-inf), a row of -inf only (NaN, as MLX's), at any share of
    the rows among threads."""
    rng = np.random.default_rng(2)
    s = (rng.standard_normal(shape) * rng.choice([1.0, 5.0, 60.0])).astype(np.float32)
    s.reshape(-1)[:: 7] = -np.inf
    s.reshape(-1, shape[-1])[-1] = -np.inf
    if s.shape[0] > 2:  # a row holding a NaN goes the one-lane way: NaN, as MLX's
        s.reshape(-1, shape[-1])[0, -1] = np.nan
    kernels = built.threaded(threads)
    assert np.array_equal(bits(kernels.softmax_(mx.array(s))), bits(mx.softmax(mx.array(s), axis=-1, precise=True)))


def test_the_ops_write_over_their_input_and_refuse_strided_arrays(built):
    x = mx.array(np.linspace(-3, 3, 64, dtype=np.float32).reshape(8, 8))
    want = nn.gelu(x)
    mx.eval(want)
    y = built.gelu_(x)
    assert y is x and np.array_equal(bits(x), bits(want))
    with pytest.raises(ValueError, match="strided"):
        built.softmax_(mx.array(np.ones((8, 8), np.float32)).T)
    with pytest.raises(TypeError, match="float32"):
        built.exp_(mx.ones((4,), dtype=mx.float16))
    original = mx.array(np.arange(5, dtype=np.float32))
    built.exp_(cpu_simd.copy(original))
    assert np.array_equal(np.asarray(original), np.arange(5, dtype=np.float32))


def test_a_second_load_reads_the_cache_and_a_bad_file_is_built_again(tmp_path):
    if not BUILDS_HERE:
        pytest.skip("no x86-64 Linux C compiler here")
    first = cpu_simd.load(tmp_path, write_atomic, threads=1)
    if first.kernels is None:
        pytest.skip(first.how)
    amx = "; AMX bfloat16 tiles" if first.kernels.bf16_sgemm() is not None else ""
    assert first.how == "built" and cpu_simd.status(tmp_path) == "avx2 (built)" + amx
    (library,) = tmp_path.glob("cpu_simd-*.so")
    assert cpu_simd.load(tmp_path, write_atomic, threads=1).how == "cached"
    library.unlink()  # as a replacement would: this process keeps the library it mapped
    library.write_bytes(b"torn")
    # in a new process: this one's loader hands back the library it has open under that name
    code = ("import sys, whisperfast; from pathlib import Path; from whisperfast.files import write_atomic; "
            "from whisperfast.kernels import cpu_simd; print(cpu_simd.load(Path(sys.argv[1]), write_atomic, 1).how)")
    again = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    assert again.stdout.strip() == "built" and library.read_bytes()[:4] == b"\x7fELF"


def test_a_build_that_differs_from_mlx_is_refused_and_not_built_again(tmp_path, monkeypatch):
    if not BUILDS_HERE:
        pytest.skip("no x86-64 Linux C compiler here")
    monkeypatch.setattr(cpu_simd, "verify", lambda kernels: "softmax (9, 77)")
    refused = cpu_simd.load(tmp_path, write_atomic, threads=1)
    assert refused.kernels is None and "differ from MLX's (softmax (9, 77))" in refused.how
    assert not list(tmp_path.glob("*.so"))
    monkeypatch.setattr(cpu_simd, "_build", lambda *a: pytest.fail("built again"))
    again = cpu_simd.load(tmp_path, write_atomic, threads=1)
    assert again.kernels is None and "softmax (9, 77)" in again.how
    assert cpu_simd.status(tmp_path).startswith("unavailable: its results differ from MLX's")


def test_without_a_working_compiler_it_says_why(tmp_path):
    if not BUILDS_HERE:
        pytest.skip("no x86-64 Linux here")
    missing = cpu_simd.load(tmp_path, write_atomic, threads=1, compiler=str(tmp_path / "no-cc"))
    assert missing.kernels is None and missing.how == "no C compiler (cc) to build it with"
    failing = cpu_simd.load(tmp_path, write_atomic, threads=1, compiler=shutil.which("false"))
    assert failing.kernels is None and failing.how.startswith("the C compiler failed")
    assert failing.describe().startswith("unavailable: ") and not list(tmp_path.glob("*.so"))
    assert cpu_simd.load(tmp_path, write_atomic, threads=1, compiler=shutil.which("false")).how == failing.how


def test_the_knob_and_other_dtypes_keep_mlx_ops(knobs):
    knobs(WHISPERFAST_CPU_SIMD="0")
    assert cpu_simd.chosen(mx.float32) is None
    knobs(WHISPERFAST_CPU_SIMD="1")
    assert cpu_simd.chosen(mx.float16) is None
    if BUILDS_HERE:
        assert cpu_simd.chosen(mx.float32) is not None or "AVX2" in cpu_simd.status(config().cache / "kernels")


@pytest.mark.parametrize("shape", [(1, 51864), (5, 51864), (3, 1501), (2, 7), (4, 300)], ids=str)
def test_logsumexp_is_mlx_bit_for_bit(built, shape):
    """The vocabulary's rows (greedy, beams), the timestamp slice, short rows; masked entries,
    and a row of -inf only (-inf, as MLX's)."""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(shape) * 8).astype(np.float32)
    x[:, ::5] = -np.inf
    x[-1] = -np.inf
    if shape[0] > 2:
        x[0, 1] = np.nan  # the one-lane way
    got = built.logsumexp(mx.array(x))
    assert got.shape == (shape[0], 1)
    assert np.array_equal(bits(got), bits(mx.logsumexp(mx.array(x), axis=-1, keepdims=True)))
    sliced = mx.array(x)[:, 3:]  # a view, as the timestamp rules pass it
    assert np.array_equal(bits(built.logsumexp(sliced)), bits(mx.logsumexp(sliced, axis=-1, keepdims=True)))


@pytest.mark.parametrize("shape", [(1, 1500, 384), (2, 1500, 512), (3, 7, 384), (1, 1, 384), (9, 5)], ids=str)
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_layer_norm_is_mlx_bit_for_bit(built, shape, threads):
    """The encoder's rows (tiny, base) and a decoder's few, row counts off the 8 rows taken side
    by side, at any share among threads: mx.fast.layer_norm's CPU fallback, bit for bit. Rows
    far from zero (the mean's rounding), of one value (variance 0: 1 / sqrt(eps)), and tiny."""
    rng = np.random.default_rng(4)
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    rows = x.reshape(-1, shape[-1])
    rows[0] += 1e4
    rows[-1] = 2.5
    if len(rows) > 2:
        rows[1] *= 1e-30
    norm = nn.LayerNorm(shape[-1])
    norm.weight, norm.bias = (mx.array(rng.standard_normal(shape[-1]).astype(np.float32)) for _ in range(2))
    got = built.threaded(threads).layer_norm(norm, mx.array(x))
    assert got.shape == x.shape
    assert np.array_equal(bits(got), bits(norm(mx.array(x))))


def test_chain_matmul_sums_each_output_as_one_fma_chain(built):
    """Against a float64 replay of the chain (each step rounded to float32 as an fma rounds, the
    product being exact in float64): tiles of 8 outputs, the tail, k not a multiple of 8, bias,
    1 to 8 rows; more rows are refused."""
    rng = np.random.default_rng(4)
    for n, k, bias, rows in [(45, 64, False, 1), (16, 20, True, 3), (19, 384, True, 8)]:
        w = rng.standard_normal((n, k)).astype(np.float32)
        x = rng.standard_normal((rows, 1, k)).astype(np.float32)
        b = rng.standard_normal(n).astype(np.float32) if bias else None
        acc = np.zeros((rows, n))
        for kk in range(k):
            acc = (acc + x[:, 0, kk : kk + 1].astype(np.float64) * w[:, kk].astype(np.float64)).astype(np.float32)
        want = (acc + b).astype(np.float32) if bias else acc.astype(np.float32)
        got = built.chain_matmul(mx.array(x), mx.array(w), None if b is None else mx.array(b))
        assert got.shape == (rows, 1, n) and np.array_equal(bits(got).reshape(rows, n), bits(want))
    with pytest.raises(ValueError, match="at most 8 rows"):
        built.chain_matmul(mx.zeros((9, 1, 8)), mx.zeros((8, 8)))


@pytest.mark.parametrize("k", [384, 1536])
@pytest.mark.parametrize("half", [True, False])
def test_chain_matmul_of_several_rows_is_each_rows_own(built, k, half):
    """Several rows at once (on an AVX-512 CPU, up to four a panel's pass, its float16 widened
    once for them all: cpu_products.c's panel_group_512) against each row alone (the AVX2 loop),
    bit for bit: 2 to 8 rows, a tail panel (200 outputs), float16 and float32 panels, k in one
    block (384) and in OpenBLAS's four (1536: 448, 448, 320, 320), with a bias."""
    rng = np.random.default_rng(7)
    w = mx.array(rng.standard_normal((200, k)).astype(np.float16).astype(np.float32))
    panels = built.pack(w, half=half)
    assert panels.half == half
    b = mx.array(rng.standard_normal(200).astype(np.float32))
    for rows in range(2, 9):
        x = mx.array(rng.standard_normal((rows, k)).astype(np.float32))
        alone = np.concatenate([bits(built.chain_matmul(x[r : r + 1], panels, b)) for r in range(rows)])
        assert np.array_equal(bits(built.chain_matmul(x, panels, b)), alone), rows


@pytest.mark.parametrize("n, k, group", [(200, 384, 64), (70, 1536, 32), (64, 128, 128)])
def test_8bit_panels_give_the_dequantized_weights_chains_bit_for_bit(built, n, k, group):
    """An affine 8-bit layer's weight packed from its own values (a quarter of float32's bytes,
    widened in registers) against the dequantized float32 weight's panels: the same outputs bit
    for bit at 1 to 8 rows (AVX-512's groups of rows and the one-row loop), with a bias, a tail
    panel (200 and 70 outputs), k in one block and in OpenBLAS's four (1536)."""
    from whisperfast.kernels.dequantize import Quantized

    rng = np.random.default_rng(n + k)
    wq, scales, biases = mx.quantize(mx.array(rng.standard_normal((n, k)).astype(np.float32)), group_size=group, bits=8)
    w = mx.dequantize(wq, scales, biases, group_size=group, bits=8)
    q8, f32 = built.pack(w, source=Quantized(wq, scales, biases, group, 8)), built.pack(w, half=False)
    assert q8.q8 and q8.form == 2 and f32.form == 0
    assert q8.data.nbytes == 64 + f32.data.nbytes // 4 * (group + 8) // group  # a byte a value, two floats a group
    b = mx.array(rng.standard_normal(n).astype(np.float32))
    for rows in range(1, 9):
        x = mx.array(rng.standard_normal((rows, k)).astype(np.float32))
        assert np.array_equal(bits(built.chain_matmul(x, q8, b)), bits(built.chain_matmul(x, f32, b))), rows


@pytest.mark.parametrize("n, k, group", [(384, 384, 64), (70, 1536, 32), (6, 128, 128)])
def test_tn16_on_8bit_rows_gives_the_dequantized_weights_sums(built, n, k, group):
    """tn16 (OpenBLAS's small-matrix kernel's order of sums) on an 8-bit layer's own values
    against tn16 on the dequantized float32 weight: the same outputs bit for bit, with a bias,
    four rows at a time and the rest (70 and 6 outputs)."""
    from whisperfast.kernels.dequantize import Quantized

    rng = np.random.default_rng(n * k)
    wq, scales, biases = mx.quantize(mx.array(rng.standard_normal((n, k)).astype(np.float32)), group_size=group, bits=8)
    w = mx.dequantize(wq, scales, biases, group_size=group, bits=8)
    rows = built.tn16_layout(w, False, source=Quantized(wq, scales, biases, group, 8))
    assert rows is not None and rows.dtype == np.uint8 and rows.nbytes < 0.33 * n * k * 4 + 64
    b = mx.array(rng.standard_normal(n).astype(np.float32))
    for seed in range(3):
        x = mx.array(rng.standard_normal((1, k)).astype(np.float32))
        assert np.array_equal(bits(built.tn16(rows, x, b)), bits(built.tn16(built.tn16_layout(w, False), x, b))), seed
    assert built.tn16_layout(mx.array(np.asarray(w) + 1), False, source=Quantized(wq, scales, biases, group, 8)) is None


def test_8bit_panels_are_refused_where_the_source_is_not_the_weights(built):
    """pack falls back to float panels where the 8-bit values do not give the weight (another
    weight's source), or are not 8-bit affine ones (4 bits)."""
    from whisperfast.kernels.dequantize import Quantized

    rng = np.random.default_rng(11)
    w = mx.array(rng.standard_normal((100, 256)).astype(np.float32))
    wq, scales, biases = mx.quantize(w, group_size=64, bits=8)
    assert not built.pack(w, source=Quantized(wq, scales, biases, 64, 8)).q8  # w itself is not the dequantized one
    wq4, s4, b4 = mx.quantize(w, group_size=64, bits=4)
    w4 = mx.dequantize(wq4, s4, b4, group_size=64, bits=4)
    assert not built.pack(w4, source=Quantized(wq4, s4, b4, 64, 4)).q8


@pytest.mark.parametrize("shape", [(2, 3, 1500, 64), (1, 1, 70, 8), (3, 2, 64, 16)])
def test_pack_heads_lays_out_each_head_as_pack_does(built, shape):
    """pack_heads (every row's and head's keys in one call, the heads shared over two threads)
    against `pack` a head at a time in float32: the same panels one after the other, the last
    panel of a head zero-padded (1500 and 70 keys: not whole panels of 64)."""
    k = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    heads = [built.pack(mx.array(h), half=False) for h in k.reshape(-1, *shape[2:])]
    assert not any(p.half for p in heads)
    want = np.concatenate([p.data for p in heads])
    got = built.pack_heads(mx.array(k))
    assert got.dtype == np.float32 and np.array_equal(got.view(np.uint32), want.view(np.uint32))


def test_chain_matmul_stands_in_only_where_it_gives_mlx_bits(built, tiny):
    """tiny.en's logits (a large-matrix product: one chain an output, on the BLAS these tests
    run on) pass the check at every row count up to 8; fc1 through CheckedChain is MLX's own
    product at every row count, whichever way the check went (the BLAS may send a narrower
    product to another kernel); a product the BLAS sums otherwise fails the check, so MLX's
    runs: one row of a 384 x 384 Linear, where OpenBLAS's small-matrix kernel takes it (tn16's
    order of sums, which the AVX-512 builds have)."""
    dec = tiny.whisper.decoder
    if dec.token_embedding.weight.dtype != mx.float32:
        pytest.skip("the CPU's float32 model only")
    emb, fc1 = dec.token_embedding.weight, dec.blocks[0].mlp1
    if not built.chain_matches(emb):
        pytest.skip("this BLAS sums the logits otherwise (MLX's product then runs)")
    assert built.chain_matches(emb, rows=(2, 3, 8))
    chained = cpu_simd.CheckedChain(built, fc1.weight, fc1.bias, fc1)
    for rows in range(1, 10):
        x = mx.random.normal((rows, 1, fc1.weight.shape[1]), key=mx.random.key(rows))
        assert np.array_equal(bits(chained(x)), bits(fc1(x)))
    assert set(chained.same) == set(range(1, 10)) and chained.same[9] is False  # more rows than the library takes
    q = dec.blocks[0].attn.query
    if tn16_rows(built, q) is not None:  # the small-matrix kernel's order (elsewhere the BLAS may chain it too)
        assert not built.chain_matches(q.weight, q.bias, rows=(1,))


@pytest.mark.parametrize("n", [1, 7, 8, 65_543])  # a tail short of eight lanes; both threads at 65,536 and over
def test_half_rounds_as_numpy_and_counts_what_float16_cannot_hold(built, n):
    """wf_half (the float16 copies of a batch's cross keys and values, decode/cpu_batch.py): each
    value rounded to nearest even as numpy's float16 rounds it, the copy and the widened values
    both written, in place too; finite values past float16's range counted, infinities not."""
    rng = np.random.default_rng(n)
    x = (rng.standard_normal(n) * 30).astype(np.float32)
    x[n // 2] = 70_000.0  # past float16's largest finite value: rounds to infinity
    if n > 1:
        x[0] = np.inf  # already infinite: not counted
    h = np.empty(n, np.float16)
    back = np.empty(n, np.float32)
    lib = built.lib
    with np.errstate(over="ignore"):
        want = x.astype(np.float16)
    assert lib.wf_half(x.ctypes.data, h.ctypes.data, back.ctypes.data, n, 2) == 1
    assert np.array_equal(h.view(np.uint16), want.view(np.uint16))
    assert np.array_equal(back, want.astype(np.float32))
    y = x.copy()
    assert lib.wf_half(y.ctypes.data, None, y.ctypes.data, n, 2) == 1
    assert np.array_equal(y, back)
    assert lib.wf_half(x.ctypes.data, None, None, n, 1) == 1  # only counted, on one thread
