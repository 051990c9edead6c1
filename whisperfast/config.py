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
    # False: a batch's C step on the CPU keeps its rows' cross keys and values in float32
    # (decode/cpu_batch.py's cross_half)
    cpu_cross_half: bool = True
    # False: batched mode's encoder on the CPU keeps float32 products (else bfloat16 on AMX tiles,
    # where the CPU has them: kernels/cpu_amx.c)
    cpu_amx: bool = True
    malloc_keep: bool = True  # False: glibc's malloc keeps its default thresholds (_malloc.py)


def _bad(name: str, value: str, expected: str):
    from .errors import WhisperfastError

    return WhisperfastError(f"{name}={value!r}: expected {expected}")


def _int_or_none(env, name: str) -> int | None:
    value = env.get(name, "").strip()
    if not value:
        return None
    if not (value.isascii() and value.isdigit()) or int(value) < 1:
        raise _bad(name, value, "a positive integer")
    return int(value)


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _flag(env, name: str, default: bool) -> bool:
    """A switch: 1/true/yes/on or 0/false/no/off (unset or empty: the default). Other values
    are refused: "false" once left a feature on, as only "0" turned it off."""
    value = env.get(name, "").strip().lower()
    if not value:
        return default
    if value not in _TRUE + _FALSE:
        raise _bad(name, env[name], "1 or 0 (true/false, yes/no, on/off)")
    return value in _TRUE


def _parse(env) -> Config:
    cache = env.get("WHISPERFAST_CACHE") or Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "whisperfast"
    return Config(blas=env.get("WHISPERFAST_BLAS", ""), cache=Path(cache).expanduser(),
                  debug=_flag(env, "WHISPERFAST_DEBUG", False),
                  cuda_step=_flag(env, "WHISPERFAST_CUDA_STEP", True),
                  step_blocks=env.get("WHISPERFAST_STEP_BLOCKS", "").strip(),
                  cross_chunks=_int_or_none(env, "WHISPERFAST_CROSS_CHUNKS"),
                  kernel_pick_rows=_int_or_none(env, "WHISPERFAST_KERNEL_PICK_ROWS") or Config.kernel_pick_rows,
                  kernel_layer_bytes=_int_or_none(env, "WHISPERFAST_KERNEL_LAYER_BYTES") or Config.kernel_layer_bytes,
                  gpu_warmup=_flag(env, "WHISPERFAST_GPU_WARMUP", True),
                  teardown_handoff=_flag(env, "WHISPERFAST_GPU_TEARDOWN_HANDOFF", True),
                  vad_gpu=_flag(env, "WHISPERFAST_VAD_GPU", True),
                  cpu_simd=_flag(env, "WHISPERFAST_CPU_SIMD", True),
                  cpu_step=_flag(env, "WHISPERFAST_CPU_STEP", True),
                  cpu_cross_half=_flag(env, "WHISPERFAST_CPU_CROSS_HALF", True),
                  cpu_amx=_flag(env, "WHISPERFAST_CPU_AMX", True),
                  malloc_keep=_flag(env, "WHISPERFAST_MALLOC", True))


@lru_cache(maxsize=1)
def config() -> Config:
    """The process's settings, parsed from the environment on first use. A knob set to a value
    it does not take raises WhisperfastError (naming it) at every call until it is fixed; the
    import-time readers (_blas, _malloc) then keep their defaults, and the CLI says so in one
    line before any command runs."""
    return _parse(os.environ)


def at_import() -> Config:
    """config() for what `import whisperfast` does (_blas, _malloc): the defaults where a knob
    is bad, so that the import never raises; the CLI reports the knob before any command, the
    library at its first call."""
    from .errors import WhisperfastError

    try:
        return config()
    except WhisperfastError:  # the import's own knobs as they are set, where they parse
        try:
            malloc_keep = _flag(os.environ, "WHISPERFAST_MALLOC", True)
        except WhisperfastError:
            malloc_keep = True
        return Config(blas=os.environ.get("WHISPERFAST_BLAS", ""), malloc_keep=malloc_keep)


def reload() -> Config:
    """Parse the environment again (tests that change a knob)."""
    config.cache_clear()
    return config()
