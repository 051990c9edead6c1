"""What a first run after install compiles, and where (issue 13's ≤ 2.5 s for JFK): MLX's own JIT
modules (its PTX cache, MLX_PTX_CACHE_DIR) and whisperfast's kernels (NVRTC through
kernels/cuda_cache.py), each with the Python line whose evaluation compiled it.

Two parts, each from empty caches (a fresh MLX_PTX_CACHE_DIR and whisperfast kernel folder;
the model's conversion is kept):
1. `plain`: fresh `whisperfast transcribe AUDIO -q --json [--fast]` processes, in the order
   given by LANES (default "fast,stock,fast,stock"), wall clock around each;
2. `traced`: one process transcribes AUDIO in-process (`load`, `transcribe`, no CLI warm-up)
   under a line tracer: at each line of whisperfast's or mlx-whisper's code it checks the
   cache folders, and where a file appeared it records the time, the file and the line that
   ran before (the one whose evaluation compiled). whisperfast's NVRTC calls are timed, and
   the sources of decode kernels that differ are diffed. The tracer slows the run: its
   times attribute, they do not measure. Then the first NVRTC compile again: alone, and 2
   and 4 at once on threads (`parallel_compiles_s`, wall); and a kernel of one line with
   the same includes, then with decode_step.cu too, uninstantiated (`compile_breakdown_s`).

Other options: ARGS (CLI arguments for the plain part, e.g. "--beam-size 5") and OPTIONS (the
traced part's TranscribeOptions as JSON, e.g. '{"beam_size": 5}').

    python benchmarks/first_run_probe.py [AUDIO] [MODEL] [--fast|--stock]   (JSON lines)"""

import difflib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r'''
import hashlib, json, os, sys, time, traceback
t_start = time.perf_counter()
mlx_dir, kernels, audio, model_name, fast = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] == "1"
transcribe_options = json.loads(sys.argv[6])
import whisperfast  # noqa (BLAS preload)
import mlx.core as mx
from whisperfast.kernels import cuda_cache
from whisperfast.pipeline import TranscribeOptions, load, transcribe
from whisperfast.runtime import parse_dtype

events, compiles, sources, calls = [], [], {}, []
plain_call = cuda_cache.Compiler.__call__


def timed_call(self, source, options, headers, names):  # a probe's wrapper: the library is not changed
    t0 = time.perf_counter()
    out = plain_call(self, source, options, headers, names)
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    sources[digest] = source
    calls.append((self, source, options, headers, names))
    compiles.append({"names": list(names)[0][:120], "source": digest, "s": round(time.perf_counter() - t0, 3),
                     "at": round(time.perf_counter() - t_start, 3)})
    return out


cuda_cache.Compiler.__call__ = timed_call
seen, marks, last = set(), {}, [None]


def files(root):
    out = set()
    for d, _, names in os.walk(root):
        out.update(os.path.relpath(os.path.join(d, n), root) for n in names if not n.endswith((".txt", ".cu")))
    return out


def check():
    for root in (mlx_dir, kernels):
        try:
            m = os.stat(root).st_mtime_ns
        except OSError:
            continue
        if marks.get(root) == m:
            continue
        marks[root] = m
        new = files(root) - seen
        if new:
            seen.update(new)
            events.append({"at": round(time.perf_counter() - t_start, 3), "files": sorted(n[:90] for n in new),
                           "after_line": last[0]})


def local(frame, event, arg):
    if event == "line":
        check()
        last[0] = f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno} {frame.f_code.co_name}"
    return local


def tracer(frame, event, arg):
    fn = frame.f_code.co_filename
    return local if ("whisperfast" in fn or "mlx_whisper" in fn) else None


t0 = time.perf_counter()
model = load(model_name, dtype=parse_dtype("float16"), fast=fast)
t_load = time.perf_counter() - t0
sys.settrace(tracer)
t0 = time.perf_counter()
result = transcribe(model, audio, TranscribeOptions(**transcribe_options))
t_run = time.perf_counter() - t0
sys.settrace(None)
check()
parallel = {}
if calls:  # the first compile again, alone and n at once on threads (ctypes lets the GIL go)
    import threading
    for n in (1, 2, 4):
        threads = [threading.Thread(target=plain_call, args=calls[0]) for _ in range(n)]
        t0 = time.perf_counter()
        [t.start() for t in threads]
        [t.join() for t in threads]
        parallel[n] = round(time.perf_counter() - t0, 3)
breakdown = {}
if calls:  # where a decode kernel's compile goes: the includes alone, then decode_step.cu parsed, nothing instantiated
    from whisperfast.decode.cuda.launch import source as kernel_source
    comp, _, options, headers, _ = calls[0]
    cu = kernel_source()  # the decode kernels' parts, as launch.py reads them
    for label, header in (("includes", ""), ("includes+decode_step.cu", cu)):
        src = cuda_cache.build_source("probe_empty", header, "o[0] = a[0];", [("a", mx.float32, 1)], [("o", mx.float32)], [])
        t0 = time.perf_counter()
        plain_call(comp, src, options, headers, ["mlx::core::cu::probe_empty"])
        breakdown[label] = round(time.perf_counter() - t0, 3)
print(json.dumps({"load_s": round(t_load, 3), "transcribe_s": round(t_run, 3), "text": result.text[:80],
                  "events": events, "compiles": compiles, "parallel_compiles_s": parallel,
                  "compile_breakdown_s": breakdown, "sources": sources}), flush=True)
'''


def fresh_caches(tmp: Path) -> dict:
    env = dict(os.environ)
    mlx = tmp / "mlx-ptx"
    shutil.rmtree(mlx, ignore_errors=True)
    mlx.mkdir(parents=True)
    env["MLX_PTX_CACHE_DIR"] = str(mlx)
    cache = Path(env.get("WHISPERFAST_CACHE") or Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "whisperfast")
    shutil.rmtree(cache / "kernels", ignore_errors=True)
    return env


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    audio, model = (args + ["samples/jfk.wav", "tiny.en"][len(args):])[:2]
    fast = "--stock" not in sys.argv
    tmp = Path(tempfile.mkdtemp(prefix="first-run-"))
    env = fresh_caches(tmp)
    for lane in os.environ.get("LANES", "fast,stock,fast,stock").split(","):
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "whisperfast", "transcribe", audio, "-m", model, "-q", "--json",
                            *(["--fast"] if lane == "fast" else []), *os.environ.get("ARGS", "").split()],
                           capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t0
        d = json.loads(r.stdout) if r.returncode == 0 else {}
        print(json.dumps({"part": "plain", "lane": lane, "wall_s": round(wall, 3), "timings": d.get("timings"),
                          "modules": len([p for p in Path(env["MLX_PTX_CACHE_DIR"]).rglob("*.ptx")]),
                          "rc": r.returncode, "err": r.stderr[-300:] if r.returncode else ""}), flush=True)
    env = fresh_caches(tmp)
    kernels = Path(env.get("WHISPERFAST_CACHE") or Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "whisperfast") / "kernels"
    kernels.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([sys.executable, "-c", CHILD, env["MLX_PTX_CACHE_DIR"], str(kernels), audio, model,
                        "1" if fast else "0", os.environ.get("OPTIONS", "{}")], capture_output=True, text=True, env=env)
    if r.returncode:
        print(json.dumps({"part": "traced", "rc": r.returncode, "err": r.stderr[-1500:]}), flush=True)
        return
    out = json.loads(r.stdout.strip().splitlines()[-1])
    sources = out.pop("sources")
    decode = [k for k, s in sources.items() if "decode_step" in s]
    if len(decode) > 1:  # what makes a decode kernel's second compile: the lines its sources differ by
        a, b = sources[decode[0]].splitlines(), sources[decode[1]].splitlines()
        out["decode_source_diff"] = [line for line in difflib.unified_diff(a, b, lineterm="", n=0)][:40]
    print(json.dumps({"part": "traced", "fast": fast, **out}), flush=True)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
