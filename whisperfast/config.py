"""whisperfast's settings from the environment: one frozen dataclass, parsed once per process.

The variables are knobs for tests and benchmarks, not a user interface; nothing else in the
package reads `WHISPERFAST_*`. A test that sets one calls `reload()` (tests/conftest.py's
`knobs` fixture does, and restores the old values after). Imports nothing heavy: `_blas`
reads it before mlx is imported."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path


@dataclass(frozen=True)
class Config:
    # "" (default: scipy's OpenBLAS, then system ones), "reference", "system", or a library
    blas: str = ""
    cache: Path = Path.home() / ".cache" / "whisperfast"  # conversions, quantized models, kernel binaries
    debug: bool = False  # internal errors re-raised with their traceback (cli)
    cuda_step: bool = True  # False: the CUDA decode kernel is never used (the flat step runs)
    # Blocks of the CUDA step's grid, as given (checked against the SMs where they are known);
    # "" for one per SM
    step_blocks: str = ""
    cross_chunks: int | None = None  # the kernel's chunks of keys per cross-attention head
    # Greedy rows up to which the CUDA kernel picks each token itself (its picks' registers keep
    # a group of rows to 3, so more rows make more groups, each reading the weights again); above
    # it the kernel is the forward pass only (groups of up to 8) and a launch of their own runs
    # the filters and update (cuda/step.py's kernel_picks, greedy_picks)
    kernel_pick_rows: int = 3
    # Bytes a decoder layer that a step of the CUDA kernel may read (its weights once a group of
    # rows, each row's cross K/V); a batch whose step would read more runs the flat step
    # (cuda/step.py's kernel_pays: large models at many rows)
    kernel_layer_bytes: int = 420_000_000
    gpu_warmup: bool = True  # False: the CLI starts no warm-up thread on a CUDA GPU (runtime.warm_up_gpu)
    teardown_handoff: bool = True  # False: the CLI's process waits out the CUDA context's teardown itself
    vad_gpu: bool = True  # False: Silero VAD runs on onnxruntime even on a CUDA GPU (vad.SileroVAD)
    cpu_simd: bool = True  # False: the fast engine's CPU math keeps MLX's own ops (kernels/cpu_simd.py)
    # False: the CPU's decode steps (one row or a batch's), prompts and encoder blocks stay MLX's ops (not C)
    cpu_step: bool = True
    malloc_keep: bool = True  # False: glibc's malloc keeps its default thresholds (_malloc.py)


def _int_or_none(name: str, value: str) -> int | None:
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        from .errors import WhisperfastError

        raise WhisperfastError(f"{name}={value!r}: expected a positive integer")
    return int(value)


def _parse(env) -> Config:
    cache = env.get("WHISPERFAST_CACHE") or Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "whisperfast"
    return Config(blas=env.get("WHISPERFAST_BLAS", ""), cache=Path(cache), debug=bool(env.get("WHISPERFAST_DEBUG")),
                  cuda_step=env.get("WHISPERFAST_CUDA_STEP", "1") != "0",
                  step_blocks=env.get("WHISPERFAST_STEP_BLOCKS", "").strip(),
                  cross_chunks=_int_or_none("WHISPERFAST_CROSS_CHUNKS", env.get("WHISPERFAST_CROSS_CHUNKS", "")),
                  kernel_pick_rows=_int_or_none("WHISPERFAST_KERNEL_PICK_ROWS", env.get("WHISPERFAST_KERNEL_PICK_ROWS", ""))
                  or Config.kernel_pick_rows,
                  kernel_layer_bytes=_int_or_none("WHISPERFAST_KERNEL_LAYER_BYTES", env.get("WHISPERFAST_KERNEL_LAYER_BYTES", ""))
                  or Config.kernel_layer_bytes,
                  gpu_warmup=env.get("WHISPERFAST_GPU_WARMUP", "1") != "0",
                  teardown_handoff=env.get("WHISPERFAST_GPU_TEARDOWN_HANDOFF", "1") != "0",
                  vad_gpu=env.get("WHISPERFAST_VAD_GPU", "1") != "0",
                  cpu_simd=env.get("WHISPERFAST_CPU_SIMD", "1") != "0",
                  cpu_step=env.get("WHISPERFAST_CPU_STEP", "1") != "0",
                  malloc_keep=env.get("WHISPERFAST_MALLOC", "1") != "0")


@lru_cache(maxsize=1)
def config() -> Config:
    """The process's settings, parsed from the environment on first use."""
    return _parse(os.environ)


def reload() -> Config:
    """Parse the environment again (tests that change a knob)."""
    config.cache_clear()
    return config()
