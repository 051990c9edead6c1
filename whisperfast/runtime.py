"""Where MLX computes, and with what: device selection and the `info` report."""

from __future__ import annotations

import platform
import sys

import mlx.core as mx

from . import _blas
from .errors import WhisperfastError


def gpu_backend() -> str | None:
    if mx.metal.is_available():
        return "metal"
    if mx.cuda.is_available():
        return "cuda"
    return None


def use_device(name: str | None) -> None:
    """Set MLX's default device: "cpu", "gpu", or None to keep MLX's choice."""
    if name is None:
        return
    if name == "gpu":
        if gpu_backend() is None:
            raise WhisperfastError("no GPU backend in this mlx build (Linux: install the 'cuda' extra; macOS: Metal)")
        mx.set_default_device(mx.gpu)
    elif name == "cpu":
        mx.set_default_device(mx.cpu)
    else:
        raise WhisperfastError(f"unknown device '{name}' (use cpu or gpu)")


def device_name() -> str:
    return f"gpu ({gpu_backend()})" if mx.default_device() == mx.gpu else "cpu"


def dtype_name(dtype: mx.Dtype) -> str:
    return {mx.float16: "float16", mx.float32: "float32", mx.bfloat16: "bfloat16"}[dtype]


def parse_dtype(name: str | None) -> mx.Dtype | None:
    if name is None:
        return None
    table = {"float16": mx.float16, "fp16": mx.float16, "float32": mx.float32, "fp32": mx.float32,
             "bfloat16": mx.bfloat16, "bf16": mx.bfloat16}
    if name not in table:
        raise WhisperfastError(f"unknown dtype '{name}' (use float16, float32 or bfloat16)")
    return table[name]


def info() -> dict:
    """Versions, device and BLAS: what a bug report or a benchmark record needs."""
    import importlib.metadata as md

    def version(pkg: str) -> str | None:
        try:
            return md.version(pkg)
        except md.PackageNotFoundError:
            return None

    return {
        "whisperfast": version("whisperfast"),
        "mlx": mx.__version__,
        "mlx_whisper": version("mlx-whisper"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": device_name(),
        "gpu_backend": gpu_backend(),
        "blas": _blas.describe(),
        # On the CPU every mx.fast op falls back to composed ops: fusion pays only on a GPU.
        "fused_kernels_native": mx.default_device() == mx.gpu,
    }
