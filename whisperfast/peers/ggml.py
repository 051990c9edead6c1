"""whisper.cpp's model file (the ggml format of its models/convert-pt-to-ggml.py, fp16 mode)
from a loaded model, so that the whisper.cpp lane runs the same weights.

Layout: the magic, 11 int32 hyperparameters (the last: 1 = f16), the mel filters (n_mels,
n_fft, floats), the text vocabulary (count, then each token's length and bytes, in the
tiktoken file's order; whisper.cpp adds the special tokens itself), then each tensor: n_dims,
name length, type, its dims reversed (ggml's order), its name, its data. Vectors, the
convolutions' biases (as (n, 1)) and the positional embeddings are f32, the rest f16. The
mel filters and the vocabulary are mlx-whisper's (openai-whisper's files), as whisperfast reads them.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from ..errors import WhisperfastError
from ..tokenizer import get_encoding
from .weights import dims, openai_state

MAGIC = 0x67676D6C  # "ggml"
HPARAMS = ("n_vocab", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer",
           "n_text_ctx", "n_text_state", "n_text_head", "n_text_layer", "n_mels")
F32_NAMES = ("encoder.conv1.bias", "encoder.conv2.bias", "encoder.positional_embedding", "decoder.positional_embedding")


def tensor_order(h: dict[str, int]) -> list[str]:
    """openai-whisper's state_dict order (own parameters, then children as registered)."""
    def block(prefix: str, cross: bool) -> list[str]:
        out = []
        for a in ("attn", "cross_attn") if cross else ("attn",):
            out += [f"{prefix}.{a}.{p}" for p in ("query.weight", "query.bias", "key.weight", "value.weight",
                                                  "value.bias", "out.weight", "out.bias")]
            out += [f"{prefix}.{a}_ln.weight", f"{prefix}.{a}_ln.bias"]
        return out + [f"{prefix}.{p}" for p in ("mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias",
                                                 "mlp_ln.weight", "mlp_ln.bias")]

    names = ["encoder.positional_embedding", "encoder.conv1.weight", "encoder.conv1.bias",
             "encoder.conv2.weight", "encoder.conv2.bias"]
    for i in range(h["n_audio_layer"]):
        names += block(f"encoder.blocks.{i}", False)
    names += ["encoder.ln_post.weight", "encoder.ln_post.bias", "decoder.positional_embedding",
              "decoder.token_embedding.weight"]
    for i in range(h["n_text_layer"]):
        names += block(f"decoder.blocks.{i}", True)
    return names + ["decoder.ln.weight", "decoder.ln.bias"]


def write(whisper, out: Path) -> None:
    """Write `whisper`'s ggml file at `out`, a new file (whole or not at all: a sibling, then a rename)."""
    if out.exists():
        raise WhisperfastError(f"{out} exists; not replacing it")
    h = dims(whisper)
    state = openai_state(whisper)
    order = tensor_order(h)
    missing, extra = set(order) - set(state), set(state) - set(order)
    if missing or extra:
        raise WhisperfastError(f"whisper.cpp's layout has no place for this model: missing {sorted(missing)[:3]}, "
                               f"extra {sorted(extra)[:3]}")
    from mlx_whisper.audio import mel_filters

    filters = np.array(mel_filters(h["n_mels"]), dtype="<f4")
    ranks = get_encoding("multilingual" if h["n_vocab"] >= 51865 else "gpt2")._mergeable_ranks
    tokens = sorted(ranks, key=ranks.get)  # the file's order
    tmp = out.with_name(out.name + ".partial")
    try:
        _write(tmp, h, order, state, filters, tokens)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(out)


def _write(tmp: Path, h: dict, order: list, state: dict, filters: np.ndarray, tokens: list) -> None:
    with tmp.open("wb") as f:
        f.write(struct.pack("i", MAGIC))
        f.write(struct.pack("11i", *(h[k] for k in HPARAMS), 1))
        f.write(struct.pack("ii", *filters.shape) + filters.tobytes())
        f.write(struct.pack("i", len(tokens)))
        for t in tokens:
            f.write(struct.pack("i", len(t)) + t)
        for name in order:
            data = np.squeeze(state[name])
            if name in ("encoder.conv1.bias", "encoder.conv2.bias"):
                data = data.reshape(-1, 1)
            f32 = data.ndim < 2 or name in F32_NAMES
            data = np.ascontiguousarray(data, dtype="<f4" if f32 else "<f2")
            key = name.encode()
            f.write(struct.pack("iii", data.ndim, len(key), 0 if f32 else 1))
            f.write(struct.pack(f"{data.ndim}i", *data.shape[::-1]) + key)
            f.write(data.tobytes())
