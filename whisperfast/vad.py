"""Voice activity detection: where the speech is, so that silence (where Whisper hallucinates)
is never decoded, and long audio splits into chunks of at most 30 s at speech boundaries.

Silero VAD (MIT), run by onnxruntime as faster-whisper runs it (faster_whisper/vad.py, itself
adapted from snakers4/silero-vad), or on a CUDA GPU by its port to MLX (silero.py): `get_speech_timestamps` and `collect_chunks` are ports of
faster-whisper 1.2's, option for option. The model is `silero_vad_16k_sequence.onnx` from the
silero-vad wheel: the same network faster-whisper ships as silero_vad_v6.onnx, exported to take
a whole sequence of 512-sample frames (each with the previous frame's last 64 samples) in one
call, with the LSTM state carried across calls. The wheel's Python package imports torch, so
only its data folder is read (`importlib.util.find_spec` locates a package without importing it).

Most of the model's time is its convolutions (the STFT's and the encoder's), which see one
frame at a time; only its LSTM carries state from frame to frame. So the graph is cut once in
two (`split_model`, with the onnx package; kept in the cache) and a group's frames go through
the convolutions, then through onnxruntime's LSTM in order. The convolutions run as numpy's
products over all the group's frames at once (silero.HostFrames, with the weights the GPU
port reads): onnxruntime's go a frame at a time, ~4x slower on 2 cores. Their sums run in other orders,
so the probabilities agree with the whole model's to float rounding, as the GPU port's do
(tests/test_silero.py). Where the weights cannot be read, onnxruntime's convolutions run, in
slices on several threads: the whole model's probabilities bit for bit (tests/test_batched.py).

Both also run on audio that arrives in blocks (`Segmenter`, `Collector`, the model's
`ProbStream`), with the same results: chunker.py puts them together for batched mode, which
reads a file a block at a time and hands a chunk on as soon as it closes.

Positions are samples at 16 kHz throughout; `SpeechMap` turns a time in speech-only audio
(the pieces laid end to end) back into the file's time.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import hashlib
import importlib.util
import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np

from .audio import SAMPLE_RATE
from .config import config
from .errors import WhisperfastError

FRAME = 512  # samples a speech probability covers (32 ms)
CONTEXT = 64  # samples of the previous frame the model sees with each frame
FEATURES = "/Transpose_output_0"  # the graph's tensor between its convolutions and its LSTM

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


def cache_folder(model: bytes) -> Path:
    """Where what is made from a model file is kept: named by the file's hash."""
    return config().cache / "vad" / hashlib.sha256(model).hexdigest()[:16]


def split_model(path: Path) -> Tuple[Path, Path] | None:
    """The model cut at FEATURES into (convolutions: input -> features, LSTM: features, h, c ->
    probabilities, h, c), made once with the onnx package and kept in the cache beside a hash
    of the model; None where the onnx package is missing, the cache cannot be written or the
    graph is not the one expected (the whole model then serves)."""
    folder = cache_folder(path.read_bytes())
    parts = folder / "convolutions.onnx", folder / "lstm.onnx"
    if all(p.is_file() for p in parts):
        return parts
    try:
        from onnx import utils
    except ImportError:
        return None
    for part, inputs, outputs in ((parts[0], ["input"], [FEATURES]),
                                  (parts[1], [FEATURES, "h", "c"], ["speech_probs", "hn", "cn"])):
        tmp = part.with_name(f".{part.name}.{os.getpid()}.tmp")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            utils.extract_model(str(path), str(tmp), inputs, outputs)
            os.replace(tmp, part)  # whole or absent, whoever else writes it meanwhile
        except Exception:  # a cache that cannot be written, another export of the network: the whole model serves
            with contextlib.suppress(OSError):
                tmp.unlink()
            return None
    return parts


def _session(path: Path):
    import onnxruntime

    opts = onnxruntime.SessionOptions()
    opts.inter_op_num_threads = opts.intra_op_num_threads = 1
    opts.enable_cpu_mem_arena = False
    opts.log_severity_level = 4  # the export leaves unused initializers, which it warns of
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"], sess_options=opts)


def vad_threads() -> int:
    """Threads for the convolutions: the cores this process may use, up to 8. (Batched mode
    runs the VAD between batches, not beside them.)"""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(8, cores))


class SileroVAD:
    """Speech probabilities, one per 512-sample frame.

    On a CUDA GPU (unless WHISPERFAST_VAD_GPU=0), by the network ported to MLX (silero.py: the
    convolutions of a group's frames at once, the LSTM in one launch), on groups of 2048
    frames (65 s). Elsewhere, or where the port cannot read the model (no onnx package, another
    export), by onnxruntime on groups of 256, each session on one thread (faster-whisper's
    settings: onnxruntime's own threads do not pay on a model this small, benchmarks/batched/).
    With the model cut in two (split_model), a group's frames go through the convolutions,
    then through onnxruntime's LSTM: the convolutions as numpy's products over the group
    (silero.HostFrames: ~4x faster than onnxruntime's, the probabilities to float rounding of
    the whole model's, as the GPU port's) where the weights can be read, else onnxruntime's
    in `threads` slices side by side (default: vad_threads(); the whole model's probabilities
    bit for bit); without the cut the whole model runs on one thread. `net`: True or False to
    choose the port (tests), None: as above; `host=False`: onnxruntime's convolutions (tests)."""

    def __init__(self, path: Path | None = None, threads: int | None = None, split: bool = True,
                 net: bool | None = None, host: bool = True):
        path = path or model_path()
        self.net = _net(path) if (net if net is not None else _net_wanted()) else None
        self.group = 2048 if self.net is not None else 256
        self.session = self.convolutions = self.lstm = self._pool = self.host_frames = None
        self.threads = threads or vad_threads()
        if self.net is not None:
            return
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise WhisperfastError(f"voice activity detection needs onnxruntime: {INSTALL_HINT}") from None
        parts = split_model(path) if split else None
        if parts is None:
            self.session = _session(path)
        else:
            self.convolutions, self.lstm = (_session(p) for p in parts)
            self.host_frames = _host_frames(path) if host else None
        if parts is not None and self.host_frames is None and self.threads > 1:
            self._pool = ThreadPoolExecutor(self.threads)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        """audio (n,) float32 16 kHz -> (ceil(n / 512),) probabilities; the last frame is
        zero-padded."""
        stream = self.stream()
        probs = stream(audio)
        return np.concatenate([probs, stream.finish()])

    def stream(self, frames_per_call: int | None = None) -> "ProbStream":
        return ProbStream(self, frames_per_call or self.group)

    def run(self, frames: np.ndarray, h: np.ndarray, c: np.ndarray):
        """frames (n, CONTEXT + FRAME), the LSTM's state (h, c) -> (probabilities, h, c), by
        onnxruntime (the port runs its groups through silero.SileroNet.start: ProbStream)."""
        if self.lstm is None:
            return self.session.run(None, {"input": frames, "h": h, "c": c})
        def convolutions(part):
            return self.convolutions.run(None, {"input": part})[0]

        if self.host_frames is not None:
            features = self.host_frames(frames)
        elif self._pool is not None and len(frames) >= 2 * self.threads:
            features = np.concatenate(list(self._pool.map(convolutions, np.array_split(frames, self.threads))))
        else:
            features = convolutions(frames)
        return self.lstm.run(None, {FEATURES: features, "h": h, "c": c})


def _net_wanted() -> bool:
    """The MLX port by default on a CUDA GPU only: elsewhere MLX's ops are no faster than
    onnxruntime's here, and its LSTM would run a step at a time."""
    if not config().vad_gpu:
        return False
    from .kernels.ops import on_cuda

    return on_cuda()


def _net(path: Path):
    """The MLX port of the model at `path`, or None where its weights cannot be read."""
    from . import silero

    weights = _weights(path)
    return silero.SileroNet(weights) if weights is not None else None


def _host_frames(path: Path):
    """silero.HostFrames for the model at `path`, or None where its weights cannot be read."""
    from . import silero

    weights = _weights(path)
    return silero.HostFrames(weights) if weights is not None else None


def _weights(path: Path):
    """The ONNX model's weights (silero.read_weights: from the cache, else read once), or None."""
    from . import silero

    data = path.read_bytes()
    return silero.read_weights(data, cache_folder(data))


class ProbStream:
    """Speech probabilities of audio that arrives in blocks of any size. The model runs on
    groups of `frames_per_call` frames (its `group`: ~8 s, 65 s on a GPU) counted from the
    start, whatever the blocks, with the LSTM state and the last frame's context carried from
    group to group: so the probabilities are the same however the audio is cut.

    The GPU's port (silero.SileroNet.start) runs a group on the device while the host goes
    on: its probabilities come out with the next group's call, or with `finish` (the host had
    waited for each group, and the device for the host's copies and the chunker between
    groups). So up to two groups wait; onnxruntime's come out at once, at most one waiting.

    The audio may come as MLX arrays (chunker.Chunker on a GPU puts each block there once): the
    port's groups are then joined on the device; onnxruntime reads them back."""

    def __init__(self, model: SileroVAD, frames_per_call: int):
        self.model, self.size = model, FRAME * frames_per_call
        self.h = self.c = np.zeros((1, 1, 128), np.float32)
        self.context = np.zeros(CONTEXT, np.float32)
        self.parts: list = []  # audio not yet run, as it came (numpy's or MLX's): joined once a group is whole
        self.waiting = 0  # their samples
        self.running = None  # the port's probabilities of the last group started, not yet read

    def __call__(self, audio) -> np.ndarray:
        """The probabilities of the frames of every group now complete (the port's: but the last
        one's). `audio` is kept as it is until its group runs: a caller must not write into it
        again (a reused read buffer would give wrong probabilities)."""
        if len(audio):
            # (batched mode's blocks: never written again)
            self.parts.append(audio if not isinstance(audio, np.ndarray) else np.asarray(audio, np.float32))
            self.waiting += len(audio)
        if self.waiting < self.size:
            return np.zeros(0, np.float32)
        device = not isinstance(self.parts[0], np.ndarray)
        pending = join(self.parts, device)
        whole = len(pending) - len(pending) % self.size
        out = [self._run(pending[i : i + self.size]) for i in range(0, whole, self.size)]
        rest = join([pending[whole:]], device)  # the rest alone, not the whole join it is a view of
        self.parts, self.waiting = [rest] if len(rest) else [], len(rest)
        return np.concatenate(out)

    def finish(self) -> np.ndarray:
        """The last frames' probabilities (the last frame zero-padded)."""
        rest = join(self.parts, not isinstance(self.parts[0], np.ndarray)) if self.parts else np.zeros(0, np.float32)
        self.parts, self.waiting = [], 0
        out = self._run(rest) if len(rest) else np.zeros(0, np.float32)
        return np.concatenate([out, self._read()])

    def _run(self, audio) -> np.ndarray:
        """Run a group; the probabilities now known (the port's: the group before's)."""
        net = self.model.net
        if net is None:
            frames, self.context = model_frames(np.asarray(audio, np.float32), self.context)
            probs, self.h, self.c = self.model.run(frames, self.h, self.c)
            return _on_host(probs)
        previous = self.running  # read after this group is queued behind it, so that the device never waits
        self.running, self.h, self.c, self.context = net.start(audio, self.context, self.h, self.c)
        return _on_host(previous)

    def _read(self) -> np.ndarray:
        done, self.running = self.running, None
        return _on_host(done)


def join(parts: list, device: bool = False):
    """Samples end to end, a copy: numpy's, or (`device`) MLX's, lazily. (An MLX slice is a view
    of its whole array even once evaluated: a piece kept as one would keep its block's silence.)"""
    if not device:
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)
    import mlx.core as mx

    if not parts:
        return mx.zeros(0, mx.float32)
    return mx.contiguous(parts[0]) if len(parts) == 1 else mx.concatenate(parts)


def _on_host(probs) -> np.ndarray:
    """A group's probabilities as a flat float32 array (none for no group)."""
    return np.zeros(0, np.float32) if probs is None else np.asarray(probs, np.float32).reshape(-1)


def model_frames(audio: np.ndarray, context: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """audio (n,) -> the model's input (ceil(n / FRAME), CONTEXT + FRAME): each frame after the
    previous frame's last CONTEXT samples (`context` before the first), the last frame
    zero-padded; and the last frame's CONTEXT samples, for the frames to come."""
    block = np.pad(audio, (0, -len(audio) % FRAME)).reshape(-1, FRAME)
    contexts = np.concatenate([context[None], block[:-1, -CONTEXT:]])
    return np.concatenate([contexts, block], axis=1), block[-1, -CONTEXT:].copy()


@functools.lru_cache(maxsize=1)
def vad_model() -> SileroVAD:
    return SileroVAD()


def get_speech_timestamps(audio: np.ndarray, options: VadOptions = VadOptions(),
                          probs: np.ndarray | None = None) -> List[dict]:
    """Speech pieces [{"start", "end"}] in samples, in order, padded, not overlapping
    (faster-whisper's). `probs`: the model's output, when already at hand."""
    segmenter = Segmenter(options)
    return segmenter(vad_model()(audio) if probs is None else probs) + segmenter.finish(len(audio))


class Segmenter:
    """faster-whisper's get_speech_timestamps, line for line, on probabilities that arrive in
    blocks: each call gives the pieces now final. A piece's end padding depends on where the
    next piece starts, so the last piece found waits (`held`) until the next one, or the end."""

    def __init__(self, options: VadOptions = VadOptions()):
        self.min_speech = SAMPLE_RATE * options.min_speech_duration_ms / 1000
        self.pad = SAMPLE_RATE * options.speech_pad_ms / 1000
        self.max_speech = SAMPLE_RATE * options.max_speech_duration_s - FRAME - 2 * self.pad
        self.min_silence = SAMPLE_RATE * options.min_silence_duration_ms / 1000
        self.min_silence_at_max_speech = SAMPLE_RATE * 98 / 1000
        self.threshold = options.threshold
        self.neg_threshold = options.neg_threshold if options.neg_threshold is not None else max(options.threshold - 0.15, 0.01)
        self.frames = 0
        self.triggered, self.current = False, {}
        self.temp_end = 0  # a possible end: silence began here, and may not last long enough
        self.prev_end = self.next_start = 0  # where to split should the piece grow past max_speech
        self.held: dict | None = None
        self.first = True

    def earliest(self) -> int:
        """No piece to come, but the held one, will start before this sample (its padding included)."""
        return max(0, int(self.current.get("start", self.frames * FRAME) - self.pad))

    def __call__(self, probs: np.ndarray) -> List[dict]:
        window, speeches = FRAME, []
        for p in probs.tolist():
            i, self.frames = self.frames, self.frames + 1
            if p >= self.threshold and self.temp_end:
                self.temp_end = 0
                if self.next_start < self.prev_end:
                    self.next_start = window * i
            if p >= self.threshold and not self.triggered:
                self.triggered, self.current["start"] = True, window * i
                continue
            if self.triggered and window * i - self.current["start"] > self.max_speech:
                if self.prev_end:
                    self.current["end"] = self.prev_end
                    speeches.append(self.current)
                    self.current = {}
                    if self.next_start < self.prev_end:  # still silence since prev_end
                        self.triggered = False
                    else:
                        self.current["start"] = self.next_start
                    self.prev_end = self.next_start = self.temp_end = 0
                else:
                    self.current["end"] = window * i
                    speeches.append(self.current)
                    self.current, self.prev_end, self.next_start, self.temp_end, self.triggered = {}, 0, 0, 0, False
                    continue
            if p < self.neg_threshold and self.triggered:
                if not self.temp_end:
                    self.temp_end = window * i
                if window * i - self.temp_end > self.min_silence_at_max_speech:
                    self.prev_end = self.temp_end
                if window * i - self.temp_end < self.min_silence:
                    continue
                self.current["end"] = self.temp_end
                if self.current["end"] - self.current["start"] > self.min_speech:
                    speeches.append(self.current)
                self.current, self.prev_end, self.next_start, self.temp_end, self.triggered = {}, 0, 0, 0, False
                continue
        return self._padded(speeches)

    def finish(self, n: int) -> List[dict]:
        """The pieces still open once the audio, `n` samples, has ended."""
        speeches = []
        if self.current and n - self.current["start"] > self.min_speech:
            self.current["end"] = n
            speeches.append(self.current)
        self.current = {}
        out = self._padded(speeches)
        if self.held:
            self.held["end"] = int(min(n, self.held["end"] + self.pad))
            out.append(self.held)
            self.held = None
        return out

    def _padded(self, speeches: List[dict]) -> List[dict]:
        """Padding; where two pieces are closer than two pads, the silence between is split evenly."""
        out = []
        for s in speeches:
            if self.first:
                s["start"], self.first = int(max(0, s["start"] - self.pad)), False
            if (last := self.held) is not None:
                silence = s["start"] - last["end"]
                if silence < 2 * self.pad:
                    last["end"] += int(silence // 2)
                    s["start"] = int(max(0, s["start"] - silence // 2))
                else:
                    last["end"] = int(last["end"] + self.pad)  # the next piece starts past it
                    s["start"] = int(max(0, s["start"] - self.pad))
                out.append(last)
            self.held = s
        return out


@dataclass(frozen=True)
class SpeechMap:
    """Pieces of a file laid end to end: `pieces` (start, end) samples in the file. Maps a time
    in the laid-out audio back to the file's (faster-whisper's SpeechTimestampsMap, by piece)."""

    pieces: Tuple[Tuple[int, int], ...]

    @property
    def samples(self) -> int:
        return sum(e - s for s, e in self.pieces)

    @functools.cached_property
    def _ends(self) -> List[int]:
        """Where each piece ends in the laid-out audio (a chunk's every segment and word is
        mapped: numpy's cumsum at each call was ~10 µs)."""
        return list(itertools.accumulate(e - s for s, e in self.pieces))

    def audio(self, audio: np.ndarray, offset: int = 0) -> np.ndarray:
        """The pieces' samples, end to end (a copy: the file's array can be let go); `audio`
        begins at sample `offset` of the file."""
        return np.concatenate([audio[s - offset : e - offset] for s, e in self.pieces]) if self.pieces \
            else np.zeros(0, np.float32)

    def to_file_time(self, t: float, is_end: bool = False) -> float:
        """Seconds in the laid-out audio -> seconds in the file. A time on the seam of two
        pieces is the earlier piece's end when `is_end`, else the later piece's start: a
        segment that ends there ends with its speech, and one that starts there starts with it."""
        if not self.pieces:
            return t
        ends = self._ends
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
        padding), and a segment mapped across a seam would span the silence that was cut out.
        Only seams where audio was cut out count: pieces that touch in the file are one stretch
        of it (snapping to such a seam left a segment starting before a real cut, spanning it)."""
        ends = self._ends
        seams = [ends[i] / SAMPLE_RATE for i in range(len(ends) - 1) if self.pieces[i][1] != self.pieces[i + 1][0]]
        inside = [x for x in seams if start < x < end]
        if inside and inside[0] - start < snap and end - inside[0] > snap:
            start = inside[0]
        inside = [x for x in seams if start < x < end]
        if inside and end - inside[-1] < snap and inside[-1] - start > snap:
            end = inside[-1]
        return self.to_file_time(start), self.to_file_time(end, is_end=True)

    def word_to_file(self, start: float, end: float, within: Tuple[float, float]) -> Tuple[float, float]:
        """A word's (start, end) in the laid-out audio -> the file's, kept within its segment's
        span there (`within`, span_to_file's): a word that the alignment put across a seam, or
        on padding the segment's span snapped past, would otherwise stick out of its segment,
        across the silence cut out (a 26 s word, its subtitle cue showing through the silence)."""
        clamp = lambda t: min(max(t, within[0]), within[1])  # noqa: E731
        return clamp(self.to_file_time(start)), clamp(self.to_file_time(end, is_end=True))


def collect_chunks(speeches: Sequence[dict], max_samples: int | None = None) -> List[SpeechMap]:
    """Speech pieces, in order, merged into chunks of at most `max_samples` (None: one chunk
    of them all): faster-whisper's collect_chunks, which closes a chunk when the next piece
    would not fit. A piece longer than `max_samples` (VadOptions.max_speech_duration_s keeps
    them shorter) is cut into pieces that fit."""
    collector = Collector(max_samples)
    return collector(speeches) + collector.finish()


class Collector:
    """collect_chunks on pieces that arrive in blocks: each call gives the chunks now closed."""

    def __init__(self, max_samples: int | None = None):
        self.max_samples = max_samples
        self.current: List[Tuple[int, int]] = []
        self.size = 0

    def earliest(self) -> int | None:
        """The open chunk's first sample (None: no chunk open)."""
        return self.current[0][0] if self.current else None

    def __call__(self, speeches: Sequence[dict]) -> List[SpeechMap]:
        pieces: List[Tuple[int, int]] = []
        for s in speeches:
            start, end = int(s["start"]), int(s["end"])
            while self.max_samples and end - start > self.max_samples:
                pieces.append((start, start + self.max_samples))
                start += self.max_samples
            if end > start:
                pieces.append((start, end))
        chunks = []
        for start, end in pieces:
            if self.current and self.max_samples and self.size + end - start > self.max_samples:
                chunks.append(SpeechMap(tuple(self.current)))
                self.current, self.size = [], 0
            self.current.append((start, end))
            self.size += end - start
        return chunks

    def finish(self) -> List[SpeechMap]:
        chunks = [SpeechMap(tuple(self.current))] if self.current else []
        self.current, self.size = [], 0
        return chunks
