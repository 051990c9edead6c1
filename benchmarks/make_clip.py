"""Write the long-form clip the tests build (English samples back to back) to a WAV:
python3 benchmarks/make_clip.py OUT.wav [SECONDS, default 60] [SUBTYPE, default FLOAT; PCM_16: a
16-bit file, as most recordings are]."""

import sys

import soundfile as sf

sys.path.insert(0, ".")
from tests.test_transcribe import long_clip  # noqa: E402

audio, _ = long_clip(float(sys.argv[2]) if len(sys.argv) > 2 else 60.0)
sf.write(sys.argv[1], audio, 16000, subtype=sys.argv[3] if len(sys.argv) > 3 else "FLOAT")
