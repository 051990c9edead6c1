"""Larger Whispers' shapes through `--fast` (issue 17): random-weight models at the dims of
small, medium and large-v3-turbo (n_mels 128, 20 heads, 32 encoder layers), stock lane against
fused lane on JFK, greedy at temperature 0, float and 8-bit and 4-bit: the fused tokens must be
stock's. The weights are seeded, and the token embedding is scaled up so that a random model's
logits are peaked: near-ties would make any rounding difference flip a token.

On a GPU (fp16) every case runs: that is where the kernel meets these shapes. On the CPU only
large-v3-turbo in float runs (fp32, ~3 minutes): its quantized stock lane would run MLX's CPU
quantized matmul, a scalar loop, for hours. All are in the slow group."""

import json

import mlx.core as mx
import pytest
from mlx.utils import tree_flatten
from mlx_whisper.whisper import ModelDimensions, Whisper

from whisperfast.pipeline import TranscribeOptions, load, rewritten, transcribe

from .conftest import SAMPLES, cuda_available

DIMS = {  # openai/whisper's ModelDimensions of each
    "small": dict(n_mels=80, n_audio_ctx=1500, n_audio_state=768, n_audio_head=12, n_audio_layer=12, n_vocab=51865,
                  n_text_ctx=448, n_text_state=768, n_text_head=12, n_text_layer=12),
    "medium": dict(n_mels=80, n_audio_ctx=1500, n_audio_state=1024, n_audio_head=16, n_audio_layer=24, n_vocab=51865,
                   n_text_ctx=448, n_text_state=1024, n_text_head=16, n_text_layer=24),
    "large-v3-turbo": dict(n_mels=128, n_audio_ctx=1500, n_audio_state=1280, n_audio_head=20, n_audio_layer=32,
                           n_vocab=51866, n_text_ctx=448, n_text_state=1280, n_text_head=20, n_text_layer=4),
}


def random_model(folder, name: str):
    """An mlx-whisper directory of seeded random weights at `name`'s dims (fp16, as the hub's)."""
    mx.random.seed(0)
    model = Whisper(ModelDimensions(**DIMS[name]), mx.float16)
    model.decoder.token_embedding.weight = model.decoder.token_embedding.weight * 4
    mx.save_safetensors(str(folder / "weights.safetensors"), dict(tree_flatten(model.parameters())))
    (folder / "config.json").write_text(json.dumps({**DIMS[name], "model_type": "whisper"}))
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("bits", [None, 8, 4], ids=["float", "8-bit", "4-bit"])
@pytest.mark.parametrize("name", list(DIMS))
def test_fused_equals_stock_at_larger_shapes(name, bits, tmp_path):
    gpu = cuda_available()
    if not gpu and (bits is not None or name != "large-v3-turbo"):
        pytest.skip("on the CPU only large-v3-turbo in float (the GPU run covers the rest)")
    dtype = mx.float16 if gpu else mx.float32
    stock = load(str(random_model(tmp_path, name)), dtype=dtype, quantize=bits)
    fused = rewritten(stock)
    options = TranscribeOptions(language="en", temperature=(0.0,), condition_on_previous_text=False)
    a, b = transcribe(stock, SAMPLES / "jfk.wav", options), transcribe(fused, SAMPLES / "jfk.wav", options)
    assert a.tokens and a.tokens == b.tokens
    assert stock.whisper.dims.n_mels == DIMS[name]["n_mels"] and len(fused.whisper.encoder.blocks) == DIMS[name]["n_audio_layer"]
