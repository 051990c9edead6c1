"""Files written whole or not at all: `write_atomic`, for transcripts, plots and cached kernels
alike. A leaf module: it imports nothing of whisperfast."""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path

_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EMLINK, errno.EXDEV}
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def _create_beside(path: Path) -> tuple[int, Path]:
    """A new temp file next to `path`, created with mode 0o666 so that the kernel applies the
    user's umask (mkstemp would give 0600 to the final file)."""
    for _ in range(100):
        # the name's start only: a whole long name (233 bytes, legal) went past the folder's
        # 255-byte limit with the 18 added here
        tmp = path.parent / f".{path.name[:32]}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, _NEW_FILE, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(path.parent))


def nearest(folder: Path) -> Path:
    """`folder`, or the nearest folder above it that is there (a dangling link counts as there,
    and is no folder): where write_atomic's mkdir would begin."""
    at = folder
    while not os.path.lexists(at) and at != at.parent:
        at = at.parent
    return at


def probe_folder(folder: Path) -> None:
    """Raise OSError now if write_atomic could not write into `folder`: a file is created and
    removed in it, or in the nearest folder above it that exists (write_atomic makes the rest).
    os.access is no test: root passes it anywhere, /proc included."""
    at = nearest(folder)
    if not at.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(at))
    fd, tmp = _create_beside(at / "whisperfast-probe")
    os.close(fd)
    os.unlink(tmp)


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
