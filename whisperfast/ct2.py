"""Read CTranslate2 (faster-whisper) Whisper bundles into mlx-whisper weights.

`model.bin`, binary version 6, as `ctranslate2/specs/model_spec.py::_serialize` writes it
(all integers little-endian):

    u32 version | str spec_name | u32 revision | u32 n_variables
    n_variables x ( str name | u8 rank | u32 dims[rank] | u8 dtype | u32 n_bytes | bytes )
    u32 n_aliases x ( str alias | str target )

where `str` is `u16 len(utf8)+1 | utf8 | NUL`. Quantized bundles (int8*, int16) store a weight
as integers beside a float `<name>_scale`; `dequantize` turns them back into floats.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np

from .errors import ModelError

BINARY_VERSION = 6
# Order of CTranslate2's DataType enum (include/ctranslate2/types.h).
DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")


class _Corrupt(Exception):
    pass


def read_model_bin(data: bytes) -> dict[str, np.ndarray]:
    """Parse a `model.bin` into {name: array}; aliases point at the same array.

    Every way the bytes can disagree with the layout above (truncation, a field past the end,
    a name that is not UTF-8, a shape that does not match its byte count, an alias to nothing,
    bytes left over) is one ModelError that says where."""
    pos = 0

    def need(n: int, what: str) -> None:
        if pos + n > len(data):
            raise _Corrupt(f"truncated: {what} at byte {pos} needs {n} bytes, the file has {len(data) - pos} left")

    def take(fmt: str, what: str) -> int:
        nonlocal pos
        size = struct.calcsize("<" + fmt)
        need(size, what)
        (value,) = struct.unpack_from("<" + fmt, data, pos)
        pos += size
        return value

    def string(what: str) -> str:
        nonlocal pos
        n = take("H", f"the length of {what}")
        if n == 0:
            raise _Corrupt(f"{what} at byte {pos - 2} has length 0 (a string holds at least its NUL)")
        need(n, what)
        raw, nul = data[pos : pos + n - 1], data[pos + n - 1]
        if nul != 0:
            raise _Corrupt(f"{what} at byte {pos} does not end in NUL")
        try:
            s = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _Corrupt(f"{what} at byte {pos} is not UTF-8") from None
        pos += n
        return s

    try:
        version = take("I", "the binary version")
        if version != BINARY_VERSION:
            raise ModelError(f"unsupported CTranslate2 binary version {version} (expected {BINARY_VERSION})")
        string("the spec name"), take("I", "the spec revision")
        variables: dict[str, np.ndarray] = {}
        for i in range(take("I", "the variable count")):
            name = string(f"variable #{i}'s name")
            shape = tuple(take("I", f"a dimension of {name}") for _ in range(take("B", f"the rank of {name}")))
            dtype_id, n_bytes = take("B", f"the dtype of {name}"), take("I", f"the size of {name}")
            if dtype_id >= len(DTYPES) or DTYPES[dtype_id] == "bfloat16":
                raise ModelError(f"unsupported CTranslate2 dtype id {dtype_id} for {name}")
            dtype = np.dtype(DTYPES[dtype_id])
            expected = math.prod(shape) * dtype.itemsize
            if n_bytes != expected:
                raise _Corrupt(f"{name} is {dtype.name} of shape {shape} ({expected} bytes) but claims {n_bytes} bytes")
            if name in variables:
                raise _Corrupt(f"variable {name} appears twice")
            need(n_bytes, f"the data of {name}")
            variables[name] = np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=pos).reshape(shape)
            pos += n_bytes
        for i in range(take("I", "the alias count")):
            alias, target = string(f"alias #{i}"), string(f"alias #{i}'s target")
            if target not in variables:
                raise _Corrupt(f"alias {alias} points at {target}, which is not a variable")
            variables[alias] = variables[target]
        if pos != len(data):
            raise _Corrupt(f"{len(data) - pos} unexpected bytes after the last alias, at byte {pos}")
    except _Corrupt as e:
        raise ModelError(f"corrupt CTranslate2 model.bin: {e}") from None
    except (struct.error, ValueError, OverflowError, MemoryError) as e:  # a safety net: never a traceback
        raise ModelError(f"corrupt CTranslate2 model.bin: {type(e).__name__}: {e}") from None
    return variables


@dataclass(frozen=True)
class Converted:
    dims: dict  # mlx_whisper.whisper.ModelDimensions fields
    weights: dict[str, np.ndarray]  # mlx-whisper parameter names


def _layers(v, prefix: str) -> int:
    n = 0
    while f"{prefix}/layer_{n}/ffn/linear_0/weight" in v:
        n += 1
    return n


def dequantize(v: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Undo CTranslate2's int8/int16 weight quantization (`specs/model_spec.py::_quantize`).

    A quantized `<x>/weight` is stored as integers beside a float `<x>/weight_scale`, chosen so
    that `int = rint(weight * scale)`: for int8 one scale per output row (shape = the weight's
    shape without axis 1), for int16 one scalar. So `weight = int / scale`. The floats come
    back in the bundle's own float type (float16 for int8_float16, else float32)."""
    floats = [a.dtype for k, a in v.items() if a.ndim and a.dtype.kind == "f" and not k.endswith("_scale")]
    out_dtype = np.float16 if floats and all(d == np.float16 for d in floats) else np.float32
    out = dict(v)
    for name, scale in v.items():
        if name.endswith("/weight_zero"):
            raise ModelError(f"{name}: AWQ-quantized CTranslate2 bundles are not supported (convert with float16, int8 or int16)")
        if not name.endswith("_scale"):
            continue
        base = name[: -len("_scale")]
        q = v.get(base)
        if q is None:
            raise ModelError(f"CTranslate2 variable {name} scales {base}, which the bundle lacks")
        if q.dtype not in (np.int8, np.int16):
            raise ModelError(f"CTranslate2 variable {base} is {q.dtype} beside {name}; expected int8 or int16")
        if scale.dtype.kind != "f":
            raise ModelError(f"CTranslate2 variable {name} is {scale.dtype}; expected a float scale")
        s = scale.astype(np.float32)
        if s.ndim and s.shape != q.shape[:1] + q.shape[2:]:
            raise ModelError(f"CTranslate2 variable {name} has shape {s.shape}, which does not scale {base} of shape {q.shape}")
        with np.errstate(divide="ignore", invalid="ignore"):
            w = q.astype(np.float32) / (np.expand_dims(s, 1) if s.ndim else s)
        if not np.isfinite(w).all():
            raise ModelError(f"CTranslate2 variable {name} holds a zero or non-finite scale")
        out[base] = w.astype(out_dtype)
    return out


class _Floats:
    """Weights by CTranslate2 name; integers without a scale are refused, not passed on."""

    def __init__(self, v: dict[str, np.ndarray]):
        self.v = v

    def __contains__(self, name: str) -> bool:
        return name in self.v

    def __getitem__(self, name: str) -> np.ndarray:
        a = self.v[name]
        if a.dtype.kind != "f":
            raise ModelError(f"CTranslate2 variable {name} is {a.dtype} with no {name}_scale to dequantize it")
        return a


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
    if w.ndim != 2 or w.shape[0] % len(dsts) or b.shape != w.shape[:1]:
        raise ModelError(f"CTranslate2 variable {src}/weight of shape {w.shape} (bias {b.shape}) does not split into {len(dsts)} projections")
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


def _scalar(v: dict, name: str) -> int:
    a = v[name]
    if a.size != 1 or a.dtype.kind not in "iu":
        raise ModelError(f"CTranslate2 variable {name} should be one integer, got {a.dtype} of shape {a.shape}")
    return int(a.reshape(()))


def convert(v: dict[str, np.ndarray]) -> Converted:
    """Map CTranslate2 WhisperSpec variables onto mlx-whisper names and layouts (dequantizing
    int8/int16 weights). Shapes that do not fit each other are left to `models.load_model`,
    which checks every parameter against the model the dims build."""
    try:
        n_audio_layer, n_text_layer = _layers(v, "encoder"), _layers(v, "decoder")
        f = _Floats(dequantize(v))
        conv1 = f["encoder/conv1/weight"]  # (n_state, n_mels, 3)
        emb = f["decoder/embeddings/weight"]
        audio_pos, text_pos = f["encoder/position_encodings/encodings"], f["decoder/position_encodings/encodings"]
        for name, a, rank in (("encoder/conv1/weight", conv1, 3), ("decoder/embeddings/weight", emb, 2),
                              ("encoder/position_encodings/encodings", audio_pos, 2),
                              ("decoder/position_encodings/encodings", text_pos, 2)):
            if a.ndim != rank:
                raise ModelError(f"CTranslate2 variable {name} has rank {a.ndim}, expected {rank}")
        dims = dict(
            n_mels=int(conv1.shape[1]),
            n_audio_ctx=int(audio_pos.shape[0]),
            n_audio_state=int(conv1.shape[0]),
            n_audio_head=_scalar(v, "encoder/num_heads"),
            n_audio_layer=n_audio_layer,
            n_vocab=int(emb.shape[0]),
            n_text_ctx=int(text_pos.shape[0]),
            n_text_state=int(emb.shape[1]),
            n_text_head=_scalar(v, "decoder/num_heads"),
            n_text_layer=n_text_layer,
        )
        out: dict[str, np.ndarray] = {}
        for i in (1, 2):  # mlx Conv1d weights are (out, kernel, in)
            w = f[f"encoder/conv{i}/weight"]
            if w.ndim != 3:
                raise ModelError(f"CTranslate2 variable encoder/conv{i}/weight has rank {w.ndim}, expected 3")
            out[f"encoder.conv{i}.weight"] = w.transpose(0, 2, 1)
            out[f"encoder.conv{i}.bias"] = f[f"encoder/conv{i}/bias"]
        for i in range(n_audio_layer):
            _block(f, f"encoder/layer_{i}", f"encoder.blocks.{i}", out, cross=False)
        _ln(f, "encoder/layer_norm", "encoder.ln_post", out)
        out["decoder.token_embedding.weight"] = emb
        out["decoder.positional_embedding"] = text_pos
        for i in range(n_text_layer):
            _block(f, f"decoder/layer_{i}", f"decoder.blocks.{i}", out, cross=True)
        _ln(f, "decoder/layer_norm", "decoder.ln", out)
    except KeyError as e:
        raise ModelError(f"not a CTranslate2 Whisper model: missing variable {e}") from None
    if n_audio_layer == 0 or n_text_layer == 0:
        raise ModelError("not a CTranslate2 Whisper model: no encoder or decoder layers")
    for k, a in out.items():  # a flipped exponent bit is an inf, not a transcript
        if not np.isfinite(a).all():
            raise ModelError(f"CTranslate2 bundle holds non-finite values (inf or NaN) in the weights of {k}")
    return Converted(dims=dims, weights={k: np.ascontiguousarray(a) for k, a in out.items()})
