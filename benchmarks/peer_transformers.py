"""A GPU peer for batched mode: Hugging Face transformers (torch, fp16, SDPA) on the same weights,
insanely-fast-whisper's way: the audio cut into 30 s windows back to back (no VAD), N windows a
`generate` call, greedy, timestamps off, the log-mels by the feature extractor's torch path on
the GPU. Its wall time, audio-seconds per second and WER
against the clip's reference; one JSON line per batch size. The weight mapping is
../shared/gpu/peers_torch.py's.

    python benchmarks/peer_transformers.py AUDIO MODEL [BATCH ...]   (a CUDA machine with torch)
AUDIO: 16 kHz; MODEL: tiny.en or base (whisperfast's names; weights from its cache)."""

import json
import statistics
import sys
import time

import whisperfast  # noqa: F401  (BLAS preload)

import mlx.core as mx
import numpy as np
import torch
from mlx.utils import tree_flatten
from mlx_whisper.whisper import sinusoids
from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration
from transformers.generation import GenerationMixin

from whisperfast.audio import load_audio
from whisperfast.pipeline import load
from whisperfast.tokenizer import get_tokenizer

sys.path.insert(0, ".")
from tests.test_transcribe import long_clip  # noqa: E402
from tests.text import error_rate  # noqa: E402

audio_path, name = sys.argv[1], sys.argv[2]
batches = [int(b) for b in sys.argv[3:]] or [16]
model = load(name, dtype=mx.float16)
dims = model.whisper.dims
weights = {k: torch.from_numpy(np.array(v.astype(mx.float32))) for k, v in tree_flatten(model.whisper.parameters())
           if k != "alignment_heads"}
# mlx-whisper keeps the encoder's sinusoids out of its parameters
weights["encoder.positional_embedding"] = torch.from_numpy(np.array(sinusoids(dims.n_audio_ctx, dims.n_audio_state)))
en = dims.n_vocab == 51864
config = WhisperConfig(vocab_size=dims.n_vocab, num_mel_bins=dims.n_mels, encoder_layers=dims.n_audio_layer,
                       encoder_attention_heads=dims.n_audio_head, decoder_layers=dims.n_text_layer,
                       decoder_attention_heads=dims.n_text_head, d_model=dims.n_audio_state,
                       encoder_ffn_dim=4 * dims.n_audio_state, decoder_ffn_dim=4 * dims.n_text_state,
                       max_source_positions=dims.n_audio_ctx, max_target_positions=dims.n_text_ctx,
                       decoder_start_token_id=50257 if en else 50258, eos_token_id=50256 if en else 50257,
                       pad_token_id=50256 if en else 50257, bos_token_id=50256 if en else 50257, attn_implementation="sdpa")
renames = [("encoder.blocks.", "encoder.layers."), ("decoder.blocks.", "decoder.layers."), (".attn.query", ".self_attn.q_proj"),
           (".attn.key", ".self_attn.k_proj"), (".attn.value", ".self_attn.v_proj"), (".attn.out", ".self_attn.out_proj"),
           (".cross_attn.query", ".encoder_attn.q_proj"), (".cross_attn.key", ".encoder_attn.k_proj"),
           (".cross_attn.value", ".encoder_attn.v_proj"), (".cross_attn.out", ".encoder_attn.out_proj"),
           (".attn_ln", ".self_attn_layer_norm"), (".cross_attn_ln", ".encoder_attn_layer_norm"), (".mlp_ln", ".final_layer_norm"),
           (".mlp1", ".fc1"), (".mlp2", ".fc2"), ("encoder.ln_post", "encoder.layer_norm"), ("decoder.ln.", "decoder.layer_norm."),
           ("decoder.token_embedding", "decoder.embed_tokens"), ("decoder.positional_embedding", "decoder.embed_positions.weight"),
           ("encoder.positional_embedding", "encoder.embed_positions.weight")]
state = {}
for k, v in weights.items():
    if k.endswith(("conv1.weight", "conv2.weight")):
        v = v.permute(0, 2, 1).contiguous()  # MLX's (out, kernel, in) -> torch's (out, in, kernel)
    for a, b in renames:
        k = k.replace(a, b)
    state["model." + k] = v
state["proj_out.weight"] = state["model.decoder.embed_tokens.weight"]
hf = WhisperForConditionalGeneration(config)
result = hf.load_state_dict(state, strict=False)
print(json.dumps({"note": "weights", "missing": result.missing_keys, "unexpected": result.unexpected_keys[:5]}), flush=True)
hf = hf.half().cuda().eval()
features = WhisperFeatureExtractor(feature_size=dims.n_mels)
tokenizer = get_tokenizer(not en, language="en", task="transcribe")
prompt = [50257, 50362] if en else [50258, 50259, 50359, 50363]  # SOT (language, task), no timestamps

audio = load_audio(audio_path)
seconds = len(audio) / 16000
windows = [audio[i : i + 480000] for i in range(0, len(audio), 480000)]
_, reference = long_clip(seconds)


def mels(part):
    try:
        out = features(part, sampling_rate=16000, return_tensors="pt", device="cuda")
    except TypeError:  # a transformers without the torch path: numpy's on the host
        out = features(part, sampling_rate=16000, return_tensors="pt")
    return out.input_features.cuda().half()


def run(batch: int) -> str:
    texts = []
    with torch.inference_mode():
        for i in range(0, len(windows), batch):
            part = windows[i : i + batch]
            mel = mels(part)
            ids = torch.tensor([prompt] * len(part), device="cuda")
            # GenerationMixin's generate: Whisper's own would detect languages and force tokens its way
            out = GenerationMixin.generate(hf, input_features=mel, decoder_input_ids=ids, max_new_tokens=440 - len(prompt), do_sample=False,
                              eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id)
            texts += [tokenizer.decode([t for t in row if t < tokenizer.eot]) for row in out.tolist()]
    torch.cuda.synchronize()
    return " ".join(t.strip() for t in texts)


for batch in batches:
    run(batch)  # warm-up
    times = []
    for _ in range(3):
        torch.cuda.synchronize()
        t = time.perf_counter()
        text = run(batch)
        times.append(time.perf_counter() - t)
    median = statistics.median(times)
    print(json.dumps(dict(lane="transformers sdpa fp16, 30 s windows", model=name, audio=audio_path, seconds=seconds,
                          batch=batch, windows=len(windows), median_s=median, runs_s=times, audio_s_per_s=seconds / median,
                          wer=error_rate(reference, text), torch=torch.__version__, text=text)), flush=True)
