"""Audio in, text out: model loading, options, and the transcript with its timings; the
sliding-window loop itself is `longform` (mlx-whisper's, ported).

The one seam where a model rewrite plugs in is `load(..., fast=True)` (or `rewritten`): it
hands the loaded `Whisper` to `whisperfast.decode.rewrite_whisper` and keeps both models; each
transcription then decodes on the engine `whisperfast.decode.Engine` picks for them.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import mlx.core as mx
import numpy as np
from mlx_whisper.tokenizer import get_tokenizer as stock_tokenizer
from mlx_whisper.whisper import Whisper

from . import _blas, longform, models, runtime, tokenizer
from .decode import Engine
from .kernels.dequantize import dequantized
from .audio import SAMPLE_RATE, load_audio, waveform
from .errors import WhisperfastError
from .options import TranscribeOptions


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    word: str
    probability: float


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str
    tokens: list[int]
    words: list[Word] | None = None


@dataclass(frozen=True)
class Timings:
    """Seconds. `total` is vad + mel + encode + decode (load is separate); `rtf` = total / audio."""

    load: float
    mel: float
    encode: float
    decode: float
    total: float
    tokens: int
    rtf: float
    vad: float = 0.0  # finding the speech (VAD on); 0 when off

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.decode if self.decode > 0 else 0.0


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    segments: list[Segment]
    model: str
    device: str
    dtype: str
    timings: Timings
    duration: float  # seconds of audio
    tokens: list[int] = field(default_factory=list)  # every generated text/timestamp token, in order
    rewrites: dict | None = None  # the RewriteReport, when the model was rewritten
    windows: int = 0  # 30 s windows decoded
    sampled_windows: int = 0  # of those, decoded again at temperature > 0 (the fallback)


@dataclass(frozen=True)
class LoadedModel:
    name: str
    whisper: Whisper
    dtype: str
    load_seconds: float
    rewrites: dict | None = None
    quantization: dict | None = None  # {"bits", "group_size"} when load() quantized it
    # A rewritten model's original (the same weight arrays): the engine runs windows on it
    # where the rewrite cannot round as stock does (decode/engine.py)
    stock: Whisper | None = None

    def engine(self) -> Engine:
        """The decoding engine for one transcription."""
        return Engine(self.whisper, stock=self.stock)


def load(name: str | os.PathLike = models.DEFAULT_MODEL, *, dtype: mx.Dtype | str | None = None, fast: bool = False,
         quantize: int | None = None, group_size: int | None = None) -> LoadedModel:
    """Load `name` (a model's name, or its directory); with `quantize` (8 or 4), its
    affine-quantized variant in groups of `group_size` (default `models.default_group_size`;
    cached, see `models.load_model`); with `fast`, rewrite it onto fused kernels (see
    `rewritten`). `dtype`: float16, float32 or bfloat16 (or their names)."""
    t0 = time.perf_counter()
    _warn_if_slow_blas()
    name = models.as_name(name)
    dtype = runtime.parse_dtype(dtype) if isinstance(dtype, str) else dtype or models.default_dtype()
    dtype_name = runtime.dtype_name(dtype)  # float16, float32 or bfloat16: checked before anything is read or cached
    if quantize is not None:
        group_size = group_size or models.default_group_size(quantize)
    whisper = models.load_model(name, dtype, quantize=quantize, group_size=group_size)
    # while MLX may still be reading the weights on its own thread; built as the decodes will
    # build it: the fast engine's (decode.tokenizer_for), or stock's
    _warm_tokenizer(whisper.is_multilingual, whisper.num_languages, tokenizer.get_tokenizer if fast else stock_tokenizer)
    mx.eval(whisper.parameters())  # the read belongs to load_seconds, whatever was cached before
    loaded = LoadedModel(name, whisper, dtype_name, time.perf_counter() - t0,
                         quantization=None if quantize is None else {"bits": quantize, "group_size": group_size})
    return rewritten(loaded) if fast else loaded


def _warn_if_slow_blas() -> None:
    """On the CPU, say when MLX's matmuls fell back to the reference BLAS bundled with mlx-cpu
    (a WHISPERFAST_BLAS that does not load, no scipy): JFK then takes 6 s, not 0.6 s."""
    if mx.default_device() != mx.cpu:
        return
    slow = _blas.slow_warning()
    if slow:
        warnings.warn(slow, stacklevel=3)


def rewritten(model: LoadedModel, *, mode: str = "fused", exact: bool = False) -> LoadedModel:
    """The same weights on a rewritten graph; `model` is left as it was. With word
    timestamps too the rewritten model decodes whole: their alignment pass makes its own view
    of it (decode/words.alignment_view).

    exact: on a GPU in fp16/bf16, attention rounds its scores and softmax weights to the
    compute dtype as mlx-whisper's graph does, where MLX's fused SDPA keeps them in fp32 (on
    the CPU the fused op already rounds so, and in fp32 both agree). Measured on the H200
    (benchmarks/h200-engine/): the encoder's output is then stock's bit for bit (a decoder
    prompt attends as stock's graph either way: decode/attention.py), but the flat step parts
    from stock's after a few tokens (likely MLX picking other matmul kernels for the static
    cache's strides; not confirmed), and the CUDA kernel's sums, in their own order, then fall
    on the other side of tiny.en's JFK near-tie. So it is off by default."""
    from .decode import rewrite_whisper, tokenizer_for

    t0 = time.perf_counter()
    rounded = exact and mode == "fused" and mx.default_device() == mx.gpu and model.dtype in ("float16", "bfloat16")
    whisper, report = rewrite_whisper(model.whisper, mode=mode, attention="rounded" if rounded else None)
    notes = []
    if mx.default_device() == mx.cpu:
        whisper, n = dequantized(whisper)
        if n:
            notes.append(f"{n} quantized layers run dequantized on the CPU (MLX's CPU quantized matmul is a scalar loop, "
                         "~40x slower than BLAS at the encoder's 1500 rows): the same quantized values in "
                         f"{model.dtype}, summed in BLAS's order, so they agree with the stock lane to rounding")
    # built already where load(fast=True) made this model
    _warm_tokenizer(whisper.is_multilingual, whisper.num_languages, tokenizer_for(whisper))
    return replace(model, whisper=whisper, load_seconds=model.load_seconds + time.perf_counter() - t0,
                   rewrites={**report.to_dict(), "notes": notes + _decode_notes(whisper, rounded, model.dtype)},
                   stock=model.stock or model.whisper)


def _decode_notes(whisper: Whisper, rounded: bool, dtype: str) -> list[str]:
    """What the fast paths decline for this model, and where it runs instead."""
    from mlx.utils import tree_flatten

    notes = []
    if rounded:
        notes.append(f"attention rounds as mlx-whisper's in {dtype} (GPU): MLX's fused SDPA keeps fp32 scores and "
                     "weights, which moves near-ties away from stock's transcript")
    if mx.default_device() == mx.gpu and dtype in ("float16", "bfloat16"):
        notes.append(f"windows decoded at temperature > 0 (the fallback) run on the stock model: in {dtype} on a GPU "
                     "the fused kernels round otherwise, and sampling turns any difference into another draw")
    if any(not mx.issubdtype(p.dtype, mx.floating) for _, p in tree_flatten(whisper.decoder.parameters())):
        from .decode.cuda.step import quantized_note

        note = quantized_note(whisper)
        if note:
            notes.append(note)
    return notes


def warm_tokenizer(name: str, *, fast: bool = False) -> None:
    """Build the tokenizer that `load(name, fast=fast)` builds, where the model's vocabulary is
    known without loading it (models.text_vocabulary): host work alone, which the CLI does while
    the GPU warms up; `load` then finds it built."""
    vocabulary = models.text_vocabulary(name)
    if vocabulary is not None:
        _warm_tokenizer(*vocabulary, tokenizer.get_tokenizer if fast else stock_tokenizer)


def _warm_tokenizer(multilingual: bool, num_languages: int, get_tokenizer) -> None:
    # Building the tokenizer costs 0.15-0.5 s once per process (mlx-whisper's compiles
    # tiktoken's special-token regex on its first encode; ..tokenizer avoids that): it belongs
    # to loading, not to the first transcription's timings.
    tok = get_tokenizer(multilingual, num_languages=num_languages, language="en")
    tok.encode(" ")  # SuppressBlank's
    tok.non_speech_tokens  # noqa: B018  (SuppressTokens', a cached property)


def transcribe(model: LoadedModel, audio: str | Path | np.ndarray, options: TranscribeOptions = TranscribeOptions()) -> Transcript:
    """Transcribe a file path, or a float32 mono 16 kHz waveform, of any length."""
    audio = waveform(audio) if isinstance(audio, np.ndarray) else load_audio(audio)
    options = replace(options, language=checked_language(model, options.language))
    duration = len(audio) / SAMPLE_RATE

    t0 = time.perf_counter()
    speech = None
    if options.vad:
        # the speech pieces end to end (faster-whisper's sequential vad_filter), decoded as one
        # file; each time is mapped back through the pieces
        from . import vad

        speech = (vad.collect_chunks(vad.get_speech_timestamps(audio)) or [vad.SpeechMap(())])[0]
        audio = speech.audio(audio)
    t_vad = time.perf_counter() - t0 if speech is not None else 0.0
    seed_generator(options.seed)
    if speech is not None and not speech.pieces:
        result = longform.Result(text="", language=options.language or "en", segments=[])
    else:
        result = longform.transcribe(model.engine(), audio, options, fp16=model.dtype == "float16")
    total = time.perf_counter() - t0

    span = (lambda a, b: (a, b)) if speech is None else speech.span_to_file
    # with VAD a word is kept within its segment, as batched mode keeps it (vad.SpeechMap.word_to_file)
    word = (lambda a, b, _: (a, b)) if speech is None else speech.word_to_file
    stats = result.stats
    segments = []
    for s in result.segments:
        within = span(s["start"], s["end"])
        words = [Word(*word(w["start"], w["end"], within), w["word"], w["probability"]) for w in s["words"]] \
            if "words" in s else None
        segments.append(Segment(*within, s["text"], list(s["tokens"]), words))
    timings = Timings(load=model.load_seconds, mel=stats.mel, encode=stats.encode,
                      decode=max(total - t_vad - stats.mel - stats.encode, 0.0), total=total,
                      tokens=stats.tokens, rtf=total / duration, vad=t_vad)
    return Transcript(text=result.text.strip(), language=result.language, segments=segments, model=model.name,
                      device=runtime.device_name(), dtype=model.dtype, timings=timings, duration=duration,
                      tokens=[t for s in segments for t in s.tokens], rewrites=model.rewrites,
                      windows=stats.windows, sampled_windows=stats.sampled_windows)


def checked_language(model: LoadedModel, language: str | None) -> str | None:
    """A language name or code -> its code (None stays None: detect); refused for an
    English-only model unless English."""
    if language is None:
        return None
    code = language_code(language)
    if not model.whisper.is_multilingual and code != "en":
        raise WhisperfastError(f"model '{model.name}' is English-only; it cannot transcribe '{code}'")
    return code


def language_code(name: str) -> str:
    """'en', 'English' or 'english' -> 'en'."""
    from mlx_whisper.tokenizer import LANGUAGES, TO_LANGUAGE_CODE

    key = name.lower()
    if key in LANGUAGES:
        return key
    if key in TO_LANGUAGE_CODE:
        return TO_LANGUAGE_CODE[key]
    raise WhisperfastError(f"unknown language '{name}'")


def seed_generator(seed: int | None) -> None:
    """Seed MLX's generator, which mlx-whisper's sampled fallback draws from (MLX offers no
    way to save and restore it: a seeded transcription reseeds it for the caller too)."""
    if seed is not None:
        mx.random.seed(seed)


@dataclass(frozen=True)
class Comparison:
    baseline: Transcript
    fused: Transcript
    tokens_match: bool
    transcripts_match: bool


def compare(baseline: LoadedModel, fused: LoadedModel, audio: str | Path | np.ndarray,
            options: TranscribeOptions = TranscribeOptions()) -> Comparison:
    """Both models on the same input, in one process; the audio is decoded once."""
    if not isinstance(audio, np.ndarray):  # (an array is checked by transcribe)
        audio = load_audio(audio)
    a, b = transcribe(baseline, audio, options), transcribe(fused, audio, options)
    return Comparison(a, b, a.tokens == b.tokens, a.text == b.text)
