"""A loaded model's weights under openai-whisper's names, for the peers that run them.

mlx-whisper names the MLP layers mlp1/mlp2 (openai-whisper: mlp.0/mlp.2), stores the
convolutions as (out, kernel, in) (torch: (out, in, kernel)) and keeps the encoder's sinusoids
out of its parameters; the peers get the very sinusoid values the model adds.
"""

from __future__ import annotations

import re

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

from ..errors import WhisperfastError


def openai_name(name: str) -> str:
    return re.sub(r"\.mlp([12])\.", lambda m: ".mlp.%d." % (0 if m.group(1) == "1" else 2), name)


def openai_state(whisper) -> dict[str, np.ndarray]:
    """{openai-whisper state_dict name: float32 array in torch's layout} of an mlx-whisper model."""
    flat = dict(tree_flatten(whisper.parameters()))
    if any(k.endswith((".scales", ".biases")) and k.rsplit(".", 1)[0] + ".weight" in flat for k in flat):
        raise WhisperfastError("peer lanes run float models; this one is quantized "
                               "(faster-whisper alone races it, with its int8)")
    state = {}
    for k, v in flat.items():
        if k == "alignment_heads":
            continue
        a = np.array(v.astype(mx.float32))
        if k in ("encoder.conv1.weight", "encoder.conv2.weight"):
            a = a.transpose(0, 2, 1)  # (out, kernel, in) -> (out, in, kernel)
        state[openai_name(k)] = np.ascontiguousarray(a)
    state["encoder.positional_embedding"] = np.array(whisper.encoder._positional_embedding.astype(mx.float32))
    return state


def dims(whisper) -> dict[str, int]:
    d = whisper.dims
    return {k: int(getattr(d, k)) for k in ("n_mels", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer",
                                             "n_vocab", "n_text_ctx", "n_text_state", "n_text_head", "n_text_layer")}
