"""faster-whisper int8 on JFK in one fresh process (the embedded tiny.en bundle, 2 CPU threads,
beam 1), as fresh-jfk-8bit.txt timed it from the shell:  python fw_fresh.py  (from the repo root)"""

from faster_whisper import WhisperModel

from whisperfast.models import ct2_dir

m = WhisperModel(str(ct2_dir("tiny.en")), device="cpu", compute_type="int8", cpu_threads=2)
print(" ".join(s.text.strip() for s in m.transcribe("samples/jfk.wav", beam_size=1, language="en")[0]))
