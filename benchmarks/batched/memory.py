"""Peak resident memory of batched transcription, a 60-minute file against a 1-minute one
(issue 15: within 1.3x). The files are tests/test_batched.py's write_long_file (FLAC at
22.05 kHz, so read resampled: the 1-minute file is the ~60 s clip of real speech,
tests/test_transcribe.py::long_clip(60); the hour holds it every 10 minutes, faint noise
between). Each transcription runs in a fresh process (test_batched.peak_rss): ru_maxrss, the
process's peak, loading included, and VmHWM reset after loading, the transcription's own.

    .venv/bin/python benchmarks/batched/memory.py --batch-size 2 [--checkout DIR] > out.json

--checkout: the whisperfast checkout the child processes import (a git worktree of an older
commit, to measure it before a change); the repository's own by default.
"""

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.test_batched import peak_rss, write_long_file  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--checkout", type=Path, default=ROOT)
    ap.add_argument("--files", type=Path, help="folder for the two files (kept; made if missing)")
    args = ap.parse_args()
    folder = args.files or Path(tempfile.mkdtemp())
    folder.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "-C", str(args.checkout), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    out = {"model": args.model, "batch_size": args.batch_size, "checkout_commit": commit,
           "machine": platform.processor() or platform.machine(), "runs": {}}
    for name, minutes in (("minute", 1), ("hour", 60)):
        path = folder / f"{name}.flac"
        if not path.exists():
            write_long_file(path, minutes)
        t0 = time.perf_counter()
        r = peak_rss(path, args.batch_size, args.model, cwd=args.checkout)
        r["wall_s"] = time.perf_counter() - t0
        r["text"] = r["text"][:120]
        out["runs"][name] = r
        print(name, r["peak_mb"], round(r["wall_s"], 1), file=sys.stderr)
    out["ratio_peak"] = out["runs"]["hour"]["peak_mb"] / out["runs"]["minute"]["peak_mb"]
    if out["runs"]["minute"]["transcribe_peak_mb"]:
        out["ratio_transcribe_peak"] = out["runs"]["hour"]["transcribe_peak_mb"] / out["runs"]["minute"]["transcribe_peak_mb"]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
