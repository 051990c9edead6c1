"""Decoding tasks: mlx-whisper's DecodingTask (options, logit filters, greedy update and
sampling: all reused) run by whisperfast, generalized to beams and to groups of rows.

- `StaticCacheTask`, the fast lane: the static-cache engine (flat.py) and, where it applies,
  the CUDA step (cuda/step.py), chosen once per decode in `_main_loop`; the end of text read
  back lazily; beams and best-of samples as rows of one batch.
- `StockTask`, mlx-whisper's own DecodingTask on whisperfast's tokenizer: the windows the
  fast engine runs on the stock model, and the stock lane's batches in batched mode (with
  its HeldEnd, rules.py).
- `StockBeamTask`, the stock lane with beam search (which mlx-whisper 0.4.3 declines): its
  own DecodingTask and Inference, with openai's BeamSearchDecoder (beam.py); the reference
  the fast lane's beams are checked against.

Shapes: mel (n_audio, N_FRAMES, n_mels) or features (n_audio, n_audio_ctx, n_audio_state);
tokens (n_audio * n_group, L)."""

from __future__ import annotations

from dataclasses import replace
from typing import List

import mlx.core as mx
import numpy as np
from mlx_whisper.audio import CHUNK_LENGTH
from mlx_whisper.decoding import (ApplyTimestampRules, DecodingOptions, DecodingResult, DecodingTask, GreedyDecoder,
                                  Inference, MaximumLikelihoodRanker, SuppressBlank, SuppressTokens, TokenDecoder,
                                  compression_ratio)
from mlx_whisper.whisper import Whisper

from ..tokenizer import get_tokenizer
from .beam import BeamSearchDecoder
from .cuda.step import cuda_step
from .flat import StaticInference
from .language import detect_language
from .rules import DeviceTimestampRules, HeldEnd, greedy_update, native_pick, suppress_blank, suppress_tokens


class RowInference(Inference):
    """mlx-whisper's Inference (concatenated caches) with the rearrangement beam search
    needs: mlx-whisper 0.4.3's gathers every cached array, the cross K/V too, which hold one
    row per audio, not per beam; here only the self-attention rows are gathered."""

    def rearrange_kv_cache(self, source_indices):
        if source_indices != list(range(len(source_indices))):
            rows = mx.array(source_indices)
            self.kv_cache = [((k[rows], v[rows]), cross) for (k, v), cross in self.kv_cache]


def token_decoder(task: DecodingTask, options: DecodingOptions) -> TokenDecoder:
    """The decoding strategy, chosen once a task: openai's beam search where beam_size is
    given (at any temperature, as in openai's DecodingTask; its transcribe drops beam_size for
    the sampled fallback), else mlx-whisper's GreedyDecoder, which samples at temperature > 0
    (best_of samples are rows of it). Sets the task's group size (rows per audio)."""
    task.n_group = options.beam_size or options.best_of or 1
    if options.beam_size is not None:
        return BeamSearchDecoder(options.beam_size, task.tokenizer.eot, task.inference, options.patience)
    return GreedyDecoder(options.temperature, task.tokenizer.eot)


class GroupRun:
    """mlx-whisper 0.4.3's DecodingTask.run, generalized twice, its results otherwise alike:
    a decoder's `finalize` may give each audio a list of candidates (beam search's, as in
    openai's), and the rows of a batch of audio decoded in groups (n_audio > 1 with beams or
    best_of) take their features from `_row_features`: mlx-whisper's run broadcasts one
    audio's features over its group and fails for more."""

    def _row_features(self, audio_features: mx.array) -> mx.array:
        return audio_features

    def run(self, mel: mx.array) -> List[DecodingResult]:
        self.inference.reset()
        self.decoder.reset()
        tokenizer, n_audio = self.tokenizer, mel.shape[0]
        audio_features = self._get_audio_features(mel)  # encoder forward pass
        tokens = mx.broadcast_to(mx.array(self.initial_tokens), (n_audio, len(self.initial_tokens)))
        # detect language if requested, overwriting the language token
        languages, language_probs = self._detect_language(audio_features, tokens)
        if self.options.task == "lang_id":
            return [DecodingResult(audio_features=features, language=language, language_probs=probs)
                    for features, language, probs in zip(audio_features, languages, language_probs)]
        # repeat tokens by the group size, for beam search or best-of-n sampling
        if self.n_group > 1:
            tokens = mx.repeat(tokens, self.n_group, axis=0)
        tokens, sum_logprobs, no_speech_probs = self._main_loop(self._row_features(audio_features), tokens)
        no_speech_probs = no_speech_probs[:: self.n_group]
        # the final candidates for each group, sliced between the first sampled token and EOT
        tokens, sum_logprobs = self.decoder.finalize(tokens.reshape(n_audio, self.n_group, -1),
                                                     sum_logprobs.reshape(n_audio, self.n_group))
        if isinstance(tokens, mx.array):  # (n_audio, n_group, L): greedy and best_of
            tokens, sum_logprobs = tokens.tolist(), sum_logprobs.tolist()
        tokens = [[t[self.sample_begin : t.index(tokenizer.eot, self.sample_begin)] for t in s] for s in tokens]
        # select the top-ranked sample in each group
        selected = self.sequence_ranker.rank(tokens, sum_logprobs)
        tokens = [t[i] for i, t in zip(selected, tokens)]
        texts = [tokenizer.decode(t).strip() for t in tokens]
        sum_logprobs = [lp[i] for i, lp in zip(selected, sum_logprobs)]
        avg_logprobs = [lp / (len(t) + 1) for t, lp in zip(tokens, sum_logprobs)]
        fields = (texts, languages, tokens, audio_features, avg_logprobs, no_speech_probs.tolist())
        if len(set(map(len, fields))) != 1:
            raise RuntimeError(f"inconsistent result lengths: {list(map(len, fields))}")
        return [DecodingResult(audio_features=features, language=language, tokens=tokens, text=text,
                               avg_logprob=avg_logprob, no_speech_prob=no_speech_prob,
                               temperature=self.options.temperature, compression_ratio=compression_ratio(text))
                for text, language, tokens, features, avg_logprob, no_speech_prob in zip(*fields)]


class StockBeamTask(GroupRun, DecodingTask):
    """The stock lane with beam search, which mlx-whisper's own decode lacks: its
    DecodingTask, Inference (caches concatenated per token) and filters as they are, with
    openai's BeamSearchDecoder and a rearrangement that gathers rows (`RowInference`). The
    reference the fused lane's beams are checked against."""

    def __init__(self, model: Whisper, options: DecodingOptions, must_reach=None):
        super().__init__(model, replace(options, beam_size=None, patience=None))
        self.options = self._verify_options(options)
        self.inference = RowInference(model)
        self.decoder = token_decoder(self, options)
        _hold_ends(self, must_reach)

    def _row_features(self, audio_features: mx.array) -> mx.array:
        # its attention broadcasts one audio's K/V over a group's rows, and no more audio
        many = audio_features.shape[0] > 1 and self.n_group > 1
        return mx.repeat(audio_features, self.n_group, axis=0) if many else audio_features


def _task_fields(task: DecodingTask, model: Whisper, options: DecodingOptions) -> None:
    """mlx-whisper 0.4.3's DecodingTask.__init__ up to its inference, decoder and filters:
    the same fields in the same order, on whisperfast's tokenizer (..tokenizer: the same ids,
    built without tiktoken's special-token regex, 0.3-0.6 s a process)."""
    task.model, task.tokenizer = model, get_tokenizer(model.is_multilingual, num_languages=model.num_languages,
                                                      language=options.language or "en", task=options.task)
    task.options = task._verify_options(options)
    task.n_group = options.beam_size or options.best_of or 1
    task.n_ctx = model.dims.n_text_ctx
    task.sample_len = options.sample_len or model.dims.n_text_ctx // 2
    tokenizer = task.tokenizer
    task.sot_sequence = (tokenizer.sot_sequence_including_notimestamps if options.without_timestamps
                         else tokenizer.sot_sequence)
    task.initial_tokens = task._get_initial_tokens()
    task.sample_begin = len(task.initial_tokens)
    task.sot_index = task.initial_tokens.index(tokenizer.sot)
    task.sequence_ranker = MaximumLikelihoodRanker(options.length_penalty)


def _logit_filters(task: DecodingTask, blank, suppress, rules) -> list:
    """DecodingTask.__init__'s logit filters, in its order, each made by the given maker:
    mlx-whisper's classes, or whisperfast's kept masks and device timestamp rules."""
    options, dims, filters = task.options, task.model.dims, []
    if options.suppress_blank:
        filters.append(blank(task.tokenizer, task.sample_begin, dims.n_vocab))
    if options.suppress_tokens:
        filters.append(suppress(task._get_suppress_tokens(), dims.n_vocab))
    if not options.without_timestamps:
        precision = CHUNK_LENGTH / dims.n_audio_ctx  # usually 0.02 seconds
        max_initial = options.max_initial_timestamp
        filters.append(rules(task.tokenizer, task.sample_begin, round(max_initial / precision) if max_initial else None))
    return filters


def _hold_ends(task: DecodingTask, must_reach) -> None:
    """Batched mode's HeldEnd after the timestamp rules, where `must_reach` (one int an audio)
    is given and timestamps are predicted; each audio's value for each of its rows."""
    if must_reach is not None and not task.options.without_timestamps:
        task.logit_filters.append(HeldEnd(task.tokenizer, task.sample_begin, np.repeat(must_reach, task.n_group)))


class _Rows:
    """The rows still decoding, as indices into the batch the loop began with, and the tokens
    and logprob sums of those that ended. After its EOT, mlx-whisper's greedy update only
    appends EOT and adds 0 to the sum, so an ended row, padded with EOT, is what stepping it
    to the end would have given."""

    def __init__(self, batch: int, eot: int):
        self.live, self.eot, self.ended = np.arange(batch), eot, {}

    def drop_ended(self, tokens: mx.array, next_tokens: mx.array, next_sums: mx.array):
        """Rows whose last token in `tokens` is EOT leave; their next tokens and sums (EOT,
        the same sum) are kept. Returns the positions of the rows that stay, or None."""
        ended = np.array(tokens[:, -1]) == self.eot
        if not ended.any():
            return None
        for j in np.flatnonzero(ended):
            self.ended[int(self.live[j])] = (next_tokens[j], next_sums[j])
        keep = mx.array(np.flatnonzero(~ended))
        self.live = self.live[~ended]
        return keep

    def whole(self, tokens: mx.array, sums: mx.array):
        """(tokens, sums) of every row of the first batch, in its order, ended rows padded with EOT."""
        if not self.ended:
            return tokens, sums
        L = tokens.shape[1]
        row_tokens, row_sums = dict(zip(self.live.tolist(), tokens)), dict(zip(self.live.tolist(), sums))
        for r, (t, s) in self.ended.items():
            row_tokens[r], row_sums[r] = mx.pad(t, (0, L - t.shape[0]), constant_values=self.eot), s
        order = sorted(row_tokens)
        return mx.stack([row_tokens[r] for r in order]), mx.stack([row_sums[r] for r in order])


class StockTask(DecodingTask):
    """mlx-whisper 0.4.3's DecodingTask as it is (its Inference, GreedyDecoder, filters and
    run: the same steps and the same draws in the same order), on whisperfast's tokenizer;
    with `must_reach`, batched mode's HeldEnd after its filters. The fast engine runs its
    windows on the stock model with it (engine.py), and the stock lane its batches, where
    mlx-whisper's `decode` would build mlx-whisper's own tokenizer for the same ids: 0.6 s of
    a fresh process on the H200 (benchmarks/h200-coldstart/)."""

    def __init__(self, model: Whisper, options: DecodingOptions, must_reach=None):
        _task_fields(self, model, options)
        self.inference = Inference(model)
        if options.beam_size is not None:
            raise NotImplementedError("Beam search decoder is not yet implemented")  # as mlx-whisper's
        self.decoder = GreedyDecoder(options.temperature, self.tokenizer.eot)
        self.logit_filters = _logit_filters(self, SuppressBlank, SuppressTokens, ApplyTimestampRules)
        _hold_ends(self, must_reach)


class StaticCacheTask(GroupRun, DecodingTask):
    """mlx-whisper's DecodingTask on static caches, with the end of text checked lazily, and
    beam search (openai's) where beam_size is given."""

    def __init__(self, model: Whisper, options: DecodingOptions, cross=None, must_reach=None, bf16: bool = False):
        # `cross`: the window's cross K/V, made already (flat.StaticInference); `must_reach`:
        # batched mode's HeldEnd (rules.py), one int an audio; `bf16`: batched mode's, a greedy
        # batch's cross K/V made in bfloat16 on the CPU's AMX tiles (flat.StaticInference).
        # mlx-whisper 0.4.3's DecodingTask.__init__, the same fields and filters in the same
        # order, but for two things. Its tokenizer is whisperfast's (..tokenizer: the same ids,
        # built without tiktoken's special-token regex, 0.3 s a process). And SuppressBlank's
        # and SuppressTokens' masks are kept across tasks, not built on the host for each
        # (a tiktoken call, then 51865-float copies: ~1 ms a window on an H100): they depend
        # only on the tokenizer, the vocabulary and the suppressed ids. Beam search, which its
        # constructor declines, is chosen in token_decoder.
        _task_fields(self, model, options)
        # Greedy decoding on the GPU reads `completed` (a host round trip) every 4th step.
        # Steps run past the end are harmless: after EOT the greedy update only appends EOT
        # and adds 0 to the logprob sums, and `run` cuts each row at its first EOT. On the
        # CPU a step is math (~25 ms for tiny), so wasted steps cost more than the reads.
        # Sampling (temperature > 0) checks every step: extra steps would draw random numbers;
        # so does beam search, whose update reads its candidates on the host anyway.
        # So does the CUDA kernel's loop (_main_loop): a step costs the host ~60 µs and the
        # GPU 0.2-0.3 ms (tiny.en, base), and reading every k-th step measured the same for
        # k = 1 to 1000 (benchmarks/cuda_step_profile.py): running past the end gains nothing.
        self.inference = StaticInference(model, cross, bf16)
        self.decoder = token_decoder(self, options)
        greedy = isinstance(self.decoder, GreedyDecoder) and options.temperature == 0
        self.eot_check = 4 if mx.default_device() == mx.gpu and greedy else 1
        self.logit_filters = _logit_filters(self, suppress_blank, suppress_tokens, DeviceTimestampRules)
        _hold_ends(self, must_reach)

    def _detect_language(self, audio_features: mx.array, tokens: mx.array):
        """mlx-whisper's, with the SOT's logits from this engine (language.detect_language)."""
        languages, lang_probs = [self.options.language] * audio_features.shape[0], None
        if self.options.language is None or self.options.task == "lang_id":
            lang_tokens, lang_probs = detect_language(self.model, audio_features, self.tokenizer)
            languages = [max(probs, key=probs.get) for probs in lang_probs]
            if self.options.language is None:  # the language tokens written in
                tokens[:, self.sot_index + 1] = np.array(lang_tokens)
        return languages, lang_probs

    def _main_loop(self, audio_features: mx.array, tokens: mx.array):
        """mlx-whisper 0.4.3's _main_loop, the same steps and results, but for when
        `completed` is read. The next step is always queued before the host waits. Where
        the CUDA kernel applies (cuda/step.py) it runs every token, the prompt's too: the
        whole greedy step (for a batch too wide for its picks, cuda/step.kernel_picks, the
        forward pass, then the filters and update in a launch of their own); for beams the
        forward pass and openai's update on the device (cuda/beams.py); for samples the
        forward pass."""
        sum_logprobs = mx.zeros(tokens.shape[0])
        cuda = cuda_step(self, tokens.shape[0], audio_features.dtype)

        # the kernel's own update: greedy, or openai's beams (their finished sequences kept on
        # the device until the loop ends)
        own = cuda is not None and (cuda.greedy or cuda.beams is not None)

        # mlx-whisper's greedy update, the same values without its indexed read (rules.greedy_update)
        greedy = isinstance(self.decoder, GreedyDecoder) and self.decoder.temperature == 0
        # one row on the CPU: the filters and that update in one C call (rules.NativePick)
        pick = native_pick(self.logit_filters, self.tokenizer.eot) if greedy and cuda is None else None
        if isinstance(self.inference, StaticInference):  # a batch's C step drives these rows (below)
            self.inference.greedy_rows = pick is not None and self._compacts(cuda, tokens.shape[0])

        def update(tokens, logits, sum_logprobs):
            if pick is not None and tokens.shape[0] == 1 and logits.dtype == mx.float32:
                return pick(tokens, logits, sum_logprobs)
            for logit_filter in self.logit_filters:
                logits = logit_filter.apply(logits, tokens)
            if greedy:
                return greedy_update(tokens, logits, sum_logprobs, self.decoder.eot)
            return self.decoder.update(tokens, logits, sum_logprobs)

        def step(tokens, sum_logprobs):  # one new token a row
            if cuda is None:
                return update(tokens, self.inference.logits(tokens[:, -1:], audio_features)[:, -1], sum_logprobs)
            if own:
                return cuda(tokens, sum_logprobs)
            return update(tokens, cuda.logits(tokens)[:, -1], sum_logprobs)

        if cuda is not None and tokens.shape[1] <= cuda.MAX_PROMPT:
            if own:
                tokens, completed, sum_logprobs, sot_logits = cuda.prompt(tokens, audio_features, self.sot_index)
            else:  # the prompt's logits from the kernel: row 0 the SOT's, the last row the last position's
                pre_logits = cuda.logits(tokens, audio_features, self.sot_index)
                sot_logits = pre_logits[:, 0]
                tokens, completed, sum_logprobs = update(tokens, pre_logits[:, -1], sum_logprobs)
        else:
            if isinstance(self.inference, StaticInference) and self.n_group == 1 and mx.default_device() == mx.cpu:
                # the SOT's and the last position's logits only (StaticInference.logits)
                pre_logits = self.inference.logits(tokens, audio_features, rows=(self.sot_index, tokens.shape[1] - 1))
                sot_logits = pre_logits[:, 0]
            else:
                pre_logits = self.inference.logits(tokens, audio_features)
                sot_logits = pre_logits[:, self.sot_index]
            if cuda is not None and cuda.beams is not None:  # the kernel's caches, then its beam update
                cuda.resume(audio_features, self.inference.kv_cache, tokens.shape[0])
                tokens, completed, sum_logprobs = cuda.beam_update(tokens, pre_logits[:, -1:], sum_logprobs, first=True)
            else:
                tokens, completed, sum_logprobs = update(tokens, pre_logits[:, -1], sum_logprobs)
                if cuda is not None:
                    cuda.resume(audio_features, self.inference.kv_cache, tokens.shape[0])
        if self.tokenizer.no_speech is not None:
            no_speech_probs = mx.softmax(sot_logits, axis=-1)[:, self.tokenizer.no_speech]
        else:
            no_speech_probs = mx.full(tokens.shape[0], mx.nan)
        mx.async_eval(completed, tokens, sum_logprobs, no_speech_probs)
        native = self.inference.native_step() if pick is not None and tokens.shape[0] == 1 else None
        if native is not None:  # one row: the C step (cpu_step.NativeStep.looped)
            one = native.looped(self.inference.kv_cache)
            tokens, sum_logprobs = self._host_loop(lambda last, rows: one(last[0])[None], pick, tokens, sum_logprobs)
            return tokens, sum_logprobs, no_speech_probs
        step_rows = self.inference.rows_loop() if pick is not None and self._compacts(cuda, tokens.shape[0]) else None
        if step_rows is not None:  # a batch's rows: their C step (cpu_batch.NativeRows)
            tokens, sum_logprobs = self._host_loop(step_rows, pick, tokens, sum_logprobs)
            return tokens, sum_logprobs, no_speech_probs
        eot_check = 1 if cuda is not None else self.eot_check
        rows = _Rows(tokens.shape[0], self.tokenizer.eot) if self._compacts(cuda, tokens.shape[0]) else None
        for i in range(1, self.sample_len):
            if tokens.shape[-1] > self.n_ctx:
                break
            queued = step(tokens, sum_logprobs)
            mx.async_eval(*queued)
            if i % eot_check == 0 and completed:
                break
            if rows is not None and i % eot_check == 0:  # `completed` was read: `tokens` is on the host's side
                keep = rows.drop_ended(tokens, *queued[::2])
                if keep is not None:
                    audio_features = audio_features[keep]
                    self.inference.keep_rows(keep)
                    for f in self.logit_filters:
                        if isinstance(f, HeldEnd):
                            f.keep_rows(keep)
                    queued = (queued[0][keep], queued[1], queued[2][keep])
            tokens, completed, sum_logprobs = queued
        if rows is not None:
            tokens, sum_logprobs = rows.whole(tokens, sum_logprobs)
        if cuda is not None and cuda.beams is not None:
            self.decoder.finished_sequences = cuda.beams.finished_sequences()
        return tokens, sum_logprobs, no_speech_probs

    def _host_loop(self, step, pick, tokens: mx.array, sum_logprobs: mx.array):
        """_main_loop's greedy loop on the CPU (one audio a row) with the rows' state on the
        host, no MLX array a token: `step(last tokens, rows)` gives the logits of the rows still
        decoding (the C step's), NativePick picks for each. The same tokens and sums as that
        loop, in which a row that ended appends EOT and adds 0 (its logprob times last != EOT),
        and which stops once every row has ended, dropping the one step it queued past that
        (none is made here)."""
        history, eot = np.asarray(tokens).tolist(), self.tokenizer.eot
        totals = np.array(sum_logprobs, np.float32)
        picking = getattr(step, "picking", None)  # the rows' C step, which picks too (cpu_batch.py)
        for _ in range(1, self.sample_len):
            live = [r for r, row in enumerate(history) if row[-1] != eot]
            if len(history[0]) > self.n_ctx or not live:
                break
            last, rows = [history[r][-1] for r in live], [history[r] for r in live]
            row_picks = pick.picks(rows, live, self.model.dims.n_vocab) if picking is not None else None
            if row_picks is not None:
                picks = dict(zip(live, picking(last, live, row_picks)))
            else:
                picks = dict(zip(live, pick.rows(rows, step(last, live), live)))
            for r, row in enumerate(history):
                if r not in picks:
                    row.append(eot)
                    continue
                best, logprob = picks[r]
                totals[r] = totals[r] + np.float32(logprob)
                row.append(best)
        return mx.array(history, dtype=tokens.dtype), mx.array(totals)

    def _compacts(self, cuda, batch: int) -> bool:
        """Whether rows that ended leave the batch (issue 15: they stop costing): greedy at
        temperature 0, one row an audio, more than one audio, off the CUDA kernel (whose
        launches are compiled for their row count and cost about the same for fewer rows).
        A row's math is its own, but for the BLAS's order of sums, which the row count picks
        (tests/test_decoding.py checks the tokens against a batch that steps every row to the
        end, and stock's); sampling keeps every row, so that its draws stay stock's."""
        greedy = isinstance(self.decoder, GreedyDecoder) and self.options.temperature == 0
        return cuda is None and greedy and self.n_group == 1 and batch > 1
