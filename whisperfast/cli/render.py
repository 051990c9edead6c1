"""Tables for people, on stderr or a terminal: timings, bench and cold-start reports.

rich is imported on first use, not with the command: a `-q` or `--json -q` run prints no table
and never pays for it (~0.06 s of a fresh process on a slow core)."""

from __future__ import annotations

import sys
from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


def table(*columns, **kwargs) -> Table:
    from rich.table import Table as RichTable

    return RichTable(*columns, **kwargs)


def console(*, stderr: bool = False, width=None) -> Console:
    """Without markup: what is printed carries file names, model names and the library's
    messages, whose brackets rich would read as tags ('[/x]' raised an error, "whisperfast[vad]"
    lost its extra). The few styled words come through `styled`."""
    from rich.console import Console as RichConsole

    return RichConsole(stderr=stderr, width=width, markup=False)


def styled(label: str, style: str, text: str = ""):
    """`label` in `style`, then `text` as it is (a space between where both are given)."""
    from rich.text import Text

    return Text.assemble((label, style), " " if label and text else "", text)


class Stderr:
    """rich's Console on stderr, made on the first print."""

    @cached_property
    def console(self) -> Console:
        return console(stderr=True)

    def print(self, *args, **kwargs) -> None:
        self.console.print(*args, **kwargs)


class _NoBar:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def add_task(self, *args, **kwargs) -> int:
        return 0

    def update(self, *args, **kwargs) -> None:
        pass

    def advance(self, *args, **kwargs) -> None:
        pass


def file_bar(err: Stderr, show: bool):
    """A progress bar over files on stderr, or one that shows nothing (and imports nothing)."""
    if not show:
        return _NoBar()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err.console, transient=True,
                    # rich takes sys.stdout while the bar shows, to print above it: on a terminal, else
                    # the transcripts went to stderr (`> out.txt` stayed empty)
                    redirect_stdout=sys.stdout is not None and sys.stdout.isatty(), redirect_stderr=False)


def timing_table(columns: dict) -> Table:
    """columns: {label: Timings}; with two columns a ratio column is added."""
    out = table()
    out.add_column("stage")
    for label in columns:
        out.add_column(label, justify="right")
    ts = list(columns.values())
    if len(ts) == 2:
        out.add_column("speed-up", justify="right")
    rows = [("load", "load", "s"), ("mel", "mel", "s"), ("encode", "encode", "s"), ("decode", "decode", "s"),
            ("total", "total", "s"), ("tokens", "tokens", ""), ("tokens/s", "tokens_per_s", ""), ("real-time factor", "rtf", "")]
    for label, attr, unit in rows:
        vals = [getattr(t, attr) for t in ts]
        cells = [f"{v * 1000:.0f} ms" if unit == "s" else (str(v) if isinstance(v, int) else f"{v:.3f}") for v in vals]
        if len(ts) == 2:
            a, b = vals
            cells.append(f"{a / b:.2f}x" if unit == "s" and attr != "load" and b > 0 else "")
        out.add_row(label, *cells)
    return out


def print_cold(report, console: Console) -> None:
    caches = " · empty caches each run (a first run after install)" if report.empty_caches else ""
    console.print(f"{report.model} · {report.dtype or 'default dtype'} · {report.audio} · fresh processes{caches}", highlight=False)
    t = table(title=f"cold: median (min-max) seconds over {report.runs} runs a lane, alternated", title_justify="left")
    for c in ("lane", "wall", "import", "load", "compile", "transcribe", "= stock"):
        t.add_column(c, justify="left" if c == "lane" else "right")
    fmt = lambda s: f"{s.median:.2f} ({s.min:.2f}-{s.max:.2f})"
    for name, lane in report.lanes.items():
        t.add_row(name, fmt(lane.wall_s), fmt(lane.import_s), fmt(lane.load_s), fmt(lane.compile_s), fmt(lane.transcribe_s),
                  {True: "yes", False: "NO", None: ""}[lane.matches_stock])
    console.print(t)
    for s in report.samples:
        cache = s.kernel_cache
        said = "" if not cache else f"; kernel cache: {cache['hits']} read, {cache['compiles']} compiled, {cache['fallbacks']} left to MLX"
        console.print(f"run {s.run + 1} {s.lane}: wall {s.wall_s:.2f} s{said}", highlight=False)
    console.print("note: compile (whisperfast's kernel cache: reading its binaries, or NVRTC on a miss) happens inside the "
                  "first transcription and is part of transcribe; imports inside load or transcribe count in both", highlight=False)


def print_bench(report, console: Console) -> None:
    console.print(f"{report.model} · {report.dtype} · {report.device} · mlx {report.mlx_version} · BLAS {report.blas}", highlight=False)
    if report.lanes:
        t = table(title=f"pipeline: median (min-max) over {report.runs} runs, {report.audio_seconds:.1f} s of audio", title_justify="left")
        vad = any(lane.vad_ms for lane in report.lanes.values())
        for c in ("lane", "total ms") + (("vad ms",) if vad else ()) + ("mel ms", "encode ms", "decode ms", "ms/token",
                                                                          "tokens/s", "RTF", "peak MB", "sampled", "= stock"):
            t.add_column(c, justify="left" if c == "lane" else "right")
        fmt = lambda s: "" if s is None else f"{s.median:.1f} ({s.min:.1f}-{s.max:.1f})"
        med = lambda s: "" if s is None else f"{s.median:.2f}"
        for name, lane in report.lanes.items():
            t.add_row(name, fmt(lane.total_ms), *((med(lane.vad_ms),) if vad else ()), med(lane.mel_ms),
                      med(lane.encode_ms), med(lane.decode_ms), med(lane.decode_ms_per_token), med(lane.tokens_per_s), f"{lane.rtf.median:.3f}",
                      "" if lane.peak_memory_mb is None else f"{lane.peak_memory_mb:.0f}",
                      "" if lane.windows is None else f"{lane.sampled_windows}/{lane.windows}",
                      {True: "yes", False: "NO", None: ""}[lane.matches_stock])
        console.print(t)
        for k, v in report.speedup.items():
            console.print(f"speed-up {k}: {v:.2f}x", highlight=False)
        console.print("audio-seconds per second" + (f" (batched, {report.batch_size} a batch)" if report.batch_size > 1 else "")
                      + ": " + ", ".join(f"{k} {v.audio_s_per_s:.1f}" for k, v in report.lanes.items() if v.audio_s_per_s),
                      highlight=False)
    if report.kernels:
        t = table(title="kernels: composed vs fused (median ms)", title_justify="left")
        for c in ("op", "shape", "composed", "fused", "speed-up", "max |diff|"):
            t.add_column(c, justify="left" if c in ("op", "shape") else "right")
        for k in report.kernels:
            t.add_row(k.op, k.shape, f"{k.composed_ms:.3f}", f"{k.fused_ms:.3f}", f"{k.speedup:.2f}x", f"{k.max_abs_diff:.2e}")
        console.print(t)
    for n in report.notes:
        console.print(f"note: {n}", highlight=False)
