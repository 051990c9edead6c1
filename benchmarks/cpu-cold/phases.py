"""Where a fresh `whisperfast transcribe samples/jfk.wav --fast --json -q` spends the time that
is not its transcription (benchmarks/cold-start-cpu.md).

Usage: python benchmarks/cpu-cold/phases.py RUNS [PYTHONPATH]
Each run starts a fresh child that runs the command in-process, with `models.load_model`,
`pipeline._warm_tokenizer` and `pipeline.transcribe` wrapped to stamp the wall clock; the
child's last atexit handler stamps it once more, and this process stamps the child's exit.
Prints one JSON object: per phase, its seconds in each run and their median. (`-P`: the
child imports whisperfast from PYTHONPATH, not from the current directory.)"""

import json
import os
import statistics
import subprocess
import sys
import time

CHILD = r'''
import atexit, sys, time
T0 = float(sys.argv[1])
marks = {"python started": time.time()}
atexit.register(lambda: print("EXIT", time.time(), file=sys.stderr, flush=True))  # registered first: runs last
import whisperfast.cli as cli
marks["cli imported"] = time.time()
from whisperfast import models, pipeline

def stamp(obj, name, before, after):
    fn = getattr(obj, name)
    def wrapped(*a, **k):
        marks.setdefault(before, time.time())
        try:
            return fn(*a, **k)
        finally:
            marks.setdefault(after, time.time())
    setattr(obj, name, wrapped)

stamp(models, "load_model", "command started", "model loaded")
stamp(pipeline, "_warm_tokenizer", "model loaded", "tokenizer built")
stamp(pipeline, "transcribe", "load returned", "transcribed")
sys.argv = ["whisperfast", "transcribe", "samples/jfk.wav", "--fast", "--json", "-q"]
try:
    cli.app(prog_name="whisperfast")
finally:
    marks["output written"] = time.time()
    print("MARKS", json.dumps({k: v - T0 for k, v in marks.items()}), file=sys.stderr, flush=True)
'''

PHASES = [  # (label, from mark, to mark)
    ("interpreter start", "start", "python started"),
    ("import whisperfast.cli (typer, rich)", "python started", "cli imported"),
    ("argument parsing, imports of pipeline/decode/numpy/mlx/mlx-whisper", "cli imported", "command started"),
    ("models.load_model", "command started", "model loaded"),
    ("tokenizer warm-up", "model loaded", "tokenizer built"),
    ("rest of load (the --fast rewrite), output plan", "tokenizer built", "load returned"),
    ("transcribe (timings.total and its audio read)", "load returned", "transcribed"),
    ("JSON out, atexit", "transcribed", "exit handlers done"),
    ("interpreter teardown and process exit", "exit handlers done", "exited"),
]


def main():
    runs = int(sys.argv[1])
    env = dict(os.environ)
    if len(sys.argv) > 2 and sys.argv[2]:
        env["PYTHONPATH"] = sys.argv[2]
    rows = []
    for i in range(runs + 1):  # the first is a warm-up
        t0 = time.time()
        p = subprocess.run([".venv/bin/python", "-P", "-c", "import json\n" + CHILD, str(t0)], env=env, capture_output=True, text=True)
        exited = time.time() - t0
        if p.returncode:
            sys.exit(p.stderr[-800:])
        marks = json.loads(next(x for x in p.stderr.splitlines() if x.startswith("MARKS"))[6:])
        marks.update({"start": 0.0, "exited": exited,
                      "exit handlers done": float(next(x for x in p.stderr.splitlines() if x.startswith("EXIT")).split()[1]) - t0})
        if i:
            rows.append({label: marks[b] - marks[a] for label, a, b in PHASES})
    out = {label: {"median": round(statistics.median(r[label] for r in rows), 3),
                   "runs": [round(r[label], 3) for r in rows]} for label, _, _ in PHASES}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
