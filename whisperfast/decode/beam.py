"""Beam search, which mlx-whisper 0.4.3 declines: openai/whisper's BeamSearchDecoder on MLX
arrays, used by both lanes (task.py)."""

from __future__ import annotations

from typing import Optional

import mlx.core as mx
import numpy as np
from mlx_whisper.decoding import Inference, TokenDecoder


class BeamSearchDecoder(TokenDecoder):
    """openai/whisper's BeamSearchDecoder (whisper/decoding.py, release 20250625) on MLX
    arrays, with its semantics: each of a group's `beam_size` rows proposes its
    beam_size + 1 likeliest next tokens; the group's candidates are ranked by summed log
    probability, those ending in EOT are finished (kept, best first, until there are
    max_candidates = round(beam_size * patience)), the best beam_size others go on, and the
    KV cache is rearranged by their source rows. The decode is complete when every audio has
    max_candidates finished. `finalize` tops each audio up to beam_size with its unfinished
    beams; mlx-whisper's MaximumLikelihoodRanker (openai's, with length_penalty) picks.

    The log-softmax and the top-k run on the device; the ranking runs on the host, as
    openai's does, on beam_size * (beam_size + 1) candidates a group. mlx-whisper's update
    returns `completed` where openai's loop breaks: after completion, an update (a main loop
    queues one before it reads `completed`) changes nothing."""

    def __init__(self, beam_size: int, eot: int, inference: Inference, patience: Optional[float] = None):
        self.beam_size, self.eot, self.inference = beam_size, eot, inference
        self.patience = patience or 1.0
        self.max_candidates: int = round(beam_size * self.patience)
        if self.max_candidates <= 0:
            raise ValueError(f"Invalid beam size ({beam_size}) or patience ({patience})")
        self.finished_sequences = None
        self.completed = False

    def reset(self):
        self.finished_sequences, self.completed = None, False

    def update(self, tokens: mx.array, logits: mx.array, sum_logprobs: mx.array):
        if tokens.shape[0] % self.beam_size != 0:
            raise ValueError(f"{tokens.shape}[0] % {self.beam_size} != 0")
        if self.completed:
            return tokens, mx.array(True), sum_logprobs
        n_audio = tokens.shape[0] // self.beam_size
        if self.finished_sequences is None:  # for the first update
            self.finished_sequences = [{} for _ in range(n_audio)]

        # the beam_size + 1 likeliest tokens a row, and their log probabilities as mlx-whisper's
        # GreedyDecoder computes them (logits - logsumexp), for those tokens only
        first = logits.shape[-1] - self.beam_size - 1
        top = mx.argpartition(logits, first, axis=-1)[:, first:]
        top_logprobs = mx.take_along_axis(logits, top, axis=-1) - mx.logsumexp(logits, axis=-1, keepdims=True)
        mx.eval(top, top_logprobs, tokens, sum_logprobs)  # one wait for the device
        top, top_logprobs, sums = np.array(top), np.array(top_logprobs), np.array(sum_logprobs, dtype=np.float32)
        prefixes = tokens.tolist()
        next_tokens, source_indices, next_sums, finished_sequences = [], [], [], []
        for i in range(n_audio):
            scores, sources, finished = {}, {}, {}
            # STEP 1: the cumulative log probabilities (float32 sums, as openai's) of the candidates;
            # in topk's order, likeliest first (ties: the lower token id)
            for j in range(self.beam_size):
                idx = i * self.beam_size + j
                for k in np.lexsort((top[idx], -top_logprobs[idx])):
                    sequence = tuple(prefixes[idx] + [int(top[idx, k])])
                    scores[sequence] = float(sums[idx] + top_logprobs[idx, k])
                    sources[sequence] = idx
            # STEP 2: rank the candidates and keep the top beam_size sequences for each audio
            saved = 0
            for sequence in sorted(scores, key=scores.get, reverse=True):
                if sequence[-1] == self.eot:
                    finished[sequence] = scores[sequence]
                else:
                    next_sums.append(scores[sequence])
                    next_tokens.append(sequence)
                    source_indices.append(sources[sequence])
                    saved += 1
                    if saved == self.beam_size:
                        break
            finished_sequences.append(finished)

        self.inference.rearrange_kv_cache(source_indices)
        # add newly finished sequences to self.finished_sequences
        for previously_finished, newly_finished in zip(self.finished_sequences, finished_sequences):
            for seq in sorted(newly_finished, key=newly_finished.get, reverse=True):
                if len(previously_finished) >= self.max_candidates:
                    break  # the candidate list is full
                previously_finished[seq] = newly_finished[seq]
        # mark as completed if all audio has enough number of samples
        self.completed = all(len(sequences) >= self.max_candidates for sequences in self.finished_sequences)
        return (mx.array(next_tokens, dtype=tokens.dtype), mx.array(self.completed),
                mx.array(next_sums, dtype=mx.float32))

    def finalize(self, preceding_tokens: mx.array, sum_logprobs: mx.array):
        """(n_audio, beam_size, L) tokens and (n_audio, beam_size) sums -> per audio, its
        candidates (token lists ending in EOT) and their sums."""
        sum_logprobs, preceding = np.array(sum_logprobs, dtype=np.float32), preceding_tokens.tolist()
        for i, sequences in enumerate(self.finished_sequences):
            if len(sequences) < self.beam_size:  # when not enough sequences are finished
                for j in list(np.argsort(sum_logprobs[i]))[::-1]:
                    sequences[tuple(preceding[i][j] + [self.eot])] = float(sum_logprobs[i][j])
                    if len(sequences) >= self.beam_size:
                        break
        tokens = [[list(seq) for seq in sequences] for sequences in self.finished_sequences]
        return tokens, [list(sequences.values()) for sequences in self.finished_sequences]
