"""`load(..., quantize=8|4)` and `--quantize` (issue 17): what is quantized and what stays float,
the cache beside the float conversion (a second load reads it and quantizes nothing), the
fused lane's tokens equal to stock's on the same quantized model, and the CLI's flags."""

import json

import mlx.core as mx
import mlx.nn as nn
import pytest
from mlx.utils import tree_flatten
from mlx_whisper.whisper import ModelDimensions, Whisper
from typer.testing import CliRunner

from whisperfast import models
from whisperfast.cli import app
from whisperfast.errors import ModelError
from whisperfast.pipeline import load, rewritten, transcribe

from .conftest import SAMPLES, cuda_available, manifest, needs_base, skip_without_c_step

JFK = SAMPLES / "jfk.wav"


def cached(bits, group_size=None, digest=models.EMBEDDED["tiny.en"].sha256) -> list:
    """The cache entries quantized from `digest` (default: the embedded tiny.en) in groups of
    `group_size` (default: the bits' default); a 4-bit one's vocabulary is 8-bit
    (models.VOCABULARY_BITS), and its name says so."""
    wider = f"v{models.VOCABULARY_BITS}" if bits < models.VOCABULARY_BITS else ""
    group_size = group_size or models.default_group_size(bits)
    return sorted(models.cache_dir().glob(f"{digest}-q{bits}g{group_size}{wider}"))


@pytest.mark.parametrize("bits", [8, 4])
def test_quantize_loads_every_linear_and_embedding_and_caches_it(bits, monkeypatch):
    m = models.load_model("tiny.en", mx.float32, quantize=bits)
    group = {8: 64, 4: 32}[bits]  # the default group size: smaller at 4 bits, for accuracy
    for coder in (m.encoder, m.decoder):
        for block in coder.blocks:
            for layer in (block.attn.query, block.attn.key, block.attn.value, block.attn.out, block.mlp1, block.mlp2):
                assert isinstance(layer, nn.QuantizedLinear) and layer.bits == bits and layer.group_size == group
    assert isinstance(m.decoder.blocks[0].cross_attn.query, nn.QuantizedLinear)
    vocabulary = m.decoder.token_embedding  # the vocabulary projection too, at no fewer than 8 bits
    assert isinstance(vocabulary, nn.QuantizedEmbedding) and vocabulary.bits == max(bits, 8) and vocabulary.group_size == group
    # Conv1d has no quantized form; the positional embeddings are added, not multiplied
    assert isinstance(m.encoder.conv1, nn.Conv1d) and m.decoder.positional_embedding.dtype == mx.float32
    assert m.decoder.token_embedding.scales.dtype == mx.float32  # scales come in the compute dtype

    (d,) = cached(bits)
    assert d.parent == models.cache_dir() and d.name.startswith(models.EMBEDDED["tiny.en"].sha256)
    config = json.loads((d / "config.json").read_text())
    if bits == 8:
        assert config["quantization"] == {"group_size": 64, "bits": 8}  # mlx-whisper's format
    else:  # mlx-lm's, the vocabulary's width per layer
        assert config["quantization"] == {"group_size": 32, "bits": 4, "decoder.token_embedding": {"group_size": 32, "bits": 8}}
        assert json.loads((d / "whisperfast.json").read_text())["vocabulary_bits"] == 8
    assert json.loads((d / "whisperfast.json").read_text())["left_float"] == []
    stat = (d / "weights.safetensors").stat()

    # A second load is a cache hit: nothing is written (so nothing was quantized), same weights.
    monkeypatch.setattr(mx, "save_safetensors", lambda *a, **k: pytest.fail("quantized again"))
    again = models.load_model("tiny.en", mx.float32, quantize=bits)
    after = (d / "weights.safetensors").stat()
    assert (after.st_ino, after.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns) and cached(bits) == [d]
    a, b = dict(tree_flatten(m.parameters())), dict(tree_flatten(again.parameters()))
    assert a.keys() == b.keys() and all(mx.array_equal(a[k], b[k]).item() for k in a)


def test_quantized_cache_entry_is_an_mlx_directory_and_is_not_quantized_twice():
    models.load_model("tiny.en", mx.float32, quantize=8)
    (d,) = cached(8)
    m = models.load_model(str(d), mx.float16)  # loads like any quantized mlx-community directory
    assert isinstance(m.decoder.blocks[0].mlp1, nn.QuantizedLinear) and m.decoder.blocks[0].mlp1.scales.dtype == mx.float16
    with pytest.raises(ModelError, match="already quantized"):
        models.load_model(str(d), mx.float32, quantize=4)


def test_a_4_bit_cache_entry_loads_as_a_directory_with_its_vocabulary_at_8_bits():
    """Its config gives the vocabulary's width per layer (mlx-lm's form), which the loader reads:
    the layers come back 4-bit, the token embedding 8-bit, the weights the entry's."""
    made = models.load_model("tiny.en", mx.float32, quantize=4)
    assert made.decoder.blocks[0].mlp1.group_size == 32  # 4 bits' default group (models.DEFAULT_GROUP_SIZES)
    assert load("tiny.en", dtype=mx.float32, quantize=4).quantization == {"bits": 4, "group_size": 32}
    (d,) = cached(4)
    m = models.load_model(str(d), mx.float32)
    assert m.decoder.token_embedding.bits == 8 and m.decoder.blocks[0].mlp1.bits == 4 and m.encoder.blocks[0].attn.query.bits == 4
    a, b = dict(tree_flatten(made.parameters())), dict(tree_flatten(m.parameters()))
    assert a.keys() == b.keys() and all(mx.array_equal(a[k], b[k]).item() for k in a)
    assert any(v.name == "tiny.en (4-bit, group 32, vocabulary 8-bit)" for v in models.quantized_variants())


def test_rows_the_group_size_does_not_divide_stay_float(tmp_path):
    """Rows of 96 divide into groups of 32, not 64: with 64 the layers reading 96-wide vectors
    stay float (mlp2 reads 384 = 6 x 64 and is quantized), and the cache entry says which and why."""
    dims = ModelDimensions(n_mels=80, n_audio_ctx=8, n_audio_state=96, n_audio_head=2, n_audio_layer=1,
                           n_vocab=100, n_text_ctx=8, n_text_state=96, n_text_head=2, n_text_layer=1)
    src = tmp_path / "small"
    src.mkdir()
    weights = {k: v for k, v in tree_flatten(Whisper(dims).parameters()) if k != "alignment_heads"}
    mx.save_safetensors(str(src / "weights.safetensors"), weights)
    (src / "config.json").write_text(json.dumps({**dims.__dict__, "model_type": "whisper"}))

    m64 = models.load_model(str(src), mx.float32, quantize=8, group_size=64)
    assert isinstance(m64.decoder.blocks[0].mlp1, nn.Linear) and isinstance(m64.decoder.token_embedding, nn.Embedding)
    assert isinstance(m64.decoder.blocks[0].mlp2, nn.QuantizedLinear)
    (d,) = cached(8, 64, models._source_digest(src))
    left = json.loads((d / "whisperfast.json").read_text())["left_float"]
    assert "decoder.token_embedding (rows of 96 are not a multiple of 64)" in left
    assert "encoder.blocks.0.mlp2 (rows of 384 are not a multiple of 64)" not in left  # 384 = 6 x 64
    m32 = models.load_model(str(src), mx.float32, quantize=8, group_size=32)
    assert isinstance(m32.decoder.blocks[0].mlp1, nn.QuantizedLinear) and isinstance(m32.decoder.token_embedding, nn.QuantizedEmbedding)


@pytest.mark.parametrize("bits, group_size, message", [(3, 64, "cannot quantize to 3 bits"), (8, 48, "group size 48")])
def test_bad_quantization_is_refused(bits, group_size, message):
    with pytest.raises(ModelError, match=message):
        models.load_model("tiny.en", mx.float32, quantize=bits, group_size=group_size)


def fused_equals_stock(name, dtype, bits):
    stock = load(name, dtype=dtype, quantize=bits)
    fused = rewritten(stock)
    a, b = transcribe(stock, JFK), transcribe(fused, JFK)
    assert a.tokens == b.tokens and a.text == b.text, (a.text, b.text)
    assert "country" in a.text
    # the report says where the quantized layers run: on the CPU dequantized, on a CUDA GPU the
    # decode kernel reads them packed (and it ran: its launches counted)
    notes = " ".join(fused.rewrites["notes"])
    if mx.default_device() == mx.cpu:
        assert "run dequantized on the CPU" in notes
    elif cuda_available():
        vocabulary = max(bits, models.VOCABULARY_BITS)
        width = f"{bits}-bit" + (f", the vocabulary {vocabulary}-bit" if vocabulary != bits else "")
        group = models.default_group_size(bits)  # the loader's default: 32 at 4 bits since fb0db20
        assert f"quantized decoder ({width}, groups of {group}) on the CUDA decode kernel" in notes, notes
        assert fused.whisper.decoder.__dict__["_whisperfast_cuda"].launches >= len(b.tokens)


def test_dequantized_copies_quantized_layers_as_float_ones_and_leaves_the_model():
    import mlx.nn as nn

    from whisperfast.kernels.dequantize import dequantized

    model = nn.Sequential(nn.Embedding(256, 64), nn.Linear(64, 128), nn.Linear(128, 64, bias=False))
    nn.quantize(model, group_size=64, bits=4)
    layers = model.layers
    mx.random.seed(3)
    before = mx.random.uniform(shape=(2,))
    mx.random.seed(3)
    new, n = dequantized(model)
    assert mx.array_equal(mx.random.uniform(shape=(2,)), before)  # no draw from the generator
    assert n == 3
    assert [type(m) for m in new.layers] == [nn.Embedding, nn.Linear, nn.Linear]
    assert [type(m) for m in model.layers] == [nn.QuantizedEmbedding, nn.QuantizedLinear, nn.QuantizedLinear]
    for q, f in zip(layers, new.layers):
        assert mx.array_equal(f.weight, mx.dequantize(q.weight, q.scales, q.biases, group_size=64, bits=4))
    assert new.layers[1].bias is layers[1].bias and "bias" not in new.layers[2]
    for q, f in zip(layers, new.layers):  # its source, for the CPU's 8-bit panels: not one of its arrays
        assert f.quantized.weight is q.weight and f.quantized.scales is q.scales and f.quantized.bits == 4
        assert "quantized" not in f and set(dict(f.parameters())) <= {"weight", "bias"}
    x = mx.random.normal((3, 64))
    with mx.stream(mx.cpu):  # the CPU's helper; on the H200 MLX's two float32 products differed by more
        assert mx.allclose(new.layers[1](x), layers[1](x), atol=1e-4)
    tokens = mx.array([1, 7, 255])
    assert mx.array_equal(new.layers[0](tokens), layers[0](tokens))


def test_quantized_fused_equals_stock_tiny_fp32_8bit():
    fused_equals_stock("tiny.en", mx.float32, 8)


@pytest.mark.parametrize("bits", [8, 4])
def test_the_cpus_logits_read_a_quantized_vocabularys_8bit_values(bits):
    """On the CPU the fused lane's logits (the chains over the dequantized vocabulary) read its
    8-bit values (a 4-bit model keeps its vocabulary at 8 bits), under a third of float32's
    bytes, and give MLX's product of the dequantized weight bit for bit at 1 to 4 rows."""
    from whisperfast.decode.flat import FlatStep
    from whisperfast.kernels import cpu_simd

    skip_without_c_step()
    simd = cpu_simd.chosen(mx.float32)
    dec = rewritten(load("tiny.en", dtype=mx.float32, quantize=bits)).whisper.decoder
    emb = dec.token_embedding
    if not simd.chain_matches(simd.pack(emb.weight, half=False)):
        pytest.skip("this BLAS sums the logits otherwise (MLX's product then runs)")
    step = FlatStep(dec)
    for rows in range(1, 5):
        x = mx.random.normal((rows, 1, emb.weight.shape[1]), key=mx.random.key(rows))
        with mx.stream(mx.cpu):
            want = x @ emb.weight.T
        assert mx.array_equal(step.logits(x), want), rows
        assert step.logits.same[rows], rows  # the chains gave it, not MLX's product
    assert step.logits.panels.q8 and step.logits.panels.data.nbytes < 0.33 * emb.weight.nbytes  # groups of 32 or 64


def _one_row_step(fused):
    """JFK through the fused lane, then its one-row C step (NativeStep): skips where this
    machine has none, else asserts it ran, checked against MLX's step."""
    skip_without_c_step()
    tokens = transcribe(fused, JFK).tokens
    native = fused.whisper.decoder.__dict__["_whisperfast_step"].native
    if native is None or "cblas_sgemm" in native.reason:
        pytest.skip(f"no C step here: {native and native.reason}")
    assert native.reason == "" and native.checked
    return native, tokens


def test_the_cpus_one_row_step_reads_an_8bit_models_8bit_values():
    """On the CPU the fused lane's one-row C step of an 8-bit model reads every layer's 8-bit
    values (tn16's rows, fc1's chains, the vocabulary's) where it read float32 dequantized ones:
    its first step passed the check against MLX's step bit for bit, and JFK's tokens are the
    stock lane's."""
    import numpy as np

    from whisperfast.decode.cpu_step import HALF, LAYER, MODEL
    from whisperfast.kernels import cpu_simd

    stock = load("tiny.en", dtype=mx.float32, quantize=8)
    native, tokens = _one_row_step(rewritten(stock))
    assert native._sizes["tn16_half"] == native._sizes["logits_half"] == cpu_simd.PANELS_Q8
    copies = [native._keep[len(MODEL) + e * len(LAYER) + LAYER.index(name)] for e in range(native._sizes["n_layer"])
              for name in HALF.values()]
    assert all(isinstance(c, np.ndarray) and c.dtype == np.uint8 for c in copies)  # each passed checked_tn16
    assert tokens == transcribe(stock, JFK).tokens


def test_a_layer_at_another_width_keeps_the_cpus_step_on():
    """One block's fc1 that cannot be read as 8-bit (its source said 4 bits) among 8-bit ones:
    the C step still runs, every layer's fc1 chains read float32 (the table has one form a
    kind), and JFK's tokens are the stock lane's."""
    from dataclasses import replace as replaced

    from whisperfast.kernels import cpu_simd

    skip_without_c_step()  # before the edit below: on a GPU the layers stay quantized, with no source to edit
    stock = load("tiny.en", dtype=mx.float32, quantize=8)
    fused = rewritten(stock)
    fc1 = fused.whisper.decoder.blocks[0].mlp1
    fc1.quantized = replaced(fc1.quantized, bits=4)
    native, tokens = _one_row_step(fused)
    assert native._sizes["fc1_half"] == cpu_simd.PANELS_F32 and native._sizes["tn16_half"] == cpu_simd.PANELS_Q8
    assert tokens == transcribe(stock, JFK).tokens


@pytest.mark.slow
@pytest.mark.parametrize("dtype, bits", [(mx.float32, 4), (mx.float16, 8), (mx.float16, 4)], ids=["fp32-4", "fp16-8", "fp16-4"])
def test_quantized_fused_equals_stock_tiny(dtype, bits):
    fused_equals_stock("tiny.en", dtype, bits)


@pytest.mark.slow
@pytest.mark.parametrize("bits", [8, 4])
def test_quantized_fused_equals_stock_on_every_sample_tiny_fp32(bits):
    """On the CPU the fused lane runs the quantized layers dequantized (kernels/dequantize.py),
    which sums otherwise than stock's quantized matmul: the tokens must still be stock's."""
    stock = load("tiny.en", dtype=mx.float32, quantize=bits)
    fused = rewritten(stock)
    for row in manifest():
        a, b = transcribe(stock, SAMPLES / row["file"]), transcribe(fused, SAMPLES / row["file"])
        assert a.tokens == b.tokens, (row["file"], a.text, b.text)


@pytest.mark.slow
@needs_base
@pytest.mark.parametrize("bits", [8, 4])
def test_quantized_fused_equals_stock_base(bits):
    fused_equals_stock("base", mx.float32, bits)


# ---- the CLI -------------------------------------------------------------------------------

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("args, fragment", [
    (["transcribe", JFK, "--quantize", "3"], "cannot quantize to 3 bits; choose 8 or 4"),
    (["transcribe", JFK, "--quantize", "eight"], "--quantize takes an integer, not 'eight'"),
    (["transcribe", JFK, "--quantize", "8", "--group-size", "48"], "group size 48 is not one of 32, 64, 128"),
    (["transcribe", JFK, "--group-size", "64"], "--group-size needs --quantize"),
    (["bench", JFK, "--quantize", "5"], "cannot quantize to 5 bits"),
    (["bench", JFK, "--cold", "--quantize", "8"], "--cold does not take --quantize"),
])
def test_bad_flags_are_one_error_line_and_exit_2(args, fragment):
    r = run(*args)
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and r.stdout == "" and len(lines) == 1, r.stderr
    assert lines[0].startswith("Error:") and fragment in lines[0], r.stderr


def test_cli_quantize_fast_and_models_lists_the_variant():
    r = run("transcribe", JFK, "--quantize", "8", "--fast")
    assert r.exit_code == 0, r.stderr
    note = "quantized layers run dequantized on the CPU" if mx.default_device() == mx.cpu else "note: quantized decoder"
    assert "country" in r.stdout and "8-bit" in r.stderr and note in r.stderr
    listed = json.loads(run("models", "--json").stdout)
    assert any(m["kind"] == "quantized" and m["name"] == "tiny.en (8-bit, group 64)" and m["available"] for m in listed)


def quantize_as(model: nn.Module, bits: int, group_size: int, vocabulary_bits: int, vocabulary_group: int = 0) -> None:
    """nn.quantize in place, the token embedding at a width of its own (as --quantize 4's), and
    in groups of its own where `vocabulary_group` is given."""
    vocabulary = {"group_size": vocabulary_group or group_size, "bits": vocabulary_bits}
    nn.quantize(model, group_size=group_size, bits=bits, class_predicate=lambda p, m: hasattr(m, "to_quantized") and (
        vocabulary if p.endswith("token_embedding") else True))


@pytest.mark.parametrize("bits, group_size, vocabulary_bits", [(8, 32, 8), (4, 32, 4), (8, 64, 8), (4, 32, 8)])
def test_the_cuda_kernels_packing_of_a_quantized_decoder(bits, group_size, vocabulary_bits):
    """CudaStep's packed arrays hold each quantized matrix where decode_step.cu's QuantOffsets
    and LayerOffsets<D, 0> place it (built here on any device; the GPU tests run the kernel):
    the words and scales, read back at those offsets, dequantize to the layer's own weights;
    the embedding's at its own width."""
    from whisperfast.decode import rewrite_whisper
    from whisperfast.decode.cuda.step import CudaStep, quantization

    from .test_rewrite import tiny_whisper

    m = tiny_whisper(seed=5)
    if group_size == 64:  # tiny_whisper's 32-wide rows do not divide into groups of 64
        m = Whisper(ModelDimensions(**{**vars(m.dims), "n_text_state": 64, "n_audio_state": 64}), mx.float32)
    quantize_as(m, bits, group_size, vocabulary_bits)
    fused, _ = rewrite_whisper(m)
    decoder = fused.decoder
    assert quantization(decoder) == (bits, group_size, vocabulary_bits)
    step = CudaStep(decoder)
    assert (step.bits, step.group_size, step.vocabulary_bits) == (bits, group_size, vocabulary_bits)
    D = decoder.positional_embedding.shape[1]
    w1, s1 = D * D * bits // 32, D * D // group_size
    # QuantOffsets: (word offset, scale offset, rows, row length) of q|k|v, out, cross q, cross out, mlp1, mlp2
    places = [(0, 0, 3 * D, D), (3 * w1, 6 * s1, D, D), (4 * w1, 8 * s1, D, D), (5 * w1, 10 * s1, D, D),
              (6 * w1, 12 * s1, 4 * D, D), (10 * w1, 20 * s1, D, 4 * D)]
    assert step.lq.shape == (len(decoder.blocks), 14 * w1) and step.ls.shape == (len(decoder.blocks), 28 * s1)
    assert step.packed.shape == (len(decoder.blocks), 17 * D)  # the norms and biases alone
    for layer, b in enumerate(decoder.blocks):
        a, x = b.attn, b.cross_attn
        mats = [[a.query, a.key, a.value], [a.out], [x.query], [x.out], [b.mlp1], [b.mlp2]]
        for (wo, so, rows, k), ms in zip(places, mats):
            q = step.lq[layer, wo : wo + rows * k * bits // 32].reshape(rows, -1)
            n = rows * k // group_size
            scales = step.ls[layer, so : so + n].reshape(rows, -1)
            biases = step.ls[layer, so + n : so + 2 * n].reshape(rows, -1)
            want = mx.concatenate([mx.dequantize(m.weight, m.scales, m.biases, group_size, bits) for m in ms])
            assert mx.array_equal(mx.dequantize(q, scales, biases, group_size, bits), want)
    e = decoder.token_embedding
    n_vocab = e.weight.shape[0]
    half = step.embs.shape[0] // 2
    assert step.embq.shape == (n_vocab, D * vocabulary_bits // 32)  # Packed<T, EB, GS>'s rows
    got = mx.dequantize(step.embq, step.embs[:half].reshape(n_vocab, -1), step.embs[half:].reshape(n_vocab, -1),
                        group_size, vocabulary_bits)
    want = mx.dequantize(e.weight, e.scales, e.biases, group_size, vocabulary_bits)
    assert step.emb is None and mx.array_equal(got, want)
    # LayerOffsets<D, 0>: ln1 (2D), q|0|v biases (3D), out bias, ln2 (2D), cross q bias, cross out
    # bias, ln3 (2D), mlp1 bias (4D), mlp2 bias
    b = decoder.blocks[-1]
    row = step.packed[-1]
    assert mx.array_equal(row[2 * D : 3 * D], b.attn.query.bias) and mx.array_equal(row[5 * D : 6 * D], b.attn.out.bias)
    assert mx.array_equal(row[11 * D : 12 * D], b.mlp_ln.bias) and mx.array_equal(row[12 * D : 16 * D], b.mlp1.bias)
    assert mx.array_equal(row[16 * D :], b.mlp2.bias)


def test_a_mixed_or_float_decoder_is_not_read_as_quantized():
    """The kernel reads the layers at one width and the vocabulary at theirs or at 8 bits, all
    in one group size: anything else is None (the flat step decodes it)."""
    from whisperfast.decode.cuda.step import quantization

    from .test_rewrite import tiny_whisper

    m = tiny_whisper(seed=5)
    assert quantization(m.decoder) is None
    nn.quantize(m.decoder.blocks[0], group_size=32, bits=8)  # one block only
    assert quantization(m.decoder) is None
    m = tiny_whisper(seed=5)  # the layers among themselves: block 0 at 8 bits, the rest at 4
    nn.quantize(m.decoder.blocks[0], group_size=32, bits=8)
    nn.quantize(m.decoder, group_size=32, bits=4)
    assert (m.decoder.blocks[0].mlp1.bits, m.decoder.blocks[1].mlp1.bits, m.decoder.token_embedding.bits) == (8, 4, 4)
    assert quantization(m.decoder) is None
    m = tiny_whisper(seed=5)  # a vocabulary narrower than the layers
    quantize_as(m.decoder, 8, 32, 4)
    assert quantization(m.decoder) is None
    m = tiny_whisper(seed=5)  # --quantize 4's: every matrix 4-bit but the vocabulary, 8-bit
    quantize_as(m.decoder, 4, 32, 8)
    assert m.decoder.token_embedding.bits == 8 and quantization(m.decoder) == (4, 32, 8)


def test_which_quantized_tiny_en_decoders_the_cuda_kernel_reads():
    """decode/cuda/step.py's `quantization` on tiny.en as loaded (on any device; the GPU tests
    run the kernel): float, --quantize 8, --quantize 4 (its vocabulary 8-bit), a uniform 4-bit
    decoder (mlx-community's form), and one whose vocabulary has another group size."""
    from whisperfast.decode.cuda.step import quantization

    assert quantization(models.load_model("tiny.en", mx.float32).decoder) is None
    assert quantization(models.load_model("tiny.en", mx.float32, quantize=8).decoder) == (8, 64, 8)
    assert quantization(models.load_model("tiny.en", mx.float32, quantize=4).decoder) == (4, 32, 8)
    uniform = models.load_model("tiny.en", mx.float32)
    nn.quantize(uniform.decoder, group_size=64, bits=4)
    assert uniform.decoder.token_embedding.bits == 4 and quantization(uniform.decoder) == (4, 64, 4)
    groups = models.load_model("tiny.en", mx.float32)
    quantize_as(groups.decoder, 4, 64, 8, vocabulary_group=32)
    assert groups.decoder.token_embedding.group_size == 32 and quantization(groups.decoder) is None


def test_a_quantized_fp16_model_counts_as_fp16_where_the_engine_picks_stock():
    """The engine hands sampled windows and near-threshold decisions to stock on a GPU in fp16;
    a quantized embedding's weight is packed uint32, so its dtype is its scales' (before, a
    quantized fp16 model sampled on the fast engine unchecked)."""
    from whisperfast.decode.engine import float_dtype

    base = load("tiny.en", dtype=mx.float16)
    nn.quantize(base.whisper, group_size=64, bits=8)
    assert base.whisper.decoder.token_embedding.weight.dtype == mx.uint32
    assert float_dtype(base.whisper) == mx.float16
    if mx.default_device() == mx.gpu:
        fused = rewritten(base)
        assert fused.engine().stock is not None
