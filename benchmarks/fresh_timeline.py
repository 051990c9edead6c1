"""Where a fresh `whisperfast transcribe` process spends its wall time, stamp by stamp (issue 13):
the same command as fresh_ab.py (`python -m whisperfast transcribe AUDIO -q --json`, from each
source tree given, lanes alternated run by run), each child stamping in seconds since its
parent spawned it:
- `python`: the interpreter has started and run site;
- `mlx.core`, `warm-up`, `imports`, `load`, `transcribe`, `hand-off`: each one's start and end
  (`imports`: the CLI's import thread, where a tree has one; `hand-off`: the teardown's);
- inside them, each one's first call: `plan` (the outputs planned: the main thread's last step
  before it hands the GPU thread its work, or joins the warm-up in trees before 4637b0d),
  `read` (the converted weights), `tokenizer`, `rewrite`, `audio` (the file decoded), `mel`,
  `encode` (the first window's);
- `batched`, `batch`: batched mode's transcription and its first batch (TIMELINE_ARGS="--batch-size N");
- `atexit`: the CLI's exit handlers, after the transcript is printed;
and the parent stamping `exit`, when it reaped the child. A tree without a stamped function
just lacks that stamp. The stamps wrap functions as their modules are imported (an import
hook of this probe's), so the order of the imports is the CLI's own.

Usage: python benchmarks/fresh_timeline.py RUNS TREE[@VAR=VALUE...][,TREE...] AUDIO[:MODEL] [--stock]
(TIMELINE_ARGS: more arguments for every child's `transcribe`, e.g. "--batch-size 32")
Prints one JSON line per run, then each lane's median stamps."""

import json
import os
import statistics
import subprocess
import sys
import time

from fresh_ab import lanes_of, tree_env  # this folder is the script's: first on sys.path

CHILD = r'''
import atexit, importlib.abc, json, os, sys, time
t0 = float(os.environ["TIMELINE_T0"])
stamps = {}
def stamp(name):
    stamps.setdefault(name, round(time.time() - t0, 4))
stamp("python")
WRAP = {"whisperfast.runtime": {"_first_calls": "warm-up", "hand_off_teardown": "hand-off"},
        "whisperfast.pipeline": {"load": "load", "transcribe": "transcribe", "_warm_tokenizer": "tokenizer",
                                 "rewritten": "rewrite"},
        "whisperfast.cli": {"_import_the_command": "imports"},
        "whisperfast.output": {"plan_outputs": "plan"},
        "whisperfast.models": {"_read_flat": "read"},
        "whisperfast.audio": {"load_audio": "audio"},
        "whisperfast.longform": {"log_mel_spectrogram": "mel", "_encode": "encode"},
        "whisperfast.batched": {"transcribe_batched": "batched", "_run_batch": "batch"}}
def wrapped(fn, name):
    def inner(*a, **k):
        stamp(name + " start")
        try:
            return fn(*a, **k)
        finally:
            stamp(name + " end")
    return inner
class Stamper(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname not in WRAP and fullname != "mlx.core":
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            spec = finder.find_spec(fullname, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None:
                break
        else:
            return None
        create_module, exec_module = spec.loader.create_module, spec.loader.exec_module
        def create(spec):
            stamp(fullname + " start") if fullname == "mlx.core" else None  # an extension's dlopen is here
            return create_module(spec)
        def run(module):
            exec_module(module)
            stamp(fullname + " end") if fullname == "mlx.core" else None
            for attr, name in WRAP.get(fullname, {}).items():
                if hasattr(module, attr):
                    setattr(module, attr, wrapped(getattr(module, attr), name))
        spec.loader.create_module, spec.loader.exec_module = create, run
        return spec
sys.meta_path.insert(0, Stamper())
atexit.register(lambda: (stamp("atexit"), sys.stderr.write("STAMPS " + json.dumps(stamps) + "\n"), sys.stderr.flush()))
sys.argv = ["whisperfast", *sys.argv[1:]]
from whisperfast.cli import main
main()
'''


def run(lane_tree, args):
    t0 = time.time()
    tree, env = tree_env(lane_tree, TIMELINE_T0=repr(t0))
    extra = os.environ.get("TIMELINE_ARGS", "").split()
    r = subprocess.run([sys.executable, "-c", CHILD, "transcribe", *args, *extra, "-q", "--json"], capture_output=True,
                       text=True, env=env, cwd=tree)
    end = time.time() - t0
    said = [x for x in r.stderr.splitlines() if x.startswith("STAMPS ")]
    stamps = json.loads(said[-1][len("STAMPS "):]) if said else {}
    stamps["exit"] = round(end, 4)
    if r.returncode:
        stamps["error"] = r.stderr[-300:]
    return stamps


def main():
    runs, trees = int(sys.argv[1]), sys.argv[2].split(",")
    cases = [a for a in sys.argv[3:] if a != "--stock"]
    for case in cases:
        audio, model = (case.split(":") + ["tiny.en"])[:2]
        audio = os.path.abspath(audio)
        lanes = lanes_of(trees, audio, model, stock="--stock" in sys.argv)
        for _, tree, args in lanes:
            run(tree, args)  # caches filled
        seen = {name: [] for name, _, _ in lanes}
        for i in range(runs):
            for name, tree, args in lanes:
                stamps = run(tree, args)
                seen[name].append(stamps)
                print(json.dumps({"case": case, "lane": name, "run": i, "stamps": stamps}), flush=True)
        for name, all_stamps in seen.items():
            keys = sorted({k for s in all_stamps for k in s if k != "error"}, key=lambda k: statistics.median(
                s[k] for s in all_stamps if k in s))
            print(json.dumps({"case": case, "lane": name, "median": {k: round(statistics.median(s[k] for s in all_stamps if k in s), 3)
                                                                     for k in keys}}), flush=True)


if __name__ == "__main__":
    main()
