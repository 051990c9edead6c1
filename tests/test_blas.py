"""The BLAS under MLX's CPU matmuls (whisperfast/_blas.py): on Linux, a fresh process that imports
whisperfast gets scipy's bundled OpenBLAS, with nothing installed system-wide."""

import importlib.util
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from whisperfast import _blas

linux = pytest.mark.skipif(sys.platform != "linux", reason="Linux only (macOS: Accelerate)")

# A fresh interpreter: whisperfast first (the preload), then one matmul per bridged gemm
# (float32 -> cblas_sgemm, float64 -> cblas_dgemm, complex64 -> cblas_cgemm) against numpy.
PROBE = """
import json, whisperfast
from whisperfast import _blas
import mlx.core as mx, numpy as np
rng = np.random.default_rng(0)
errs = {}
for dt in (np.float32, np.float64, np.complex64):
    a, b = (rng.standard_normal(s).astype(dt) for s in ((40, 96), (96, 72)))
    if dt is np.complex64:
        a, b = a + 1j * a[::-1], b - 2j * b[::-1]
    c = np.array(mx.matmul(mx.array(a), mx.array(b), stream=mx.cpu))
    errs[np.dtype(dt).name] = float(np.abs(c - a @ b).max() / np.abs(a @ b).max())
print(json.dumps({**_blas.describe(), "errs": errs}))
"""


def probe(**env: str) -> dict:
    e = {k: v for k, v in os.environ.items() if k != "WHISPERFAST_BLAS"} | env
    out = subprocess.run([sys.executable, "-c", PROBE], env=e, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@linux
def test_fresh_process_gets_scipys_openblas():
    d = probe()
    assert d["optimized"], d
    assert Path(d["blas"]).parent.name == "scipy.libs" and Path(d["blas"]).name.startswith("libscipy_openblas-"), d
    assert d["note"].startswith("scipy's bundled OpenBLAS"), d
    assert all(err < 1e-4 for err in d["errs"].values()), d


THREADS_PROBE = """
import ctypes, glob, os, whisperfast, numpy as np
from whisperfast.vad import SileroVAD
SileroVAD()  # the VAD's host products set it up
np.ones((64, 64)) @ np.ones((64, 64))
lib = ctypes.CDLL(glob.glob(os.path.join(os.path.dirname(np.__file__) + ".libs", "libscipy_openblas64_*.so"))[0])
print(lib.scipy_openblas_get_num_threads64_(), len(os.sched_getaffinity(0)))
"""


@linux
@pytest.mark.parametrize("env, want", [({}, "cpus - 1"), ({"OPENBLAS_NUM_THREADS": "1"}, "1")])
def test_numpys_openblas_leaves_a_cpu_free_too(env, want):
    """numpy's own OpenBLAS (the VAD's products) runs on CPUs - 1 threads once the VAD is made,
    as MLX's does, unless a thread variable says otherwise."""
    import glob

    import numpy as np

    if not glob.glob(os.path.join(os.path.dirname(np.__file__) + ".libs", "libscipy_openblas64_*.so")):
        pytest.skip("this numpy has no bundled OpenBLAS")
    e = {k: v for k, v in os.environ.items() if k not in _blas.THREAD_VARS} | env
    out = subprocess.run([sys.executable, "-c", THREADS_PROBE], env=e, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    threads, cpus = map(int, out.stdout.split())
    assert threads == (max(1, cpus - 1) if want == "cpus - 1" else 1), (threads, cpus)


@linux
def test_reference_env_keeps_the_bundled_blas():
    d = probe(WHISPERFAST_BLAS="reference")
    assert d["optimized"] is False and d["blas"] == "reference BLAS bundled with mlx-cpu", d
    assert d["note"] == "WHISPERFAST_BLAS=reference", d
    assert all(err < 1e-4 for err in d["errs"].values()), d


@linux
def test_info_warns_of_a_slow_blas_without_an_error_line():
    """It printed an `Error:` line and exited 0; a finding is a warning."""
    import os
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "whisperfast", "info"], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, WHISPERFAST_BLAS="reference"))
    assert r.returncode == 0 and "Error" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("warning: MLX's CPU matmuls use a slow reference BLAS"), r.stderr


def _undefined_dynamic_symbols(path: str) -> set[str]:
    """Names that a 64-bit little-endian ELF file imports (undefined entries of .dynsym)."""
    data = Path(path).read_bytes()
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names = set()
    for _, sh_type, _, _, off, size, link, _, _, entsize in sections:
        if sh_type != 11:  # SHT_DYNSYM
            continue
        stroff = sections[link][4]
        for at in range(off + entsize, off + size, entsize):
            st_name, _, _, st_shndx, _, _ = struct.unpack_from("<IBBHQQ", data, at)
            if st_shndx == 0:
                names.add(data[stroff + st_name:data.index(b"\0", stroff + st_name)].decode())
    return names


@linux
def test_bridge_covers_what_libmlx_imports():
    spec = importlib.util.find_spec("mlx")
    libmlx = Path(list(spec.submodule_search_locations)[0]) / "lib" / "libmlx.so"
    imported = {n for n in _undefined_dynamic_symbols(str(libmlx)) if n.startswith("cblas_")}
    assert "cblas_sgemm" in imported
    assert imported <= set(_blas.BRIDGED), imported - set(_blas.BRIDGED)


def test_missing_scipy_openblas_is_reported(monkeypatch):
    monkeypatch.setattr(_blas, "_scipy_openblas", lambda: None)
    with pytest.raises(OSError, match="not found"):
        _blas._load_scipy_openblas()


@linux
def test_transcribe_on_the_cpu_warns_of_a_blas_that_did_not_load():
    """A WHISPERFAST_BLAS naming a library that does not load left MLX on its reference BLAS
    (JFK 6 s, not 0.6 s) without a word: the transcript comes, and one warning line says why."""
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-m", "whisperfast", "transcribe", str(root / "samples" / "jfk.wav"), "--fast",
                        "-q", "--device", "cpu"], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, WHISPERFAST_BLAS="/nonexistent/libnot-a-blas.so"))
    assert r.returncode == 0, r.stderr
    assert "ask not what your country can do for you" in r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: MLX's CPU matmuls use a slow reference BLAS"), r.stderr
    assert "/nonexistent/libnot-a-blas.so: not loadable" in lines[0], r.stderr
