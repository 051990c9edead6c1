"""Loading mlx-whisper directories: every parameter must come from the weights, with its shape."""

import json
import shutil

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten

from whisperfast import models, pipeline
from whisperfast.errors import ModelError

from . import text
from .conftest import SAMPLES, manifest

JFK = SAMPLES / "jfk.wav"


@pytest.fixture(scope="module")
def tiny_dir():
    """The real tiny.en weights as an mlx-whisper directory (the converted embedded bundle)."""
    return models._resolve("tiny.en")


@pytest.fixture(scope="module")
def tiny_weights(tiny_dir):
    return mx.load(str(tiny_dir / "weights.safetensors"))


def write_dir(path, weights: dict, config: dict):
    path.mkdir()
    mx.save_safetensors(str(path / "weights.safetensors"), weights)
    (path / "config.json").write_text(json.dumps(config))
    return path


def tiny_config(tiny_dir) -> dict:
    return json.loads((tiny_dir / "config.json").read_text())


def jfk_reference() -> str:
    return next(r["reference_transcript"] for r in manifest() if r["file"] == "jfk.wav")


def test_an_intact_directory_loads_every_parameter(tmp_path, tiny_dir, tiny_weights):
    m = models.load_model(str(write_dir(tmp_path / "m", dict(tiny_weights), tiny_config(tiny_dir))), mx.float32)
    loaded = dict(tree_flatten(m.parameters()))
    assert np.array_equal(np.array(loaded["decoder.blocks.0.mlp1.weight"]),
                          np.array(tiny_weights["decoder.blocks.0.mlp1.weight"].astype(mx.float32)))


@pytest.mark.parametrize("edit, message", [
    (lambda w: w.pop("decoder.blocks.0.mlp1.weight"), r"weights lack parameter decoder\.blocks\.0\.mlp1\.weight$"),
    (lambda w: [w.pop(k) for k in ("encoder.ln_post.bias", "decoder.ln.bias")], r"lack parameter encoder\.ln_post\.bias \(and 1 more\)"),
    (lambda w: w.update({"decoder.blocks.0.mlp1.weight": w["decoder.blocks.0.mlp1.weight"].T}),
     r"decoder\.blocks\.0\.mlp1\.weight has shape \(384, 1536\), expected \(1536, 384\)"),
    (lambda w: w.update({"decoder.token_embedding.weight": w["decoder.token_embedding.weight"][:-1]}),
     r"decoder\.token_embedding\.weight has shape \(51863, 384\), expected \(51864, 384\)"),
    (lambda w: w.update({"decoder.blocks.4.mlp1.weight": w["decoder.blocks.0.mlp1.weight"]}),
     r"unexpected parameter decoder\.blocks\.4\.mlp1\.weight"),
    (lambda w: w.update({"encoder.ln_post.weight": w["encoder.ln_post.weight"].astype(mx.int8)}),
     r"encoder\.ln_post\.weight is int8, expected a floating-point type"),
])
def test_missing_misshapen_or_extra_parameters_are_refused(tmp_path, tiny_dir, tiny_weights, edit, message):
    weights = dict(tiny_weights)
    edit(weights)
    d = write_dir(tmp_path / "m", weights, tiny_config(tiny_dir))
    with pytest.raises(ModelError, match=message):
        models.load_model(str(d), mx.float32)


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.pop("n_text_layer"), "lacks 'n_text_layer'"),
    (lambda c: c.update(n_audio_head=5), "n_audio_state 384 is not a multiple of n_audio_head 5"),
    (lambda c: c.update(n_vocab=-3), "'n_vocab' is -3, expected a positive integer"),
])
def test_bad_dimensions_are_refused(tmp_path, tiny_dir, tiny_weights, edit, message):
    config = tiny_config(tiny_dir)
    edit(config)
    with pytest.raises(ModelError, match=message):
        models.load_model(str(write_dir(tmp_path / "m", dict(tiny_weights), config)), mx.float32)


def test_unreadable_weights_and_config_are_model_errors(tmp_path, tiny_dir, tiny_weights):
    d = write_dir(tmp_path / "m", dict(tiny_weights), tiny_config(tiny_dir))
    data = (d / "weights.safetensors").read_bytes()
    (d / "weights.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="cannot read .*weights.safetensors"):
        models.load_model(str(d), mx.float32)
    (d / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match="cannot read .*config.json"):
        models.load_model(str(d), mx.float32)


def test_quantizing_damaged_weights_is_a_model_error(tmp_path, tiny_dir, tiny_weights, knobs):
    """--quantize read the float weights with a bare mx.load: an "internal error" from MLX's parser."""
    knobs(WHISPERFAST_CACHE=str(tmp_path / "cache"))
    d = write_dir(tmp_path / "m", dict(tiny_weights), tiny_config(tiny_dir))
    data = (d / "weights.safetensors").read_bytes()
    (d / "weights.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="cannot read .*weights.safetensors"):
        models.load_model(str(d), mx.float32, quantize=8)


def test_load_takes_a_path_and_refuses_what_is_not_a_model_or_a_float_dtype(tmp_path, tiny_dir, tiny_weights, knobs):
    from pathlib import Path

    from whisperfast.errors import WhisperfastError

    knobs(WHISPERFAST_CACHE=str(tmp_path / "cache"))
    d = write_dir(tmp_path / "m", dict(tiny_weights), tiny_config(tiny_dir))
    assert pipeline.load(Path(d), dtype="float32").whisper.dims.n_text_state == 384  # Path: AttributeError (.strip)
    assert pipeline.load(Path(d), dtype="float32", quantize=8).quantization["bits"] == 8  # its record names the source
    for bad in (123, None):
        with pytest.raises(ModelError, match="a name or a directory"):
            pipeline.load(bad)
    entry = tmp_path / "cache" / ("0" * 64)  # a cache entry, where a load may keep a converted copy
    shutil.copytree(d, entry)
    with pytest.raises(WhisperfastError, match="float16, float32 or bfloat16"):
        pipeline.load(str(entry), dtype=mx.int32)  # was a KeyError, after a 148 MB int32 copy was kept
    assert sorted(p.name for p in entry.iterdir()) == ["config.json", "weights.safetensors"]


def test_models_skips_a_cache_entry_whose_record_is_not_an_object(tmp_path, knobs):
    knobs(WHISPERFAST_CACHE=str(tmp_path))
    for i, record in enumerate(["[]", "null", '"x"', "{bad"]):
        entry = tmp_path / f"{i:064d}-q8g64"
        entry.mkdir()
        (entry / "weights.safetensors").write_bytes(b"")
        (entry / "whisperfast.json").write_text(record)
    assert not [m for m in models.list_models() if m.kind == "quantized"]  # was AttributeError: no .get


def test_a_directory_without_a_layer_fails_through_the_cli(tmp_path, tiny_dir, tiny_weights):
    from typer.testing import CliRunner

    from whisperfast.cli import app

    weights = dict(tiny_weights)
    del weights["decoder.blocks.0.mlp1.weight"]
    d = write_dir(tmp_path / "m", weights, tiny_config(tiny_dir))
    r = CliRunner().invoke(app, ["transcribe", str(JFK), "-m", str(d)])
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 1 and r.stdout == "" and len(lines) == 1, r.stderr
    assert lines[0].startswith("Error:") and "decoder.blocks.0.mlp1.weight" in lines[0]


@pytest.fixture
def cache_entry(tmp_path, knobs, tiny_dir):
    """A cache of its own holding one entry: tiny.en's directory as the conversion wrote it (fp16)."""
    knobs(WHISPERFAST_CACHE=str(tmp_path))
    entry = tmp_path / ("0" * 64)
    entry.mkdir()
    for f in ("config.json", "weights.safetensors", "alignment_heads.json"):
        shutil.copyfile(tiny_dir / f, entry / f)
    return entry


def parameters(model) -> dict:
    return {k: v for k, v in tree_flatten(model.parameters()) if k != "alignment_heads"}


def test_a_cache_entry_keeps_its_float32_conversion_and_reads_it_back(cache_entry, tiny_weights):
    first = parameters(models.load_model(str(cache_entry), mx.float32))
    copy = cache_entry / "weights-float32.flat.safetensors"
    assert copy.exists() and not list(cache_entry.glob(".tmp-*"))
    arrays = mx.load(str(copy))
    assert list(arrays) == ["weights"] and arrays["weights"].dtype == mx.float32
    written = models._read_flat(copy, mx.float32)
    assert written.keys() == tiny_weights.keys()
    assert all(written[k].dtype == mx.float32 and mx.array_equal(written[k], tiny_weights[k].astype(mx.float32)).item()
               for k in tiny_weights)
    second = parameters(models.load_model(str(cache_entry), mx.float32))
    assert second.keys() == first.keys()
    assert all(second[k].dtype == mx.float32 and mx.array_equal(second[k], first[k]).item() for k in first)
    # a later load reads the copy: a value changed there is what the model gets
    models._write_flat(copy, {**written, "decoder.ln.bias": written["decoder.ln.bias"] + 1})
    third = parameters(models.load_model(str(cache_entry), mx.float32))
    assert mx.array_equal(third["decoder.ln.bias"], first["decoder.ln.bias"] + 1).item()
    # the stored dtype needs no copy
    models.load_model(str(cache_entry), mx.float16)
    assert sorted(p.name for p in cache_entry.iterdir()) == ["alignment_heads.json", "config.json",
                                                            "weights-float32.flat.safetensors", "weights.safetensors"]


def test_the_float32_copy_is_checked_like_the_weights(cache_entry, tiny_weights):
    copy = cache_entry / "weights-float32.flat.safetensors"
    weights = {k: v.astype(mx.float32) for k, v in tiny_weights.items()}
    models._write_flat(copy, {**weights, "decoder.blocks.0.mlp1.weight": weights["decoder.blocks.0.mlp1.weight"].T})
    with pytest.raises(ModelError, match=r"weights-float32\.flat\.safetensors: parameter decoder\.blocks\.0\.mlp1\.weight has shape \(384, 1536\)"):
        models.load_model(str(cache_entry), mx.float32)
    del weights["decoder.ln.bias"]
    models._write_flat(copy, weights)
    with pytest.raises(ModelError, match=r"lack parameter decoder\.ln\.bias"):
        models.load_model(str(cache_entry), mx.float32)


def damaged_copies(tiny_weights) -> list:
    """Files at the copy's path that are not a float32 copy of ours (contents as bytes, or
    safetensors as (arrays, metadata))."""
    flat = mx.concatenate([v.astype(mx.float32).reshape(-1) for v in tiny_weights.values()])
    index, offset = {}, 0
    for k, v in tiny_weights.items():
        index[k] = [offset, list(v.shape)]
        offset += v.size
    first = next(iter(index))
    return [
        b"not a safetensors file",
        ({"weights": flat[:-1]}, {"index": json.dumps(index)}),  # shorter than its index
        ({"weights": flat}, {"index": json.dumps({**index, first: [1, index[first][1]]})}),  # overlapping
        ({"weights": flat}, {}),  # no index
        ({"weights": flat.astype(mx.float16)}, {"index": json.dumps(index)}),  # another dtype
        ({"other": flat}, {"index": json.dumps(index)}),
    ]


def test_a_damaged_cache_entry_says_how_to_make_it_again(cache_entry):
    data = (cache_entry / "weights.safetensors").read_bytes()
    (cache_entry / "weights.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match=f"cannot read .*; remove {cache_entry} and it is made again"):
        models.load_model(str(cache_entry), mx.float32)


def test_a_damaged_float32_copy_is_made_again(cache_entry, tiny_weights):
    copy = cache_entry / "weights-float32.flat.safetensors"
    for damaged in damaged_copies(tiny_weights):
        if isinstance(damaged, bytes):
            copy.write_bytes(damaged)
        else:
            mx.save_safetensors(str(copy), *damaged)
        loaded = parameters(models.load_model(str(cache_entry), mx.float32))
        assert all(mx.array_equal(loaded[k], tiny_weights[k].astype(mx.float32)).item() for k in tiny_weights)
        made = models._read_flat(copy, mx.float32)
        assert made.keys() == tiny_weights.keys()
        assert all(mx.array_equal(made[k], loaded[k]).item() for k in tiny_weights)


def test_a_directory_outside_the_cache_is_never_written(tmp_path, tiny_dir, tiny_weights):
    d = write_dir(tmp_path / "m", dict(tiny_weights), tiny_config(tiny_dir))
    models.load_model(str(d), mx.float32)
    assert sorted(p.name for p in d.iterdir()) == ["config.json", "weights.safetensors"]


@pytest.fixture(scope="module")
def quantized(tmp_path_factory, tiny_dir):
    """tiny.en quantized as mlx-community publishes models: nn.quantize'd parameters, and
    config.json with a `quantization` entry."""
    model = models.load_model("tiny.en", mx.float32)
    nn.quantize(model, group_size=64, bits=8)
    weights = {k: v for k, v in tree_flatten(model.parameters()) if k != "alignment_heads"}
    assert weights["decoder.blocks.0.mlp1.weight"].dtype == mx.uint32  # packed
    config = {**tiny_config(tiny_dir), "quantization": {"group_size": 64, "bits": 8}}
    return write_dir(tmp_path_factory.mktemp("q") / "m", weights, config), weights, config


def test_a_quantized_directory_loads_and_transcribes(quantized):
    d, _, _ = quantized
    t = pipeline.transcribe(pipeline.load(str(d), dtype=mx.float32), JFK)
    assert text.normalize(t.text) == text.normalize(jfk_reference())


@pytest.mark.parametrize("key", ["decoder.blocks.0.mlp1.scales", "decoder.blocks.0.mlp1.biases", "decoder.token_embedding.scales"])
def test_a_quantized_directory_missing_scales_or_biases_is_refused(tmp_path, quantized, key):
    _, weights, config = quantized
    weights = dict(weights)
    del weights[key]
    with pytest.raises(ModelError, match=rf"lack parameter {key.replace('.', '[.]')}"):
        models.load_model(str(write_dir(tmp_path / "m", weights, config)), mx.float32)

