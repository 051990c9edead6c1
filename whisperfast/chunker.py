"""Batched mode's reading side: a file's 16 kHz audio in blocks -> chunks of speech of at most
30 s, each with its samples, handed on as soon as the VAD has closed them (vad.py's Segmenter,
Collector and ProbStream put together), never the whole file in memory.

On a CUDA GPU (`device`), each block goes to the device once, as it is read: the VAD's groups
and the chunks' samples are cut from those arrays there. Putting samples on the device costs
far more than any op on them (an MLX array made from the host is CUDA managed memory, whose
pages move, ~0.3-0.45 ms a MB, benchmarks/h100-session40/; batched mode's `upload` copies
through pinned memory instead, kernels/pinned.py); the VAD's groups and then each chunk for
its log-mel had each been put there, the audio twice.

Positions are samples at 16 kHz, counted from the file's start."""

from __future__ import annotations

from collections import deque
from typing import List, Tuple

import mlx.core as mx
import numpy as np

from .audio import scaled
from .kernels.pinned import to_device
from .vad import Collector, Segmenter, SpeechMap, VadOptions, join, vad_model


class Samples:
    """Audio kept from sample `start` on, as its blocks came: a block is kept as it is (the
    reader's are never written again; an array's are views of it), and only what is taken is
    joined (the Chunker used to join its whole buffer with every block: an hour read in 10 s
    blocks, with a GPU's 65 s VAD groups waiting, copied gigabytes). With `device`, the blocks
    are MLX arrays, and what is taken is cut from them lazily."""

    def __init__(self, device: bool = False):
        self.device = device
        self.parts: deque = deque()
        self.start = 0  # the first kept sample's position in the audio
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def append(self, block) -> None:
        if len(block):
            self.parts.append(block if self.device else np.asarray(block, np.float32))
            self.size += len(block)

    def take(self, a: int, b: int):
        """A copy of the audio's samples [a, b) (those kept: b may lie past them); on the
        device, lazy."""
        if not self.start <= a <= b:  # samples let go, or a backwards span: never silently short
            raise ValueError(f"samples [{a}, {b}) asked of a buffer kept from {self.start}")
        out, at = [], self.start
        for p in self.parts:
            if at >= b:
                break
            lo, hi = max(a, at), min(b, at + len(p))
            if lo < hi:
                out.append(p[lo - at : hi - at])
            at += len(p)
        return join(out, self.device)

    def drop_before(self, position: int) -> None:
        """Let go of the samples before `position`."""
        while self.parts and self.start + len(self.parts[0]) <= position:
            self.start += len(self.parts[0])
            self.size -= len(self.parts[0])
            self.parts.popleft()
        if self.parts and position > self.start:
            self.parts[0] = self.parts[0][position - self.start :]
            self.size -= position - self.start
        self.start = max(self.start, position)


class Chunker:
    """16 kHz audio in blocks -> chunks of speech of at most `max_samples`, each with its
    samples, as soon as the VAD has closed them: the chunks of collect_chunks and
    get_speech_timestamps (or, with `options` None, no VAD, fixed_chunks) on the whole audio,
    exactly. Kept meanwhile: the audio from where a piece to come may start (its padding
    included; up to one group of frames the model has not run on lies there too, two on a GPU,
    whose groups run while the host goes on: vad.ProbStream), and the
    samples of the pieces found but not yet in a closed chunk, not the silence between them.
    With max_speech_duration_s finite (batched mode's 30 s) that is a few chunks' worth, so an
    hour costs no more memory than a minute.

    device: each block is put on MLX's default device as it comes, once; the VAD's groups (the
    MLX port's, vad.ProbStream) and the chunks' samples are cut from those arrays (MLX arrays,
    lazy: a piece's copy keeps its blocks until it is evaluated, then only itself). `upload`
    puts a block there (float32, or int16 it scales; default kernels.pinned.to_device, MLX's own copy;
    batched mode gives kernels.pinned.PinnedUpload on CUDA). `model`: the VAD (default:
    vad.vad_model())."""

    def __init__(self, options: VadOptions | None, max_samples: int, device: bool = False, model=None, upload=None):
        self.max_samples = max_samples
        self.device = device
        self.upload = upload or to_device
        self.probs = (model or vad_model()).stream() if options is not None else None
        self.segmenter = Segmenter(options) if options is not None else None
        self.collector = Collector(max_samples)
        self.buffer = Samples(device)  # from its `start`, the audio a chunk may still need
        self.n = 0  # samples so far
        self.found: List[Tuple[int, int, object]] = []  # pieces (start, end, samples) not yet all chunked
        self.held: Tuple[int, object] | None = None  # (start, samples) of the segmenter's held piece, padding included

    @property
    def kept(self) -> int:
        """Samples held: the buffer, the pieces' copies and the model's unprocessed frames."""
        return (len(self.buffer) + sum(len(x) for *_, x in self.found) + (len(self.held[1]) if self.held else 0)
                + (self.probs.waiting if self.probs else 0))

    def __call__(self, block: np.ndarray) -> List[Tuple[SpeechMap, object]]:
        """The chunks `block` closes, each with its samples (numpy's, or MLX's with `device`).
        `block`: float32 samples, or a 16-bit file's int16 ones (audio.AudioReader.blocks'
        `integers`: scaled by 2^-15, on the device with `device`). The block is kept as it is
        (Samples): never write into it again."""
        block = np.asarray(block)
        if self.device:
            block = self.upload(block)
        elif block.dtype == np.int16:
            block = scaled(block)
        self.buffer.append(block)
        self.n += len(block)
        if self.segmenter is None:
            start = self.buffer.start
            whole = self.n - (self.n - start) % self.max_samples
            return self._cut([SpeechMap(((s, s + self.max_samples),)) for s in range(start, whole, self.max_samples)])
        return self._chunk(self.segmenter(self.probs(block)))

    def finish(self) -> List[Tuple[SpeechMap, object]]:
        """The chunks left once the audio has ended."""
        if self.segmenter is None:
            return self._cut(fixed_chunks(self.n - self.buffer.start, self.max_samples, self.buffer.start))
        out = self._chunk(self.segmenter(self.probs.finish()) + self.segmenter.finish(self.n))
        return out + self._cut(self.collector.finish())

    def _chunk(self, speeches: List[dict]) -> List[Tuple[SpeechMap, object]]:
        for s in speeches:
            start, end = s["start"], s["end"]
            if self.held and self.held[0] <= start and end <= self.held[0] + len(self.held[1]):
                samples = self.held[1][start - self.held[0] : end - self.held[0]]
            else:
                samples = self.buffer.take(start, end)
            self.found.append((start, end, samples))
        if self.device and speeches:  # copied now, letting go of their blocks: a chunk may close minutes on
            mx.async_eval([x for *_, x in self.found[-len(speeches):]])
        return self._cut(self.collector(speeches))

    def _cut(self, chunks: List[SpeechMap]) -> List[Tuple[SpeechMap, object]]:
        if self.segmenter is None:
            out = [(c, self.buffer.take(*c.pieces[0])) for c in chunks]  # fixed chunks: one piece each
            keep = chunks[-1].pieces[-1][1] if chunks else self.buffer.start
        else:
            out = [(c, join([x[s - a : e - a] for s, e in c.pieces for a, b, x in self.found if a <= s and e <= b],
                            self.device)) for c in chunks]
            if chunks:
                self.found = [p for p in self.found if p[1] > chunks[-1].pieces[-1][1]]
            keep = self._keep_held(self.segmenter.earliest())
        self.buffer.drop_before(keep)
        return out

    def _keep_held(self, keep: int) -> int:
        """The buffer's new start, given that no piece but the held one starts before `keep`.
        The held piece waits for the next piece, which may be minutes of silence away: its
        samples (and the padding its end may still get) are copied, so the silence is not kept."""
        held = self.segmenter.held
        if held is None:
            self.held = None
            return keep
        end = int(held["end"] + self.segmenter.pad)
        if end >= keep:
            return min(keep, held["start"])
        if self.held is None or self.held[0] != held["start"]:
            self.held = (held["start"], self.buffer.take(held["start"], end))
            if self.device:
                mx.async_eval(self.held[1])
        return keep


def fixed_chunks(n_samples: int, max_samples: int, offset: int = 0) -> List[SpeechMap]:
    """No VAD: `n_samples` from `offset` cut every `max_samples` (30 s windows, back to back)."""
    return [SpeechMap(((offset + s, offset + min(s + max_samples, n_samples)),)) for s in range(0, n_samples, max_samples)]
