"""Warm transcriptions with word timestamps, in one process: the model loaded and rewritten
once (--fast), one warm-up, then RUNS transcriptions of AUDIO, the median wall time. Run from
a tree's root to time that tree (its whisperfast/ is imported first):

    python benchmarks/words_warm.py AUDIO [RUNS] [MODEL]    (prints one JSON line)"""

import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path.cwd()))

import whisperfast  # noqa: E402,F401  (BLAS before mlx)
from whisperfast.audio import load_audio  # noqa: E402
from whisperfast.pipeline import TranscribeOptions, load, rewritten, transcribe  # noqa: E402

audio_path, runs = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 5
model = rewritten(load(sys.argv[3] if len(sys.argv) > 3 else "tiny.en"))
audio, options = load_audio(audio_path), TranscribeOptions(word_timestamps=True)
transcribe(model, audio, options)
walls, words = [], None
for _ in range(runs):
    t0 = time.perf_counter()
    t = transcribe(model, audio, options)
    walls.append(time.perf_counter() - t0)
    words = [(w.word, w.start, w.end) for s in t.segments for w in s.words or []]
print(json.dumps({"tree": str(Path.cwd()), "audio": audio_path, "median_s": round(statistics.median(walls), 4),
                  "walls": [round(w, 4) for w in walls], "words": len(words), "first": words[:3]}))
