"""The CTranslate2 reader and the mapping onto mlx-whisper's parameters."""

import numpy as np
import pytest
from mlx.utils import tree_flatten
from mlx_whisper.whisper import ModelDimensions, Whisper

from whisperfast import ct2, models
from whisperfast.errors import ModelError


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
    data = ct2.write_model_bin(v, aliases={"decoder/projection/weight": "decoder/embeddings/weight"})
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
        ct2.read_model_bin(mutate(ct2.write_model_bin(synthetic_spec())))


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


def test_checksum_mismatch_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("WHISPERFAST_CACHE", str(tmp_path))
    (tmp_path / "m.bin").write_bytes(ct2.write_model_bin(synthetic_spec()))
    with pytest.raises(ModelError, match="checksum mismatch"):
        models._from_ct2([tmp_path / "m.bin"], tmp_path / "none.json", "0" * 64)
    assert not any(tmp_path.glob("*/weights.safetensors"))


def test_local_ct2_directory_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("WHISPERFAST_CACHE", str(tmp_path / "cache"))
    d = tmp_path / "ct2model"
    d.mkdir()
    (d / "model.bin").write_bytes(ct2.write_model_bin(synthetic_spec(dtype="float32")))
    (d / "config.json").write_text('{"alignment_heads": [[0, 1]]}')
    import mlx.core as mx

    m = models.load_model(str(d), mx.float32)
    assert m.dims.n_text_state == 8 and m.alignment_heads.tolist() == [[0, 1]]
    assert all(p.dtype == mx.float32 for _, p in tree_flatten(m.parameters()) if mx.issubdtype(p.dtype, mx.floating))
