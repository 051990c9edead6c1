"""Batched transcription: every file cut into chunks of at most 30 s at speech boundaries
(VAD), N chunks encoded in one encoder call and decoded as one batch, chunks of several files
sharing batches. faster-whisper's BatchedInferencePipeline semantics:
- no conditioning across chunks: each chunk is decoded on its own (the initial prompt, if
  any, before every chunk), so chunks are independent and any N of them make a batch;
- VAD (on by default) with faster-whisper's batched settings (`vad.BATCHED_VAD`: pauses of
  160 ms split, pieces of at most 30 s), pieces packed into chunks in order; silence between
  pieces is dropped, so it is never decoded and cannot be hallucinated over. With VAD off, the
  file is cut every 30 s;
- timestamps: faster-whisper's batched default is `without_timestamps=True`, one segment per
  chunk. Here the decode predicts timestamps (BatchOptions.without_timestamps=False), so a
  chunk gives Whisper's own segments, as sequential mode does, for subtitles of the same
  grain; each time is mapped through the chunk's pieces back to the file's time;
- temperature fallback, per row: faster-whisper's batched pipeline decodes at the first
  temperature only. Here the rows that fail the thresholds (compression ratio, average log
  probability; not the silent ones) are decoded again together at the next temperature, as
  sequential mode decodes a window again, so a repetition loop in one chunk is retried;
- a row that reads as silence (no_speech_prob above its threshold and a low log probability)
  gives no segment, as sequential mode skips such a window;
- where a row may end: Whisper ends a window early where it hears a segment run on past it,
  opening that segment and giving it no text (two timestamps, then end of text); sequential
  mode seeks there and decodes it again in the next window. A chunk ends where its speech
  does, so where a second or more of it follows, a row may not end there (rules.HeldEnd, its
  bound `must_reach`): it goes on and transcribes it, in the same decode. (Decoding that rest
  in a window of its own, as sequential mode does, cost an encoder pass a rest: with tiny.en,
  12 of the 600 s clip's 20 chunks left one, benchmarks/cpu/session29/.) Text after the last
  pair of timestamps, which sequential mode decodes again too, is kept here, running to the
  chunk's end.
- word timestamps: per chunk, mlx-whisper's add_word_timestamps (DTW over the alignment heads'
  cross-attention, decode/words.py) on the batch's encoder output, its alignment layers as built,
  in the chunk's time, then mapped to the file's like the segments (`_word_aligner`); a
  chunk's words cost one decoder pass.
Not (yet) in batched mode: clip_timestamps, hallucination_silence_threshold (refused with an
error); condition_on_previous_text does not apply.

Memory: a file is read in blocks (audio.AudioReader: decoded, downmixed and resampled block by
block) and the VAD runs on the blocks as they come (chunker.Chunker; on a CUDA GPU each block is
put on the device once, and the VAD's groups and the chunks are cut there); a chunk is handed on as soon
as the VAD closes it, and the file is read no further than the batches need. So only a few
chunks' audio is live on the host however long the file; a chunk's log-mel is queued on the
device as it is cut (`_with_mels`, mels.py), and a batch's features are built per batch: the
device never holds more than N windows. Mel, encode and decode times are measured per batch and shared among
its files by rows; reading is in none of them.

Shapes: a batch's mel (N, 3000, n_mels); its features (N, n_audio_ctx, n_audio_state).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator, List, Sequence

import mlx.core as mx
import numpy as np
from mlx_whisper.audio import HOP_LENGTH, N_SAMPLES
from mlx_whisper.decoding import DecodingOptions, DecodingResult
from mlx_whisper.tokenizer import Tokenizer

from . import chunker, mels, runtime, vad
from .audio import SAMPLE_RATE, AudioReader, waveform
from .decode import decode_window, encode, tokenizer_for, windows_per_call
from .decode.words import Aligner, add_word_timestamps
from .config import config
from .errors import AudioError, WhisperfastError
from .kernels.ops import on_cuda
from .kernels import pinned
from .pipeline import (LoadedModel, Segment, Timings, Transcript, TranscribeOptions, Word, checked_language,
                       seed_generator)

CHUNK_SAMPLES = N_SAMPLES  # 30 s: one encoder window
PINNED_BYTES = 11 * SAMPLE_RATE * 4  # a reader's 10 s block, resampled, as float32 (a longer block goes in pieces)


@dataclass(frozen=True)
class BatchOptions:
    """batch_size: chunks per decode; vad_options: how speech is found (TranscribeOptions.vad
    says whether); without_timestamps: one segment per chunk (faster-whisper's batched default)
    instead of Whisper's own segments; encoder_rows: chunks per encoder call, None: the whole
    batch on a GPU, `decode.windows_per_call` on the CPU (one, or two where the C encoder runs
    them one a thread). On the CPU an encoder call of N windows through MLX's ops takes as long
    as N calls of one (benchmarks/batched/README.md), while its activations (the attention
    weights of every window at once) are most of the process's peak memory: one or two at a
    time keeps the encoder's share of the peak that of one or two windows, whatever batch_size.
    device_audio: each block of audio put on the device as it is read, the VAD's groups and the
    chunks cut there (chunker.Chunker's `device`); None: on a CUDA GPU only, where putting
    samples there costs far more than cutting them (elsewhere the host's cuts are as cheap)."""

    batch_size: int = 8
    vad_options: vad.VadOptions = vad.BATCHED_VAD
    without_timestamps: bool = False
    encoder_rows: int | None = None
    device_audio: bool | None = None

    def __post_init__(self):
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise WhisperfastError(f"batch size must be a whole number >= 1, not {self.batch_size!r}")
        if self.encoder_rows is not None and (not isinstance(self.encoder_rows, int) or self.encoder_rows < 1):
            raise WhisperfastError(f"encoder rows must be a whole number >= 1, not {self.encoder_rows!r}")

    def rows_per_encode(self, whisper) -> int:
        """Chunks per encoder call for `whisper` (the model batched mode runs)."""
        if self.encoder_rows is not None:
            return self.encoder_rows
        return self.batch_size if mx.default_device() == mx.gpu else windows_per_call(whisper)

    def audio_on_device(self) -> bool:
        if self.device_audio is not None:
            return self.device_audio
        return on_cuda()


@dataclass
class _Chunk:
    file: int
    speech: vad.SpeechMap  # where the chunk's samples are in the file
    audio: np.ndarray | mx.array | None  # (n <= CHUNK_SAMPLES,) the pieces end to end (on the device:
    # BatchOptions.device_audio); let go once its log-mel is queued
    samples: int  # n
    mel: mx.array | None = None  # its log-mel, queued on the mel stream as the chunk was cut (_with_mels)
    mel_s: float = 0.0  # the host's time queueing it


@dataclass
class _File:
    """One file's running totals."""

    duration: float
    vad: float = 0.0
    mel: float = 0.0
    encode: float = 0.0
    decode: float = 0.0
    tokens: int = 0
    windows: int = 0
    sampled_windows: int = 0
    segments: List[Segment] = field(default_factory=list)
    languages: Counter = field(default_factory=Counter)
    covered: float = 0.0  # seconds of the file its decoded chunks reach (the progress bar's)
    error: AudioError | None = None  # its audio could not be read whole (errors="return")


def check_options(options: TranscribeOptions) -> None:
    """What batched mode cannot do yet, refused before any work."""
    if options.hallucination_silence_threshold is not None:
        raise WhisperfastError("hallucination_silence_threshold is not available in batched mode (use --batch-size 1)")
    if options.clip_timestamps != (0.0,):
        raise WhisperfastError("clip_timestamps are not available in batched mode (use --batch-size 1)")


def transcribe_batched(model: LoadedModel, audios: Sequence[str | Path | np.ndarray],
                       options: TranscribeOptions = TranscribeOptions(),
                       batch: BatchOptions = BatchOptions(), errors: str = "raise") -> List[Transcript | AudioError]:
    """Transcribe files (paths, or float32 mono 16 kHz waveforms) in batches of chunks; one
    Transcript per input, in input order, with segments in time order. An input whose audio
    cannot be read (AudioError: missing, corrupt, a NaN) raises at once, or with
    errors="return" takes the error's place in the list while the others are transcribed (the
    CLI's: one bad file among many lost every transcript)."""
    if errors not in ("raise", "return"):
        raise ValueError(f"errors is 'raise' or 'return', not {errors!r}")
    check_options(options)
    options = replace(options, language=checked_language(model, options.language))
    whisper = model.whisper
    fp16 = model.dtype == "float16"
    dtype = mx.float16 if fp16 else mx.float32
    language = options.language or (None if whisper.is_multilingual else "en")  # None: detected per chunk
    tokenizer = tokenizer_for(whisper)(whisper.is_multilingual, num_languages=whisper.num_languages,
                                       language=language or "en", task=options.task)
    decode_options = dict(task=options.task, language=language, fp16=fp16, beam_size=options.beam_size,
                          best_of=options.best_of, patience=options.patience, length_penalty=options.length_penalty,
                          suppress_tokens=options.suppress_tokens, suppress_blank=options.suppress_blank,
                          without_timestamps=batch.without_timestamps,
                          prompt=tokenizer.encode(" " + options.initial_prompt.strip()) if options.initial_prompt else None)
    files: List[_File] = []
    aligner = Aligner(whisper) if options.word_timestamps else None
    seed_generator(options.seed)
    bf16 = config().cpu_amx
    with _Progress(options.progress) as progress:
        chunks = _with_mels(_chunks(audios, files, options.vad is not False, batch.vad_options, progress,
                                    errors == "return", batch.audio_on_device()), whisper.dims.n_mels)
        while rows := [c for _, c in zip(range(batch.batch_size), chunks)]:
            _run_batch(whisper, rows, files, tokenizer, options, decode_options, dtype, batch.without_timestamps,
                       batch.rows_per_encode(whisper), aligner, bf16)
            progress.decoded(rows, files)
        progress.finished(files)

    out = []
    for f in files:
        if f.error is not None:  # (its chunks read before the error were decoded, and are dropped)
            out.append(f.error)
            continue
        segments = sorted(f.segments, key=lambda s: (s.start, s.end))
        tokens = [t for s in segments for t in s.tokens]
        total = f.vad + f.mel + f.encode + f.decode
        timings = Timings(load=model.load_seconds, mel=f.mel, encode=f.encode, decode=f.decode, total=total,
                          tokens=f.tokens, rtf=total / f.duration, vad=f.vad)
        out.append(Transcript(text=tokenizer.decode(tokens).strip(), language=_language(f, language),
                              segments=segments, model=model.name, device=runtime.device_name(), dtype=model.dtype,
                              timings=timings, duration=f.duration, tokens=tokens, rewrites=model.rewrites,
                              windows=f.windows, sampled_windows=f.sampled_windows))
    return out


def _language(f: _File, language: str | None) -> str:
    """The given language, else the one most of the file's chunks were detected in."""
    return language or (f.languages.most_common(1)[0][0] if f.languages else "en")


def _chunks(audios: Sequence[str | Path | np.ndarray], files: List[_File], use_vad: bool,
            vad_options: vad.VadOptions, progress: "_Progress", keep_going: bool = False,
            device: bool = False) -> Iterator[_Chunk]:
    """Each file's chunks in order, as the VAD closes them while the file is read block by
    block, only when the batches reach them: a file's audio is never whole in memory (an
    array given whole is only sliced). Appends each file's `_File` to `files` when its
    reading begins; its duration is set when it ends (the progress bar's total grows by what
    its header says at its opening). With `keep_going`, a file whose audio fails keeps its
    AudioError in its `_File` and the next file is read. `device`: chunker.Chunker's; on a
    CUDA GPU the blocks go there through pinned memory (kernels/pinned.py)."""
    upload = pinned.shared(PINNED_BYTES) if device and on_cuda() else None
    for i, a in enumerate(audios):
        f = _File(duration=0.0)
        files.append(f)
        try:
            yield from _file_chunks(i, a, f, use_vad, vad_options, progress, device, upload)
        except AudioError as e:
            if not keep_going:
                raise
            f.error = e


def _file_chunks(i: int, a: str | Path | np.ndarray, f: _File, use_vad: bool, vad_options: vad.VadOptions,
                 progress: "_Progress", device: bool = False, upload=None) -> Iterator[_Chunk]:
    """File i's chunks, its totals into `f`; `device`, `upload`: chunker.Chunker's."""
    if isinstance(a, np.ndarray):
        samples = waveform(a, f"audio[{i}]")  # which of the inputs
        progress.expect(len(samples) / SAMPLE_RATE)
        blocks = _array_blocks(samples)
    else:
        reader = AudioReader(a)
        if 0 < reader.frames < 1 << 62:  # libsndfile's SF_COUNT_MAX: a length it does not know
            progress.expect(reader.frames / reader.sample_rate)
        blocks = reader.blocks(integers=device)  # a 16-bit file's int16 samples to the device: half the bytes
    cutter = chunker.Chunker(vad_options if use_vad else None, CHUNK_SAMPLES, device, upload=upload)
    for block in blocks:
        t = time.perf_counter()
        found = cutter(block)
        f.vad += time.perf_counter() - t
        yield from _decodable(i, found)
    t = time.perf_counter()
    found = cutter.finish()
    f.vad += time.perf_counter() - t
    f.duration = cutter.n / SAMPLE_RATE
    yield from _decodable(i, found)


class _Progress:
    """Batched mode's progress bar on stderr (TranscribeOptions.progress; tqdm's, as sequential
    mode's): seconds of audio, out of the files' durations as their headers give them when each
    is opened. A file counts up to where its decoded chunks reach (silence between them too),
    and whole at the end; nothing is shown (or imported) without `show`."""

    def __init__(self, show: bool):
        self.bar = None
        if show:
            import tqdm

            self.bar = tqdm.tqdm(total=0.0, unit="s", bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s of audio "
                                                                  "[{elapsed}<{remaining}]")

    def __enter__(self) -> "_Progress":
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()

    def expect(self, seconds: float) -> None:
        if self.bar is not None:
            self.bar.total += seconds
            self.bar.refresh()

    def decoded(self, rows: List[_Chunk], files: List[_File]) -> None:
        for c in rows:
            f = files[c.file]
            self._advance(f, max(f.covered, c.speech.pieces[-1][1] / SAMPLE_RATE))

    def finished(self, files: List[_File]) -> None:
        for f in files:
            self._advance(f, max(f.covered, f.duration))
        if self.bar is not None:  # the files as read, where a header said otherwise (a truncated MP3)
            self.bar.total = self.bar.n
            self.bar.refresh()

    def _advance(self, f: _File, to: float) -> None:
        if self.bar is not None and to > f.covered:
            # a file may run past what its header said (a VBR MP3's estimate), and tqdm drops a
            # total its count has passed
            self.bar.total = max(self.bar.total, self.bar.n + to - f.covered)
            self.bar.update(to - f.covered)
        f.covered = to


def _decodable(file: int, found) -> Iterator[_Chunk]:
    """The chunks with a log-mel frame or more: a shorter one (a file's last few samples past
    30 s, without VAD) is a window of padding alone, where Whisper makes up text; sequential
    mode decodes nothing there."""
    return (_Chunk(file, m, samples, len(samples)) for m, samples in found if len(samples) >= HOP_LENGTH)


def _array_blocks(audio: np.ndarray, size: int = CHUNK_SAMPLES) -> Iterator[np.ndarray]:
    for start in range(0, len(audio), size):
        yield audio[start : start + size]


def _decode_kwargs(decode_options: dict, temperature: float) -> dict:
    """As sequential mode's fallback: beam search at temperature 0 only, best_of above it."""
    kwargs = {**decode_options, "temperature": temperature}
    kwargs.pop("best_of" if temperature == 0 else "beam_size", None)
    if temperature > 0:
        kwargs.pop("patience", None)
    return kwargs


def _with_mels(chunks: Iterator[_Chunk], n_mels: int) -> Iterator[_Chunk]:
    """Each chunk with its log-mel queued as the VAD cuts it, on a stream of its own: the device
    makes it while the host reads and cuts on, beside the VAD's own work (on a GPU its LSTM
    holds a few SMs), and a batch waits only for its last chunks' mels."""
    for c in chunks:
        c.mel, c.mel_s = mels.queue(c.audio, n_mels)
        c.audio = None  # the batch's chunks' samples are not kept while it waits and decodes
        yield c


def _run_batch(whisper, rows: List[_Chunk], files: List[_File], tokenizer: Tokenizer, options: TranscribeOptions,
               decode_options: dict, dtype: mx.Dtype, without_timestamps: bool, encoder_rows: int,
               aligner: Aligner | None, bf16: bool) -> None:
    """Decode `rows` as one batch into their files' segments, encoded `encoder_rows` at a time
    (on the CPU, with `bf16`, the encoder's products in bfloat16 where it has AMX tiles)."""
    mel_s = encode_s = 0.0
    parts = []
    for at in range(0, len(rows), encoder_rows):
        t = time.perf_counter()
        part = rows[at : at + encoder_rows]
        mel = mx.stack([c.mel for c in part]).astype(dtype)
        mx.eval(mel)
        mel_s += time.perf_counter() - t + sum(c.mel_s for c in part)
        for c in part:
            c.mel = None
        t = time.perf_counter()
        parts.append(encode(whisper, mel, bf16))
        mx.eval(parts[-1])
        del mel
        encode_s += time.perf_counter() - t
    features = mx.concatenate(parts) if len(parts) > 1 else parts[0]
    del parts
    t2 = time.perf_counter()

    results: List[DecodingResult | None] = [None] * len(rows)
    sampled = [False] * len(rows)
    pending = list(range(len(rows)))
    tokens = [0] * len(rows)
    reach = [must_reach(c.speech) for c in rows]
    for temperature in options.temperature:
        batch = features if len(pending) == len(rows) else features[mx.array(pending)]
        decoded = decode_window(whisper, batch, DecodingOptions(**_decode_kwargs(decode_options, temperature)),
                                must_reach=[reach[i] for i in pending], bf16=bf16)
        retry = []
        for i, r in zip(pending, decoded):
            results[i], sampled[i] = r, temperature > 0
            tokens[i] += len(r.tokens) + 1  # + its EOT
            if _needs_fallback(r, options):
                retry.append(i)
        pending = retry
        if not pending:
            break
    t3 = time.perf_counter()

    n = len(rows)
    for i, (c, r) in enumerate(zip(rows, results)):
        f = files[c.file]
        f.mel += mel_s / n
        f.encode += encode_s / n
        f.decode += (t3 - t2) / n
        f.tokens += tokens[i]
        f.windows += 1
        f.sampled_windows += sampled[i]
        f.languages[r.language] += 1
        if _is_silence(r, options):
            continue
        t = time.perf_counter()
        align = _word_aligner(whisper, aligner, features[i], c.samples, tokenizer, r.language, options) \
            if options.word_timestamps else None
        f.segments.extend(chunk_segments(tokenizer, r.tokens, c.speech, without_timestamps, align=align))
        f.decode += time.perf_counter() - t  # sequential mode counts the words' alignment as decoding too


def must_reach(speech: vad.SpeechMap, time_precision: float = 0.02, min_seconds: float = 1.0) -> int:
    """rules.HeldEnd's bound for a chunk's row, in timestamp steps: a row may not end after a
    pair of timestamps whose first leaves at least `min_seconds` of the chunk's speech after it
    (less is the pieces' 0.4 s padding and a breath). A pair at 0.00 counts too, where decoding
    the rest again in a window of its own had to skip it (that rest was the whole chunk)."""
    step = round(time_precision * SAMPLE_RATE)
    return max(0, (speech.samples - round(min_seconds * SAMPLE_RATE)) // step + 1)


def _needs_fallback(r: DecodingResult, options: TranscribeOptions) -> bool:
    """sequential mode's test (longform.generate_with_fallback): too repetitive or too
    improbable, unless the row reads as silence."""
    if options.no_speech_threshold is not None and r.no_speech_prob > options.no_speech_threshold:
        return False
    return ((options.compression_ratio_threshold is not None and r.compression_ratio > options.compression_ratio_threshold)
            or (options.logprob_threshold is not None and r.avg_logprob < options.logprob_threshold))


def _is_silence(r: DecodingResult, options: TranscribeOptions) -> bool:
    """sequential mode's window skip: no speech, unless the decode was confident all the same."""
    if options.no_speech_threshold is None or r.no_speech_prob <= options.no_speech_threshold:
        return False
    return options.logprob_threshold is None or r.avg_logprob <= options.logprob_threshold


def chunk_segments(tokenizer: Tokenizer, tokens: List[int], speech: vad.SpeechMap,
                   without_timestamps: bool = False, time_precision: float = 0.02,
                   align: Callable[[List[dict]], None] | None = None) -> List[Segment]:
    """A chunk's decoded tokens -> segments in the file's time. Timestamp tokens open and close
    segments (a timestamp after text closes one; the next opens the following one); text after
    the last timestamp runs to the chunk's end, where its speech ends. Segments without text
    are left out. Each segment keeps its timestamp tokens, as sequential mode's do.
    align: gives the segments (mlx-whisper's dicts, in the chunk's time) their "words" and
    moves their start and end to them (`_word_aligner`)."""
    length = speech.samples / SAMPLE_RATE
    begin = tokenizer.timestamp_begin
    spans: List[tuple[float, float, List[int]]] = []
    if without_timestamps:
        spans.append((0.0, length, list(tokens)))
    else:
        start, current = None, []
        for t in tokens:
            if t < begin:
                current.append(t)
                continue
            at = (t - begin) * time_precision
            if any(x < begin for x in current):
                spans.append((start or 0.0, at, current + [t]))
                start, current = None, []
            else:
                start, current = at, [t]
        if any(x < begin for x in current):
            spans.append((start or 0.0, length, current))
    found = []
    for start, end, toks in spans:
        text = tokenizer.decode([t for t in toks if t < tokenizer.eot])
        if text.strip():
            found.append(dict(seek=0, start=min(start, length), end=min(max(end, start), length), text=text, tokens=toks))
    if align is not None and found:
        align(found)
    segments = []
    for s in found:
        start, end = speech.span_to_file(min(s["start"], length), min(max(s["end"], s["start"]), length))
        words = None if "words" not in s else [Word(*speech.word_to_file(w["start"], w["end"], (start, end)), w["word"],
                                                    w["probability"]) for w in s["words"]]
        segments.append(Segment(start, end, s["text"], s["tokens"], words))
    return segments


def _word_aligner(whisper, aligner: Aligner, features: mx.array, samples: int, tokenizer: Tokenizer,
                  language: str | None, options: TranscribeOptions) -> Callable[[List[dict]], None]:
    """Word timestamps for one chunk's segments: mlx-whisper's add_word_timestamps (DTW over the
    alignment heads' cross-attention; `aligner`: the decoder with those layers as built, on
    the batch's features), in the chunk's time, over its `samples` of audio, with the chunk's own language
    in the prompt; each chunk on its own, as it was decoded."""
    if language and language != tokenizer.language:
        tokenizer = tokenizer_for(whisper)(whisper.is_multilingual, num_languages=whisper.num_languages,
                                           language=language, task=tokenizer.task)

    def align(segments: List[dict]) -> None:
        add_word_timestamps(segments=segments, model=aligner, tokenizer=tokenizer, mel=features,
                            num_frames=samples // HOP_LENGTH, prepend_punctuations=options.prepend_punctuations,
                            append_punctuations=options.append_punctuations, last_speech_timestamp=0.0)
    return align
