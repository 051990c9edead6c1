"""Give MLX's Linux CPU backend an optimized BLAS.

The `mlx-cpu` wheel links a bundled reference BLAS (about 3 GFLOP/s here). `libmlx.so`
resolves `cblas_sgemm` through the global symbol scope first, so a cblas library that is
dlopen'ed with RTLD_GLOBAL *before* `import mlx.core` wins (about 160 GFLOP/s with
OpenBLAS). This module must therefore be imported before anything imports mlx.

Set `WHISPERFAST_BLAS=reference` to keep the bundled BLAS, or to a library path to pick one.
"""

from __future__ import annotations

import ctypes
import os
import sys

# Libraries exporting the unprefixed CBLAS interface (the 64-bit-int builds do not).
CANDIDATES = ("libopenblas.so.0", "libopenblas.so", "libmkl_rt.so.2", "libmkl_rt.so", "libblis.so.4", "libblis.so")

_note = "not checked"


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


def preload() -> None:
    global _note
    if sys.platform != "linux":
        return
    choice = os.environ.get("WHISPERFAST_BLAS", "")
    if choice == "reference":
        _note = "WHISPERFAST_BLAS=reference"
        return
    if "mlx.core" in sys.modules and _global_sgemm_owner() is None:
        _note = "mlx.core was imported before whisperfast; import whisperfast first"
        return
    for name in [choice] if choice else CANDIDATES:
        try:
            lib = ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
        except OSError:
            continue
        if hasattr(lib, "cblas_sgemm"):
            _note = f"preloaded {name}"
            return
    _note = "no optimized BLAS found (install OpenBLAS: apt-get install libopenblas0-pthread)"


def describe() -> dict:
    """Which BLAS serves MLX's CPU matmuls: {"blas": ..., "optimized": bool, "note": ...}."""
    if sys.platform == "darwin":
        return {"blas": "Accelerate", "optimized": True, "note": "macOS"}
    owner = _global_sgemm_owner()
    if owner is None:
        return {"blas": "reference BLAS bundled with mlx-cpu", "optimized": False, "note": _note}
    return {"blas": owner, "optimized": "mlx_cpu.libs" not in owner, "note": _note}
