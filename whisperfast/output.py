"""Transcript files: txt, srt, vtt, json. Written atomically (temp file + rename)."""

from __future__ import annotations

import io
import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path

from mlx_whisper.writers import WriteSRT, WriteTXT, WriteVTT

from .errors import WhisperfastError
from .pipeline import Comparison, Transcript

FORMATS = ("txt", "srt", "vtt", "json")
_WRITERS = {"txt": WriteTXT, "srt": WriteSRT, "vtt": WriteVTT}


def to_json(t: Transcript) -> dict:
    return asdict(t)


def comparison_to_json(c: Comparison) -> dict:
    """The fused transcript, plus each lane's text and timings and whether they agree."""
    lanes = {lane: {"text": t.text, "timings": asdict(t.timings)} for lane, t in (("baseline", c.baseline), ("fused", c.fused))}
    return {**to_json(c.fused), **lanes, "tokens_match": c.tokens_match, "transcripts_match": c.transcripts_match}


def render(t: Transcript, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(to_json(t), ensure_ascii=False, indent=1) + "\n"
    # mlx-whisper's writers take its result dict: segments with start/end/text (and words).
    result = {"text": t.text, "language": t.language,
              "segments": [{k: v for k, v in asdict(s).items() if v is not None} for s in t.segments]}
    buf = io.StringIO()
    _WRITERS[fmt](".").write_result(result, file=buf, options={})
    return buf.getvalue()


def expand_formats(fmt: str) -> tuple[str, ...]:
    if fmt == "all":
        return FORMATS
    if fmt not in FORMATS:
        raise WhisperfastError(f"unknown output format '{fmt}' (use {', '.join(FORMATS)} or all)")
    return (fmt,)


def output_paths(source: Path, formats: tuple[str, ...], output_dir: Path | None) -> list[Path]:
    folder = output_dir if output_dir is not None else source.parent
    return [folder / f"{source.stem}.{fmt}" for fmt in formats]


def check_writable(paths: list[Path], overwrite: bool) -> None:
    """Fail before any work is done rather than after, and never clobber by surprise."""
    for p in paths:
        if p.exists() and not overwrite:
            raise WhisperfastError(f"{p} exists (pass --overwrite to replace it)")
        if p.parent.exists() and not p.parent.is_dir():
            raise WhisperfastError(f"{p.parent} is not a directory")


def write_atomic(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_outputs(t: Transcript, paths: list[Path]) -> None:
    for p in paths:
        try:
            write_atomic(p, render(t, p.suffix[1:]))
        except OSError as e:
            raise WhisperfastError(f"cannot write {p}: {e.strerror or e}") from None
