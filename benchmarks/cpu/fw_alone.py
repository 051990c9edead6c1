"""faster-whisper as its users run it: a Python process of its own (no whisperfast, no MLX,
glibc's malloc as it comes), the same CTranslate2 tiny.en bundle the bench's lane reads, fp32,
greedy (beam 1), English; one warm-up, then N timed transcriptions of FILE, alternating with
nothing. Prints one JSON line: the median, min and max in ms.

Usage: python benchmarks/cpu/fw_alone.py BUNDLE_DIR FILE [N, default 7]
(BUNDLE_DIR: `whisperfast models` lists where the embedded tiny.en lives; its folder.)"""

import json
import statistics
import sys
import time

import soundfile as sf
from faster_whisper import WhisperModel

bundle, path = sys.argv[1], sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 7
audio, rate = sf.read(path, dtype="float32")
assert rate == 16000 and audio.ndim == 1, "a 16 kHz mono file"
model = WhisperModel(bundle, device="cpu", compute_type="float32")


def once() -> float:
    t = time.perf_counter()
    segments, _ = model.transcribe(audio, beam_size=1, language="en")
    text = " ".join(s.text.strip() for s in segments)
    assert text
    return (time.perf_counter() - t) * 1e3


once()
ts = [once() for _ in range(n)]
print(json.dumps({"file": path, "runs": n, "median_ms": statistics.median(ts), "min_ms": min(ts), "max_ms": max(ts)}))
