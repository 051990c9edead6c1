"""The CUDA context, made on a thread while `import mlx.core` loads its libraries.

A fresh GPU process spends ~0.3 s in `import mlx.core` (the dynamic loader, holding the GIL)
and then, at MLX's first calls, initializes the driver (cuInit) and its device's primary
context. Both can start sooner: a thread that calls them through ctypes (which releases the
GIL in a foreign call) overlaps them with the import, and MLX's runtime, which computes in the
device's primary context, finds that context made: the GPU warm-up ended ~0.06 s sooner on the
H200 (benchmarks/h200-session11/). Only the driver's own calls are made, never one of MLX's
libraries', and the caller joins the thread before its first MLX call.

Imports nothing but the standard library: it runs before anything imports mlx."""

from __future__ import annotations

import ctypes
import os
import sys
import threading

DEVICE = 0  # MLX's default GPU (mx.gpu)


def start() -> threading.Thread | None:
    """A thread making the primary context of MLX's default GPU, where MLX's CUDA build is
    installed (Linux); else None."""
    if sys.platform != "linux" or not mlx_cuda_installed():
        return None
    thread = threading.Thread(target=retain_primary_context, name="whisperfast-cuda-context", daemon=True)
    thread.start()
    return thread


def mlx_cuda_installed() -> bool:
    """Whether the installed MLX is its CUDA build (`mlx-cuda-*`), found by its metadata's folder
    name on sys.path, without importing it."""
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        if any(n.startswith("mlx_cuda") and n.endswith(".dist-info") for n in names):
            return True
    return False


def retain_primary_context() -> bool:
    """cuInit, then retain DEVICE's primary context (held for the life of the process, as MLX
    holds it). False where the driver or the device is missing: MLX then meets that itself."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    device, context = ctypes.c_int(), ctypes.c_void_p()
    return (cuda.cuInit(0) == 0 and cuda.cuDeviceGet(ctypes.byref(device), DEVICE) == 0
            and cuda.cuDevicePrimaryCtxRetain(ctypes.byref(context), device) == 0)
