"""A GPU peer for batched mode: Hugging Face transformers (torch, fp16, SDPA) on the same weights,
insanely-fast-whisper's way: the audio cut into 30 s windows back to back (no VAD), N windows a
`generate` call, greedy, timestamps off, the log-mels by the feature extractor's torch path on
the GPU. Its wall time, audio-seconds per second and WER
against the clip's reference; one JSON line per batch size. The weight mapping is
whisperfast.peers' (bench's transformers lane, which runs the chunked pipeline instead).

    python benchmarks/peer_transformers.py AUDIO MODEL [BATCH ...]   (a CUDA machine with torch)
AUDIO: 16 kHz; MODEL: tiny.en or base (whisperfast's names; weights from its cache)."""

import json
import statistics
import sys
import time

import whisperfast  # noqa: F401  (BLAS preload)

import mlx.core as mx
import torch
from transformers import WhisperFeatureExtractor
from transformers.generation import GenerationMixin

from whisperfast.audio import load_audio
from whisperfast.peers.torch_peers import hf_model
from whisperfast.pipeline import load
from whisperfast.tokenizer import get_tokenizer

sys.path.insert(0, ".")
from tests.test_transcribe import long_clip  # noqa: E402
from tests.text import error_rate  # noqa: E402

audio_path, name = sys.argv[1], sys.argv[2]
batches = [int(b) for b in sys.argv[3:]] or [16]
model = load(name, dtype=mx.float16)
dims = model.whisper.dims
en = dims.n_vocab == 51864
hf, _, _ = hf_model(model)  # Whisper's generation settings, which GenerationMixin's generate below does not read
config = hf.config
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
