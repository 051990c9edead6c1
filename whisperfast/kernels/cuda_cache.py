"""Custom CUDA kernels compiled once per machine, not once per process.

`mx.fast.cuda_kernel` compiles its kernel with NVRTC in every process (1.5-1.7 s on an H100
or H200 for the decode step): MLX 0.32's JIT (mlx/backend/cuda/jit_module.cpp) looks every
module up in its PTX cache first (MLX_PTX_CACHE_DIR, else <tmp>/mlx/<version>/ptx), but
writes that cache only for MLX's own kernels, never for custom ones (custom_kernel.cpp passes
use_disk_cache = false; checked in the 0.32.4 wheel's libmlx.so too).

So `CachedCudaKernel` is `mx.fast.cuda_kernel` that fills that cache for its kernel. At a
kernel's first launch in a process it builds the source MLX will build (custom_kernel.cpp's
build_kernel), takes the binary from a `KernelCache` in the user's cache (compiling it with
NVRTC as MLX would, nvrtc.py, on a miss) and puts it where MLX's JIT will look: the file named
after the module MLX derives from that source (kernel name, template arguments, std::hash of
the source). Then MLX runs the kernel as it always does, and finds it compiled. Launches cost
what they cost before: mx.fast.precompiled_cuda_kernel would take the binary (330 KB for the
decode step) at every launch, and MLX copies it and std::hashes it each time (the hash alone
0.2 ms on this project's CPU machine: host time every token, where a step is 0.17-0.35 ms).

Why nothing can run wrong: the module name hashes the whole source, parameter list included,
so MLX finds a file only for the exact source it would have compiled; any difference in how
the source was rebuilt here is a name nobody looks up (MLX compiles, as before). The one thing
not MLX's is its device headers: utils.cuh is embedded in libmlx.so, so the compile here gets a
stand-in with the types a kernel's parameters use (HEADERS: lean, as their real includes are
most of a compile's time); a kernel needing more of it fails to compile here, and MLX
compiles it."""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import time
import warnings
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Optional, Sequence

import mlx.core as mx


@dataclass
class Counters:
    """What the kernel caches of this process did (bench --cold and the tests read them)."""

    hits: int = 0  # binaries read from the cache
    misses: int = 0  # binaries not in the cache (or rejected), so compiled
    compiles: int = 0  # NVRTC runs
    rejected: int = 0  # cache files that failed their checksum (torn, or not ours)
    unwritten: int = 0  # binaries a cache could not store (read-only, full disk)
    published: int = 0  # binaries written where MLX's JIT looks (each process finds them there already)
    fallbacks: int = 0  # kernels left to MLX's own compile, each with a warning that says why
    seconds: float = 0.0  # spent on all of the above

    def snapshot(self) -> dict:
        return asdict(self)

    def reset(self) -> None:
        for k, v in asdict(Counters()).items():
            setattr(self, k, v)


COUNTERS = Counters()  # this module's one piece of mutable state, shared by every cache on purpose

_MAGIC = b"WFK2"  # then sha256 of the rest, then a JSON line (lowered names), then the binary


@dataclass(frozen=True)
class Compiled:
    binary: bytes
    names: dict  # {name expression: lowered name}


class KernelCache:
    """Compiled kernels in `root`, a file per key: the sha256 of the source, the compile
    options, the in-memory headers and `identity` (what else decides the binary: the GPU's
    compute capability, MLX's and NVRTC's versions). `compile(source, options, headers,
    names)` -> (binary, lowered names); `write(path, data)` replaces a file atomically. A
    file that is torn or not ours fails its checksum and is compiled again."""

    def __init__(self, root: Path, compile: Callable, identity: dict, write: Callable[[Path, bytes], None]):
        self.root, self._compile, self.identity, self._write = Path(root), compile, dict(identity), write

    def key(self, source: str, options: Sequence[str], headers: dict) -> str:
        blob = json.dumps({"source": source, "options": list(options), "headers": headers, "identity": self.identity},
                          sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.root / f"{key}.bin"

    def get(self, source: str, options: Sequence[str], headers: dict, names: Sequence[str]) -> Compiled:
        path = self.path(self.key(source, options, headers))
        found = _unpack(path)
        if found is not None and set(names) <= set(found.names):
            COUNTERS.hits += 1
            return found
        COUNTERS.misses += 1
        COUNTERS.compiles += 1
        binary, lowered = self._compile(source, options, headers, names)
        meta = json.dumps({"names": lowered}, sort_keys=True).encode() + b"\n"
        try:
            self._write(path, _MAGIC + hashlib.sha256(meta + binary).digest() + meta + binary)
        except OSError:
            COUNTERS.unwritten += 1  # still right, just compiled again by the next process
        return Compiled(binary, lowered)


def _unpack(path: Path) -> Optional[Compiled]:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    rest = data[36:]
    meta, _, binary = rest.partition(b"\n")
    if data[:4] != _MAGIC or hashlib.sha256(rest).digest() != data[4:36] or not binary:
        COUNTERS.rejected += 1
        return None
    return Compiled(binary, json.loads(meta)["names"])


# ---- the source MLX builds for a custom kernel, and where its JIT looks for the binary ----

# custom_kernel.cpp's default_header
DEFAULT_HEADER = '\n#include "mlx/backend/cuda/device/utils.cuh"\n\n#include <cooperative_groups.h>\n\n'

# The stand-ins for the two headers DEFAULT_HEADER includes, given to NVRTC in memory (it
# resolves an include by these names before its own folders). utils.cuh's: the types a
# generated kernel's parameters use. MLX's Shape and Strides are cuda::std::arrays of MAX_NDIM
# int32s and int64s, passed by value; a struct of one such C array has their layout, and
# only the layout crosses the launch. cooperative_groups.h's: the namespace the source names.
# Their real includes (libcu++'s array and tuple, cooperative groups) cost NVRTC ~1 s each of
# a kernel's compile, whatever the kernel (benchmarks/nvrtc_includes.py), and a machine's first
# run waits for that compile. The decode step's parameter list is the real includes' (a test
# holds it to theirs); its PTX matched theirs but for register numbers wherever NVVM took the
# same of the two forms it picks between from process to process, whatever the headers.
UTILS_STAND_IN = """#pragma once
#include "mlx/backend/cuda/device/config.h"
#include <cuda_bf16.h>
#include <cuda_fp16.h>
namespace mlx::core::cu {
typedef signed char int8_t;
typedef short int16_t;
typedef int int32_t;
typedef long long int64_t;
typedef unsigned char uint8_t;
typedef unsigned short uint16_t;
typedef unsigned int uint32_t;
typedef unsigned long long uint64_t;
struct Shape {
  int32_t v[MAX_NDIM];
  __device__ const int32_t& operator[](int i) const { return v[i]; }
};
struct Strides {
  int64_t v[MAX_NDIM];
  __device__ const int64_t& operator[](int i) const { return v[i]; }
};
}  // namespace mlx::core::cu
"""
HEADERS = {"mlx/backend/cuda/device/utils.cuh": UTILS_STAND_IN, "cooperative_groups.h": "namespace cooperative_groups {}\n"}

# mlx/backend/cuda/utils.cpp's dtype_to_cuda_type, and backend/common/compiled.cpp's
# get_type_string (MLX names kernels with the latter)
_CUDA_TYPES = {mx.bool_: "bool", mx.int8: "int8_t", mx.int16: "int16_t", mx.int32: "int32_t", mx.int64: "int64_t",
               mx.uint8: "uint8_t", mx.uint16: "uint16_t", mx.uint32: "uint32_t", mx.uint64: "uint64_t",
               mx.float16: "__half", mx.bfloat16: "__nv_bfloat16", mx.float32: "float", mx.float64: "double"}
_TYPE_NAMES = {**_CUDA_TYPES, mx.float16: "float16_t", mx.bfloat16: "bfloat16_t"}


def kernel_name(name: str, template: Sequence[tuple]) -> str:
    """custom_kernel.cpp: "custom_kernel_" + name + template_arguments_hash(template)."""
    parts = []
    for _, v in template:
        parts.append(("_t" if v else "_f") if isinstance(v, bool) else f"_{v}" if isinstance(v, int) else f"_{_TYPE_NAMES[v]}")
    return "custom_kernel_" + name + "".join(parts)


def build_source(func: str, header: str, source: str, inputs: Sequence[tuple[str, mx.Dtype, int]],
                 outputs: Sequence[tuple[str, mx.Dtype]], template: Sequence[tuple]) -> str:
    """custom_kernel.cpp's build_kernel, byte for byte: inputs (name, dtype, ndim), outputs
    (name, dtype); a `<name>_shape`, `_strides` or `_ndim` parameter for each the source reads."""
    s = DEFAULT_HEADER + header + "namespace mlx::core::cu {\n\nnamespace cg = cooperative_groups;\n\n"
    s += f"__global__ void {func}(\n"
    for n, dtype, ndim in inputs:
        s += f"    const {_CUDA_TYPES[dtype]}* {n},\n"
        if ndim > 0:
            if f"{n}_shape" in source:
                s += f"    const __grid_constant__ Shape {n}_shape,\n"
            if f"{n}_strides" in source:
                s += f"    const __grid_constant__ Strides {n}_strides,\n"
            if f"{n}_ndim" in source:
                s += f"    const __grid_constant__ int {n}_ndim,\n"
    s += ",\n".join(f"    {_CUDA_TYPES[dtype]}* {n}" for n, dtype in outputs) + ") {\n"
    for n, v in template:
        if isinstance(v, bool):
            s += f"  constexpr bool {n} = {'true' if v else 'false'};\n"
        elif isinstance(v, int):
            s += f"  constexpr int {n} = {v};\n"
        else:
            s += f"  using {n} = {_CUDA_TYPES[v]};\n"
    if template:
        s += "\n"
    return s + source + "\n}\n\n} // namespace mlx::core::cu\n"


def std_hash(data: bytes) -> int:
    """std::hash<std::string> as libstdc++ computes it (what MLX's module names carry)."""
    f = ctypes.CDLL("libstdc++.so.6")._ZSt11_Hash_bytesPKvmm
    f.restype, f.argtypes = ctypes.c_size_t, [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t]
    return f(data, len(data), 0xC70F6907)


def mlx_cache_dir() -> Path:
    """jit_module.cpp's ptx_cache_dir (std::filesystem::temp_directory_path reads TMPDIR,
    TMP, TEMP and TEMPDIR, in that order)."""
    if os.environ.get("MLX_PTX_CACHE_DIR"):
        return Path(os.environ["MLX_PTX_CACHE_DIR"])
    tmp = next((os.environ[k] for k in ("TMPDIR", "TMP", "TEMP", "TEMPDIR") if os.environ.get(k)), "/tmp")
    return Path(tmp) / "mlx" / mx.__version__ / "ptx"


def mlx_module_path(cache_dir: Path, module: str) -> Path:
    """jit_module.cpp's get_ptx_path: names over 245 characters become folders of 245."""
    path, limit = Path(cache_dir), 245
    while len(module) > limit:
        path, module = path / module[:limit], module[limit:]
    return path / f"{module}.ptx"


def publish(path: Path, compiled: Compiled, write: Callable[[Path, bytes], None]) -> bool:
    """Put `compiled` where MLX's JIT reads it: the binary at `path`, and beside it (.txt)
    each kernel's name and lowered name, tab-separated. The names go first: MLX reads the
    binary, then the names, and a binary without them would be a module with no kernels.
    False when both were there already."""
    names = "".join(f"{n}\t{m}\n" for n, m in compiled.names.items()).encode()
    txt = path.with_suffix(".txt")
    if _read(path) == compiled.binary and _read(txt) == names:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    write(txt, names)
    write(path, compiled.binary)
    return True


def _read(path: Path) -> Optional[bytes]:
    try:
        return path.read_bytes()
    except OSError:
        return None


class Compiler:
    """NVRTC set up as MLX's JIT for this process's GPU; `identity` is what besides the
    source, options and headers decides the binary (for KernelCache's key)."""

    def __init__(self):
        from . import nvrtc

        info = mx.device_info()
        if "compute_capability_major" not in info:
            raise RuntimeError("mx.device_info() gives no compute capability (not MLX's CUDA backend)")
        major, minor = int(info["compute_capability_major"]), int(info["compute_capability_minor"])
        toolchain = nvrtc.Toolchain.installed()
        self.nvrtc = nvrtc.load(toolchain)
        self.options = nvrtc.options(toolchain, major, minor)
        self.identity = {"compute_capability": f"{major}.{minor}", "mlx": mx.__version__,
                         "nvrtc": "%d.%d" % self.nvrtc.version}

    def __call__(self, source: str, options: Sequence[str], headers: dict, names: Sequence[str]) -> tuple[bytes, dict]:
        return self.nvrtc.compile(source, options, headers, names)


@lru_cache(maxsize=1)
def _compiler():
    """This process's Compiler, or why there is none (NVRTC is found and probed once)."""
    try:
        return Compiler()
    except Exception as e:  # noqa: BLE001 (whatever it is, MLX's own compile remains)
        return f"{type(e).__name__}: {e}"


class CachedCudaKernel:
    """`mx.fast.cuda_kernel(name, input_names, output_names, source, header)`, called the
    same way, whose binaries come from `root` (see the module's docstring). `write` replaces
    a file atomically; `compiler` is NVRTC as MLX's JIT runs it (None: this process's)."""

    def __init__(self, name: str, input_names: Sequence[str], output_names: Sequence[str], source: str, header: str,
                 root: Path, write: Callable[[Path, bytes], None], compiler=None):
        self.name, self.inputs, self.outputs, self.source, self.header = name, tuple(input_names), tuple(output_names), source, header
        self.root, self._write, self._compiler = Path(root), write, compiler
        self.kernel = None  # MLX's, made at the first launch (builds without CUDA refuse to make one)
        self._ready: set = set()  # (template, input dtypes and ndims, output dtypes) seen in this process
        self.fallback: Optional[str] = None  # why the last kernel left to MLX's compile was

    def prepare(self, inputs: Sequence[tuple[str, mx.Dtype, int]], output_dtypes: Sequence[mx.Dtype],
                template: Sequence[tuple]) -> Optional[Path]:
        """Put the kernel for these inputs and template where MLX's JIT finds it; returns its
        path there, or None (and warns why) where MLX will compile it itself."""
        t0 = time.perf_counter()
        try:
            compiler = self._compiler or _compiler()
            if isinstance(compiler, str):
                raise RuntimeError(f"no NVRTC set up as MLX's ({compiler})")
            func = kernel_name(self.name, template)
            source = build_source(func, self.header, self.source, inputs, list(zip(self.outputs, output_dtypes)), template)
            module = f"{func}_{std_hash(source.encode()):x}"
            expression = f"mlx::core::cu::{func}"
            compiled = KernelCache(self.root, compiler, compiler.identity, self._write).get(
                source, compiler.options, HEADERS, [expression])
            path = mlx_module_path(mlx_cache_dir(), module)
            COUNTERS.published += publish(path, Compiled(compiled.binary, {expression: compiled.names[expression]}),
                                          self._write)
            return path
        except Exception as e:  # noqa: BLE001 (a compile error here is MLX's compile error too: it reports it)
            COUNTERS.fallbacks += 1
            self.fallback = f"{type(e).__name__}: {e}".splitlines()[0]
            warnings.warn(f"kernel {self.name}: {self.fallback}; MLX compiles it in each process instead",
                          RuntimeWarning, stacklevel=3)
            return None
        finally:
            COUNTERS.seconds += time.perf_counter() - t0

    def __call__(self, *, inputs, output_shapes, output_dtypes, grid, threadgroup, template=(), **kwargs):
        key = (tuple(template), tuple((a.dtype, a.ndim) if isinstance(a, mx.array) else type(a) for a in inputs),
               tuple(output_dtypes))
        if key not in self._ready:
            self._ready.add(key)
            if all(isinstance(a, mx.array) for a in inputs):  # MLX makes arrays of scalars: their ndim is 0
                self.prepare([(n, a.dtype, a.ndim) for n, a in zip(self.inputs, inputs)], list(output_dtypes),
                             list(template))
        if self.kernel is None:
            self.kernel = mx.fast.cuda_kernel(name=self.name, input_names=list(self.inputs), output_names=list(self.outputs),
                                              source=self.source, header=self.header)
        return self.kernel(inputs=inputs, output_shapes=output_shapes, output_dtypes=output_dtypes, grid=grid,
                           threadgroup=threadgroup, template=template, **kwargs)
