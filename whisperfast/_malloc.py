"""Tell glibc's malloc to keep the blocks MLX frees on the CPU, instead of mapping fresh pages.

MLX's CPU allocator is `std::malloc` with no cache of its own (Metal's and CUDA's allocators
keep freed buffers; the CPU's does not). glibc serves a block over its mmap threshold with a
fresh mapping, and trims the heap's free top above twice that threshold; the threshold moves
between 128 KiB and 32 MiB as blocks come and go. A tiny.en encoder window frees and
allocates the same ~470 MB of activations and attention scores (up to 27 MB a block; base's
36 MB), so in many windows 13,000-58,000 of those pages were new: the kernel zeroes each one
on first touch (benchmarks/cpu/session21/: JFK's encode 349-377 ms with the default, 313-317
with these settings, in alternating bench runs). With blocks up to `MMAP_THRESHOLD` served
from the heap and `TRIM_THRESHOLD` of free heap top kept, a window's pages are the last
window's. The process keeps up to that much freed memory instead of returning it: the peak is
unchanged.

Linux with glibc only (mallopt is glibc's); elsewhere nothing is done. `WHISPERFAST_MALLOC=0`
leaves malloc as it was. The settings are the process's, like the BLAS preload (_blas), so
every lane of a bench run in one process gets them alike."""

from __future__ import annotations

import ctypes
import sys

from .config import at_import

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
MMAP_THRESHOLD = 64 << 20
TRIM_THRESHOLD = 256 << 20

_note = "not set"


def keep_freed_blocks() -> None:
    global _note
    if not at_import().malloc_keep:
        _note = "glibc's defaults (WHISPERFAST_MALLOC=0)"
        return
    if sys.platform != "linux":
        _note = "the platform's defaults"
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except AttributeError:  # not glibc (musl has no mallopt)
        _note = "the C library's defaults (no mallopt)"
        return
    refused = [name for name, param, value in (("mmap", M_MMAP_THRESHOLD, MMAP_THRESHOLD),
                                               ("trim", M_TRIM_THRESHOLD, TRIM_THRESHOLD))
               if mallopt(param, value) != 1]
    if refused:
        _note = f"glibc refused the {' and '.join(refused)} threshold: its default there"
    else:
        _note = f"glibc keeps freed blocks (mmap threshold {MMAP_THRESHOLD >> 20} MiB, trim {TRIM_THRESHOLD >> 20} MiB)"


def describe() -> str:
    return _note
