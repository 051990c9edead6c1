"""Can Silero VAD run on several threads at once (issue 15: on the H200 it is most of a
batched 600 s transcription)? Its LSTM carries state from frame to frame, so a piece started
alone begins from zero state. This starts each 60 s piece of the 600 s clip W frames early
(W = 0 ... 250, 8 s) and compares its probabilities with the one-sequence run's: the largest
difference, the frames that differ by more than 1e-6, and the frames on the other side of
the thresholds (0.5, and 0.35 to end speech).

    python benchmarks/batched/vad_split_probe.py [CLIP.wav]   (default: make_clip.py's 600 s clip)"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from whisperfast import vad

ROOT = Path(__file__).resolve().parents[2]
path = sys.argv[1] if len(sys.argv) > 1 else "/tmp/clip600.wav"
if not Path(path).exists():
    subprocess.run([sys.executable, str(ROOT / "benchmarks/make_clip.py"), path, "600"], check=True)
audio, _ = sf.read(path, dtype="float32")
model = vad.vad_model()
ref = model(audio)
F, P = vad.FRAME, 1875  # 60 s pieces
for W in (0, 31, 125, 250):
    out = []
    for s in range(0, len(ref), P):
        w0 = max(0, s - W)
        stream = model.stream(4096)
        if w0 > 0:
            stream.context = audio[w0 * F - vad.CONTEXT : w0 * F].copy()
        p = np.concatenate([stream(audio[w0 * F : (s + P) * F]), stream.finish()])
        out.append(p[s - w0 :][:P])
    p = np.concatenate(out)[: len(ref)]
    d = np.abs(p - ref)
    print(f"warm-up {W:3d} frames: max |diff| {d.max():.3f}, frames > 1e-6 {int((d > 1e-6).sum())} of {len(ref)}, "
          f"across 0.5: {int(((p >= .5) != (ref >= .5)).sum())}, across 0.35: {int(((p >= .35) != (ref >= .35)).sum())}")
