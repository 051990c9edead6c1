"""whisperfast's own long-form loop: mlx-whisper 0.4.3's `transcribe()`, ported line for line
in faster-whisper's shape (`generate_segments` walks the audio window by window,
`generate_with_fallback` decodes one window at rising temperatures).

The semantics are mlx-whisper's, quirks included, because stock `mlx_whisper.transcribe` is the
oracle: with the same options and seed this loop must produce its tokens exactly
(tests/test_longform.py). What is whisperfast's own:
- every window is encoded here, once, between `mx.eval` boundaries, so the loop times the mel
  and the encoder itself; the decoder is given the audio features (mlx-whisper's DecodingTask
  skips its encoder when handed an array shaped (n_audio_ctx, n_audio_state));
- every window is encoded and decoded through a `whisperfast.decode.Engine`, the one seam to
  the decoding engines;
- word timestamps: mlx-whisper's add_word_timestamps (decode/words.py: its DTW and median filter
  in numpy, not numba's and scipy's, which cost seconds a process), on the window's features
  as decoded (no second encoder pass), its alignment layers as built (engine.aligner: the
  decode itself runs on the rewritten model whole).

Shapes: audio (n_samples,) float32 at 16 kHz; mel (n_frames + N_FRAMES, n_mels), the audio
followed by 30 s of padding; a window's mel (N_FRAMES, n_mels) = (3000, n_mels), in the
decode dtype; its features (n_audio_ctx, n_audio_state) = (1500, n_audio_state).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Sequence, Tuple

import mlx.core as mx
import numpy as np
from mlx_whisper.audio import FRAMES_PER_SECOND, HOP_LENGTH, N_FRAMES, N_SAMPLES, SAMPLE_RATE, log_mel_spectrogram, pad_or_trim
from mlx_whisper.decoding import DecodingOptions, DecodingResult
from mlx_whisper.tokenizer import Tokenizer

from .decode import Engine
from .decode.words import add_word_timestamps
from .options import TranscribeOptions


# mlx-whisper's: words that are only these characters are left out of the anomaly score
PUNCTUATION = "\"'“¿([{-\"'.。,，!！?？:：”)]}、"


@dataclass
class Stats:
    """What the loop measured. Seconds: `mel` (the whole file's spectrogram) and `encode`
    (every window's, language detection's included). `tokens` counts every decode's tokens
    plus its EOT, fallbacks included; `windows` decodes at temperature 0, `sampled_windows`
    decodes at temperature > 0."""

    mel: float = 0.0
    encode: float = 0.0
    tokens: int = 0
    windows: int = 0
    sampled_windows: int = 0


@dataclass
class Result:
    """mlx-whisper's result dict as fields: `segments` are its segment dicts ("seek", "start",
    "end", "text", "tokens", "temperature", "avg_logprob", "compression_ratio",
    "no_speech_prob", and "words" with word timestamps)."""

    text: str
    language: str
    segments: List[dict]
    stats: Stats = field(default_factory=Stats)


def transcribe(engine: Engine, audio: np.ndarray, options: TranscribeOptions, *, fp16: bool) -> Result:
    """The whole file: mel, language, then `generate_segments` to the end. `audio` (n_samples,)
    float32 16 kHz; `options` already validated (pipeline.TranscribeOptions); `fp16` as
    mlx-whisper's: the window's mel is cast to float16 and the decoder expects float16 features."""
    stats, model = Stats(), engine.model
    t0 = time.perf_counter()
    mel = log_mel_spectrogram(audio, n_mels=model.dims.n_mels, padding=N_SAMPLES)
    mx.eval(mel)
    stats.mel = time.perf_counter() - t0
    dtype = mx.float16 if fp16 else mx.float32

    language = options.language
    if language is None:
        if not model.is_multilingual:
            language = "en"
        else:
            # the first 30 s of the padded mel, clip_timestamps notwithstanding (as stock)
            features = _encode(engine, pad_or_trim(mel, N_FRAMES, axis=-2).astype(dtype), stats)
            _, probs = engine.detect_language(features, engine.get_tokenizer(True, num_languages=model.num_languages))
            language = max(probs, key=probs.get)
    tokenizer = engine.get_tokenizer(model.is_multilingual, num_languages=model.num_languages, language=language,
                                     task=options.task)
    if options.word_timestamps and options.task == "translate":
        warnings.warn("Word-level timestamps on translations may not be reliable.")

    segments = list(generate_segments(engine, mel, tokenizer, options, language=language, dtype=dtype, stats=stats))
    # stock decodes all_tokens past the initial prompt: every segment's tokens, in order
    text = tokenizer.decode([t for s in segments for t in s["tokens"]])
    return Result(text=text, language=language, segments=segments, stats=stats)


def _encode(engine: Engine, mel_window: mx.array, stats: Stats) -> mx.array:
    """(N_FRAMES, n_mels) in the decode dtype -> features (n_audio_ctx, n_audio_state), forced
    here so that the time is the encoder's (and the window's slice, pad and cast)."""
    t = time.perf_counter()
    features = engine.encode(mel_window)
    mx.eval(features)
    stats.encode += time.perf_counter() - t
    return features


def seek_clips(clip_timestamps: Sequence[float], content_frames: int) -> List[Tuple[int, int]]:
    """Seconds start,end,start,end,... -> (start, end) mel frames; a missing last end is the end
    of the audio. Every end is cut to the audio: mlx-whisper cuts only the last one, and a
    clip that ended past the audio decoded the padding into made-up text, window after window.
    (A clip starting past the end still decodes what is left after the previous one stopped:
    mlx-whisper's loop, kept.)"""
    seek_points = [round(ts * FRAMES_PER_SECOND) for ts in clip_timestamps]
    if len(seek_points) == 0:
        seek_points.append(0)
    if len(seek_points) % 2 == 1:
        seek_points.append(content_frames)
    return [(start, min(end, content_frames)) for start, end in zip(seek_points[::2], seek_points[1::2])]


def generate_with_fallback(engine: Engine, mel_window: mx.array, features: mx.array, options: TranscribeOptions,
                           decode_options: dict, stats: Stats) -> DecodingResult:
    """One window, decoded at each temperature in turn until the result is neither too
    repetitive (compression ratio) nor too improbable (average log probability), or the
    window reads as silence; the last try is returned when every temperature fails.
    mel_window (N_FRAMES, n_mels); features (n_audio_ctx, n_audio_state), its encoding."""
    temperatures = options.temperature
    result = None
    for t in temperatures:
        kwargs = {**decode_options}
        if t > 0:
            # beam search is for greedy decoding; sampling draws best_of candidates instead
            kwargs.pop("beam_size", None)
            kwargs.pop("patience", None)
        else:
            kwargs.pop("best_of", None)
        result = engine.decode(features, DecodingOptions(**kwargs, temperature=t), mel=mel_window,
                               thresholds=(options.logprob_threshold, options.no_speech_threshold))
        stats.windows += t == 0
        stats.sampled_windows += t > 0
        stats.tokens += len(result.tokens) + 1  # + its EOT

        needs_fallback = False
        if options.compression_ratio_threshold is not None and result.compression_ratio > options.compression_ratio_threshold:
            needs_fallback = True  # too repetitive
        if options.logprob_threshold is not None and result.avg_logprob < options.logprob_threshold:
            needs_fallback = True  # average log probability is too low
        if options.no_speech_threshold is not None and result.no_speech_prob > options.no_speech_threshold:
            # mlx-whisper: silence ends the fallback whatever the log probability (openai-whisper
            # also asks for a low one)
            needs_fallback = False
        if not needs_fallback:
            break
    return result


def generate_segments(engine: Engine, mel: mx.array, tokenizer: Tokenizer, options: TranscribeOptions, *,
                      language: str, dtype: mx.Dtype, stats: Stats) -> Iterator[dict]:
    """Walk `mel` (n_frames + N_FRAMES, n_mels) 30 s at a time and yield mlx-whisper's segment
    dicts. After each window the seek moves to its last complete segment's end timestamp (or
    past the window when it ends in a single timestamp, or when no pair of timestamps closes a
    segment); with word timestamps, to the last word's end. `language` is a code ("en" for
    English-only models, whose tokenizer has none)."""
    model = engine.model
    content_frames = mel.shape[-2] - N_FRAMES
    content_duration = float(content_frames * HOP_LENGTH / SAMPLE_RATE)
    clips = seek_clips(options.clip_timestamps, content_frames)
    input_stride = N_FRAMES // model.dims.n_audio_ctx  # mel frames per output token: 2
    time_precision = input_stride * HOP_LENGTH / SAMPLE_RATE  # seconds per output token: 0.02
    decode_options = dict(task=options.task, language=language, fp16=dtype == mx.float16,
                          beam_size=options.beam_size, best_of=options.best_of, patience=options.patience,
                          length_penalty=options.length_penalty, suppress_tokens=options.suppress_tokens,
                          suppress_blank=options.suppress_blank)
    all_tokens: List[int] = []
    prompt_reset_since = 0
    if options.initial_prompt is not None:
        all_tokens.extend(tokenizer.encode(" " + options.initial_prompt.strip()))

    progress = _progress_bar(content_frames, options.progress)
    seek = clips[0][0]
    last_speech_timestamp = 0.0
    # mlx-whisper 0.4.3 does not move `seek` to a later clip's start (openai-whisper does): a
    # later clip is transcribed from wherever the previous one stopped. Kept: stock is the oracle.
    for _, seek_clip_end in clips:
        while seek < seek_clip_end:
            time_offset = float(seek * HOP_LENGTH / SAMPLE_RATE)
            window_end_time = float((seek + N_FRAMES) * HOP_LENGTH / SAMPLE_RATE)
            segment_size = min(N_FRAMES, content_frames - seek, seek_clip_end - seek)
            segment_duration = segment_size * HOP_LENGTH / SAMPLE_RATE
            mel_window = pad_or_trim(mel[seek : seek + segment_size], N_FRAMES, axis=-2).astype(dtype)

            decode_options["prompt"] = all_tokens[prompt_reset_since:]
            result = generate_with_fallback(engine, mel_window, _encode(engine, mel_window, stats), options, decode_options,
                                            stats)
            tokens = np.array(result.tokens)

            if options.no_speech_threshold is not None:
                # silence, unless the decode was confident all the same: skip the window
                should_skip = result.no_speech_prob > options.no_speech_threshold
                if options.logprob_threshold is not None and result.avg_logprob > options.logprob_threshold:
                    should_skip = False
                if should_skip:
                    seek += segment_size
                    continue

            previous_seek = seek
            current_segments: List[dict] = []

            timestamp_tokens = tokens >= tokenizer.timestamp_begin
            single_timestamp_ending = timestamp_tokens[-2:].tolist() == [False, True]
            consecutive = np.where(np.logical_and(timestamp_tokens[:-1], timestamp_tokens[1:]))[0] + 1
            if len(consecutive) > 0:
                # two timestamps in a row close a segment and open the next
                slices = consecutive.tolist()
                if single_timestamp_ending:
                    slices.append(len(tokens))
                last_slice = 0
                for current_slice in slices:
                    sliced = tokens[last_slice:current_slice]
                    start_pos = sliced[0].item() - tokenizer.timestamp_begin
                    end_pos = sliced[-1].item() - tokenizer.timestamp_begin
                    current_segments.append(_segment(tokenizer, result, seek, time_offset + start_pos * time_precision,
                                                     time_offset + end_pos * time_precision, sliced))
                    last_slice = current_slice
                if single_timestamp_ending:
                    # a single timestamp at the end: no speech after it
                    seek += segment_size
                else:
                    # the last segment is unfinished: decode it again from its start
                    seek += (tokens[last_slice - 1].item() - tokenizer.timestamp_begin) * input_stride
            else:
                duration = segment_duration
                timestamps = tokens[timestamp_tokens.nonzero()[0]]
                if len(timestamps) > 0 and timestamps[-1].item() != tokenizer.timestamp_begin:
                    # no pair, but a timestamp: it ends the window's one segment
                    duration = (timestamps[-1].item() - tokenizer.timestamp_begin) * time_precision
                current_segments.append(_segment(tokenizer, result, seek, time_offset, time_offset + duration, tokens))
                seek += segment_size

            if options.word_timestamps:
                # on the window's features as decoded, the alignment layers as built (engine.aligner)
                add_word_timestamps(segments=current_segments, model=engine.aligner, tokenizer=tokenizer,
                                    mel=result.audio_features, num_frames=segment_size,
                                    prepend_punctuations=options.prepend_punctuations,
                                    append_punctuations=options.append_punctuations,
                                    last_speech_timestamp=last_speech_timestamp)
                if not single_timestamp_ending:
                    last_word_end = _get_end(current_segments)
                    if last_word_end is not None and last_word_end > time_offset:
                        seek = round(last_word_end * FRAMES_PER_SECOND)

                threshold = options.hallucination_silence_threshold
                if threshold is not None:
                    # skip silence before possible hallucinations
                    if not single_timestamp_ending:
                        last_word_end = _get_end(current_segments)
                        if last_word_end is not None and last_word_end > time_offset:
                            remaining_duration = window_end_time - last_word_end
                            if remaining_duration > threshold:
                                seek = round(last_word_end * FRAMES_PER_SECOND)
                            else:
                                seek = previous_seek + segment_size

                    # a first segment that may be a hallucination: skip the silence before it
                    # (the window's segments are dropped, and the prompt is not reset: as stock)
                    first_segment = _next_words_segment(current_segments)
                    if first_segment is not None and _is_segment_anomaly(first_segment):
                        gap = first_segment["start"] - time_offset
                        if gap > threshold:
                            seek = previous_seek + round(gap * FRAMES_PER_SECOND)
                            continue

                    # a possible hallucination surrounded by silence or more hallucinations:
                    # drop it and what follows, and decode again from its start
                    hal_last_end = last_speech_timestamp
                    for si in range(len(current_segments)):
                        segment = current_segments[si]
                        if not segment["words"]:
                            continue
                        if _is_segment_anomaly(segment):
                            next_segment = _next_words_segment(current_segments[si + 1 :])
                            if next_segment is not None:
                                hal_next_start = next_segment["words"][0]["start"]
                            else:
                                hal_next_start = time_offset + segment_duration
                            silence_before = (segment["start"] - hal_last_end > threshold
                                              or segment["start"] < threshold
                                              or segment["start"] - time_offset < 2.0)
                            silence_after = (hal_next_start - segment["end"] > threshold
                                             or _is_segment_anomaly(next_segment)
                                             or window_end_time - segment["end"] < 2.0)
                            if silence_before and silence_after:
                                seek = round(max(time_offset + 1, segment["start"]) * FRAMES_PER_SECOND)
                                if content_duration - segment["end"] < threshold:
                                    seek = content_frames
                                current_segments[si:] = []
                                break
                        hal_last_end = segment["end"]

                last_word_end = _get_end(current_segments)
                if last_word_end is not None:
                    last_speech_timestamp = last_word_end

            # an instantaneous segment, or one without text, is kept empty
            for segment in current_segments:
                if segment["start"] == segment["end"] or segment["text"].strip() == "":
                    segment["text"], segment["tokens"], segment["words"] = "", [], []

            yield from current_segments
            all_tokens.extend(t for segment in current_segments for t in segment["tokens"])
            if not options.condition_on_previous_text or result.temperature > 0.5:
                # a high temperature's text is not fed to the next window as its prompt
                prompt_reset_since = len(all_tokens)
            progress.update(min(content_frames, seek) - previous_seek)
    progress.close()


def _segment(tokenizer: Tokenizer, result: DecodingResult, seek: int, start: float, end: float,
             tokens: np.ndarray) -> dict:
    """mlx-whisper's segment dict; `seek` is the window's first frame (word timestamps read it)."""
    tokens = tokens.tolist()
    return {"seek": seek, "start": start, "end": end, "text": tokenizer.decode([t for t in tokens if t < tokenizer.eot]),
            "tokens": tokens, "temperature": result.temperature, "avg_logprob": result.avg_logprob,
            "compression_ratio": result.compression_ratio, "no_speech_prob": result.no_speech_prob}


def _get_end(segments: List[dict]) -> Optional[float]:
    """The last word's end, else the last segment's end, else None."""
    return next((w["end"] for s in reversed(segments) for w in reversed(s["words"])),
                segments[-1]["end"] if segments else None)


def _word_anomaly_score(word: dict) -> float:
    """Very improbable, very short or very long words score."""
    probability = word.get("probability", 0.0)
    duration = word["end"] - word["start"]
    score = 0.0
    if probability < 0.15:
        score += 1.0
    if duration < 0.133:
        score += (0.133 - duration) * 15
    if duration > 2.0:
        score += duration - 2.0
    return score


def _is_segment_anomaly(segment: Optional[dict]) -> bool:
    if segment is None or not segment["words"]:
        return False
    words = [w for w in segment["words"] if w["word"] not in PUNCTUATION][:8]
    score = sum(_word_anomaly_score(w) for w in words)
    return score >= 3 or score + 0.01 >= len(words)


def _next_words_segment(segments: List[dict]) -> Optional[dict]:
    return next((s for s in segments if s["words"]), None)


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total_frames: int, show: bool):
    """mlx-whisper's progress bar (mel frames, on stderr), or nothing."""
    if not show:
        return _NoProgress()
    import tqdm

    return tqdm.tqdm(total=total_frames, unit="frames")
