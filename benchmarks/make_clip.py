"""Write the 60 s long-form clip the tests build (English samples back to back) to a WAV."""

import sys

import soundfile as sf

sys.path.insert(0, ".")
from tests.test_transcribe import long_clip  # noqa: E402

audio, _ = long_clip(60.0)
sf.write(sys.argv[1], audio, 16000, subtype="FLOAT")
