"""Time each window's prompt and the decode of a `--fast` transcription on this machine:
python3 benchmarks/prompt_probe.py FILE [RUNS, default 4] (run from the repository root, or with
PYTHONPATH on another tree). StaticInference.logits is wrapped, in this process only, to time
the calls that start a window (offset 0); the first run pays the checks (the C step's, the C
prompt's) and is printed apart."""

import sys
import time

import whisperfast  # noqa: F401  (before mlx: the BLAS and malloc settings)
import mlx.core as mx

from whisperfast import pipeline
from whisperfast.audio import load_audio
from whisperfast.decode import flat

audio = load_audio(sys.argv[1])
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 4
model = pipeline.rewritten(pipeline.load(dtype=mx.float32))
prompts = []
logits = flat.StaticInference.logits


def timed(self, tokens, audio_features, rows=None):
    start = self.kv_cache is None or self.kv_cache[0][0].offset == 0
    t0 = time.perf_counter()
    out = logits(self, tokens, audio_features, rows)
    mx.eval(out)
    if start:
        prompts.append((tokens.shape[-1], round((time.perf_counter() - t0) * 1000, 1)))
    return out


flat.StaticInference.logits = timed
for r in range(runs):
    prompts.clear()
    t = pipeline.transcribe(model, audio)
    print(f"{'first' if r == 0 else 'run ' + str(r)}: decode {t.timings.decode * 1000:.1f} ms, {t.timings.tokens} tokens, "
          f"{t.timings.decode * 1000 / t.timings.tokens:.2f} ms/token; prompts (tokens, ms): {prompts}")
