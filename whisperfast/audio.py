"""Audio in: any file soundfile reads, as 16 kHz mono float32."""

from __future__ import annotations

import os
import struct
import sys
import tempfile
import threading
import warnings
from contextlib import contextmanager
from math import gcd
from pathlib import Path
from typing import Iterator

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


def waveform(audio: np.ndarray, name: str = "audio") -> np.ndarray:
    """An array handed to the library as audio -> (n,) float32: mono float samples at 16 kHz
    (in [-1, 1], as a file's are once read; not checked). Other shapes are refused, not flattened (a (1, n)
    or (n, 2) array made MLX's STFT abort the process), and so are integer samples (an int16
    array cast as it is reads 32,768 times too loud: hallucinated text)."""
    if audio.ndim != 1:
        raise AudioError(f"{name}: expected mono samples of shape (n,), got shape {audio.shape} "
                         "(average the channels, or pass a file)")
    if audio.dtype.kind != "f":
        raise AudioError(f"{name}: expected float samples in [-1, 1], got {audio.dtype} "
                         "(scale integer samples by their type's largest value)")
    return check_samples(np.ascontiguousarray(audio, dtype=np.float32), name)


def _checked_path(path: str | Path) -> Path:
    path = Path(path)
    try:
        return _checked(path)
    except OSError as e:  # a folder it may not look into, a name over the system's limit
        raise AudioError(f"{path}: cannot be read ({e.strerror or e})") from None


def _checked(path: Path) -> Path:
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    if not path.is_file():  # a pipe or a device: libsndfile seeks, and their size reads 0
        raise AudioError(f"{path}: not a regular file (pipes and devices cannot be read; save the audio to a file)")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: file is empty")
    return path


class TruncatedAudio(UserWarning):
    """A file that holds less audio than its header says: what it holds is transcribed."""


def _warn_if_truncated(path: Path, f: sf.SoundFile) -> None:
    """A WAV whose data chunk is shorter than its header's size (a copy cut off, a recording
    that stopped): libsndfile reads what is there and says nothing, so the transcript would
    silently miss the rest."""
    if f.format != "WAV" or f.frames == 0:  # no frames: refused later as holding no audio
        return
    try:
        with open(path, "rb") as raw:
            head = raw.read(1 << 16)
        at = 12
        while at + 8 <= len(head):
            name, size = head[at : at + 4], struct.unpack("<I", head[at + 4 : at + 8])[0]
            if name == b"data":
                held = path.stat().st_size - (at + 8)
                if size != 0xFFFFFFFF and size > held + 4 * f.channels:  # 0xFFFFFFFF: a stream's "unknown"
                    said = f.frames * size / held / f.samplerate  # the frames read are the bytes held
                    warnings.warn(f"{path}: the file ends early: its header says {said:.2f} s, it holds "
                                  f"{f.frames / f.samplerate:.2f} s (transcribing what it holds)", TruncatedAudio)
                return
            at += 8 + size + (size & 1)
    except (OSError, struct.error):  # the check never stops a file libsndfile read
        return


class DamagedAudio(UserWarning):
    """A file whose decoder met damaged data and concealed it: what it decoded is transcribed."""


class _DecoderLog:
    """libmpg123 (libsndfile's MP3 decoder) writes what it meets in damaged data to the
    process's stderr itself, a line per frame ("[src/libmpg123/layer3.c:...] error:
    dequantization failed!"), where a transcription's stderr should hold one line at most.
    So while an MP3 (by its name or its first bytes) is opened and read, file descriptor 2
    goes to a temporary file, one capture at a time in the process (fd 2 is the process's).
    The decoder's lines are counted; anything else written meanwhile (another thread's) goes
    back to stderr byte for byte. `report` makes them one DamagedAudio warning for the file,
    which also says where the decoder gave up before the length the file's header gives (it
    may stop at damage and decode nothing after it). Other formats' decoders print nothing,
    and are read as they are.

    One message is no sign of damage: "part2_3_length (N) too large for available bit count
    (M)". Read in blocks (AudioReader), an intact MP3 gives it at some reads (892 times over
    two files and six block sizes, tests/test_audio.py), its samples those of the whole read;
    so it is dropped. Damaged data gives others ("dequantization failed!", "Illegal
    Audio-MPEG-Header", a cut file's "Xing stream size off")."""

    def __init__(self, path: Path):
        self.path, self.active = path, _is_mpeg(path)
        self.count, self.first = 0, ""

    @contextmanager
    def capture(self):
        if not self.active:
            yield
            return
        with _CAPTURE:
            log = saved = None
            moved = False
            try:
                try:
                    sys.stderr.flush()
                    log = tempfile.TemporaryFile()
                    saved = os.dup(2)
                    os.dup2(log.fileno(), 2)
                    moved = True
                except (OSError, ValueError, AttributeError):  # no temporary file, no stderr: lines go where they go
                    pass
                yield
            finally:
                if moved:
                    os.dup2(saved, 2)
                if saved is not None:
                    os.close(saved)
                if log is not None:
                    if moved:
                        self._sort(log)
                    log.close()

    def _sort(self, log) -> None:
        log.seek(0)
        other = []
        for line in log.read().split(b"\n"):  # \n only: another thread's \r progress stays as it was
            text = line.decode(errors="replace")
            if not _is_decoders(text):
                other.append(line)
            elif _BENIGN not in text:
                self.count += 1
                self.first = self.first or text.split("] ", 1)[-1].strip()
        if any(other):
            os.write(2, b"\n".join(other))

    def report(self, frames: int | None = None, expected: int = 0, rate: int = SAMPLE_RATE) -> None:
        """One warning for what was captured, and where `frames` (all the file gave; None if it
        was not read to its end) fall short of the `expected` frames of its header."""
        short = (self.active and frames is not None and 0 < expected < 1 << 62
                 and expected - frames > max(rate, expected // 100))
        said = []
        if self.count:
            said.append(f"the MP3 decoder met damaged data {self.count} time(s) (first: {self.first})")
        if short:
            said.append(f"it decoded {frames / rate:.2f} s of the {expected / rate:.2f} s its header gives")
        if said:
            warnings.warn(f"{self.path}: {'; '.join(said)}; those parts may be missing or wrong in the transcript",
                          DamagedAudio, stacklevel=3)
        self.count, self.first = 0, ""


_CAPTURE = threading.Lock()  # fd 2 is the process's: one capture at a time
_BENIGN = "too large for available bit count"
# libmpg123's own lines: its "[src/libmpg123/...]" messages, and those it prints bare
_DECODERS = ("[src/libmpg123", "Note: Illegal Audio-MPEG-Header", "Note: Trying to resync", "Note: Skipped",
             "Warning: Xing stream size", "Warning: Encountered more data", "Warning: Big change",
             "Warning: Real sample count", "Giving up searching valid MPEG header", "Note: Hit end of")


def _is_decoders(line: str) -> bool:
    return line.startswith(_DECODERS) or "libmpg123" in line


def _is_mpeg(path: Path) -> bool:
    """An MP3 or MP2 by its name, or by its first bytes (an ID3 tag, or a frame's sync word)."""
    if path.suffix.lower() in (".mp3", ".mp2", ".mpga"):
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(3)
    except OSError:
        return False
    return head.startswith(b"ID3") or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)


def _unreadable(path: Path, e: Exception) -> AudioError:
    detail = str(e).splitlines()[0] if str(e) else type(e).__name__
    if "not a regular file" in detail:  # libsndfile's word for any file it could not open: the path was checked
        return AudioError(f"{path}: unsupported or corrupt audio (libsndfile could not open it)")
    return AudioError(f"{path}: unsupported or corrupt audio ({detail})")


_SF_ERRORS = (sf.LibsndfileError, RuntimeError, TypeError, ValueError)
# below this a file's rate is no recording's (a damaged header): its resampling to 16 kHz
# grew without bound (a 352 KB file claiming 1 Hz: 8 GB and rising)
MIN_RATE = 1000


def _open(path: Path):
    """soundfile's SoundFile for `path`: by its name's bytes where the name is not UTF-8 (a file
    named so was refused as corrupt: soundfile encodes str names as UTF-8)."""
    name = str(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        name = os.fsencode(path)
    f = sf.SoundFile(name)
    if f.samplerate < MIN_RATE:
        f.close()
        raise AudioError(f"{path}: its header gives a sample rate of {f.samplerate} Hz, under {MIN_RATE}: "
                         "not a recording's (a damaged header?)")
    return f


def _integers(f) -> bool:
    """Whether `_read` takes the open file `f`'s samples as 16-bit integers (none is a NaN)."""
    return f.subtype == "PCM_16"


INT16_SCALE = 1 / 32768  # a 16-bit sample's float value is its integer times this (libsndfile's)


def scaled(samples: np.ndarray) -> np.ndarray:
    """int16 samples -> their float32 values (exact: a power of two)."""
    data = samples.astype(np.float32)
    data *= np.float32(INT16_SCALE)
    return data


def _read(f, frames: int = -1, raw: bool = False) -> np.ndarray:
    """Up to `frames` (all: -1) of the open file `f`'s samples, (n, channels) float32 as
    libsndfile's float read gives them. 16-bit PCM (most WAV files, and FLAC's) is read as its
    integers and scaled here by 2^-15: libsndfile's own normalisation, exact in float32, so the
    same values (tests/test_audio.py), in a third of the time (benchmarks/h100-session39/).
    `raw`: a 16-bit file's integers as read, unscaled."""
    if not _integers(f):
        return f.read(frames, dtype="float32", always_2d=True)
    data = f.read(frames, dtype="int16", always_2d=True)
    return data if raw else scaled(data)


def load_audio(path: str | Path) -> np.ndarray:
    """Read, downmix, resample and validate one file."""
    path = _checked_path(path)
    log = _DecoderLog(path)
    try:
        with log.capture(), _open(path) as f:
            _warn_if_truncated(path, f)
            data, sample_rate, frames = _read(f), f.samplerate, f.frames
    except _SF_ERRORS as e:
        raise _unreadable(path, e) from None
    log.report(len(data), frames, sample_rate)
    return to_mono_16k(check_samples(data, str(path)), sample_rate)


class Resampler:
    """scipy's resample_poly (its filter, its zero padding at both ends, its output length) on
    a signal that arrives in blocks: the output, blocks joined, is resample_poly's on the whole
    signal to float32 rounding (the same sums, in the same order). A block's outputs that need
    input not yet seen wait for the next block; `finish` gives them, the signal ending in zeros."""

    def __init__(self, sample_rate: int, target: int = SAMPLE_RATE):
        from scipy.signal import firwin

        g = gcd(target, int(sample_rate))
        self.up, self.down = target // g, int(sample_rate) // g
        half_len = 10 * max(self.up, self.down)
        h = firwin(2 * half_len + 1, 1.0 / max(self.up, self.down), window=("kaiser", 5.0)).astype(np.float32)
        h *= self.up
        pre_pad = self.down - half_len % self.down
        self.h = np.concatenate([np.zeros(pre_pad, np.float32), h])
        self.skip = (half_len + pre_pad) // self.down  # outputs resample_poly drops at the start
        self.buffer = np.zeros(0, np.float32)
        self.start = 0  # the buffer's first input sample; a multiple of `down`, so outputs align
        self.seen = 0  # input samples so far
        self.done = 0  # output samples given

    def __call__(self, block: np.ndarray) -> np.ndarray:
        self.buffer = np.concatenate([self.buffer, np.asarray(block, np.float32)])
        self.seen += len(block)
        # output o is complete once its last input, (o + skip) * down // up, has been seen
        return self._emit(max((self.seen * self.up - 1) // self.down - self.skip + 1, self.done))

    def finish(self) -> np.ndarray:
        return self._emit(-(-self.seen * self.up // self.down))

    def _emit(self, end: int) -> np.ndarray:
        from scipy.signal import upfirdn

        if end <= self.done:
            return np.zeros(0, np.float32)
        first = self.start * self.up // self.down
        y = upfirdn(self.h, self.buffer, self.up, self.down)
        out = y[self.done + self.skip - first : end + self.skip - first]
        out = np.pad(out, (0, end - self.done - len(out)))  # past the convolution's end: zeros
        self.done = end
        # keep the input the next output needs: from its first nonzero tap, rounded down to `down`
        lowest = max(0, -(-((end + self.skip) * self.down - len(self.h) + 1) // self.up))
        keep = lowest - lowest % self.down
        self.buffer, self.start = self.buffer[keep - self.start :], keep
        return out.astype(np.float32, copy=False)


class AudioReader:
    """One file read in blocks as 16 kHz mono float32 (or a 16-bit file's integers: `blocks`):
    never the whole file in memory.
    Opening checks the file (AudioError); `blocks` reads it, each block validated."""

    def __init__(self, path: str | Path, block_seconds: float = 10.0):
        self.path = _checked_path(path)
        self.log = _DecoderLog(self.path)
        try:
            with self.log.capture():
                self.file = _open(self.path)
        except _SF_ERRORS as e:
            raise _unreadable(self.path, e) from None
        _warn_if_truncated(self.path, self.file)
        self.sample_rate, self.frames = self.file.samplerate, self.file.frames
        self.block_frames = max(1, int(block_seconds * self.sample_rate))

    def blocks(self, integers: bool = False) -> Iterator[np.ndarray]:
        """The file's samples, in order, at 16 kHz; AudioError if it holds none, or a NaN.
        With `integers`, a 16-bit mono 16 kHz file's blocks are its int16 samples as they are
        read: `_read`'s float32 values are theirs scaled by 2^-15 (`scaled`). Batched mode on a
        GPU puts those on the device, half the bytes, and scales them there."""
        resample = Resampler(self.sample_rate) if self.sample_rate != SAMPLE_RATE else None
        n, whole, integer = 0, False, _integers(self.file)
        raw = integers and integer and resample is None and self.file.channels == 1
        try:
            with self.file:
                while True:
                    try:
                        with self.log.capture():
                            data = _read(self.file, self.block_frames, raw)
                    except _SF_ERRORS as e:
                        raise _unreadable(self.path, e) from None
                    if not len(data):
                        break
                    n += len(data)
                    if not integer and not np.isfinite(data).all():  # (integers are finite)
                        raise AudioError(f"{self.path}: contains NaN or infinite samples")
                    mono = np.ascontiguousarray(data.mean(axis=1) if data.shape[1] > 1 else data[:, 0])
                    if resample:
                        mono = resample(mono)
                    if len(mono):
                        yield mono
            whole = True
        finally:  # a reader left early (its generator closed) still says what it met
            self.log.report(n if whole else None, self.frames, self.sample_rate)
        if n == 0:
            raise AudioError(f"{self.path}: contains no audio samples")
        if resample and len(rest := resample.finish()):
            yield rest


def first_window_mel(path: str | Path, dtype=None):
    """The first 30 s of a file as the encoder takes it: an mx.array (1, N_FRAMES, 80),
    zero-padded like mlx-whisper's transcribe pads its first window."""
    import mlx.core as mx
    from mlx_whisper.audio import N_FRAMES, N_SAMPLES, log_mel_spectrogram, pad_or_trim

    mel = log_mel_spectrogram(load_audio(path), padding=N_SAMPLES)
    return pad_or_trim(mel[:N_FRAMES], N_FRAMES, axis=-2).astype(dtype or mx.float32)[None]
