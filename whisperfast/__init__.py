"""whisperfast: Whisper on MLX, with fused-kernel rewrites proven transcript-equal."""

from . import _blas

_blas.preload()  # before anything imports mlx.core
