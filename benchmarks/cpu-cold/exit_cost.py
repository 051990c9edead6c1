"""What `os._exit` after the output would save: JFK --fast --json, wall - timings.total, run
the usual way and with os._exit after flushing stdout and stderr (which skips the interpreter's
teardown and the atexit handlers). Usage: python benchmarks/cpu-cold/exit_cost.py, from the
repository root; one warm-up round, then 6, alternated."""
import json, statistics, subprocess, time
CODE = {
 "normal": "import sys\nfrom whisperfast.cli import app\nsys.argv=['whisperfast','transcribe','samples/jfk.wav','--fast','--json','-q']\napp(prog_name='whisperfast')",
 "os_exit": "import os, sys\nfrom whisperfast.cli import app\nsys.argv=['whisperfast','transcribe','samples/jfk.wav','--fast','--json','-q']\ntry:\n    app(prog_name='whisperfast')\nexcept SystemExit as e:\n    code = e.code\nelse:\n    code = 0\nsys.stdout.flush(); sys.stderr.flush()\nos._exit(code or 0)",
}
res = {k: [] for k in CODE}
for i in range(7):
    for k, c in CODE.items():
        t = time.perf_counter()
        out = subprocess.run([".venv/bin/python", "-P", "-c", c], capture_output=True, text=True).stdout
        wall = time.perf_counter() - t
        if i:
            res[k].append(round(wall - json.loads(out)["timings"]["total"], 3))
for k, v in res.items():
    print(k, statistics.median(v), sorted(v))
