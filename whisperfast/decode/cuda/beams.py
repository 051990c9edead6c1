"""openai's beam search on the CUDA kernel: its update (decode_step.cu's beam_update) and
the caches' rearrangement (gather_rows), each one launch after the forward pass, so that no
beam step waits for the host."""

from __future__ import annotations

import mlx.core as mx

from .launch import FLAG_SHAPE, PICKS, THREADS, _ints, _run, _template, grid_blocks

BEAM_CHUNKS = 16  # decode_step.cu's kBeamChunks: beam_update's blocks a row


class CudaBeams:
    """openai's beam search update on the device (decode_step.cu's beam_update): the filters,
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
        per = PICKS * 3 + 4 * (self.K + 1)  # decode_step.cu's PER: a (row, chunk)'s picks and lists
        self.store = dict(work=mx.zeros((4 + batch * BEAM_CHUNKS * per,), mx.float32),
                          fin_tokens=mx.zeros((max(A * self.mc * self.slot, 4),), dtype),
                          fin_meta=mx.zeros((max(A + A * self.mc, 4),), mx.int32),
                          fin_score=mx.zeros((max(A * self.mc, 4),), mx.float32))
        mx.eval(*self.store.values())
        self.n_audio = A

    def __call__(self, tokens: mx.array, logits: mx.array, sum_logprobs: mx.array, mask: mx.array, rules: dict):
        """tokens (B, L), logits (B, R, n_vocab) float32 (row R-1 the last position's), sums (B,)
        -> (tokens (B, L+1), completed, sums (B,), source rows (B,)), after SuppressTokens
        (`mask`, additive) and the timestamp rules (`rules`, timestamp_rules)."""
        (B, L), NV = tokens.shape, logits.shape[-1]
        if self.store is None or B != self.n_audio * self.K or L + 1 > self.slot:
            raise ValueError(f"{B} rows of {L} tokens for a store of {self.n_audio} x {self.K} beams of {self.slot}")
        template = [("B", B), ("K", self.K), ("NV", NV)] + _template(rules)
        inputs = ("logits", "tokens", "meta", "sum_in", "suppress", "work", "fin_tokens", "fin_meta", "fin_score")
        outputs = ("tokens_out", "sum_out", "source", "completed")
        call = ("wf::beam_update<B, K, NV, TS, EOT, NO_TS, RULES>(logits, logits_shape[1], tokens, tokens_shape[1], "
                "meta, sum_in, suppress, work, fin_tokens, fin_meta, fin_score, tokens_out, sum_out, source, completed);")
        st = self.store
        args = [logits.astype(mx.float32), tokens, _ints(rules["sample_begin"], rules["max_init"], self.mc, self.slot),
                sum_logprobs, mask, st["work"], st["fin_tokens"], st["fin_meta"], st["fin_score"]]
        tokens, sums, source, completed = _run(
            "beam_update", inputs, outputs, call, args, template, B * BEAM_CHUNKS, THREADS,
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


def gather_rows(kc: mx.array, vc: mx.array, source: mx.array, n: int):
    """Beam search's rearrangement of the caches (NL, B, H, CTX, HD), in one launch
    (decode_step.cu's gather_rows): row b becomes row source[b], its first n positions. The
    new arrays are what the next launches write in place: a kernel's outputs are contiguous,
    where MLX's take along axis 1 is a transposed view, which MLX would hand the step as a
    copy, losing the rows it writes."""
    NL, B, H, CTX, HD = kc.shape
    call = ("wf::gather_rows<T, B>(kc, vc, source, kc_shape[0], kc_shape[2], kc_shape[3], kc_shape[4], meta[0], "
            "kc_out, vc_out);")
    return _run("gather_rows", ("kc", "vc", "source", "meta"), ("kc_out", "vc_out"), call, [kc, vc, source, _ints(n)],
                [("T", kc.dtype), ("B", B)], 2 * grid_blocks(), THREADS, [kc.shape, vc.shape], [kc.dtype, vc.dtype])
