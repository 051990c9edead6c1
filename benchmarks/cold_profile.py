"""Where a fresh `whisperfast transcribe` process spends its wall time (issue 13): each case
runs once plain (wall clock from the parent) and once under cProfile, in fresh processes,
after one unprofiled run has filled the kernel cache. Prints, per case, the plain wall
time, the JSON timings, and the profile's top functions by own time and by cumulative time
(MLX's lazy work shows up in the call that waits for it: eval, item, tolist).

Usage: python benchmarks/cold_profile.py OUTDIR AUDIO[:MODEL[:ARGS]] ...
e.g.   python benchmarks/cold_profile.py /tmp/prof samples/jfk.wav /tmp/clip600.wav:base"""

import io
import json
import pstats
import subprocess
import sys
import time
from pathlib import Path


# The CLI ends with os._exit after running the atexit hooks, so the profile is written by one.
CHILD = """
import atexit, cProfile, sys
prof = cProfile.Profile()
path = sys.argv[1]
atexit.register(lambda: (prof.disable(), prof.dump_stats(path)))
sys.argv = ["whisperfast", "transcribe", *sys.argv[2:]]
prof.enable()
from whisperfast.cli import main
main()
"""


def run(args, prof=None):
    cmd = [sys.executable] + (["-c", CHILD, str(prof)] if prof else ["-m", "whisperfast"]) + (["transcribe"] if not prof else []) + args
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    timings = json.loads(r.stdout.splitlines()[0]).get("timings") if r.returncode == 0 and r.stdout else None
    return wall, timings, r


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for case in sys.argv[2:]:
        audio, model, extra = (case.split(":", 2) + ["tiny.en", ""][len(case.split(":", 2)) - 1:])[:3]
        args = [audio, "-m", model, "--fast", "-q", "--json", *extra.split()]
        tag = f"{Path(audio).stem}-{model}" + (f"-{extra.replace(' ', '')}" if extra else "")
        run(args)  # the kernel cache filled, the page cache warm
        walls = [run(args)[:2] for _ in range(2)]
        prof = Path("/tmp") / f"{tag}.prof"  # only the text comes back
        pwall, ptimings, r = run(args, prof)
        if r.returncode:
            print(tag, "failed:", r.stderr[-2000:])
            continue
        s = io.StringIO()
        st = pstats.Stats(str(prof), stream=s)
        st.sort_stats("tottime").print_stats(25)
        st.sort_stats("cumulative").print_stats(45)
        text = s.getvalue()
        (out / f"{tag}.txt").write_text(text)
        print(json.dumps({"case": tag, "plain": [(round(w, 3), t) for w, t in walls],
                          "profiled_wall": round(pwall, 3), "profiled_timings": ptimings}))
        print(text[:9000])


if __name__ == "__main__":
    main()
