"""Voice activity detection: where the speech is, so that silence (where Whisper hallucinates)
is never decoded, and long audio splits into chunks of at most 30 s at speech boundaries.

Silero VAD (MIT), run by onnxruntime, as faster-whisper runs it (faster_whisper/vad.py, itself
adapted from snakers4/silero-vad): `get_speech_timestamps` and `collect_chunks` are ports of
faster-whisper 1.2's, option for option. The model is `silero_vad_16k_sequence.onnx` from the
silero-vad wheel: the same network faster-whisper ships as silero_vad_v6.onnx, exported to take
a whole sequence of 512-sample frames (each with the previous frame's last 64 samples) in one
call, with the LSTM state carried across calls. The wheel's Python package imports torch, so
only its data folder is read (`importlib.util.find_spec` locates a package without importing it).

Positions are samples at 16 kHz throughout; `SpeechMap` turns a time in speech-only audio
(the pieces laid end to end) back into the file's time.
"""

from __future__ import annotations

import bisect
import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np

from .audio import SAMPLE_RATE
from .errors import WhisperfastError

FRAME = 512  # samples a speech probability covers (32 ms)
CONTEXT = 64  # samples of the previous frame the model sees with each frame

INSTALL_HINT = "install the 'vad' extra: pip install 'whisperfast[vad]' (or uv sync --extra vad)"


@dataclass(frozen=True)
class VadOptions:
    """faster-whisper's VadOptions, its defaults (those of its sequential `vad_filter`).
    threshold: a frame whose speech probability is at least this is speech; neg_threshold
    (None: threshold - 0.15) ends speech only below it; pieces shorter than
    min_speech_duration_ms are dropped; a piece longer than max_speech_duration_s is split at
    its last silence of 98 ms or more, else cut; min_silence_duration_ms of silence ends a
    piece; speech_pad_ms is kept on each side of a piece."""

    threshold: float = 0.5
    neg_threshold: float | None = None
    min_speech_duration_ms: int = 0
    max_speech_duration_s: float = float("inf")
    min_silence_duration_ms: int = 2000
    speech_pad_ms: int = 400

    def __post_init__(self):
        if not 0 < self.threshold < 1:
            raise WhisperfastError(f"VAD threshold must be between 0 and 1, not {self.threshold}")
        if not self.max_speech_duration_s > 0:
            raise WhisperfastError(f"VAD max_speech_duration_s must be > 0, not {self.max_speech_duration_s}")


# Batched mode's: faster-whisper's BatchedInferencePipeline splits at short pauses (160 ms) so
# that pieces pack into 30 s chunks tightly, and no piece outgrows a chunk.
BATCHED_VAD = VadOptions(max_speech_duration_s=30.0, min_silence_duration_ms=160)


def model_path() -> Path:
    """silero-vad's sequence model, located without importing the package (which needs torch)."""
    spec = importlib.util.find_spec("silero_vad")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = Path(folder) / "data" / "silero_vad_16k_sequence.onnx"
        if path.is_file():
            return path
    raise WhisperfastError(f"voice activity detection needs the silero-vad package's model: {INSTALL_HINT}")


class SileroVAD:
    """Speech probabilities, one per 512-sample frame, by onnxruntime on one CPU thread
    (faster-whisper's settings: the model is small and the decoder wants the other cores)."""

    def __init__(self, path: Path | None = None):
        try:
            import onnxruntime
        except ImportError:
            raise WhisperfastError(f"voice activity detection needs onnxruntime: {INSTALL_HINT}") from None
        opts = onnxruntime.SessionOptions()
        opts.inter_op_num_threads = opts.intra_op_num_threads = 1
        opts.enable_cpu_mem_arena = False
        opts.log_severity_level = 4  # the export leaves unused initializers, which it warns of
        self.session = onnxruntime.InferenceSession(str(path or model_path()), providers=["CPUExecutionProvider"],
                                                    sess_options=opts)

    def __call__(self, audio: np.ndarray, frames_per_call: int = 10_000) -> np.ndarray:
        """audio (n,) float32 16 kHz -> (ceil(n / 512),) probabilities; the last frame is
        zero-padded. Calls of `frames_per_call` frames (~5 min) carry the LSTM state on, so an
        hour costs no more memory than five minutes."""
        audio = np.asarray(audio, dtype=np.float32)
        h = c = np.zeros((1, 1, 128), np.float32)
        context = np.zeros(CONTEXT, np.float32)
        out = []
        for start in range(0, len(audio), FRAME * frames_per_call):
            block = audio[start : start + FRAME * frames_per_call]
            block = np.pad(block, (0, -len(block) % FRAME)).reshape(-1, FRAME)
            contexts = np.concatenate([context[None], block[:-1, -CONTEXT:]])
            context = block[-1, -CONTEXT:].copy()
            probs, h, c = self.session.run(None, {"input": np.concatenate([contexts, block], axis=1), "h": h, "c": c})
            out.append(np.asarray(probs, np.float32).reshape(-1))
        return np.concatenate(out) if out else np.zeros(0, np.float32)


@functools.lru_cache(maxsize=1)
def vad_model() -> SileroVAD:
    return SileroVAD()


def get_speech_timestamps(audio: np.ndarray, options: VadOptions = VadOptions(),
                          probs: np.ndarray | None = None) -> List[dict]:
    """Speech pieces [{"start", "end"}] in samples, in order, padded, not overlapping
    (faster-whisper's, line for line). `probs`: the model's output, when already at hand."""
    window = FRAME
    min_speech = SAMPLE_RATE * options.min_speech_duration_ms / 1000
    pad = SAMPLE_RATE * options.speech_pad_ms / 1000
    max_speech = SAMPLE_RATE * options.max_speech_duration_s - window - 2 * pad
    min_silence = SAMPLE_RATE * options.min_silence_duration_ms / 1000
    min_silence_at_max_speech = SAMPLE_RATE * 98 / 1000
    n = len(audio)
    if probs is None:
        probs = vad_model()(audio)
    threshold = options.threshold
    neg_threshold = options.neg_threshold if options.neg_threshold is not None else max(threshold - 0.15, 0.01)

    triggered, speeches, current = False, [], {}
    temp_end = 0  # a possible end: silence began here, and may not last long enough
    prev_end = next_start = 0  # where to split should the piece grow past max_speech
    for i, p in enumerate(probs.tolist()):
        if p >= threshold and temp_end:
            temp_end = 0
            if next_start < prev_end:
                next_start = window * i
        if p >= threshold and not triggered:
            triggered, current["start"] = True, window * i
            continue
        if triggered and window * i - current["start"] > max_speech:
            if prev_end:
                current["end"] = prev_end
                speeches.append(current)
                current = {}
                if next_start < prev_end:  # still silence since prev_end
                    triggered = False
                else:
                    current["start"] = next_start
                prev_end = next_start = temp_end = 0
            else:
                current["end"] = window * i
                speeches.append(current)
                current, prev_end, next_start, temp_end, triggered = {}, 0, 0, 0, False
                continue
        if p < neg_threshold and triggered:
            if not temp_end:
                temp_end = window * i
            if window * i - temp_end > min_silence_at_max_speech:
                prev_end = temp_end
            if window * i - temp_end < min_silence:
                continue
            current["end"] = temp_end
            if current["end"] - current["start"] > min_speech:
                speeches.append(current)
            current, prev_end, next_start, temp_end, triggered = {}, 0, 0, 0, False
            continue
    if current and n - current["start"] > min_speech:
        current["end"] = n
        speeches.append(current)

    # padding; where two pieces are closer than two pads, the silence between is split evenly
    for i, s in enumerate(speeches):
        if i == 0:
            s["start"] = int(max(0, s["start"] - pad))
        if i != len(speeches) - 1:
            silence = speeches[i + 1]["start"] - s["end"]
            if silence < 2 * pad:
                s["end"] += int(silence // 2)
                speeches[i + 1]["start"] = int(max(0, speeches[i + 1]["start"] - silence // 2))
            else:
                s["end"] = int(min(n, s["end"] + pad))
                speeches[i + 1]["start"] = int(max(0, speeches[i + 1]["start"] - pad))
        else:
            s["end"] = int(min(n, s["end"] + pad))
    return speeches


@dataclass(frozen=True)
class SpeechMap:
    """Pieces of a file laid end to end: `pieces` (start, end) samples in the file. Maps a time
    in the laid-out audio back to the file's (faster-whisper's SpeechTimestampsMap, by piece)."""

    pieces: Tuple[Tuple[int, int], ...]

    @property
    def samples(self) -> int:
        return sum(e - s for s, e in self.pieces)

    def audio(self, audio: np.ndarray) -> np.ndarray:
        """The pieces' samples, end to end (a copy: the file's array can be let go)."""
        return np.concatenate([audio[s:e] for s, e in self.pieces]) if self.pieces else np.zeros(0, np.float32)

    def audio_from(self, whole: "SpeechMap", samples: np.ndarray) -> np.ndarray:
        """These pieces' samples, cut from `samples`, the laid-out audio of `whole` (each of
        these pieces lies within one of its pieces)."""
        out, at = [], 0
        for start, stop in whole.pieces:
            out += [samples[at + s - start : at + e - start] for s, e in self.pieces if start <= s and e <= stop]
            at += stop - start
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def to_file_time(self, t: float, is_end: bool = False) -> float:
        """Seconds in the laid-out audio -> seconds in the file. A time on the seam of two
        pieces is the earlier piece's end when `is_end`, else the later piece's start: a
        segment that ends there ends with its speech, and one that starts there starts with it."""
        if not self.pieces:
            return t
        ends = np.cumsum([e - s for s, e in self.pieces]).tolist()
        sample = round(t * SAMPLE_RATE)
        i = bisect.bisect_left(ends, sample) if is_end else bisect.bisect_right(ends, sample)
        i = min(i, len(ends) - 1)
        begin = ends[i] - (self.pieces[i][1] - self.pieces[i][0])
        start, end = self.pieces[i]
        return min(start + max(sample - begin, 0), end) / SAMPLE_RATE


    def span_to_file(self, start: float, end: float, snap: float = 1.0) -> Tuple[float, float]:
        """A segment's (start, end) in the laid-out audio -> the file's. A segment that crosses
        a seam between pieces by less than `snap` seconds at either end is taken to be of the
        other piece: Whisper's timestamps are coarse around the cut (pieces carry 0.4 s of
        padding), and a segment mapped across a seam would span the silence that was cut out."""
        seams = np.cumsum([e - s for s, e in self.pieces]).tolist()[:-1]
        seams = [x / SAMPLE_RATE for x in seams]
        inside = [x for x in seams if start < x < end]
        if inside and inside[0] - start < snap and end - inside[0] > snap:
            start = inside[0]
        inside = [x for x in seams if start < x < end]
        if inside and end - inside[-1] < snap and inside[-1] - start > snap:
            end = inside[-1]
        return self.to_file_time(start), self.to_file_time(end, is_end=True)


def collect_chunks(speeches: Sequence[dict], max_samples: int | None = None) -> List[SpeechMap]:
    """Speech pieces, in order, merged into chunks of at most `max_samples` (None: one chunk
    of them all): faster-whisper's collect_chunks, which closes a chunk when the next piece
    would not fit. A piece longer than `max_samples` (VadOptions.max_speech_duration_s keeps
    them shorter) is cut into pieces that fit."""
    pieces: List[Tuple[int, int]] = []
    for s in speeches:
        start, end = int(s["start"]), int(s["end"])
        while max_samples and end - start > max_samples:
            pieces.append((start, start + max_samples))
            start += max_samples
        if end > start:
            pieces.append((start, end))
    chunks, current, size = [], [], 0
    for start, end in pieces:
        if current and max_samples and size + end - start > max_samples:
            chunks.append(SpeechMap(tuple(current)))
            current, size = [], 0
        current.append((start, end))
        size += end - start
    if current:
        chunks.append(SpeechMap(tuple(current)))
    return chunks


def fixed_chunks(n_samples: int, max_samples: int) -> List[SpeechMap]:
    """No VAD: the file cut every `max_samples` (30 s windows, back to back)."""
    return [SpeechMap(((s, min(s + max_samples, n_samples)),)) for s in range(0, n_samples, max_samples)]
