"""Give MLX's Linux CPU backend an optimized BLAS.

The `mlx-cpu` wheel links a bundled reference BLAS (about 3 GFLOP/s here). `libmlx.so`
resolves `cblas_sgemm` through the global symbol scope first, so a library exporting it that
is dlopen'ed with RTLD_GLOBAL *before* `import mlx.core` wins (about 160 GFLOP/s with
OpenBLAS). This module must therefore be imported before anything imports mlx.

The first candidate needs nothing beyond whisperfast's own dependencies: scipy's Linux wheels
(x86-64 and aarch64) bundle OpenBLAS (`scipy.libs/libscipy_openblas-<hash>.so`, from
scipy-openblas32: LP64, DYNAMIC_ARCH, BSD-3-Clause), which whisperfast loads anyway through
mlx-whisper. Its symbols carry a `scipy_` prefix, so MLX cannot bind to them by name. A tiny
ELF shared object, built in memory for this process, defines the unprefixed names in
`BRIDGED` as absolute symbols whose values are the addresses of the `scipy_` functions in this
process (glibc >= 2.28 does not relocate SHN_ABS symbols); it holds no code and no
relocations, and is loaded from a memfd with RTLD_GLOBAL. Nothing is written to disk.
System libraries (`apt-get install libopenblas0-pthread`, MKL, BLIS) come next.

`WHISPERFAST_BLAS`: `reference` keeps the bundled BLAS, `system` skips scipy's OpenBLAS,
a library name or path picks that library.
"""

from __future__ import annotations

import ctypes
import os
import sys

from .config import at_import

# System libraries exporting the unprefixed CBLAS interface (the 64-bit-int builds do not).
CANDIDATES = ("libopenblas.so.0", "libopenblas.so", "libmkl_rt.so.2", "libmkl_rt.so", "libblis.so.4", "libblis.so")

# What libmlx imports from a BLAS (0.32: sgemm, dgemm, cgemm; tests/test_blas.py checks), and kin.
BRIDGED = ("cblas_sgemm", "cblas_dgemm", "cblas_cgemm", "cblas_zgemm",
           "cblas_sgemv", "cblas_dgemv", "cblas_cgemv", "cblas_zgemv")
SCIPY_PREFIX = "scipy_"
# OpenBLAS >= 0.3.27 waits for its worker threads by spinning without yielding (sched_yield was
# dropped on x86-64), so a gemm split over every CPU stalls whenever any other thread wants one
# of them: on 2 busy CPUs, JFK's decode took 8-10 s with 2 threads and 2-3 s with 1. Unless one
# of these is set, whisperfast leaves one CPU free: threads = CPUs - 1 (at least 1).
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")

_note = "not checked"
_handles: list = []  # loaded libraries stay referenced for the life of the process


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def _global_sgemm_owner() -> str | None:
    """The file that `cblas_sgemm` resolves to in the process's global scope."""
    try:
        fn = ctypes.CDLL(None).cblas_sgemm
    except AttributeError:
        return None
    info = _DlInfo()
    dladdr = ctypes.CDLL(None).dladdr
    dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
    if dladdr(ctypes.cast(fn, ctypes.c_void_p), ctypes.byref(info)) and info.dli_fname:
        return os.path.realpath(info.dli_fname.decode())
    return None


def _scipy_openblas() -> str | None:
    """scipy's bundled LP64 OpenBLAS, from the first sys.path entry that has one (no import)."""
    for entry in sys.path:
        libs = os.path.join(entry or ".", "scipy.libs")
        try:
            names = sorted(os.listdir(libs))
        except OSError:
            continue
        for name in names:
            if name.startswith("libscipy_openblas-") and ".so" in name:  # not libscipy_openblas64_
                return os.path.join(libs, name)
    return None


def _elf_hash(name: bytes) -> int:
    """The System V ELF hash, which DT_HASH tables are keyed by."""
    h = 0
    for c in name:
        h = ((h << 4) + c) & 0xFFFFFFFF
        h ^= (h >> 24) & 0xF0
        h &= 0x0FFFFFFF
    return h


def absolute_symbols_elf(symbols: dict[str, int], like: bytes, soname: str = "libwhisperfast-cblas.so") -> bytes:
    """A 64-bit little-endian ELF shared object that defines each of `symbols` as a global
    absolute (SHN_ABS) function symbol with the given value. `like` is the start of an ELF file
    of the target (its class, byte order, OS ABI, machine and flags are copied). Contents: ELF
    header, PT_LOAD, PT_DYNAMIC, PT_GNU_STACK (non-executable), .dynamic, .dynsym, SysV .hash,
    .dynstr; no code, no relocations, no section headers."""
    import struct

    if like[:4] != b"\x7fELF" or like[4] != 2 or like[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF target")
    machine, = struct.unpack_from("<H", like, 18)
    flags, = struct.unpack_from("<I", like, 48)
    names = list(symbols)
    strtab = b"\0" + b"".join(n.encode() + b"\0" for n in names) + soname.encode() + b"\0"
    name_at = [1 + sum(len(n) + 1 for n in names[:i]) for i in range(len(names))]
    nsym = len(names) + 1
    nbucket = max(1, len(names))
    buckets, chains = [0] * nbucket, [0] * nsym
    for i, n in enumerate(names, start=1):
        b = _elf_hash(n.encode()) % nbucket
        chains[i], buckets[b] = buckets[b], i
    dyn_off = 64 + 3 * 56
    ndyn = 7
    sym_off = dyn_off + ndyn * 16
    hash_off = sym_off + nsym * 24
    str_off = hash_off + (2 + nbucket + nsym) * 4
    size = str_off + len(strtab)
    out = bytearray(size)
    out[:16] = b"\x7fELF" + bytes([2, 1, 1, like[7]]) + bytes(8)
    struct.pack_into("<HHIQQQIHHHHHH", out, 16, 3, machine, 1, 0, 64, 0, flags, 64, 56, 3, 64, 0, 0)
    rw, align = 6, 0x10000  # PF_R|PF_W (glibc adjusts .dynamic in place); 64 KiB suits every page size
    struct.pack_into("<IIQQQQQQ", out, 64, 1, rw, 0, 0, 0, size, size, align)  # PT_LOAD
    struct.pack_into("<IIQQQQQQ", out, 64 + 56, 2, rw, dyn_off, dyn_off, dyn_off, ndyn * 16, ndyn * 16, 8)
    struct.pack_into("<IIQQQQQQ", out, 64 + 112, 0x6474E551, rw, 0, 0, 0, 0, 0, 16)  # PT_GNU_STACK
    soname_at = len(strtab) - len(soname) - 1
    dyn = [(4, hash_off), (5, str_off), (6, sym_off), (10, len(strtab)), (11, 24), (14, soname_at), (0, 0)]
    for i, (tag, val) in enumerate(dyn):
        struct.pack_into("<qQ", out, dyn_off + 16 * i, tag, val)
    for i, n in enumerate(names, start=1):  # STB_GLOBAL|STT_FUNC, STV_DEFAULT, SHN_ABS
        struct.pack_into("<IBBHQQ", out, sym_off + 24 * i, name_at[i - 1], 0x12, 0, 0xFFF1, symbols[n], 0)
    struct.pack_into(f"<{2 + nbucket + nsym}I", out, hash_off, nbucket, nsym, *buckets, *chains)
    out[str_off:] = strtab
    return bytes(out)


def _load_image(image: bytes, check) -> ctypes.CDLL:
    """dlopen an in-memory ELF image, from a memfd or else a temporary file removed at once:
    first locally, to let `check(handle)` raise ValueError on a bad load, then with RTLD_GLOBAL."""
    try:
        fd = os.memfd_create("whisperfast-cblas")
    except (OSError, AttributeError):
        fd = None
    if fd is not None:
        try:
            if os.write(fd, image) == len(image):
                path = f"/proc/self/fd/{fd}"
                check(ctypes.CDLL(path))
                return ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)  # the same object, made global
        except OSError:
            pass  # no /proc, say: try a file
        finally:
            os.close(fd)
    import tempfile

    with tempfile.NamedTemporaryFile(prefix="whisperfast-cblas-", suffix=".so") as f:
        f.write(image)
        f.flush()
        check(ctypes.CDLL(f.name))
        return ctypes.CDLL(f.name, mode=ctypes.RTLD_GLOBAL)


def _load_scipy_openblas() -> str:
    """Preload scipy's OpenBLAS under the unprefixed names; returns the note. Raises when it
    cannot be used (OSError, ValueError)."""
    path = _scipy_openblas()
    if path is None:
        raise OSError("scipy's bundled OpenBLAS (scipy.libs/libscipy_openblas-*.so) not found on sys.path")
    glibc = os.confstr("CS_GNU_LIBC_VERSION") or ""  # "glibc 2.36"
    if not glibc.startswith("glibc ") or tuple(map(int, glibc.split()[1].split(".")[:2])) < (2, 28):
        raise OSError(f"needs glibc >= 2.28 for absolute symbols, found {glibc or 'another libc'}")
    lib = ctypes.CDLL(path)  # local: its own names stay out of the global scope
    _handles.append(lib)
    symbols = {}
    for name in BRIDGED:
        fn = getattr(lib, SCIPY_PREFIX + name, None)
        if fn is not None:
            symbols[name] = ctypes.cast(fn, ctypes.c_void_p).value
    if "cblas_sgemm" not in symbols:
        raise OSError(f"{os.path.basename(path)} has no {SCIPY_PREFIX}cblas_sgemm")
    with open(path, "rb") as f:
        head = f.read(64)

    def check(shim: ctypes.CDLL) -> None:  # the loader must keep the values absolute
        wrong = [n for n, v in symbols.items() if ctypes.cast(getattr(shim, n), ctypes.c_void_p).value != v]
        if wrong:
            raise ValueError(f"the loader relocated absolute symbols ({', '.join(wrong)})")

    _handles.append(_load_image(absolute_symbols_elf(symbols, head), check))
    threads = ""
    if not any(os.environ.get(v) for v in THREAD_VARS):
        n = max(1, len(os.sched_getaffinity(0)) - 1)
        getattr(lib, SCIPY_PREFIX + "openblas_set_num_threads")(n)
        threads = f", {n} thread{'s' if n > 1 else ''}"
    config = getattr(lib, SCIPY_PREFIX + "openblas_get_config")
    config.restype = ctypes.c_char_p
    return f"scipy's bundled OpenBLAS ({config().decode(errors='replace')}{threads}) under the cblas names MLX links"


def _numpy_openblas() -> str | None:
    """numpy's bundled ILP64 OpenBLAS (numpy.libs/libscipy_openblas64_-*.so), found without importing numpy."""
    for entry in sys.path:
        try:
            names = sorted(os.listdir(os.path.join(entry or ".", "numpy.libs")))
        except OSError:
            continue
        for name in names:
            if name.startswith("libscipy_openblas64_") and ".so" in name:
                return os.path.join(entry or ".", "numpy.libs", name)
    return None


def limit_numpy_threads() -> None:
    """numpy's own OpenBLAS (the VAD's products on the CPU: silero.HostFrames) to CPUs - 1
    threads, as MLX's, unless a thread variable is set: its idle threads spin as MLX's would
    (THREAD_VARS' note), ~6 % of a batched transcription's CPU on 2 cores
    (benchmarks/cpu/session44/). Called where those products are set up, after numpy has loaded
    the library (loading it here at import cost every command ~45 ms); once a process."""
    global _numpy_limited
    if _numpy_limited or sys.platform != "linux":
        return
    _numpy_limited = True
    path = _numpy_openblas()
    if path is None or any(os.environ.get(v) for v in THREAD_VARS):
        return
    try:
        lib = ctypes.CDLL(path)  # the library numpy's import bound to: the same handle
    except OSError:
        return
    set_threads = getattr(lib, SCIPY_PREFIX + "openblas_set_num_threads64_", None)
    if set_threads is not None:
        _handles.append(lib)
        set_threads(max(1, len(os.sched_getaffinity(0)) - 1))


_numpy_limited = False


def preload() -> None:
    global _note
    if sys.platform != "linux":
        return
    choice = at_import().blas
    if choice == "reference":
        _note = "WHISPERFAST_BLAS=reference"
        return
    if "mlx.core" in sys.modules and _global_sgemm_owner() is None:
        _note = "mlx.core was imported before whisperfast; import whisperfast first"
        return
    why = ""
    if not choice:
        try:
            _note = _load_scipy_openblas()
            return
        except Exception as e:  # never fail the import: fall back, and say why
            why = f"scipy's OpenBLAS unusable ({e}); "
    for name in CANDIDATES if choice in ("", "system") else [choice]:
        try:
            lib = ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
        except OSError:
            continue
        if hasattr(lib, "cblas_sgemm"):
            _handles.append(lib)
            _note = f"{why}preloaded {name}"
            return
    if choice not in ("", "system"):
        _note = f"WHISPERFAST_BLAS={choice}: not loadable, or no cblas_sgemm in it"
    else:
        hint = "" if choice else "reinstall scipy from its wheel, or "
        _note = f"{why}no optimized BLAS found ({hint}apt-get install libopenblas0-pthread)"


def describe() -> dict:
    """Which BLAS serves MLX's CPU matmuls: {"blas": ..., "optimized": bool, "note": ...}."""
    if sys.platform == "darwin":
        return {"blas": "Accelerate", "optimized": True, "note": "macOS"}
    owner = _global_sgemm_owner()
    if owner is None:
        return {"blas": "reference BLAS bundled with mlx-cpu", "optimized": False, "note": _note}
    return {"blas": owner, "optimized": "mlx_cpu.libs" not in owner, "note": _note}


def slow_warning(described: dict | None = None) -> str | None:
    """The warning to give where MLX's CPU matmuls are on the reference BLAS (`describe()`'s
    finding, or `described`), else None: `info` and a CPU model's load both say it."""
    d = described or describe()
    return None if d["optimized"] else f"MLX's CPU matmuls use a slow reference BLAS (about 10x slower): {d['note']}"
