"""The bench as a picture: lanes (stacked stages, min-max whiskers) and kernels (ms, log scale)."""

from __future__ import annotations

import io
from pathlib import Path

from .bench import BenchReport
from .errors import WhisperfastError
from .files import write_atomic


def plot(report: BenchReport, path: Path, overwrite: bool = True) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.ticker
        import matplotlib.pyplot as plt
    except ImportError:
        raise WhisperfastError("--plot needs matplotlib (uv sync --extra plot)") from None
    panels = [p for p in ("lanes", "kernels") if getattr(report, p)]
    if not panels:
        raise WhisperfastError("nothing to plot")
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 4.8), squeeze=False)
    title = f"whisperfast bench · {report.model} · {report.dtype} · {report.device} · mlx {report.mlx_version}"
    fig.suptitle(title, fontsize=11)
    if report.lanes:
        ax = axes[0][0]
        names = list(report.lanes)
        top, low = max(report.lanes[n].total_ms.max for n in names), min(report.lanes[n].total_ms.median for n in names)
        log = top > 20 * low  # peers an order of magnitude apart: totals only, on a log axis
        bottom = [0.0] * len(names)
        for stage, color in (("vad_ms", "#bcbddc"), ("mel_ms", "#9ecae1"), ("encode_ms", "#3182bd"), ("decode_ms", "#e6550d")):
            if log or stage == "vad_ms" and not any(report.lanes[n].vad_ms for n in names):
                continue  # (stacked on a log axis, the lower stages would look like nothing)
            vals = [getattr(report.lanes[n], stage).median if getattr(report.lanes[n], stage) else 0.0 for n in names]
            ax.bar(names, vals, bottom=bottom, color=color, label=stage[:-3])
            bottom = [b + v for b, v in zip(bottom, vals)]
        peers = [b == 0.0 for b in bottom]  # a peer reports its total only
        if any(peers):
            ax.bar(names, [report.lanes[n].total_ms.median if p else 0.0 for n, p in zip(names, peers)],
                   color="#969696", label="total" if log else "total (peer)")
        for i, n in enumerate(names):
            t = report.lanes[n].total_ms
            ax.errorbar(i, t.median, yerr=[[t.median - t.min], [t.max - t.median]], color="black", capsize=4)
            ax.annotate(f"{t.median:.0f} ms", (i, t.max), ha="center", va="bottom", fontsize=9, xytext=(0, 3), textcoords="offset points")
        ax.set_ylabel("ms per run (median; whiskers min-max)")
        ax.set_title(f"pipeline, {report.audio_seconds:.0f} s of audio, {report.runs} runs")
        if log:
            ax.set_yscale("log")
            ax.set_ylim(top=top * 3)
        else:
            ax.set_ylim(top=top * 1.18)
        ax.legend(loc="upper center", fontsize=8, ncol=3)
    if report.kernels:
        ax = axes[0][len(panels) - 1]
        labels = [f"{k.op}\n{k.shape}" for k in report.kernels]
        y = range(len(labels))
        ax.barh([i + 0.2 for i in y], [k.composed_ms for k in report.kernels], height=0.4, label="composed", color="#bdbdbd")
        ax.barh([i - 0.2 for i in y], [k.fused_ms for k in report.kernels], height=0.4, label="fused", color="#31a354")
        for i, k in enumerate(report.kernels):
            ax.annotate(f"{k.speedup:.2f}x", (max(k.composed_ms, k.fused_ms), i), fontsize=7, va="center", xytext=(3, 0), textcoords="offset points")
        ax.set_yticks(list(y), labels, fontsize=6)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("ms (median, log scale)")
        ax.set_title("kernels: composed vs fused")
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    try:
        write_atomic(path, buf.getvalue(), overwrite=overwrite)
    except FileExistsError:
        raise WhisperfastError(f"{path} exists: it appeared while benchmarking (pass --overwrite to replace it)") from None
