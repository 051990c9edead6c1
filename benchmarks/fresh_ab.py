"""Plain fresh `whisperfast transcribe` processes, wall clock from the parent, lanes alternated
run by run (issue 13): `--fast` from each source tree given, and stock (no `--fast`) from the
first. A tree is a folder that holds the `whisperfast` package (`git archive REV | tar x -C
DIR` makes an older one); the current directory's is ".". A tree may carry environment
settings for its lane, `TREE@VAR=VALUE@...` (a knob turned off, say).

Usage: python benchmarks/fresh_ab.py RUNS TREE[@VAR=VALUE...][,TREE...] AUDIO[:MODEL] ...
Prints one JSON line per run, then the medians of each lane."""

import json
import os
import statistics
import subprocess
import sys
import time


def tree_env(lane_tree, **extra):
    """A lane's (tree, environment): the tree's folder first on PYTHONPATH, its settings set."""
    tree, *settings = lane_tree.split("@")
    path = [os.path.abspath(tree)] + [p for p in os.environ.get("PYTHONPATH", "").split(":") if p and os.path.abspath(p) != os.getcwd()]
    return tree, dict(os.environ, PYTHONPATH=":".join(path), **dict(x.split("=", 1) for x in settings), **extra)


def lanes_of(trees, audio, model, stock=True):
    """(name, tree, arguments) of each tree's `--fast` lane, and stock's from the first tree."""
    lanes = [(f"{tree} --fast", tree, [audio, "-m", model, "--fast"]) for tree in trees]
    if stock:
        lanes.append((f"{trees[0].split('@')[0]} stock", trees[0].split("@")[0], [audio, "-m", model]))
    return lanes


def run(lane_tree, args):
    tree, env = tree_env(lane_tree)
    t0 = time.perf_counter()
    # -m puts the working directory first on sys.path: the tree's own folder
    r = subprocess.run([sys.executable, "-m", "whisperfast", "transcribe", *args, "-q", "--json"], capture_output=True,
                       text=True, env=env, cwd=tree)
    wall = time.perf_counter() - t0
    if r.returncode:
        return wall, None, r.stderr[-300:]
    out = json.loads(r.stdout.splitlines()[0])
    return wall, out["timings"], out["text"][:40]


def check_tree(lane_tree):
    tree = lane_tree.split("@")[0]
    r = subprocess.run([sys.executable, "-c", "import whisperfast; print(whisperfast.__file__)"], capture_output=True,
                       text=True, cwd=tree)
    assert r.stdout.startswith(os.path.abspath(tree)), (tree, r.stdout, r.stderr)


def main():
    runs, trees = int(sys.argv[1]), sys.argv[2].split(",")
    for tree in trees:
        check_tree(tree)
    for case in sys.argv[3:]:
        audio, model = (case.split(":") + ["tiny.en"])[:2]
        audio = os.path.abspath(audio)
        lanes = lanes_of(trees, audio, model)
        for _, tree, args in lanes:
            run(tree, args)  # caches filled
        walls = {name: [] for name, _, _ in lanes}
        for i in range(runs):
            for name, tree, args in lanes:
                wall, timings, text = run(tree, args)
                walls[name].append(wall)
                print(json.dumps({"case": case, "lane": name, "run": i, "wall": round(wall, 3),
                                  "total": timings and round(timings["total"], 3), "text": text}), flush=True)
        for name, w in walls.items():
            print(json.dumps({"case": case, "lane": name, "median_wall": round(statistics.median(w), 3),
                              "min": round(min(w), 3), "max": round(max(w), 3)}), flush=True)


if __name__ == "__main__":
    main()
