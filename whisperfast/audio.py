"""Audio in: any file soundfile reads, as 16 kHz mono float32."""

from __future__ import annotations

from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf

from .errors import AudioError

SAMPLE_RATE = 16_000


def to_mono_16k(data: np.ndarray, sample_rate: int) -> np.ndarray:
    """(n_samples,) or (n_samples, n_channels) at any rate -> (n,) float32 at 16 kHz."""
    data = np.asarray(data, dtype=np.float32)
    mono = data.mean(axis=1) if data.ndim == 2 else data
    if sample_rate != SAMPLE_RATE:
        from scipy.signal import resample_poly  # ~0.5-2 s to import; 16 kHz input needs none

        g = gcd(SAMPLE_RATE, int(sample_rate))
        mono = resample_poly(mono, SAMPLE_RATE // g, int(sample_rate) // g).astype(np.float32)
    return np.ascontiguousarray(mono)


def check_samples(audio: np.ndarray, name: str = "audio") -> np.ndarray:
    if audio.size == 0:
        raise AudioError(f"{name}: contains no audio samples")
    if not np.isfinite(audio).all():
        raise AudioError(f"{name}: contains NaN or infinite samples")
    return audio


def load_audio(path: str | Path) -> np.ndarray:
    """Read, downmix, resample and validate one file."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: file is empty")
    try:
        data, sample_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise AudioError(f"{path}: unsupported or corrupt audio ({str(e).splitlines()[0]})") from None
    return to_mono_16k(check_samples(data, str(path)), sample_rate)


def first_window_mel(path: str | Path, dtype=None):
    """The first 30 s of a file as the encoder takes it: an mx.array (1, N_FRAMES, 80),
    zero-padded like mlx-whisper's transcribe pads its first window."""
    import mlx.core as mx
    from mlx_whisper.audio import N_FRAMES, N_SAMPLES, log_mel_spectrogram, pad_or_trim

    mel = log_mel_spectrogram(load_audio(path), padding=N_SAMPLES)
    return pad_or_trim(mel[:N_FRAMES], N_FRAMES, axis=-2).astype(dtype or mx.float32)[None]
