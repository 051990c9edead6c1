"""Transcript files: txt, srt, vtt, json. Written atomically (temp file, then a hard link that never
replaces a file, or a rename with --overwrite), with the permissions of any new file."""

from __future__ import annotations

import errno
import io
import json
import os
import secrets
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


def check_writable(paths: list[Path], overwrite: bool) -> None:
    """Fail before any work is done rather than after, and never clobber by surprise."""
    for p in paths:
        if p.exists() and not overwrite:
            raise WhisperfastError(f"{p} exists (pass --overwrite to replace it)")
        if p.parent.exists() and not p.parent.is_dir():
            raise WhisperfastError(f"{p.parent} is not a directory")


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
            check_writable(paths, overwrite)

    def write(self, index: int, t: Transcript) -> None:
        write_outputs(t, self.paths[index], overwrite=self.overwrite, written=self._written)


def plan_outputs(files: list[Path], formats: tuple[str, ...], output_dir: Path | None, overwrite: bool) -> OutputPlan:
    return OutputPlan(list(files), formats, output_dir, overwrite)


_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EMLINK, errno.EXDEV}
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def _create_beside(path: Path) -> tuple[int, Path]:
    """A new temp file next to `path`, created with mode 0o666 so that the kernel applies the
    user's umask (mkstemp would give 0600 to the final file)."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, _NEW_FILE, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(path.parent))


def write_atomic(path: Path, data: str | bytes, overwrite: bool = True) -> None:
    """Write `data` to `path` through a temp file: readers see the old file or the whole new one.

    With `overwrite=False` the temp file is hard-linked to `path`, which fails (FileExistsError)
    if `path` exists at that moment: a file that appeared since any earlier check is kept.
    The file gets the permissions of any new file (0o666 less the umask)."""
    data = data.encode("utf-8") if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_beside(path)
    try:
        _write_fd(fd, data)
        if overwrite:
            os.replace(tmp, path)
            return
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path)) from None
        except OSError as e:
            if e.errno not in _NO_HARD_LINKS:
                raise
            _write_exclusive(path, data)  # a file system without hard links: O_EXCL still never replaces
    finally:
        Path(tmp).unlink(missing_ok=True)


def _write_fd(fd: int, data: bytes) -> None:
    """Write all of `data` to `fd` and to the disk, then close it."""
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _write_exclusive(path: Path, data: bytes) -> None:
    fd = os.open(path, _NEW_FILE, 0o666)  # FileExistsError names `path` if it exists
    try:
        _write_fd(fd, data)
    except BaseException:
        path.unlink(missing_ok=True)  # ours, created just now: no half-written file stays
        raise


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
