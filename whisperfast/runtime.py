"""Where MLX computes, and with what: device selection and the `info` report."""

from __future__ import annotations

import platform
import sys
import threading

import mlx.core as mx

from . import _blas
from .config import config
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


def warm_up_gpu(dtype: mx.Dtype) -> threading.Thread | None:
    """On a CUDA GPU, start a thread that makes the calls whose first use in a process is slow
    (the context, cuFFT, cuBLAS, cuDNN's convolution, SDPA: ~0.4 s together on the H200,
    benchmarks/h200-coldstart/), so that they run while the caller imports the rest; the caller
    joins it before its own MLX work. It computes on zeros of its own and draws no random
    numbers: nothing the caller computes changes. Elsewhere (CPU, Metal) it starts nothing."""
    if not config().gpu_warmup or mx.default_device() != mx.gpu or gpu_backend() != "cuda":
        return None
    thread = threading.Thread(target=_quietly, args=(_first_calls, dtype), name="whisperfast-gpu-warm-up", daemon=True)
    thread.start()
    return thread


def _quietly(fn, *args) -> None:
    # A failure here is the GPU's, and the real call after the join meets it again and reports
    # it as an Error line; a thread's traceback on stderr would say nothing more.
    try:
        fn(*args)
    except Exception:  # noqa: BLE001
        pass


def _first_calls(dtype: mx.Dtype) -> None:
    """mlx-whisper's mel front end (fp32) and an encoder block's ops (in `dtype`) at tiny's
    shapes, on zeros; mlx.core only, so the thread waits on no import of the caller's."""
    frames = mx.as_strided(mx.zeros((480400,)), shape=(3001, 400), strides=(160, 1))  # 30 s, reflect-padded
    spec = mx.fft.rfft(frames * mx.ones((400,)))[:-1].abs().square() @ mx.zeros((201, 80))
    log = mx.maximum(spec, 1e-10).log10()
    x = mx.conv1d(mx.maximum(log, log.max() - 8.0).astype(dtype)[None], mx.zeros((384, 3, 80), dtype), padding=1)
    x = mx.conv1d(x * mx.erf(x), mx.zeros((384, 3, 384), dtype), stride=2, padding=1)
    x = mx.fast.layer_norm(x, mx.ones((384,), dtype), mx.zeros((384,), dtype), 1e-5)
    q = mx.addmm(mx.zeros((384,), dtype), x, mx.zeros((384, 384), dtype)).reshape(1, 1500, 6, 64).transpose(0, 2, 1, 3)
    mx.eval(mx.fast.scaled_dot_product_attention(q, q, q, scale=0.125))


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
