"""The CTranslate2 reader and the mapping onto mlx-whisper's parameters."""

import numpy as np
import pytest
from mlx.utils import tree_flatten
from mlx_whisper.whisper import ModelDimensions, Whisper

from whisperfast import ct2, models
from whisperfast.errors import ModelError

from .ct2_writer import write_model_bin


def synthetic_spec(n_state=8, n_head=2, n_mels=4, n_layer=1, n_vocab=11, n_audio_ctx=6, n_text_ctx=5, dtype="float16"):
    """A tiny WhisperSpec with CTranslate2's variable names and layouts."""
    rng = np.random.default_rng(0)
    r = lambda *s: rng.standard_normal(s).astype(dtype)
    v = {"encoder/num_heads": np.array(n_head, np.int16), "decoder/num_heads": np.array(n_head, np.int16),
         "encoder/conv1/weight": r(n_state, n_mels, 3), "encoder/conv1/bias": r(n_state),
         "encoder/conv2/weight": r(n_state, n_state, 3), "encoder/conv2/bias": r(n_state),
         "encoder/position_encodings/encodings": r(n_audio_ctx, n_state),
         "encoder/layer_norm/gamma": r(n_state), "encoder/layer_norm/beta": r(n_state),
         "decoder/embeddings/weight": r(n_vocab, n_state),
         "decoder/position_encodings/encodings": r(n_text_ctx, n_state),
         "decoder/layer_norm/gamma": r(n_state), "decoder/layer_norm/beta": r(n_state)}

    def ln(p):
        v[f"{p}/gamma"], v[f"{p}/beta"] = r(n_state), r(n_state)

    def lin(p, n_out, n_in=n_state):
        v[f"{p}/weight"], v[f"{p}/bias"] = r(n_out, n_in), r(n_out)

    for side in ("encoder", "decoder"):
        for i in range(n_layer):
            p = f"{side}/layer_{i}"
            lin(f"{p}/self_attention/linear_0", 3 * n_state)
            lin(f"{p}/self_attention/linear_1", n_state)
            ln(f"{p}/self_attention/layer_norm")
            lin(f"{p}/ffn/linear_0", 4 * n_state)
            lin(f"{p}/ffn/linear_1", n_state, 4 * n_state)
            ln(f"{p}/ffn/layer_norm")
            if side == "decoder":
                lin(f"{p}/attention/linear_0", n_state)
                lin(f"{p}/attention/linear_1", 2 * n_state)
                lin(f"{p}/attention/linear_2", n_state)
                ln(f"{p}/attention/layer_norm")
    return v


def test_model_bin_round_trip():
    v = synthetic_spec()
    data = write_model_bin(v, aliases={"decoder/projection/weight": "decoder/embeddings/weight"})
    back = ct2.read_model_bin(data)
    assert set(back) == set(v) | {"decoder/projection/weight"}
    for k, a in v.items():
        assert back[k].dtype == a.dtype and back[k].shape == a.shape and np.array_equal(back[k], a), k
    assert back["decoder/projection/weight"] is back["decoder/embeddings/weight"]


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b[:-10], "truncated|corrupt"),
    (lambda b: (5).to_bytes(4, "little") + b[4:], "binary version 5"),
    (lambda b: b"", "corrupt"),
])
def test_model_bin_rejects_bad_files(mutate, message):
    with pytest.raises(ModelError, match=message):
        ct2.read_model_bin(mutate(write_model_bin(synthetic_spec())))


def _expected_shapes(dims: dict) -> dict:
    model = Whisper(ModelDimensions(**dims))
    return {k: v.shape for k, v in tree_flatten(model.parameters()) if k != "alignment_heads"}


def test_mapping_matches_mlx_whisper_shapes_and_values():
    v = synthetic_spec()
    c = ct2.convert(v)
    assert c.dims == dict(n_mels=4, n_audio_ctx=6, n_audio_state=8, n_audio_head=2, n_audio_layer=1,
                          n_vocab=11, n_text_ctx=5, n_text_state=8, n_text_head=2, n_text_layer=1)
    assert {k: a.shape for k, a in c.weights.items()} == {k: tuple(s) for k, s in _expected_shapes(c.dims).items()}
    # q|k|v rows split in order; the key's (zero in CT2) bias is dropped
    qkv = v["encoder/layer_0/self_attention/linear_0/weight"]
    assert np.array_equal(c.weights["encoder.blocks.0.attn.key.weight"], qkv[8:16])
    assert "encoder.blocks.0.attn.key.bias" not in c.weights
    assert np.array_equal(c.weights["decoder.blocks.0.cross_attn.value.bias"], v["decoder/layer_0/attention/linear_1/bias"][8:])
    # conv: CT2 (out, in, k) -> mlx (out, k, in)
    assert np.array_equal(c.weights["encoder.conv1.weight"][:, 2, :], v["encoder/conv1/weight"][:, :, 2])


def test_mapping_rejects_other_specs():
    v = synthetic_spec()
    del v["encoder/conv1/weight"]
    with pytest.raises(ModelError, match="missing variable"):
        ct2.convert(v)


def test_embedded_tiny_en_maps_onto_every_parameter():
    parts = models._embedded_paths(models.EMBEDDED["tiny.en"])
    v = ct2.read_model_bin(parts[0].read_bytes())
    c = ct2.convert(v)
    assert c.dims["n_vocab"] == 51864 and c.dims["n_audio_layer"] == 4 and c.dims["n_text_head"] == 6
    assert {k: a.shape for k, a in c.weights.items()} == {k: tuple(s) for k, s in _expected_shapes(c.dims).items()}
    # CTranslate2 stores zeros for Whisper's bias-free key projection: dropping them loses nothing
    assert not v["decoder/layer_0/self_attention/linear_0/bias"][384:768].any()


def test_checksum_mismatch_is_refused(tmp_path, knobs):
    knobs(WHISPERFAST_CACHE=str(tmp_path))
    (tmp_path / "m.bin").write_bytes(write_model_bin(synthetic_spec()))
    with pytest.raises(ModelError, match="checksum mismatch"):
        models._from_ct2([tmp_path / "m.bin"], tmp_path / "none.json", "0" * 64)
    assert not any(tmp_path.glob("*/weights.safetensors"))


def test_local_ct2_directory_loads(tmp_path, knobs):
    knobs(WHISPERFAST_CACHE=str(tmp_path / "cache"))
    d = tmp_path / "ct2model"
    d.mkdir()
    (d / "model.bin").write_bytes(write_model_bin(synthetic_spec(dtype="float32")))
    (d / "config.json").write_text('{"alignment_heads": [[0, 1]]}')
    import mlx.core as mx

    m = models.load_model(str(d), mx.float32)
    assert m.dims.n_text_state == 8 and m.alignment_heads.tolist() == [[0, 1]]
    assert all(p.dtype == mx.float32 for _, p in tree_flatten(m.parameters()) if mx.issubdtype(p.dtype, mx.floating))


# ---- quantized bundles (int8, int16) --------------------------------------------------------

def ct2_quantize(v: dict, mode: str) -> dict:
    """What CTranslate2's converter writes for `--quantization int8|int16`
    (ctranslate2/specs/model_spec.py::_quantize): linear and embedding weights become integers
    with `<name>_scale` such that int = rint(weight * scale); per output row for int8, one
    scalar for int16 (which also stores the other floats as float32)."""
    out = {}
    for k, a in v.items():
        if k.endswith("/weight") and a.ndim == 2:  # LinearSpec, EmbeddingsSpec (Conv1DSpec has no scale)
            w = a.astype(np.float32)
            if mode == "int16":
                scale = np.float32(2**10 / np.amax(np.absolute(w)))
                q = np.clip(np.rint(w * scale), -(2**15), 2**15 - 1).astype(np.int16)
            else:
                amax = np.amax(np.absolute(w), axis=1)
                amax[amax == 0] = 127.0
                scale = (127.0 / amax).astype(np.float32)
                q = np.rint(w * np.expand_dims(scale, 1)).astype(np.int8)
            out[k], out[f"{k}_scale"] = q, scale
        else:
            out[k] = a.astype(np.float32) if mode == "int16" and a.dtype.kind == "f" else a
    return out


def split_aliases(v: dict) -> tuple[dict, dict]:
    """read_model_bin's dict back into variables and {alias: target}."""
    first, variables, aliases = {}, {}, {}
    for k, a in v.items():
        if id(a) in first:
            aliases[k] = first[id(a)]
        else:
            first[id(a)], variables[k] = k, a
    return variables, aliases


@pytest.fixture(scope="module")
def tiny_ct2():
    parts = models._embedded_paths(models.EMBEDDED["tiny.en"])
    return parts[0].read_bytes(), parts[0].parent / "config.json"


def test_dequantize_inverts_ctranslate2s_quantization():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((6, 10)).astype(np.float32)
    w[2] = 0  # an all-zero row: CTranslate2 uses scale 1 there
    for mode, tol in (("int8", 0.5 / 127), ("int16", 0.5 / 2**10)):
        q = ct2_quantize({"x/weight": w}, mode)
        assert q["x/weight"].dtype == {"int8": np.int8, "int16": np.int16}[mode]
        back = ct2.dequantize(q)["x/weight"]
        assert back.dtype == np.float32
        amax = np.abs(w).max(axis=1, keepdims=True) if mode == "int8" else np.abs(w).max()
        assert np.all(np.abs(back - w) <= tol * amax + 1e-7), mode
        assert not back[2].any()


def test_integer_weights_without_scales_are_refused():
    v = synthetic_spec()
    v["decoder/layer_0/ffn/linear_0/weight"] = v["decoder/layer_0/ffn/linear_0/weight"].astype(np.int8)
    with pytest.raises(ModelError, match="decoder/layer_0/ffn/linear_0/weight is int8 with no decoder/layer_0/ffn/linear_0/weight_scale"):
        ct2.convert(v)
    v = ct2_quantize(synthetic_spec(), "int8")
    v["encoder/layer_0/ffn/linear_1/weight_scale"] = v["encoder/layer_0/ffn/linear_1/weight_scale"][:-1]
    with pytest.raises(ModelError, match="weight_scale has shape"):
        ct2.convert(v)


@pytest.mark.parametrize("mode", ["int8", "int16"])
def test_quantized_bundle_of_real_weights_transcribes_jfk(tmp_path, monkeypatch, tiny_ct2, mode):
    """int8/int16 bundles of the real tiny.en: the text must be JFK's (integers taken as
    weights gave garbage)."""
    import mlx.core as mx

    from whisperfast import pipeline

    from . import text

    from .conftest import SAMPLES, manifest

    data, config = tiny_ct2
    variables, aliases = split_aliases(ct2.read_model_bin(data))
    d = tmp_path / f"tiny-{mode}"
    d.mkdir()
    (d / "model.bin").write_bytes(write_model_bin(ct2_quantize(variables, mode), aliases))
    (d / "config.json").write_bytes(config.read_bytes())
    t = pipeline.transcribe(pipeline.load(str(d), dtype=mx.float32), SAMPLES / "jfk.wav")
    reference = next(r["reference_transcript"] for r in manifest() if r["file"] == "jfk.wav")
    assert text.normalize(t.text) == text.normalize(reference)


# ---- malformed model.bin: one ModelError, one `Error:` line ---------------------------------

def field_offsets(data: bytes) -> dict:
    """Byte offsets of each variable's fields, found by an independent walk of the layout."""
    u = lambda pos, n: int.from_bytes(data[pos : pos + n], "little")
    pos = 4
    pos += 2 + u(pos, 2) + 4  # spec name, revision
    count, pos = u(pos, 4), pos + 4
    out = {}
    for _ in range(count):
        n = u(pos, 2)
        name, f = data[pos + 2 : pos + 1 + n].decode(), {"name": pos + 2}
        pos += 2 + n
        f["rank"], rank = pos, data[pos]
        f["dims"] = pos + 1
        pos += 1 + 4 * rank
        f["dtype"], f["n_bytes"] = pos, pos + 1
        f["data"] = pos + 5
        pos += 5 + u(pos + 1, 4)
        out[name] = f
    out["aliases"] = pos
    return out


def _set(data: bytes, at: int, new: bytes) -> bytes:
    return data[:at] + new + data[at + len(new) :]


EMB = "decoder/embeddings/weight"
CORRUPTIONS = {  # name: (corrupt(data, offsets), fragment of the one error line)
    "empty": (lambda d, o: b"", "truncated"),
    "cut in the version": (lambda d, o: d[:3], "truncated"),
    "cut in a name": (lambda d, o: d[: o[EMB]["name"] + 5], "truncated"),
    "cut in the data": (lambda d, o: d[: o[EMB]["data"] + 1000], "truncated"),
    "cut in the aliases": (lambda d, o: d[:-1], "truncated"),
    "garbage": (lambda d, o: bytes(range(256)) * 64, "binary version"),
    "name not utf-8": (lambda d, o: _set(d, o[EMB]["name"] + 3, b"\xff"), "not UTF-8"),
    "dimension flipped": (lambda d, o: _set(d, o[EMB]["dims"], bytes([d[o[EMB]["dims"]] ^ 1])), "claims"),
    "size off by one": (lambda d, o: _set(d, o[EMB]["n_bytes"], (int.from_bytes(d[o[EMB]["n_bytes"]:][:4], "little") + 1).to_bytes(4, "little")), "claims"),
    "unknown dtype": (lambda d, o: _set(d, o[EMB]["dtype"], b"\x09"), "dtype id 9"),
    "float16 read as int16": (lambda d, o: _set(d, o[EMB]["dtype"], b"\x02"), "int16 with no decoder/embeddings/weight_scale"),
    "renamed variable": (lambda d, o: _set(d, o["encoder/layer_norm/beta"]["name"] + len("encoder/layer_nor"), b"z"),
                         "missing variable 'encoder/layer_norm/beta'"),
    "alias to nothing": (lambda d, o: d[:-3] + b"X" + d[-2:], "not a variable"),
    "bytes after the end": (lambda d, o: d + b"\0" * 7, "7 unexpected bytes"),
    "NaN weights": (lambda d, o: _set(d, o["decoder/layer_norm/gamma"]["data"], b"\xff" * 8), "non-finite"),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_malformed_model_bin_is_one_error_line(tmp_path, tiny_ct2, case):
    """Each corruption of the real tiny.en bundle, through `whisperfast transcribe -m DIR`."""
    from .test_cli import JFK, assert_one_line_error, run

    data, _ = tiny_ct2
    corrupt, fragment = CORRUPTIONS[case]
    (tmp_path / "model.bin").write_bytes(corrupt(data, field_offsets(data)))
    try:
        assert_one_line_error(run("transcribe", JFK, "-m", tmp_path), fragment)
    finally:
        (tmp_path / "model.bin").unlink()  # 75 MB
