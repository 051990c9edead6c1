"""openai's beam search on the CUDA kernel: its update (beam_update.cuh's beam_update), one
launch after the forward pass, so that no beam step waits for the host. The caches are not
rearranged: the update records where each beam's history lies (the step state's `path`),
and the forward pass reads it there."""

from __future__ import annotations

import mlx.core as mx

from .launch import FLAG_SHAPE, PICKS, THREADS, _ints, _run, _template, row_reach

BEAM_CHUNKS = 16  # beam_update.cuh's kBeamChunks: beam_update's blocks a row
_INPUTS = ("logits", "tokens", "meta", "sum_in", "suppress", "work", "fin_tokens", "fin_meta", "fin_score", "path")
_OUTPUTS = ("tokens_out", "sum_out", "source", "completed")
_CALL = ("wf::beam_update<B, K, NV, TS, EOT, NO_TS, RULES>(logits, logits_shape[1], tokens, tokens_shape[1], meta, "
         "sum_in, suppress, work, fin_tokens, fin_meta, fin_score, path, path_shape[2], tokens_out, sum_out, source, "
         "completed);")


class CudaBeams:
    """openai's beam search update on the device (beam_update.cuh's beam_update): the filters,
    the log-softmax, each row's beam_size + 1 likeliest tokens and openai's ranking, one
    launch after each forward pass. No step waits for the host, which queues them as in greedy
    decoding; the finished sequences stay on the device (the store) until the decode reads
    them (`finished_sequences`). BeamSearchDecoder (beam.py) is the same update on the host."""

    def __init__(self, beam_size: int, max_candidates: int, n_ctx: int):
        self.K, self.mc, self.slot = beam_size, max_candidates, n_ctx + 1
        self.store = None

    def start(self, batch: int, dtype: mx.Dtype):
        """An empty store for a decode of `batch` rows (batch // beam_size audio)."""
        A = batch // self.K
        # sizes past 8 bytes: MLX keeps smaller arrays in a pool where device writes are slow
        per = PICKS * 3 + 4 * (self.K + 1)  # beam_update.cuh's PER: a (row, chunk)'s picks and lists
        self.store = dict(work=mx.zeros((4 + batch * BEAM_CHUNKS * per,), mx.float32),
                          fin_tokens=mx.zeros((max(A * self.mc * self.slot, 4),), dtype),
                          fin_meta=mx.zeros((max(A + A * self.mc, 4),), mx.int32),
                          fin_score=mx.zeros((max(A * self.mc, 4),), mx.float32))
        mx.eval(*self.store.values())
        self.n_audio = A

    def __call__(self, tokens: mx.array, logits: mx.array, sum_logprobs: mx.array, mask: mx.array, rules: dict,
                 path: mx.array):
        """tokens (B, L), logits (B, R, n_vocab) float32 (row R-1 the last position's), sums (B,)
        -> (tokens (B, L+1), completed, sums (B,), source rows (B,)), after SuppressTokens
        (`mask`, additive) and the timestamp rules (`rules`, timestamp_rules). `path` (2, B,
        n_ctx) int32, where the rows' histories lie (step.py's state: each position's row, as
        an offset from the row's own), is updated in place: row b's history becomes row
        source[b]'s."""
        (B, L), NV = tokens.shape, logits.shape[-1]
        if self.store is None or B != self.n_audio * self.K or L + 1 > self.slot:
            raise ValueError(f"{B} rows of {L} tokens for a store of {self.n_audio} x {self.K} beams of {self.slot}")
        if path.shape[:2] != (2, B) or path.shape[2] < L or path.dtype != mx.int32:
            raise ValueError(f"a path of {path.shape} {path.dtype} for {B} rows of {L} tokens")
        template = [("B", B), ("K", self.K), ("NV", NV)] + _template(rules)
        st = self.store
        meta = _ints(rules["sample_begin"], rules["max_init"], self.mc, self.slot, *row_reach(rules, B))
        args = [logits.astype(mx.float32), tokens, meta,
                sum_logprobs, mask, st["work"], st["fin_tokens"], st["fin_meta"], st["fin_score"], path]
        tokens, sums, source, completed = _run(
            "beam_update", _INPUTS, _OUTPUTS, _CALL, args, template, B * BEAM_CHUNKS, THREADS,
            [(B, L + 1), (max(B, 4),), (max(B, 4),), FLAG_SHAPE], [tokens.dtype, mx.float32, mx.int32, mx.bool_])
        return tokens, completed, sums[:B], source[:B]

    def finished_sequences(self) -> list:
        """Per audio, {sequence: summed logprob} of the finished sequences, in the order they
        finished (BeamSearchDecoder.finished_sequences)."""
        mx.synchronize()  # the store is written in place, where MLX does not see it
        st, A, mc = self.store, self.n_audio, self.mc
        meta, scores = st["fin_meta"].tolist(), st["fin_score"].tolist()
        tokens = st["fin_tokens"][: A * mc * self.slot].reshape(A * mc, self.slot).tolist()
        return [{tuple(tokens[g * mc + s][: meta[A + g * mc + s]]): scores[g * mc + s] for s in range(meta[g])}
                for g in range(A)]

