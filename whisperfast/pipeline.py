"""Audio in, text out: model loading, mlx-whisper's sliding-window transcription, timings.

The one seam where a model rewrite plugs in is `load(..., fast=True)`: it hands the
loaded `Whisper` to `whisperfast.kernels.rewrite` and transcribes with what comes back.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import mlx.core as mx
import numpy as np
from mlx_whisper.whisper import Whisper

from . import models, runtime
from .audio import SAMPLE_RATE, check_samples, load_audio
from .errors import WhisperfastError

# `mlx_whisper.transcribe` the attribute is the function; we need the module (for ModelHolder).
_mw_transcribe = importlib.import_module("mlx_whisper.transcribe")


@dataclass(frozen=True)
class TranscribeOptions:
    language: str | None = None  # None: detect (multilingual models) or "en"
    task: str = "transcribe"  # or "translate"
    word_timestamps: bool = False
    temperature: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    condition_on_previous_text: bool = True
    initial_prompt: str | None = None
    progress: bool = False  # mlx-whisper's progress bar (audio frames) on stderr
    # Windows that fall back to temperature > 0 sample with MLX's random generator; a fixed
    # seed makes the transcript reproducible, and two lanes with one seed draw the same numbers
    # in the same order. None leaves MLX's generator as it is.
    seed: int | None = 0


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
    """Seconds. `total` is mel + encode + decode (load is separate); `rtf` = total / audio."""

    load: float
    mel: float
    encode: float
    decode: float
    total: float
    tokens: int
    rtf: float

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


def load(name: str = models.DEFAULT_MODEL, *, dtype: mx.Dtype | None = None, fast: bool = False,
         word_timestamps: bool = False) -> LoadedModel:
    """Load `name`; with `fast`, rewrite it onto fused kernels (see `rewritten`)."""
    t0 = time.perf_counter()
    dtype = dtype or models.default_dtype()
    whisper = models.load_model(name, dtype)
    _warm_tokenizer(whisper)
    loaded = LoadedModel(name, whisper, runtime.dtype_name(dtype), time.perf_counter() - t0)
    return rewritten(loaded, word_timestamps=word_timestamps) if fast else loaded


def rewritten(model: LoadedModel, *, mode: str = "fused", word_timestamps: bool = False) -> LoadedModel:
    """The same weights on a rewritten graph; `model` is left as it was. With word
    timestamps, the alignment layers stay composed: they must return attention weights."""
    from .kernels import rewrite_whisper

    t0 = time.perf_counter()
    whisper, report = rewrite_whisper(model.whisper, word_timestamps=word_timestamps, mode=mode)
    return replace(model, whisper=whisper, load_seconds=model.load_seconds + time.perf_counter() - t0,
                   rewrites={**report.to_dict(), "notes": _decode_notes(whisper)})


def _decode_notes(whisper: Whisper) -> list[str]:
    """What the fast decode paths decline for this model, and where it runs instead."""
    from mlx.utils import tree_flatten

    if any(not mx.issubdtype(p.dtype, mx.floating) for _, p in tree_flatten(whisper.decoder.parameters())):
        return ["quantized decoder: the CUDA decode kernel reads float weights only, so decoding runs the flat step"]
    return []


def _warm_tokenizer(whisper: Whisper) -> None:
    # Building tiktoken's encoding and its special-token regex costs ~0.5 s once per process;
    # it belongs to loading, not to the first transcription's timings.
    from mlx_whisper.tokenizer import get_tokenizer

    get_tokenizer(whisper.is_multilingual, num_languages=whisper.num_languages, language="en").encode(" ")


class _Timed:
    """Stands in for the model inside mlx-whisper's loop and times its stages. MLX is lazy,
    so each stage is forced with `mx.eval` inside its own timed region: the first encoder
    call first forces the mel (computed lazily from the audio), then the encoder."""

    def __init__(self, model: Whisper, t0: float):
        self._model, self._t0 = model, t0
        self.mel = self.encode = 0.0
        self.n_tokens = self.windows = self.sampled = 0
        self._first = True

    def __getattr__(self, name):
        return getattr(self._model, name)

    def encoder(self, mel: mx.array) -> mx.array:
        t = time.perf_counter()
        mx.eval(mel)
        now = time.perf_counter()
        self.mel += now - (self._t0 if self._first else t)
        self._first = False
        features = self._model.encoder(mel)
        mx.eval(features)
        self.encode += time.perf_counter() - now
        return features

    def decode(self, mel, options):
        # Pass self as the model, so the decoding task calls the timed encoder above.
        result = type(self._model).decode(self, mel, options)
        # mlx-whisper decodes a window once per temperature it tries
        self.windows += options.temperature == 0
        self.sampled += options.temperature > 0
        self.n_tokens += sum(len(r.tokens) + 1 for r in (result if isinstance(result, list) else [result]))
        return result

    def detect_language(self, mel, tokenizer=None):
        return type(self._model).detect_language(self, mel, tokenizer)


def _run_mlx_whisper(model: Whisper, audio: np.ndarray, fp16: bool, options: TranscribeOptions) -> dict:
    # mlx-whisper's transcribe() takes its model from ModelHolder; lend ours for this call.
    holder = _mw_transcribe.ModelHolder
    holder.model, holder.model_path = model, "<whisperfast>"
    try:
        return _mw_transcribe.transcribe(
            audio, path_or_hf_repo="<whisperfast>", verbose=False if options.progress else None, temperature=options.temperature,
            word_timestamps=options.word_timestamps, condition_on_previous_text=options.condition_on_previous_text,
            initial_prompt=options.initial_prompt, language=options.language, task=options.task, fp16=fp16,
        )
    finally:
        holder.model = holder.model_path = None


def transcribe(model: LoadedModel, audio: str | Path | np.ndarray, options: TranscribeOptions = TranscribeOptions()) -> Transcript:
    """Transcribe a file path, or a float32 mono 16 kHz waveform, of any length."""
    audio = check_samples(np.asarray(audio, dtype=np.float32)) if isinstance(audio, np.ndarray) else load_audio(audio)
    if options.task not in ("transcribe", "translate"):
        raise WhisperfastError(f"unknown task '{options.task}' (use transcribe or translate)")
    if options.language is not None:
        options = replace(options, language=_language_code(options.language))
        if not model.whisper.is_multilingual and options.language != "en":
            raise WhisperfastError(f"model '{model.name}' is English-only; it cannot transcribe '{options.language}'")

    t0 = time.perf_counter()
    timed = _Timed(model.whisper, t0)
    _seed(options.seed)
    result = _run_mlx_whisper(timed, audio, model.dtype == "float16", options)
    total = time.perf_counter() - t0

    duration = len(audio) / SAMPLE_RATE
    segments = [
        Segment(s["start"], s["end"], s["text"], list(s["tokens"]),
                [Word(w["start"], w["end"], w["word"], w["probability"]) for w in s["words"]] if "words" in s else None)
        for s in result["segments"]
    ]
    timings = Timings(load=model.load_seconds, mel=timed.mel, encode=timed.encode,
                      decode=max(total - timed.mel - timed.encode, 0.0), total=total,
                      tokens=timed.n_tokens, rtf=total / duration)
    return Transcript(text=result["text"].strip(), language=result["language"], segments=segments, model=model.name,
                      device=runtime.device_name(), dtype=model.dtype, timings=timings, duration=duration,
                      tokens=[t for s in segments for t in s.tokens], rewrites=model.rewrites,
                      windows=timed.windows, sampled_windows=timed.sampled)


def _language_code(name: str) -> str:
    """'en', 'English' or 'english' -> 'en'."""
    from mlx_whisper.tokenizer import LANGUAGES, TO_LANGUAGE_CODE

    key = name.lower()
    if key in LANGUAGES:
        return key
    if key in TO_LANGUAGE_CODE:
        return TO_LANGUAGE_CODE[key]
    raise WhisperfastError(f"unknown language '{name}'")


def _seed(seed: int | None) -> None:
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
    if not isinstance(audio, np.ndarray):
        audio = load_audio(audio)
    a, b = transcribe(baseline, audio, options), transcribe(fused, audio, options)
    return Comparison(a, b, a.tokens == b.tokens, a.text == b.text)
