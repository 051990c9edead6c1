"""`whisperfast bench --cold`: what one command costs from the shell, where every lane starts
a fresh process (`whisperfast transcribe FILE -q --json`, with --fast for the fused lane),
alternated run by run like the warm bench so that a drifting machine shows in both.

Per run: wall (launch to exit, timed here), import (every module the child imported, from
its `python -X importtime` lines: mostly before loading, though modules imported lazily
inside loading or transcribing count there too), load and transcribe (the child's JSON:
timings.load, timings.total) and compile (the child's kernel cache: reading its binaries, or
compiling them on a miss; it happens inside the first transcription, so transcribe includes
it; MLX's own JIT, cached by MLX, is inside load or transcribe).

The child is `python -m whisperfast.cli.cold_child REPORT transcribe ...`: the `whisperfast`
command itself, which at exit writes its kernel cache's counters to REPORT (`write_report`).

With `empty_caches` every run is a first run after install: the child gets empty caches of its
own, whisperfast's (the model's conversion, the compiled kernels: WHISPERFAST_CACHE) and MLX's
PTX cache (MLX_PTX_CACHE_DIR, where MLX's CUDA JIT keeps what it compiles); the OS page cache
stays as it is."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

if TYPE_CHECKING:
    from .bench import Stat

LANES = {"stock": [], "fused": ["--fast"]}


def write_report(path: str) -> None:
    from .config import config

    cache = sys.modules.get("whisperfast.kernels.cuda_cache")
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"kernel_cache": cache.COUNTERS.snapshot() if cache else None, "cache": str(config().cache)}, f)


@dataclass(frozen=True)
class ColdRun:
    lane: str
    run: int
    wall_s: float
    import_s: float
    load_s: float
    compile_s: float  # 0 where no kernel cache ran (stock)
    transcribe_s: float
    tokens: int
    matches_stock: Optional[bool]
    kernel_cache: Optional[dict]  # the child's cache counters: hits, compiles, ...
    cache: Optional[str] = None  # the child's whisperfast cache folder


@dataclass(frozen=True)
class ColdLane:
    wall_s: Stat
    import_s: Stat
    load_s: Stat
    compile_s: Stat
    transcribe_s: Stat
    matches_stock: Optional[bool]


@dataclass(frozen=True)
class ColdReport:
    audio: str
    model: str
    dtype: Optional[str]
    runs: int
    command: list[str]  # a child's command line, less the lane's arguments
    empty_caches: bool = False  # every run from empty caches (a first run after install)
    lanes: dict[str, ColdLane] = field(default_factory=dict)
    samples: list[ColdRun] = field(default_factory=list)  # in the order they ran


def import_seconds(stderr: str) -> float:
    """The sum of the top-level imports' cumulative times in `python -X importtime` output
    (nested imports are inside their importer's time)."""
    total = 0
    for line in stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        parts = line[len("import time:"):].split("|")
        if len(parts) == 3 and parts[1].strip().isdigit() and not parts[2].startswith("  "):
            total += int(parts[1])
    return total / 1e6


def child_command(audio: Path, model: str, dtype: Optional[str], device: Optional[str], python: str) -> list[str]:
    # the file's absolute path: a name that begins with "-" would read as an option
    cmd = [python, "-X", "importtime", "-m", "whisperfast.cli.cold_child", "transcribe", str(Path(audio).absolute()),
           "-q", "--json", "--model", model]
    return cmd + (["--dtype", dtype] if dtype else []) + (["--device", device] if device else [])


def run_once(cmd: list[str], lane: str, run: int, report: Path, caches: Optional[Path] = None) -> tuple[ColdRun, list[int]]:
    """One child; with `caches` (an empty folder) its whisperfast and MLX caches are in there."""
    import os
    import subprocess
    import time

    from .errors import WhisperfastError

    report.unlink(missing_ok=True)
    env = None
    if caches is not None:
        env = {**os.environ, "WHISPERFAST_CACHE": str(caches / "whisperfast"), "MLX_PTX_CACHE_DIR": str(caches / "mlx-ptx")}
    t0 = time.perf_counter()
    r = subprocess.run(cmd[:5] + [str(report)] + cmd[5:] + LANES[lane], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        said = [x for x in r.stderr.splitlines() if x.strip() and not x.startswith("import time:")]
        raise WhisperfastError(f"{lane} run {run + 1}: the child exited {r.returncode}: {said[-1] if said else 'no message'}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    said = json.loads(report.read_text(encoding="utf-8")) if report.exists() else {}
    cache = said.get("kernel_cache")
    timings = out["timings"]
    return ColdRun(lane, run, wall, import_seconds(r.stderr), timings["load"], cache["seconds"] if cache else 0.0,
                   timings["total"], len(out["tokens"]), None, cache, said.get("cache")), out["tokens"]


def run(audio: Path, model: str, dtype: Optional[str] = None, device: Optional[str] = None,
        lanes: tuple[str, ...] = ("stock", "fused"), runs: int = 3, progress: Callable[[str], None] = lambda _: None,
        python: Optional[str] = None, empty_caches: bool = False) -> ColdReport:
    """Each lane `runs` times in fresh processes, alternated: stock 1, fused 1, stock 2, ...
    The caches are the user's (each run's kernel_cache says whether it compiled), or with
    `empty_caches` a pair of empty ones for each run, removed after."""
    import dataclasses
    import tempfile

    from .bench import Stat
    from .errors import WhisperfastError

    bad = [x for x in lanes if x not in LANES]
    if bad or not lanes:
        raise WhisperfastError(f"--cold runs the lanes {', '.join(LANES)}; not {', '.join(bad) or 'none'}")
    if not Path(audio).is_file():
        raise WhisperfastError(f"{audio}: no such file")
    cmd = child_command(Path(audio), model, dtype, device, python or sys.executable)
    samples, tokens = [], {}
    with tempfile.TemporaryDirectory(prefix="whisperfast-cold-") as tmp:
        for r in range(runs):
            for lane in lanes:
                progress(f"run {r + 1} · {lane}" + (" · empty caches" if empty_caches else ""))
                caches = Path(tmp) / f"caches-{lane}-{r}" if empty_caches else None
                sample, tokens[lane, r] = run_once(cmd, lane, r, Path(tmp) / "report.json", caches)
                samples.append(sample)
    if "stock" in lanes:
        samples = [dataclasses.replace(s, matches_stock=tokens[s.lane, s.run] == tokens["stock", 0]) for s in samples]
    report = {}
    for lane in lanes:
        mine = [s for s in samples if s.lane == lane]
        stat = lambda f: Stat.of([f(s) for s in mine])  # noqa: E731
        report[lane] = ColdLane(stat(lambda s: s.wall_s), stat(lambda s: s.import_s), stat(lambda s: s.load_s),
                                stat(lambda s: s.compile_s), stat(lambda s: s.transcribe_s),
                                None if "stock" not in lanes else all(s.matches_stock for s in mine))
    return ColdReport(str(audio), model, dtype, runs, cmd, empty_caches, report, samples)
