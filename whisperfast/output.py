"""Transcript files: txt, srt, vtt, json. Written atomically (temp file, then a hard link that never
replaces a file, or a rename with --overwrite), with the permissions of any new file."""

from __future__ import annotations

import io
import json
import os
from dataclasses import asdict
from pathlib import Path

from mlx_whisper.writers import WriteSRT, WriteTXT, WriteVTT

from .errors import WhisperfastError
from .files import nearest, probe_folder, write_atomic
from .pipeline import Comparison, Transcript

FORMATS = ("txt", "srt", "vtt", "json")
_WRITERS = {"txt": WriteTXT, "srt": WriteSRT, "vtt": WriteVTT}


def to_json(t: Transcript) -> dict:
    return asdict(t)


def comparison_to_json(c: Comparison) -> dict:
    """The fused transcript, plus each lane's text and timings and whether they agree."""
    lanes = {lane: {"text": t.text, "timings": asdict(t.timings), "windows": t.windows, "sampled_windows": t.sampled_windows}
             for lane, t in (("baseline", c.baseline), ("fused", c.fused))}
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


def _check_one(p: Path, overwrite: bool, reads: set) -> None:
    if len(os.fsencode(p.name)) > (most := _name_max(p.parent)):
        raise WhisperfastError(f"cannot write {p}: its name is over {most} bytes")
    if p.is_dir() and not p.is_symlink():  # (an empty name is the current folder; a link is replaced)
        raise WhisperfastError(f"{p} is a directory, not a file")
    if _same_file_key(p) in reads:
        raise WhisperfastError(f"{p} is also an input; refusing to replace it")
    if os.path.lexists(p) and not overwrite:  # a dangling link too: the write would fail after the work
        raise WhisperfastError(f"{p} exists (pass --overwrite to replace it)")
    if p.parent.exists() and not p.parent.is_dir():
        raise WhisperfastError(f"{p.parent} is not a directory")


def _name_max(folder: Path) -> int:
    """The longest file name, in bytes, the file system of `folder` (or of the nearest folder
    above it that exists) takes: 255 on most, fewer on some (eCryptfs 143)."""
    try:
        return os.pathconf(nearest(folder), "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows), or no answer
        return 255


def check_writable(paths: list[Path], overwrite: bool, inputs: tuple[Path, ...] = ()) -> None:
    """Fail before any work is done rather than after, and never clobber by surprise: not an
    existing file without `overwrite`, never a folder, never one of `inputs` (bench's plot
    named as its audio replaced the audio, even with --overwrite)."""
    reads = {_same_file_key(p) for p in inputs}
    for p in paths:
        try:
            _check_one(p, overwrite, reads)
        except OSError as e:  # a folder it may not look into, a name over the system's limit
            raise WhisperfastError(f"cannot write {p}: {e.strerror or e}") from None
    for folder in dict.fromkeys(p.parent for p in paths):
        try:
            probe_folder(folder)
        except OSError as e:
            raise WhisperfastError(f"cannot write in {folder}: {e.strerror or e}") from None


def _same_file_key(p: Path) -> str:
    """One key per file a path names (relative, `..`, symlinked folders); the file need not exist."""
    return os.path.normcase(os.path.realpath(p))


class OutputPlan:
    """Where each input's transcript files go, checked as a whole before any work:
    two inputs that would write one file (a/x.wav b/x.wav with -o, x.wav x.mp3, one file given
    twice), an output that is an input, or an existing file without --overwrite are refused, so
    no transcript is silently lost. Writing re-checks: a file that appeared meanwhile is not
    replaced without --overwrite, and a file this run wrote is never replaced."""

    def __init__(self, files: list[Path], formats: tuple[str, ...], output_dir: Path | None, overwrite: bool):
        self.overwrite = overwrite
        self.paths = [output_paths(f, formats, output_dir) for f in files]
        self._written: set[tuple[int, int]] = set()  # (st_dev, st_ino) of files this run wrote
        if not formats:
            return  # stdout only: the same file twice is two transcripts, nothing collides
        inputs = {_same_file_key(f): f for f in files}
        seen: dict[str, tuple[Path, Path]] = {}  # output key -> (input, output path)
        for f, paths in zip(files, self.paths):
            for p in paths:
                key = _same_file_key(p)
                if key in seen:
                    first, _ = seen[key]
                    if _same_file_key(first) == _same_file_key(f):
                        raise WhisperfastError(f"{f} is given twice" + ("" if str(first) == str(f) else f" (also as {first})")
                                               + f"; its outputs such as {p} would be written twice (give each file once)")
                    raise WhisperfastError(f"{first} and {f} would both write {p}; transcribe them in separate runs or into separate -o folders")
                if key in inputs:
                    raise WhisperfastError(f"{p} (an output of {f}) is also an input; refusing to replace it")
                seen[key] = (f, p)
        check_writable([p for paths in self.paths for p in paths], overwrite)

    def write(self, index: int, t: Transcript) -> None:
        write_outputs(t, self.paths[index], overwrite=self.overwrite, written=self._written)


def plan_outputs(files: list[Path], formats: tuple[str, ...], output_dir: Path | None, overwrite: bool) -> OutputPlan:
    return OutputPlan(list(files), formats, output_dir, overwrite)


def write_outputs(t: Transcript, paths: list[Path], overwrite: bool = False, written: set | None = None) -> None:
    """Write each format; `written` collects (st_dev, st_ino) of the files written, and a path
    that is one of them (a case-insensitive file system, a hard link) is refused, even with
    `overwrite`: a run never replaces its own output."""
    for p in paths:
        try:
            if written is not None and p.exists() and _file_id(p) in written:
                raise WhisperfastError(f"{p} was already written by this run for another input; refusing to replace it")
            write_atomic(p, render(t, p.suffix[1:]), overwrite=overwrite)
            if written is not None:
                written.add(_file_id(p))
        except FileExistsError as e:
            if e.filename != str(p):
                raise WhisperfastError(f"cannot write {p}: {e.strerror or e}") from None
            raise WhisperfastError(f"{p} exists: it appeared while transcribing (pass --overwrite to replace it)") from None
        except OSError as e:
            raise WhisperfastError(f"cannot write {p}: {e.strerror or e}") from None


def _file_id(p: Path) -> tuple[int, int]:
    st = os.stat(p)
    return st.st_dev, st.st_ino
