"""NVRTC through ctypes, set up the way MLX's CUDA backend sets it up for its own JIT
(mlx/backend/cuda/jit_module.cpp, 0.32): the same library, include paths and flags, so a
kernel compiled here is the kernel MLX would have compiled, and `compile` can run where MLX
would have (a process on a GPU), or anywhere the wheels are, given the architecture."""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence


class NvrtcError(RuntimeError):
    """NVRTC missing, or a compile that failed (the message carries NVRTC's log)."""


@dataclass(frozen=True)
class Toolchain:
    """Where MLX's CUDA wheel and its NVIDIA wheels are: `mlx` is the package folder
    (site-packages/mlx, which holds lib/libmlx.so and include/), `nvidia` the folder of the
    NVIDIA wheels beside it (MLX finds both there: libmlx.so's RUNPATH, and its JIT's
    --include-path list)."""

    mlx: Path
    nvidia: Path

    @staticmethod
    def beside(mlx_package: Path) -> "Toolchain":
        return Toolchain(mlx_package, mlx_package.parent / "nvidia")

    @staticmethod
    def installed() -> "Toolchain":
        import mlx

        return Toolchain.beside(Path(list(mlx.__path__)[0]))

    def library(self) -> list[str]:
        """Where libnvrtc may be, in the order tried: the wheel's copy that libmlx.so's RUNPATH
        names (with cu13 wheels: nvidia/cu13/lib; before: nvidia/cuda_nvrtc/lib), then the
        soname, which names the copy libmlx.so has loaded already when it has."""
        return [str(self.nvidia / d / "lib" / "libnvrtc.so.13") for d in ("cu13", "cuda_nvrtc")] + ["libnvrtc.so.13"]

    def include_paths(self) -> list[str]:
        """MLX's --include-path arguments, in its order: its bundled headers, CCCL's, the CUDA
        runtime's (from the wheel, else CUDA_HOME, CUDA_PATH or /usr/local/cuda)."""
        paths = []
        include = self.mlx / "include"
        if include.exists():
            paths.append(include)
        if (include / "cccl").exists():
            paths.append(include / "cccl")
        cuda = self.nvidia / "cu13" / "include"
        if not cuda.exists():
            home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
            cuda = Path(home) / "include"
            if not cuda.exists():
                raise NvrtcError(f"no CUDA headers: neither {self.nvidia / 'cu13' / 'include'} nor {cuda}")
        paths.append(cuda)
        return [f"--include-path={p}" for p in paths]


def arch_option(major: int, minor: int) -> str:
    """MLX's target: the device's own SASS (NVRTC 13 compiles it for every architecture it
    knows), with the architecture-specific features ("a") from compute capability 9 on."""
    return f"--gpu-architecture=sm_{major}{minor}{'a' if major >= 9 else ''}"


def options(toolchain: Toolchain, major: int, minor: int) -> tuple[str, ...]:
    """MLX's NVRTC options for custom kernels: the flag its CUTLASS code needs, the target,
    the include paths. (NVRTC 13 compiles C++17 by default, as MLX relies on.)"""
    return ("--device-as-default-execution-space", arch_option(major, minor), *toolchain.include_paths())


class Nvrtc:
    """One loaded libnvrtc. `compile` returns the device code MLX's JIT would load: a cubin for
    an sm_XX target, PTX for a compute_XX one."""

    def __init__(self, candidates: Sequence[str]):
        self.lib, errors = None, []
        for c in candidates:
            try:
                self.lib = ctypes.CDLL(c)
                break
            except OSError as e:
                errors.append(str(e))
        if self.lib is None:
            raise NvrtcError("libnvrtc not found: " + "; ".join(errors))
        self.last_log = ""  # the last successful compile's log (ptxas's report, with --ptxas-options=-v)
        lib = self.lib
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        lib.nvrtcGetErrorString.argtypes = [ctypes.c_int]
        major, minor = ctypes.c_int(), ctypes.c_int()
        self._check("nvrtcVersion", lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)))
        self.version = (major.value, minor.value)

    def _check(self, what: str, result: int, log: str = "") -> None:
        if result != 0:
            message = self.lib.nvrtcGetErrorString(result).decode()
            raise NvrtcError(f"{what} failed: {message}" + (f"\n{log}" if log else ""))

    def compile(self, source: str, opts: Sequence[str], headers: Optional[dict] = None, names: Sequence[str] = (),
                filename: str = "kernel.cu") -> tuple[bytes, dict]:
        """-> (the device code, {name expression: its lowered (mangled) name}). `headers`
        {include name: text} are headers given in memory, as MLX gives its device headers."""
        lib, prog, headers = self.lib, ctypes.c_void_p(), headers or {}
        texts = (ctypes.c_char_p * len(headers))(*(t.encode() for t in headers.values()))
        includes = (ctypes.c_char_p * len(headers))(*(n.encode() for n in headers))
        self._check("nvrtcCreateProgram", lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), filename.encode(),
                                                                 len(headers), texts, includes))
        try:
            for n in names:
                self._check("nvrtcAddNameExpression", lib.nvrtcAddNameExpression(prog, n.encode()))
            args = (ctypes.c_char_p * len(opts))(*(o.encode() for o in opts))
            result = lib.nvrtcCompileProgram(prog, len(opts), args)
            if result != 0:
                self._check("nvrtcCompileProgram", result, self._log(prog))
            self.last_log = self._log(prog)
            lowered = {}
            for n in names:
                out = ctypes.c_char_p()
                self._check("nvrtcGetLoweredName", lib.nvrtcGetLoweredName(prog, n.encode(), ctypes.byref(out)))
                lowered[n] = out.value.decode()
            cubin = any(o.startswith("--gpu-architecture=sm_") for o in opts)
            get_size, get = ((lib.nvrtcGetCUBINSize, lib.nvrtcGetCUBIN) if cubin else
                             (lib.nvrtcGetPTXSize, lib.nvrtcGetPTX))
            size = ctypes.c_size_t()
            self._check("get size", get_size(prog, ctypes.byref(size)))
            buf = ctypes.create_string_buffer(size.value)
            self._check("get code", get(prog, buf))
            return buf.raw, lowered  # PTX comes NUL-terminated, as MLX hands it to the driver
        finally:
            lib.nvrtcDestroyProgram(ctypes.byref(prog))

    def _log(self, prog) -> str:
        size = ctypes.c_size_t()
        if self.lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size)) != 0:
            return ""
        buf = ctypes.create_string_buffer(size.value + 1)
        self.lib.nvrtcGetProgramLog(prog, buf)
        return buf.value.decode(errors="replace")


def load(toolchain: Optional[Toolchain] = None) -> Nvrtc:
    return Nvrtc((toolchain or Toolchain.installed()).library())
