"""What a transcription may be asked for: `TranscribeOptions`, checked once, on construction."""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass

from .errors import WhisperfastError

# beam_size and best_of at most: each is a row of the decode
MAX_CANDIDATES = 256
# Whisper's special tokens, which its tokenizer refuses in a prompt's text (other <|...|> is text)
_SPECIAL = re.compile(r"<\|(endoftext|startof(transcript|lm|prev)|translate|transcribe|nospeech|nocaptions"
                      r"|notimestamps|[a-z]{2,3}|haw|yue|\d+\.\d\d)\|>")


def whole_count(name: str, value) -> int:
    """beam_size's and best_of's check: a whole number (numpy's too, not a bool) from 1 to
    MAX_CANDIDATES (2.5 or True failed deep in a decode, 3e9 overflowed MLX's int32 shapes)."""
    try:
        n = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        n = None
    if n is None or not 1 <= n <= MAX_CANDIDATES:
        raise WhisperfastError(f"{name} must be a whole number from 1 to {MAX_CANDIDATES}, not {value!r}")
    return n


@dataclass(frozen=True)
class TranscribeOptions:
    """mlx-whisper 0.4.3's `transcribe()` options, with its defaults; checked on construction
    (WhisperfastError). `temperature` becomes a tuple and `clip_timestamps` a tuple of seconds."""

    language: str | None = None  # None: detect (multilingual models) or "en"
    task: str = "transcribe"  # or "translate"
    word_timestamps: bool = False
    # Tried in turn while a window's decode fails the thresholds below. beam_size and patience
    # apply at temperature 0 only, best_of at temperatures > 0 only (as openai-whisper).
    temperature: float | tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    beam_size: int | None = None
    best_of: int | None = None
    patience: float | None = None  # needs beam_size
    length_penalty: float | None = None  # None: rank by average log probability; else in [0, 1]
    compression_ratio_threshold: float | None = 2.4  # above: too repetitive, try the next temperature
    logprob_threshold: float | None = -1.0  # below (average per token): try the next temperature
    no_speech_threshold: float | None = 0.6  # above, with a low logprob: the window is silence
    condition_on_previous_text: bool = True
    initial_prompt: str | None = None
    hallucination_silence_threshold: float | None = None  # seconds; needs word_timestamps
    clip_timestamps: str | tuple[float, ...] = "0"  # "start,end,start,end,..." seconds; a last end may be left out
    prepend_punctuations: str = "\"'“¿([{-"  # word timestamps: merged with the next word
    append_punctuations: str = "\"'.。,，!！?？:：”)]}、"  # word timestamps: merged with the previous word
    suppress_tokens: str | tuple[int, ...] = "-1"  # token ids; -1: mlx-whisper's non-speech symbols
    suppress_blank: bool = True
    progress: bool = False  # mlx-whisper's progress bar (audio frames) on stderr
    # Windows that fall back to temperature > 0 sample with MLX's random generator; a fixed
    # seed makes the transcript reproducible, and two lanes with one seed draw the same numbers
    # in the same order. None leaves MLX's generator as it is.
    seed: int | None = 0
    # Voice activity detection (whisperfast.vad): decode the speech only, silence left out
    # (where Whisper hallucinates), timestamps mapped back to the file. None: the mode's
    # default, off in sequential mode (stock semantics exactly), on in batched mode.
    vad: bool | None = None

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen)
        if self.seed is not None:
            try:  # numpy's integers too (mx.random.seed takes them), not bools
                seed = None if isinstance(self.seed, bool) else operator.index(self.seed)
            except TypeError:
                seed = None
            if seed is None or not 0 <= seed < 2**64:
                raise WhisperfastError(f"seed must be a whole number from 0 to 2**64 - 1, not {self.seed!r}")
            set_("seed", seed)
        if self.task not in ("transcribe", "translate"):
            raise WhisperfastError(f"unknown task '{self.task}' (use transcribe or translate)")
        t = self.temperature
        if isinstance(t, str):  # "0.5" was read as the temperatures 0, ., 5
            raise WhisperfastError(f"temperature must be one or more numbers >= 0, not the string {t!r}")
        set_("temperature", (float(t),) if isinstance(t, (int, float)) else tuple(float(x) for x in t))
        if not self.temperature or not all(math.isfinite(x) and x >= 0 for x in self.temperature):
            raise WhisperfastError(f"temperature must be one or more numbers >= 0, not {t!r}")
        for name in ("beam_size", "best_of"):
            if getattr(self, name) is not None:
                set_(name, whole_count(name, getattr(self, name)))
        if self.patience is not None and self.beam_size is None:
            raise WhisperfastError("patience needs beam_size")
        if self.patience is not None and not self.patience > 0:
            raise WhisperfastError(f"patience must be > 0, not {self.patience}")
        if self.length_penalty is not None and not 0 <= self.length_penalty <= 1:
            raise WhisperfastError(f"length_penalty must be between 0 and 1, not {self.length_penalty}")
        if self.compression_ratio_threshold is not None and not self.compression_ratio_threshold > 0:
            raise WhisperfastError(f"compression_ratio_threshold must be > 0, not {self.compression_ratio_threshold}")
        if self.logprob_threshold is not None and not math.isfinite(self.logprob_threshold):
            raise WhisperfastError(f"logprob_threshold must be a finite number, not {self.logprob_threshold}")
        if self.no_speech_threshold is not None and not 0 <= self.no_speech_threshold <= 1:
            raise WhisperfastError(f"no_speech_threshold is a probability, between 0 and 1, not {self.no_speech_threshold}")
        if self.hallucination_silence_threshold is not None:
            if not self.word_timestamps:
                raise WhisperfastError("hallucination_silence_threshold needs word_timestamps")
            if not self.hallucination_silence_threshold >= 0:
                raise WhisperfastError(f"hallucination_silence_threshold must be >= 0 seconds, not {self.hallucination_silence_threshold}")
        if isinstance(self.initial_prompt, str) and (token := _SPECIAL.search(self.initial_prompt)):
            # the tokenizer refuses it mid-run (an internal error, after the model's load)
            raise WhisperfastError(f"initial_prompt is text: it may not hold a special token such as {token.group()}")
        set_("clip_timestamps", _clip_timestamps(self.clip_timestamps))
        if self.vad and self.clip_timestamps != (0.0,):
            raise WhisperfastError("clip_timestamps and VAD both choose what to decode: use one of them")
        if isinstance(self.suppress_tokens, str):
            try:
                [int(x) for x in self.suppress_tokens.split(",") if x.strip()]
            except ValueError:
                raise WhisperfastError(f"suppress_tokens must be comma-separated token ids, not {self.suppress_tokens!r}") from None
        else:
            set_("suppress_tokens", tuple(int(x) for x in self.suppress_tokens))


def _clip_timestamps(clips: str | tuple[float, ...] | list[float]) -> tuple[float, ...]:
    """"0,5.5,10" or (0, 5.5, 10) -> (0.0, 5.5, 10.0): start,end pairs in seconds, increasing;
    an odd count leaves the last clip open to the end (mlx-whisper's format)."""
    try:
        seconds = tuple(float(x) for x in (clips.split(",") if clips else [])) if isinstance(clips, str) \
            else tuple(float(x) for x in clips)
    except (TypeError, ValueError):
        raise WhisperfastError(f"clip_timestamps must be start,end,... seconds, not {clips!r}") from None
    if not all(math.isfinite(x) and x >= 0 for x in seconds):
        raise WhisperfastError(f"clip_timestamps must be seconds >= 0, not {clips!r}")
    if any(b <= a if i % 2 == 0 else b < a for i, (a, b) in enumerate(zip(seconds, seconds[1:]))):
        raise WhisperfastError(f"clip_timestamps must increase: each clip's end after its start, the next start not before it, not {clips!r}")
    return seconds
