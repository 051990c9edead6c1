"""Peak memory of batched mode (batches of 2) on the fast model: a 1-minute and a 60-minute FLAC
(tests/test_batched.py::write_long_file: the minute's speech every 10 minutes, faint noise
between), each transcribed in a fresh process of the tree it is run from; KEY=VALUE arguments
go to those processes' environment (WHISPERFAST_CPU_STEP=0, WHISPERFAST_MALLOC=0). The files
are written once under /tmp/peakfast.

    (cd TREE && python /path/to/peak_fast_probe.py [KEY=VALUE ...])
"""
import sys, json, subprocess
sys.path.insert(0, ".")
import whisperfast  # noqa: F401,E402  (BLAS before mlx)
from pathlib import Path
from tests import test_batched as tb
d = Path("/tmp/peakfast"); d.mkdir(exist_ok=True)
minute, hour = d / "minute.flac", d / "hour.flac"
if not minute.exists(): tb.write_long_file(minute, 1)
if not hour.exists(): tb.write_long_file(hour, 60)
script = tb.PEAK_RSS.replace("model = load(sys.argv[3])", "model = load(sys.argv[3], fast=True)")
for p in (minute, hour):
    r = subprocess.run([sys.executable, "-c", script, str(p), "2", "tiny.en"], capture_output=True, text=True, check=True, env={**__import__("os").environ, **dict(a.split("=") for a in sys.argv[1:])})
    out = json.loads(r.stdout.splitlines()[-1]); out.pop("text")
    print(p.name, out)
