"""whisperfast: Whisper on MLX, with fused-kernel rewrites proven transcript-equal."""

from . import _blas

_blas.preload()  # before anything imports mlx.core

from .errors import AudioError, ModelError, WhisperfastError  # noqa: E402
from .pipeline import (Comparison, LoadedModel, Transcript, TranscribeOptions, compare, load,  # noqa: E402
                       rewritten, transcribe)

__all__ = ["load", "rewritten", "transcribe", "compare", "TranscribeOptions", "Transcript", "LoadedModel",
           "Comparison", "WhisperfastError", "AudioError", "ModelError"]
