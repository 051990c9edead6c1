"""The compiled-kernel cache (kernels/cuda_cache.py): keys, checksums, the files MLX's JIT
reads, with a fake compiler on any machine; NVRTC compiling the decode step's source where
the CUDA wheels are; and on MLX's CUDA backend, that MLX runs what the cache put there and
that a second process compiles nothing (benchmarks/gpu.sh cache)."""

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import mlx.core as mx
import pytest

from whisperfast.decode.cuda.beams import _CALL as _BEAM_CALL
from whisperfast.decode.cuda.beams import _INPUTS as _BEAM_INPUTS
from whisperfast.decode.cuda.beams import _OUTPUTS as _BEAM_OUTPUTS
from whisperfast.decode.cuda.launch import source as kernel_source
from whisperfast.decode.cuda.step import _CALL, _GREEDY_CALL, _QUANT_CALL
from whisperfast.kernels import cuda_cache
from whisperfast.kernels.cuda_cache import COUNTERS, CachedCudaKernel, Compiled, KernelCache
from whisperfast.output import write_atomic

from .conftest import ROOT, SAMPLES, needs_cuda



@pytest.fixture(autouse=True)
def _counters():
    COUNTERS.reset()
    yield
    COUNTERS.reset()


class FakeCompiler:
    identity = {"compute_capability": "9.0", "mlx": "0.0", "nvrtc": "13.0"}
    options = ("--gpu-architecture=sm_90a",)

    def __init__(self):
        self.calls = []

    def __call__(self, source, options, headers, names):
        self.calls.append(source)
        return b"BIN:" + source.encode(), {n: f"_Z{len(n)}{n.rsplit(':', 1)[-1]}" for n in names}


def cache(tmp_path, compiler=None, identity=None, write=write_atomic):
    compiler = compiler or FakeCompiler()
    return KernelCache(tmp_path / "kernels", compiler, identity or compiler.identity, write), compiler


def test_a_miss_compiles_once_then_every_get_reads_the_file(tmp_path):
    c, compiler = cache(tmp_path)
    first = c.get("src", ["-a"], {}, ["k"])
    assert len(compiler.calls) == 1 and COUNTERS.compiles == COUNTERS.misses == 1 and COUNTERS.hits == 0
    again = KernelCache(c.root, compiler, c.identity, write_atomic).get("src", ["-a"], {}, ["k"])  # a new process's
    assert again == first and len(compiler.calls) == 1
    assert COUNTERS.snapshot() | {"seconds": 0} == dict(hits=1, misses=1, compiles=1, rejected=0, unwritten=0,
                                                         published=0, fallbacks=0, seconds=0)
    assert [p.name for p in c.root.iterdir()] == [f"{c.key('src', ['-a'], {})}.bin"]  # no temp file left


def test_the_key_covers_source_options_headers_and_identity(tmp_path):
    c, compiler = cache(tmp_path)
    base = c.key("src", ["-a"], {"h": "x"})
    assert base == c.key("src", ["-a"], {"h": "x"})
    others = {c.key("src2", ["-a"], {"h": "x"}), c.key("src", ["-b"], {"h": "x"}), c.key("src", ["-a"], {"h": "y"})}
    for field in ("compute_capability", "mlx", "nvrtc"):
        others.add(KernelCache(c.root, compiler, {**c.identity, field: "other"}, write_atomic).key("src", ["-a"], {"h": "x"}))
    assert base not in others and len(others) == 6


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "foreign"])
def test_a_torn_or_foreign_file_is_compiled_again_and_replaced(tmp_path, damage):
    c, compiler = cache(tmp_path)
    good = c.get("src", [], {}, ["k"])
    path = c.path(c.key("src", [], {}))
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "flip": data[:-1] + bytes([data[-1] ^ 1]), "empty": b"",
                      "foreign": b"\x7fELF" + data[4:]}[damage])
    assert c.get("src", [], {}, ["k"]) == good
    assert len(compiler.calls) == 2 and COUNTERS.rejected == 1 and COUNTERS.hits == 0
    assert path.read_bytes() == data  # rewritten whole
    assert c.get("src", [], {}, ["k"]) == good and COUNTERS.hits == 1


def test_an_entry_without_a_needed_name_is_compiled_again(tmp_path):
    c, compiler = cache(tmp_path)
    c.get("src", [], {}, ["a"])
    assert set(c.get("src", [], {}, ["a", "b"]).names) == {"a", "b"} and len(compiler.calls) == 2


def test_a_cache_that_cannot_be_written_still_gives_the_binary(tmp_path):
    def refuse(path, data):
        raise PermissionError(13, "read-only", str(path))

    c, compiler = cache(tmp_path, write=refuse)
    assert c.get("src", [], {}, ["k"]).binary == b"BIN:src"
    assert COUNTERS.unwritten == 1 and not c.root.exists()


def test_files_are_written_atomically_with_the_users_umask(tmp_path):
    old = os.umask(0o027)
    try:
        c, _ = cache(tmp_path)
        c.get("src", [], {}, ["k"])
    finally:
        os.umask(old)
    (path,) = c.root.iterdir()
    assert path.stat().st_mode & 0o777 == 0o640


def test_std_hash_is_libstdcxx():
    assert cuda_cache.std_hash(b"abc") == 0x32D82BF8ED3DBA39  # g++'s std::hash<std::string>{}("abc")
    assert cuda_cache.std_hash(b"") != cuda_cache.std_hash(b"\0")


def test_kernel_name_and_source_are_mlx_build_kernel():
    """custom_kernel.cpp's naming and build_kernel, written out by hand for one kernel."""
    template = [("T", mx.float16), ("N", 3), ("F", False), ("G", True)]
    name = cuda_cache.kernel_name("k", template)
    assert name == "custom_kernel_k_float16_t_3_f_t"
    got = cuda_cache.build_source(name, "// h\n", "o[0] = a[a_shape[0] - 1] + b_ndim;",
                                  [("a", mx.float32, 1), ("b", mx.int32, 2), ("c", mx.bfloat16, 0)],
                                  [("o", mx.float32), ("p", mx.bool_)], template)
    assert got == ('\n#include "mlx/backend/cuda/device/utils.cuh"\n\n#include <cooperative_groups.h>\n\n// h\n'
                   "namespace mlx::core::cu {\n\nnamespace cg = cooperative_groups;\n\n"
                   "__global__ void custom_kernel_k_float16_t_3_f_t(\n"
                   "    const float* a,\n    const __grid_constant__ Shape a_shape,\n"
                   "    const int32_t* b,\n    const __grid_constant__ int b_ndim,\n"
                   "    const __nv_bfloat16* c,\n"
                   "    float* o,\n    bool* p) {\n"
                   "  using T = __half;\n  constexpr int N = 3;\n  constexpr bool F = false;\n  constexpr bool G = true;\n\n"
                   "o[0] = a[a_shape[0] - 1] + b_ndim;\n}\n\n} // namespace mlx::core::cu\n")


def test_mlx_cache_dir_and_long_module_names(monkeypatch, tmp_path):
    for k in ("MLX_PTX_CACHE_DIR", "TMPDIR", "TMP", "TEMP", "TEMPDIR"):
        monkeypatch.delenv(k, raising=False)
    assert cuda_cache.mlx_cache_dir() == Path("/tmp/mlx") / mx.__version__ / "ptx"
    monkeypatch.setenv("TMP", str(tmp_path))
    assert cuda_cache.mlx_cache_dir() == tmp_path / "mlx" / mx.__version__ / "ptx"
    monkeypatch.setenv("MLX_PTX_CACHE_DIR", str(tmp_path / "x"))
    assert cuda_cache.mlx_cache_dir() == tmp_path / "x"
    assert cuda_cache.mlx_module_path(tmp_path, "m") == tmp_path / "m.ptx"
    long = "a" * 245 + "b" * 245 + "c"
    assert cuda_cache.mlx_module_path(tmp_path, long) == tmp_path / ("a" * 245) / ("b" * 245) / "c.ptx"


def test_publish_writes_the_names_before_the_binary_and_only_once(tmp_path):
    order = []

    def write(path, data):
        order.append(path.suffix)
        write_atomic(path, data)

    path = tmp_path / "mlx" / "mod.ptx"
    compiled = Compiled(b"cubin", {"mlx::core::cu::k": "_Z1k"})
    assert cuda_cache.publish(path, compiled, write) and order == [".txt", ".ptx"]
    assert path.read_bytes() == b"cubin" and path.with_suffix(".txt").read_text() == "mlx::core::cu::k\t_Z1k\n"
    assert not cuda_cache.publish(path, compiled, write) and order == [".txt", ".ptx"]
    path.write_bytes(b"stale")
    assert cuda_cache.publish(path, compiled, write) and path.read_bytes() == b"cubin"


def test_prepare_puts_the_kernel_where_mlx_looks_under_mlx_module_name(tmp_path, monkeypatch):
    monkeypatch.setenv("MLX_PTX_CACHE_DIR", str(tmp_path / "mlx"))
    compiler = FakeCompiler()
    args = ("wf_k", ["a"], ["o"], "o[0] = a[0];", "// h\n", tmp_path / "wf", write_atomic, compiler)
    template, inputs = [("N", 2)], [("a", mx.float32, 1)]
    path = CachedCudaKernel(*args).prepare(inputs, [mx.float32], template)
    source = cuda_cache.build_source("custom_kernel_wf_k_2", "// h\n", "o[0] = a[0];", inputs, [("o", mx.float32)], template)
    assert path == tmp_path / "mlx" / f"custom_kernel_wf_k_2_{cuda_cache.std_hash(source.encode()):x}.ptx"
    assert compiler.calls == [source] and path.read_bytes() == b"BIN:" + source.encode()
    assert path.with_suffix(".txt").read_text() == "mlx::core::cu::custom_kernel_wf_k_2\t_Z35custom_kernel_wf_k_2\n"
    assert COUNTERS.published == COUNTERS.compiles == 1
    # the next process: read from the cache, nothing compiled, nothing to write
    assert CachedCudaKernel(*args).prepare(inputs, [mx.float32], template) == path
    assert len(compiler.calls) == 1 and COUNTERS.hits == 1 and COUNTERS.published == 1


def test_a_kernel_that_cannot_be_compiled_here_is_left_to_mlx_with_a_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("MLX_PTX_CACHE_DIR", str(tmp_path / "mlx"))

    def broken(*_):
        raise RuntimeError("nvrtcCompileProgram failed: NVRTC_ERROR_COMPILATION\nerror: identifier undefined")

    broken.identity, broken.options = FakeCompiler.identity, FakeCompiler.options
    kernel = CachedCudaKernel("wf_k", ["a"], ["o"], "o[0] = a[0];", "", tmp_path / "wf", write_atomic, broken)
    with pytest.warns(RuntimeWarning, match="wf_k: RuntimeError: nvrtcCompileProgram failed.*MLX compiles it"):
        assert kernel.prepare([("a", mx.float32, 1)], [mx.float32], []) is None
    assert COUNTERS.fallbacks == 1 and "NVRTC_ERROR_COMPILATION" in kernel.fallback
    assert not (tmp_path / "mlx").exists()


def _toolchain():
    """NVRTC and the headers MLX compiles with: the installed CUDA wheels, or a site-packages
    folder holding mlx/include and nvidia/cu13 (WHISPERFAST_TEST_CUDA_SITE, a test knob)."""
    from whisperfast.kernels import nvrtc

    site = os.environ.get("WHISPERFAST_TEST_CUDA_SITE")
    toolchain = nvrtc.Toolchain.beside(Path(site) / "mlx") if site else nvrtc.Toolchain.installed()
    try:
        return toolchain, nvrtc.load(toolchain), nvrtc.options(toolchain, 9, 0)
    except nvrtc.NvrtcError as e:
        pytest.skip(f"no NVRTC with MLX's headers here ({e})")


_F16, _F32, _I32 = mx.float16, mx.float32, mx.int32
_TINY = [("TS", 50363), ("EOT", 50256), ("NO_TS", 50362), ("RULES", True)]
# The kernels of decode_step.cu as cuda/step.py launches them: (name, inputs, outputs, call, template)
_KERNELS = {
    "decode_step": (
        [("tokens", _I32, 2), ("meta", _I32, 1), ("emb", _F16, 2), ("pos", _F16, 2), ("lnf", _F16, 1), ("lw", _F16, 2),
         ("kc", _F16, 5), ("vc", _F16, 5), ("path", _I32, 3), ("cross", _F16, 3), ("sum_in", _F32, 1),
         ("suppress", _F32, 1), ("scratch", _F32, 1)],
        [("tokens_out", _I32), ("sum_out", _F32), ("completed", mx.bool_), ("logits", _F32)],
        _CALL,
        [("T", _F16), ("B", 1), ("D", 384), ("H", 6), ("NL", 4), ("CTX", 448), ("S", 1500), ("CC", 8), ("NV", 51864)]
        + _TINY + [("PICK", True), ("PA", 1), ("SHARE", False)]),
    # a quantized decoder's (step.py's _QUANT_INPUTS, _QUANT_CALL): the layers' bits, then the
    # vocabulary's (--quantize 8; --quantize 4's, models.VOCABULARY_BITS; a uniform 4-bit one)
    **{f"decode_step_q{bits}v{vocabulary}": (
        [("tokens", _I32, 2), ("meta", _I32, 1), ("pos", _F16, 2), ("lnf", _F16, 1), ("lw", _F16, 2),
         ("kc", _F16, 5), ("vc", _F16, 5), ("path", _I32, 3), ("cross", _F16, 3), ("sum_in", _F32, 1),
         ("suppress", _F32, 1), ("scratch", _F32, 1), ("embq", mx.uint32, 2), ("embs", _F16, 1), ("lq", mx.uint32, 2),
         ("ls", _F16, 2)],
        [("tokens_out", _I32), ("sum_out", _F32), ("completed", mx.bool_), ("logits", _F32)],
        _QUANT_CALL,
        [("T", _F16), ("B", 1), ("D", 384), ("H", 6), ("NL", 4), ("CTX", 448), ("S", 1500), ("CC", 8), ("NV", 51864)]
        + _TINY + [("PICK", True), ("PA", 1), ("SHARE", False), ("QB", bits), ("GS", 64), ("EB", vocabulary)])
        for bits, vocabulary in
        ((8, 8), (4, 8), (4, 4))},
    "greedy": (
        [("logits", _F32, 3), ("tokens", _I32, 2), ("meta", _I32, 1), ("sum_in", _F32, 1), ("suppress", _F32, 1)],
        [("tokens_out", _I32), ("sum_out", _F32), ("done", mx.bool_)],
        _GREEDY_CALL,
        [("NV", 51864)] + _TINY),
    "beam_update": (
        list(zip(_BEAM_INPUTS, (_F32, _I32, _I32, _F32, _F32, _F32, _I32, _I32, _F32, _I32), (3, 2, 1, 1, 1, 1, 1, 1, 1, 3))),
        list(zip(_BEAM_OUTPUTS, (_I32, _F32, _I32, mx.bool_))),
        _BEAM_CALL,
        [("B", 5), ("K", 5), ("NV", 51864)] + _TINY),
}


@pytest.mark.slow  # NVRTC takes 10-20 s on 2 CPU cores for the decode step
@pytest.mark.parametrize("name", sorted(_KERNELS))
def test_the_kernels_mlx_sources_compile_for_sm_90a(name):
    """The source MLX builds for each of decode_step.cu's kernels (tiny.en, fp16), with the
    utils.cuh stand-in, compiles to a cubin holding the kernel MLX will look up."""
    _, nv, options = _toolchain()
    header = kernel_source()
    inputs, outputs, call, template = _KERNELS[name]
    func = cuda_cache.kernel_name(f"wf_{name}", template)
    source = cuda_cache.build_source(func, header, call, inputs, outputs, template)
    binary, names = nv.compile(source, options, cuda_cache.HEADERS, [f"mlx::core::cu::{func}"])
    assert binary[:4] == b"\x7fELF" and "--gpu-architecture=sm_90a" in options
    assert names[f"mlx::core::cu::{func}"].encode() in binary  # the symbol MLX's .txt names


_DIMS = {"tiny": [("D", 384), ("H", 6), ("NL", 4)], "base": [("D", 512), ("H", 8), ("NL", 6)]}


@pytest.mark.slow  # 42 NVRTC compiles with ptxas's report, ~2-20 s each
@pytest.mark.parametrize("packing", ["float", "q8v8", "q4v8"])
@pytest.mark.parametrize("model", sorted(_DIMS))
def test_the_decode_step_fits_one_block_of_512_threads_per_sm(model, packing):
    """A launch of the step is 512 threads a block, so a kernel of more than 128 registers a
    thread fails to launch ("too many resources requested"), and local memory would slow
    every step: for the row counts the decode launches (greedy 1 to 16 with the picks; beams
    and samples, 5 and 8 rows of one audio, without, their cross-attention items a row or an
    audio's rows each: SHARE; batched mode's 32 rows of one audio each, without), float and
    packed, ptxas reports at most 128 registers, which decode_step.cu's launch bound asks of it
    (without it the half-block cross-attention items took 138-144), and at most a few values a
    thread in local memory where it kept the rest there (64 bytes; it had kept none before the
    bound, and a kernel that needs many more than 128 would spill far more). (A packed base decoder at 3 rows took 136 before logit_rows.)"""
    _, nv, options = _toolchain()
    header = kernel_source()
    name = "decode_step" if packing == "float" else f"decode_step_{packing}"
    inputs, outputs, call, template = _KERNELS[name]
    for rows, pick, per_audio, share in ((1, True, 1, False), (3, True, 1, False), (16, True, 1, False),
                                         (5, False, 5, False), (5, False, 5, True), (8, False, 8, True),
                                         (32, False, 1, False)):
        shape = dict(template, B=rows, PICK=pick, PA=per_audio, SHARE=share, **dict(_DIMS[model]))
        func = cuda_cache.kernel_name(f"wf_{name}", list(shape.items()))
        source = cuda_cache.build_source(func, header, call, inputs, outputs, list(shape.items()))
        # code of its own each time (a global, so it reaches the PTX): NVRTC keeps what it
        # compiled, and code it has seen before (this test run again on a machine, a comment
        # added or not) comes back without ptxas's report
        source += f"\n__device__ int wf_probe_{uuid.uuid4().hex} = 1;\n"
        nv.compile(source, (*options, "--ptxas-options=-v"), cuda_cache.HEADERS, [f"mlx::core::cu::{func}"])
        report = nv.last_log
        used, spills = re.search(r"Used (\d+) registers", report), re.search(r"(\d+) bytes spill stores", report)
        assert used and spills, (rows, pick, share, report[-3000:])
        registers, spilled = int(used.group(1)), int(spills.group(1))
        assert registers <= 128 and spilled <= 64, (rows, pick, share, report)


# utils.cuh's includes (mlx 0.32.4's device header) and cooperative groups, as MLX compiles them
_REAL_INCLUDES = """#pragma once
#include "mlx/backend/cuda/device/config.h"
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda/std/array>
#include <cuda/std/limits>
#include <cuda/std/tuple>
namespace mlx::core::cu {
using Shape = cuda::std::array<int32_t, MAX_NDIM>;
using Strides = cuda::std::array<int64_t, MAX_NDIM>;
}  // namespace mlx::core::cu
"""


def _kernel_params(ptx: bytes, lowered: str) -> list:
    """The kernel's parameters in a PTX module: (.param lines), its name left out."""
    text = ptx.decode().rstrip("\0")
    entry = text[text.index(".entry " + lowered):]
    return [line.strip().replace(lowered, "KERNEL") for line in entry[: entry.index(")")].splitlines()[1:]]


@pytest.mark.slow  # four NVRTC compiles of the decode step
@pytest.mark.parametrize("dtype", [_F16, _F32])
def test_the_stand_in_headers_declare_the_kernel_as_mlxs_includes_do(dtype):
    """HEADERS' stand-ins leave out the includes that cost NVRTC ~1 s each (issue 13's first
    run). What crosses a launch is the parameters' layout: the decode step's (Shape and
    Strides by value among them) is the one utils.cuh's includes give. (Its code is theirs
    too: the PTX bodies matched but for register numbers where NVVM took the same of the two
    forms it picks between from process to process for this kernel, whatever the headers,
    benchmarks/h200-session10/; every GPU test runs the stand-ins' kernels.)"""
    _, nv, options = _toolchain()
    options = [o.replace("=sm_", "=compute_") for o in options]
    header = kernel_source()
    inputs, outputs, call, template = _KERNELS["decode_step"]
    inputs = [(n, dtype if d == _F16 else d, k) for n, d, k in inputs]
    template = [(n, dtype if v is _F16 else v) for n, v in template]
    func = f"mlx::core::cu::{cuda_cache.kernel_name('wf_decode_step', template)}"
    source = cuda_cache.build_source(func.split("::")[-1], header, call, inputs, outputs, template)
    lean = nv.compile(source, options, cuda_cache.HEADERS, [func])
    real = nv.compile(source, options, {"mlx/backend/cuda/device/utils.cuh": _REAL_INCLUDES}, [func])
    assert "cooperative_groups.h" in cuda_cache.HEADERS and "cuda/std" not in cuda_cache.UTILS_STAND_IN
    ours, theirs = _kernel_params(lean[0], lean[1][func]), _kernel_params(real[0], real[1][func])
    assert len(ours) == len(inputs) + len(outputs) + 2 and ours == theirs  # + tokens' shape and scratch's
    assert ".param .align 4 .b8 KERNEL_param_1[40]," in ours  # tokens_shape: 10 int32s


# ---- on MLX's CUDA backend ----


@needs_cuda
def test_build_source_is_the_source_mlx_generates(capfd):
    name = f"wf_src_{uuid.uuid4().hex[:8]}"
    source = "if (threadIdx.x == 0) { o[0] = static_cast<float>(a[a_shape[0] - 1]) + N + F; p[0] = a_ndim; }"
    template = [("T", mx.float16), ("N", 3), ("F", True)]
    a = mx.arange(4).astype(mx.float16)
    kernel = mx.fast.cuda_kernel(name=name, input_names=["a"], output_names=["o", "p"], source=source, header="// h\n")
    out = kernel(inputs=[a], template=template, grid=(32, 1, 1), threadgroup=(32, 1, 1), output_shapes=[(1,), (1,)],
                 output_dtypes=[mx.float32, mx.int32], verbose=True)
    mx.eval(out)
    printed = capfd.readouterr().out
    func = cuda_cache.kernel_name(name, template)
    ours = cuda_cache.build_source(func, "// h\n", source, [("a", mx.float16, 1)], [("o", mx.float32), ("p", mx.int32)],
                                   template)
    assert f"```\n{ours}\n```" in printed, printed
    assert out[0].item() == 3 + 3 + 1 and out[1].item() == 1


@needs_cuda
def test_mlx_runs_the_binary_the_cache_put_where_it_looks(tmp_path):
    """A binary compiled from other code (42, where the source says 7), published under the
    kernel's module name: MLX runs it, so it compiled nothing."""
    name = f"wf_sentinel_{uuid.uuid4().hex[:8]}"
    compiler = cuda_cache._compiler()
    assert not isinstance(compiler, str), compiler
    inputs, outputs, template = [("a", mx.float32, 1)], [("o", mx.float32)], [("N", 1)]
    func = cuda_cache.kernel_name(name, template)
    real = cuda_cache.build_source(func, "", "o[0] = 7.0f + a[0];", inputs, outputs, template)
    other = cuda_cache.build_source(func, "", "o[0] = 42.0f + a[0];", inputs, outputs, template)
    binary, names = compiler(other, compiler.options, cuda_cache.HEADERS, [f"mlx::core::cu::{func}"])
    path = cuda_cache.mlx_module_path(cuda_cache.mlx_cache_dir(), f"{func}_{cuda_cache.std_hash(real.encode()):x}")
    try:
        cuda_cache.publish(path, Compiled(binary, names), write_atomic)
        kernel = mx.fast.cuda_kernel(name=name, input_names=["a"], output_names=["o"], source="o[0] = 7.0f + a[0];")
        out = kernel(inputs=[mx.zeros((1,))], template=template, grid=(1, 1, 1), threadgroup=(1, 1, 1),
                     output_shapes=[(1,)], output_dtypes=[mx.float32])[0]
        assert out.item() == 42.0
    finally:
        path.unlink(missing_ok=True)
        path.with_suffix(".txt").unlink(missing_ok=True)


_CHILD = """
import json, sys
import whisperfast
from whisperfast import pipeline
from whisperfast.kernels.cuda_cache import COUNTERS
fused = pipeline.load("tiny.en", fast=True)
t = pipeline.transcribe(fused, sys.argv[1])
counters = COUNTERS.snapshot()
step = fused.whisper.decoder.__dict__.get("_whisperfast_cuda")
stock = pipeline.transcribe(pipeline.load("tiny.en"), sys.argv[1])
maps = open("/proc/self/maps").read()
print(json.dumps({"tokens": t.tokens, "stock": stock.tokens, "counters": counters,
                  "launches": getattr(step, "launches", 0), "nvrtc_builtins_mapped": "nvrtc-builtins" in maps}))
"""


@needs_cuda
def test_a_second_process_compiles_nothing_and_decodes_as_stock(tmp_path):
    """Two fresh processes transcribe JFK with --fast's model, on empty caches: the first
    compiles the decode step and publishes it, the second reads it and compiles nothing (and
    MLX then compiles nothing either: the test above). Both give stock mlx-whisper's tokens."""
    env = {**os.environ, "WHISPERFAST_CACHE": str(tmp_path / "wf"), "MLX_PTX_CACHE_DIR": str(tmp_path / "mlx")}
    runs = []
    for _ in range(2):
        r = subprocess.run([sys.executable, "-c", _CHILD, str(SAMPLES / "jfk.wav")], env=env, capture_output=True,
                           text=True, cwd=ROOT, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    first, second = runs
    print(json.dumps([{k: v for k, v in r.items() if k not in ("tokens", "stock")} for r in runs]))
    assert first["launches"] > 0 and second["launches"] > 0  # the kernel decoded
    assert first["counters"]["compiles"] >= 1 and first["counters"]["published"] >= 1
    assert second["counters"]["compiles"] == 0 and second["counters"]["misses"] == 0
    assert second["counters"]["hits"] >= 1 and second["counters"]["published"] == 0
    assert first["counters"]["fallbacks"] == second["counters"]["fallbacks"] == 0
    assert first["tokens"] == first["stock"] == second["tokens"] == second["stock"]
    assert list((tmp_path / "wf" / "kernels").glob("*.bin")) and list((tmp_path / "mlx").glob("custom_kernel_wf_*.ptx"))
