"""openai-whisper's own beam search on the same weights as whisperfast's (issue 14: beam 5
gives the same text as openai-whisper's beam-5 decode).

    python benchmarks/openai_beam_peer.py OW_PARENT [MODEL] [AUDIO...]   (a CUDA machine)

OW_PARENT: the folder holding openai-whisper's `whisper/` package (the sdist of
openai-whisper==20250625, unpacked: it is source-only, and the GPU machine has torch and
tiktoken but not numba, which only its word timestamps use, so a stand-in is put in its place).
For each audio: whisperfast `--fast --beam-size 5` and its stock lane (fresh processes, the
model's cache directory read back from whisperfast's own resolver), then openai-whisper's
`decode` with DecodingOptions(beam_size=5), fp16 and fp32, on the first 30 s window. One JSON
line each: lane, text, and whether the text equals whisperfast fused's."""

import json
import subprocess
import sys
import types

ow_parent, args = sys.argv[1], sys.argv[2:]
model = args[0] if args and not args[0].endswith((".wav", ".flac", ".mp3")) else "tiny.en"
audios = [a for a in args if a != model] or ["samples/jfk.wav"]
texts = {}
for audio in audios:
    for lane in ("--fast", "stock"):
        lane_args = [lane] if lane == "--fast" else []
        r = subprocess.run([sys.executable, "-m", "whisperfast", "transcribe", audio, "-m", model, "--dtype", "float16",
                            "--beam-size", "5", "--json", "-q", *lane_args], capture_output=True, text=True)
        text = json.loads(r.stdout)["text"].strip() if r.returncode == 0 else f"error: {r.stderr.strip()[-200:]}"
        texts[audio, lane] = text
        print(json.dumps({"lane": f"whisperfast {lane} beam 5 fp16", "audio": audio, "text": text}), flush=True)

from whisperfast.models import _resolve  # noqa: E402  (after the subprocesses: they converted the model)

mlx_dir = _resolve(model)
sys.modules["numba"] = types.SimpleNamespace(jit=lambda *a, **k: (lambda f: f))  # whisper.timing's decorator only
sys.path.insert(0, ow_parent)
import numpy as np  # noqa: E402
import soundfile  # noqa: E402
import torch  # noqa: E402
import whisper  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402
from whisper.model import ModelDimensions, Whisper, sinusoids  # noqa: E402

cfg = json.loads((mlx_dir / "config.json").read_text())
cfg.pop("model_type", None), cfg.pop("quantization", None)
dims = ModelDimensions(**{k: cfg[k] for k in ModelDimensions.__dataclass_fields__})
sd = {}
for k, v in load_file(str(mlx_dir / "weights.safetensors")).items():  # ../shared/gpu/peers_torch.py's mapping
    t = torch.from_numpy(v.astype(np.float32))
    if k.endswith("conv1.weight") or k.endswith("conv2.weight"):
        t = t.permute(0, 2, 1).contiguous()  # mlx (O, K, I) -> torch (O, I, K)
    sd[k.replace(".mlp1.", ".mlp.0.").replace(".mlp2.", ".mlp.2.")] = t
sd["encoder.positional_embedding"] = sinusoids(dims.n_audio_ctx, dims.n_audio_state)
ow = Whisper(dims)
ow.load_state_dict(sd, strict=False)
ow = ow.cuda().eval()
for audio in audios:
    samples, rate = soundfile.read(audio, dtype="float32")  # (whisper.load_audio needs ffmpeg)
    assert rate == 16000 and samples.ndim == 1, (audio, rate)
    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(samples)), dims.n_mels).cuda()
    for fp16 in (True, False):
        result = whisper.decode(ow, mel, whisper.DecodingOptions(beam_size=5, fp16=fp16, language="en"))
        text = result.text.strip()
        print(json.dumps({"lane": f"openai-whisper beam 5 {'fp16' if fp16 else 'fp32'}", "audio": audio, "text": text,
                          "equals_whisperfast_fused": text == texts[audio, "--fast"]}), flush=True)
