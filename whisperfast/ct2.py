"""Read CTranslate2 (faster-whisper) Whisper bundles into mlx-whisper weights.

`model.bin`, binary version 6, as `ctranslate2/specs/model_spec.py::_serialize` writes it
(all integers little-endian):

    u32 version | str spec_name | u32 revision | u32 n_variables
    n_variables x ( str name | u8 rank | u32 dims[rank] | u8 dtype | u32 n_bytes | bytes )
    u32 n_aliases x ( str alias | str target )

where `str` is `u16 len(utf8)+1 | utf8 | NUL`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from .errors import ModelError

BINARY_VERSION = 6
# Order of CTranslate2's DataType enum (include/ctranslate2/types.h).
_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")


def read_model_bin(data: bytes) -> dict[str, np.ndarray]:
    """Parse a `model.bin` into {name: array}; aliases point at the same array."""
    pos = 0

    def take(fmt: str):
        nonlocal pos
        (value,) = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize(fmt)
        return value

    def string() -> str:
        nonlocal pos
        n = take("H")
        s = data[pos : pos + n - 1].decode("utf-8")
        pos += n
        return s

    try:
        version = take("I")
        if version != BINARY_VERSION:
            raise ModelError(f"unsupported CTranslate2 binary version {version} (expected {BINARY_VERSION})")
        string(), take("I")  # spec name, revision
        variables: dict[str, np.ndarray] = {}
        for _ in range(take("I")):
            name = string()
            shape = tuple(take("I") for _ in range(take("B")))
            dtype_id, n_bytes = take("B"), take("I")
            if dtype_id >= len(_DTYPES) or _DTYPES[dtype_id] == "bfloat16":
                raise ModelError(f"unsupported CTranslate2 dtype id {dtype_id} for {name}")
            if pos + n_bytes > len(data):
                raise ModelError("truncated CTranslate2 model.bin")
            arr = np.frombuffer(data, dtype=_DTYPES[dtype_id], count=n_bytes // np.dtype(_DTYPES[dtype_id]).itemsize, offset=pos)
            variables[name] = arr.reshape(shape)
            pos += n_bytes
        for _ in range(take("I")):
            alias, target = string(), string()
            variables[alias] = variables[target]
    except struct.error as e:
        raise ModelError(f"corrupt CTranslate2 model.bin: {e}") from None
    return variables


def write_model_bin(variables: dict[str, np.ndarray], aliases: dict[str, str] = {}, name: str = "WhisperSpec") -> bytes:
    """The inverse of `read_model_bin`, for tests and fixtures."""

    def string(s: str) -> bytes:
        b = s.encode("utf-8")
        return struct.pack("<H", len(b) + 1) + b + b"\0"

    out = [struct.pack("<I", BINARY_VERSION), string(name), struct.pack("<II", 3, len(variables))]
    for key, value in variables.items():
        value = np.array(value, order="C")
        out += [string(key), struct.pack("<B", value.ndim), *(struct.pack("<I", d) for d in value.shape)]
        out += [struct.pack("<BI", _DTYPES.index(value.dtype.name), value.nbytes), value.tobytes()]
    out.append(struct.pack("<I", len(aliases)))
    out += [string(a) + string(t) for a, t in aliases.items()]
    return b"".join(out)


@dataclass(frozen=True)
class Converted:
    dims: dict  # mlx_whisper.whisper.ModelDimensions fields
    weights: dict[str, np.ndarray]  # mlx-whisper parameter names


def _layers(v: dict, prefix: str) -> int:
    n = 0
    while f"{prefix}/layer_{n}/ffn/linear_0/weight" in v:
        n += 1
    return n


def _linear(v, src: str, dst: str, out: dict, bias: bool = True):
    out[f"{dst}.weight"] = v[f"{src}/weight"]
    if bias:
        out[f"{dst}.bias"] = v[f"{src}/bias"]


def _ln(v, src: str, dst: str, out: dict):
    out[f"{dst}.weight"] = v[f"{src}/gamma"]
    out[f"{dst}.bias"] = v[f"{src}/beta"]


def _split_linear(v, src: str, dsts: list[str | None], out: dict):
    """A fused projection (rows = outputs) split into its parts. Whisper's key
    projection has no bias; CTranslate2 stores zeros there, which we drop."""
    w, b = v[f"{src}/weight"], v[f"{src}/bias"]
    n = w.shape[0] // len(dsts)
    for i, dst in enumerate(dsts):
        out[f"{dst}.weight"] = w[i * n : (i + 1) * n]
        if not dst.endswith(".key"):
            out[f"{dst}.bias"] = b[i * n : (i + 1) * n]


def _block(v, src: str, dst: str, out: dict, cross: bool):
    a = f"{src}/self_attention"
    _split_linear(v, f"{a}/linear_0", [f"{dst}.attn.query", f"{dst}.attn.key", f"{dst}.attn.value"], out)
    _linear(v, f"{a}/linear_1", f"{dst}.attn.out", out)
    _ln(v, f"{a}/layer_norm", f"{dst}.attn_ln", out)
    if cross:
        c = f"{src}/attention"
        _linear(v, f"{c}/linear_0", f"{dst}.cross_attn.query", out)
        _split_linear(v, f"{c}/linear_1", [f"{dst}.cross_attn.key", f"{dst}.cross_attn.value"], out)
        _linear(v, f"{c}/linear_2", f"{dst}.cross_attn.out", out)
        _ln(v, f"{c}/layer_norm", f"{dst}.cross_attn_ln", out)
    _linear(v, f"{src}/ffn/linear_0", f"{dst}.mlp1", out)
    _linear(v, f"{src}/ffn/linear_1", f"{dst}.mlp2", out)
    _ln(v, f"{src}/ffn/layer_norm", f"{dst}.mlp_ln", out)


def convert(v: dict[str, np.ndarray]) -> Converted:
    """Map CTranslate2 WhisperSpec variables onto mlx-whisper names and layouts."""
    try:
        n_audio_layer, n_text_layer = _layers(v, "encoder"), _layers(v, "decoder")
        conv1 = v["encoder/conv1/weight"]  # (n_state, n_mels, 3)
        emb = v["decoder/embeddings/weight"]
        dims = dict(
            n_mels=int(conv1.shape[1]),
            n_audio_ctx=int(v["encoder/position_encodings/encodings"].shape[0]),
            n_audio_state=int(conv1.shape[0]),
            n_audio_head=int(v["encoder/num_heads"]),
            n_audio_layer=n_audio_layer,
            n_vocab=int(emb.shape[0]),
            n_text_ctx=int(v["decoder/position_encodings/encodings"].shape[0]),
            n_text_state=int(emb.shape[1]),
            n_text_head=int(v["decoder/num_heads"]),
            n_text_layer=n_text_layer,
        )
        out: dict[str, np.ndarray] = {}
        for i in (1, 2):  # mlx Conv1d weights are (out, kernel, in)
            out[f"encoder.conv{i}.weight"] = v[f"encoder/conv{i}/weight"].transpose(0, 2, 1)
            out[f"encoder.conv{i}.bias"] = v[f"encoder/conv{i}/bias"]
        for i in range(n_audio_layer):
            _block(v, f"encoder/layer_{i}", f"encoder.blocks.{i}", out, cross=False)
        _ln(v, "encoder/layer_norm", "encoder.ln_post", out)
        out["decoder.token_embedding.weight"] = emb
        out["decoder.positional_embedding"] = v["decoder/position_encodings/encodings"]
        for i in range(n_text_layer):
            _block(v, f"decoder/layer_{i}", f"decoder.blocks.{i}", out, cross=True)
        _ln(v, "decoder/layer_norm", "decoder.ln", out)
    except KeyError as e:
        raise ModelError(f"not a CTranslate2 Whisper model: missing variable {e}") from None
    if n_audio_layer == 0 or n_text_layer == 0:
        raise ModelError("not a CTranslate2 Whisper model: no encoder or decoder layers")
    return Converted(dims=dims, weights={k: np.ascontiguousarray(a) for k, a in out.items()})
