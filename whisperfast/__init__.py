"""whisperfast: Whisper on MLX, with fused-kernel rewrites proven transcript-equal."""

from . import _blas, _malloc

_blas.preload()  # before anything imports mlx.core: every whisperfast module is imported after this line
_malloc.keep_freed_blocks()

from . import _mlx_whisper  # noqa: E402

_mlx_whisper.defer_package_init()  # before anything imports mlx_whisper: its __init__ imports numba, scipy, the hub

from .errors import AudioError, ModelError, WhisperfastError  # noqa: E402

__all__ = ["load", "rewritten", "transcribe", "compare", "TranscribeOptions", "Transcript", "LoadedModel",
           "Comparison", "WhisperfastError", "AudioError", "ModelError"]

# The library API lives in `pipeline`, which imports MLX, numpy, tiktoken and mlx-whisper's
# model. It is imported on first use, so `import whisperfast.cli` (`whisperfast --help`, `info`)
# pays for none of them; `from whisperfast import load` works as before.
_PIPELINE = frozenset(__all__) - {"WhisperfastError", "AudioError", "ModelError"}


def __getattr__(name: str):
    if name in _PIPELINE:
        from . import pipeline

        value = getattr(pipeline, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _PIPELINE)
