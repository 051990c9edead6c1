"""The greedy decode step on MLX's CUDA backend as one kernel (decode_step.cu): one token
through the decoder, the logits, mlx-whisper's logit filters and its greedy update.

Why: on an H100 a step of the module graph is ~230 MLX nodes and MLX spends ~8 µs of host
time on each, while the step's math is ~20 µs (benchmarks/overhead.py). A chain of custom
kernels (35 launches a step) still cost 1.0 ms/token. Here a step is one launch whose phases
meet at grid-wide barriers, and the decode's caches and scratch stay in place across steps.
The whole step at temperature 0 with mlx-whisper's own filters (for a batch of more rows
than the picks take, `kernel_picks`, the forward pass, then the filters and update in a
launch of their own, `greedy_picks`); for beams the forward pass, then openai's update on
the device (beams.py); for samples the forward pass only (their filters and update run in
MLX ops). On CUDA, float weights or affine-quantized ones (8 or 4 bits, the vocabulary 8-bit
under 4-bit layers too, dequantized in registers: `quantization`), batch <= MAX_BATCH;
everything else, and WHISPERFAST_CUDA_STEP=0 (config.cuda_step), runs the flat step.
Launches, the kernel cache and the grid: launch.py."""

from __future__ import annotations

from typing import Optional

import mlx.core as mx
from mlx.utils import tree_flatten
from mlx_whisper.decoding import GreedyDecoder, SuppressBlank, SuppressTokens
from mlx_whisper.whisper import TextDecoder

from ...config import config
from ...kernels.ops import on_cuda
from ..attention import WhisperAttention, supports_static_cache
from ..beam import BeamSearchDecoder
from ..rules import DeviceTimestampRules, HeldEnd
from .beams import CudaBeams
from .launch import FLAG_SHAPE, NONE, PICKS, THREADS, _ints, _run, _template, grid_blocks, row_reach

# Rows a launch: the kernel runs them in groups (group_rows, decode_step.cu's for_groups), so
# any batch fits; this bounds the templates compiled and the batches tested (5, 16, 32)
MAX_BATCH = 32
_SHARED_FLOATS = 10240  # decode_step.cu's kSharedFloats: xs (a group's rows) and a chunk's scores, within 48 KiB
# Cross-attention splits each head's 1500 keys into this many chunks, a block each. Any split
# sums in another order, and fp16 near-ties can then go the other way: on the H100 (tiny.en
# and base, fp16 and fp32, every sample) 1, 2 and 8 chunks gave stock mlx-whisper's tokens
# everywhere; 4, 11, 16 and 22 moved one timestamp of JFK in tiny.en fp16 (7.54 s -> 7.74 s).
CROSS_CHUNKS = 8


def cross_chunks(n_audio: int, batch: int, n_head: int, blocks: int) -> int:
    """Chunks of keys per cross-attention head for a decode of `batch` rows over `n_audio`
    audio. One audio (a window, its beams or samples): CROSS_CHUNKS, the split whose tokens
    were checked against stock's. Rows of several audio (batched mode, which promises no
    stock tokens: each row its own chunk) take fewer: so in float16 a chunk's near-ties (a
    timestamp a rounding turns) may go otherwise in a batch of many audio than alone or in a
    batch of two, as the batch's size picks the split. Each (row, head, chunk) item also makes its row's
    layer norm and its head's query, and the chunks of a head wait for each other, so once
    the items fill the grid fewer, longer ones are faster: the largest power of two up to
    CROSS_CHUNKS that keeps batch * n_head * chunks within about half the blocks. On an H100
    (benchmarks/h100-session28/) a step of 32 rows took 1.71 -> 1.37 ms for tiny.en and
    2.82 -> 1.99 ms for base (8 chunks -> 1), of 16 rows 1.50 -> 1.13 ms for base."""
    if n_audio == 1:
        return CROSS_CHUNKS
    chunks = 1
    while chunks < CROSS_CHUNKS and 2 * batch * n_head * chunks <= blocks:
        chunks *= 2
    return chunks


def shares_cross_items(batch: int, per_audio: int, n_head: int, chunks: int, blocks: int) -> bool:
    """Whether a cross-attention item takes the rows of one audio together (decode_step.cu's
    SHARE: the keys and values read once for them all, each row's sums in the same order).
    Items of one row run two a block where they outnumber the blocks (its half-block items),
    so sharing pays only where those would take the grid more than two rounds; below that,
    more items side by side beat fewer longer ones (benchmarks/h200-session14/, -session15/)."""
    return per_audio > 1 and batch * n_head * chunks > 4 * blocks


def group_rows(batch: int, n_state: int, n_ctx: int, itemsize: int, pick: bool = True, packed: bool = False) -> int:
    """decode_step.cu's group_rows: rows a group, at most 3 with the greedy picks (`pick`), 8
    without (beams, samples; 5 for `packed` weights), as many as fit its shared memory beside a
    chunk's n_ctx scores (n_ctx: the larger of the audio's and the text's), itemsize * n_state
    floats a row."""
    most = 3 if pick else 5 if packed else 8
    return min(batch, most, (_SHARED_FLOATS - n_ctx) // (itemsize * n_state))


def scratch_floats(batch: int, n_state: int, n_head: int, n_layer: int, blocks: int, itemsize: int,
                   n_ctx: int = 1500, packed: bool = False) -> int:
    """decode_step.cu's Scratch<...>::size(blocks): x and h have the last group's padding rows,
    as many as the larger padding of the kernels with and without the picks (one decode's
    scratch serves both)."""
    padded = max(-(-batch // rows) * rows for rows in (group_rows(batch, n_state, n_ctx, itemsize, pick, packed)
                                                        for pick in (True, False)))
    x = 32 + 2 * (6 * n_layer + 2) + 4
    att = x + padded * n_state * itemsize // 4 + 4 + 4 * padded * n_state * itemsize // 4 + 4
    counters = att + (blocks + n_head) * batch * (n_state // n_head + 2) + blocks * batch * PICKS * 3
    return counters + batch * n_head  # group_sync_rows' counters, one per (row, head)


class CudaStep:
    """The decoder's weights packed once, a row per layer in decode_step.cu's LayerOffsets
    order, for `__call__`: one step of a decode whose state `start` made. A quantized decoder
    (`quantization`) keeps its matrices packed: their words a row per layer in QuantOffsets'
    order (`lq`), their scales and biases likewise (`ls`), the embedding's apart (`embq`,
    `embs`, at its own width: `vocabulary_bits`); `packed` then holds the norms and biases alone."""

    def __init__(self, decoder: TextDecoder):
        self.bits, self.group_size, self.vocabulary_bits = quantization(decoder) or (0, 0, 0)
        quantized = self.bits > 0
        rows, words, scales = [], [], []
        for b in decoder.blocks:
            a, x = b.attn, b.cross_attn
            zero = mx.zeros_like(a.value.bias)  # the key's bias (it has none)
            mats = [[a.query, a.key, a.value], [a.out], [x.query], [x.out], [b.mlp1], [b.mlp2]]
            w = [mx.concatenate([m.weight.reshape(-1) for m in ms]) for ms in mats]
            parts = [b.attn_ln.weight, b.attn_ln.bias, w[0], a.query.bias, zero, a.value.bias, w[1], a.out.bias,
                     b.cross_attn_ln.weight, b.cross_attn_ln.bias, w[2], x.query.bias, w[3], x.out.bias, b.mlp_ln.weight,
                     b.mlp_ln.bias, w[4], b.mlp1.bias, w[5], b.mlp2.bias]
            if quantized:  # the matrices go to lq, ls; their scales, then their biases, a matrix at a time
                parts = [p for p in parts if not any(p is m for m in w)]
                words.append(mx.concatenate(w))
                scales.append(mx.concatenate([t.reshape(-1) for ms in mats for t in (
                    mx.concatenate([m.scales.reshape(-1) for m in ms]), mx.concatenate([m.biases.reshape(-1) for m in ms]))]))
            rows.append(mx.concatenate([p.reshape(-1) for p in parts]))
        self.packed = mx.stack(rows)
        self.lnf = mx.concatenate([decoder.ln.weight, decoder.ln.bias])
        self.pos = mx.contiguous(decoder.positional_embedding)
        self.dtype, (self.n_vocab, self.n_state) = self.pos.dtype, (decoder.token_embedding.weight.shape[0], self.pos.shape[1])
        embedding = decoder.token_embedding
        if quantized:
            self.emb = None
            self.lq, self.ls = mx.stack(words), mx.stack(scales)
            self.embq = mx.contiguous(embedding.weight)
            self.embs = mx.concatenate([embedding.scales.reshape(-1), embedding.biases.reshape(-1)])
        else:
            self.emb = mx.contiguous(embedding.weight)
        cross = [b.cross_attn for b in decoder.blocks]
        if quantized:
            # a window's cross K/V by the layers themselves: stock's quantized products
            self.cross_layers, self.w_cross, self.b_cross = cross, None, None
        else:
            # every layer's cross key and value projections as one (2 * n_layer * D, D) matrix,
            # so a window's cross K/V is one matrix product (keys have no bias: theirs is 0)
            self.cross_layers = None
            self.w_cross = mx.concatenate([w for a in cross for w in (a.key.weight, a.value.weight)]).T
            self.b_cross = mx.concatenate([b for a in cross for b in (mx.zeros_like(a.value.bias), a.value.bias)])
        mx.eval([v for v in vars(self).values() if isinstance(v, mx.array)])
        # what a group of rows reads of the weights each step (the positional embedding: a row)
        self.weight_bytes = sum(v.nbytes for k, v in vars(self).items() if isinstance(v, mx.array)
                                and k not in ("pos", "w_cross", "b_cross"))
        self.n_head = decoder.blocks[0].attn.n_head
        self.launches = 0  # kernel launches through __call__ (tests check that the kernel ran)
        self.beam_launches = 0  # beam_update launches (CudaDecode.beam_update)
        self.pick_launches = 0  # greedy launches (CudaDecode.pick)
        self.kernels: set = set()  # distinct template tuples launched: MLX compiles each once a process

    def start(self, audio_features: mx.array, batch: int, cache: Optional[list] = None) -> dict:
        """A decode's state: every layer's self-attention cache in one array each, written in
        place by the steps, empty or else stacked from `cache` (`decoder_forward`'s, the
        prompt in it: those KVCache objects are not updated after this); the window's cross
        K/V, (n_audio, S, 2 * n_layer * D): layer l's keys at columns 2lD, its values at (2l+1)D;
        the kernel's scratch; `path`, where each row's history lies in the caches (beam search
        trades them: decode_step.cu's self_row), every row its own to begin with."""
        (n_ctx, D), H, dtype, G = self.pos.shape, self.n_head, self.dtype, grid_blocks()
        n_layer = self.packed.shape[0]
        S = audio_features.shape[1]
        n = scratch_floats(batch, D, H, n_layer, G, dtype.size, max(S, n_ctx), packed=self.bits > 0)
        chunks = max(1, min(G // H, S // 64, config().cross_chunks or cross_chunks(audio_features.shape[0], batch, H, G)))
        if self.cross_layers is not None:
            cross = mx.concatenate([m(audio_features) for a in self.cross_layers for m in (a.key, a.value)], axis=-1)
        else:
            cross = mx.addmm(self.b_cross, audio_features, self.w_cross)
        if batch % cross.shape[0]:
            raise ValueError(f"{batch} rows for {cross.shape[0]} audio")
        # offsets to the row holding a position: zeros, every row its own. (Made as the scratch
        # is: made from a numpy array with mx.array, the beam update's writes into it were lost.)
        path = mx.zeros((2, batch, n_ctx), mx.int32)
        # one audio's rows (beams, samples) read its one copy of `cross`, which then stays in L2
        state = dict(scratch=mx.zeros((n,), mx.float32), blocks=G, chunks=chunks, cross=cross, path=path)
        if cache is not None:
            return dict(state, kc=mx.stack([kv.keys for kv, _ in cache]), vc=mx.stack([kv.values for kv, _ in cache]))
        shape = (n_layer, batch, H, n_ctx, D // H)
        return dict(state, kc=mx.zeros(shape, dtype), vc=mx.zeros(shape, dtype))

    def __call__(self, tokens: mx.array, sum_logprobs: mx.array, state: dict, suppress: mx.array, rules: dict,
                 new: int = 1, sot: int = -1, pick: bool = True):
        """tokens (B, L), the last `new` not yet in the caches (run one after another in the
        launch) -> (tokens (B, L+1), completed, sum_logprobs, logits (B, R, n_vocab) float32)
        after SuppressTokens (`suppress`, its additive mask), the timestamp rules and the greedy
        update (`rules`, timestamp_rules). logits[:, -1] are the last position's; where `sot`
        is another of the new positions, logits[:, 0] are its (R = 2). Without `pick` (the
        forward pass of beams, samples and greedy batches too wide for the picks) the kernel
        leaves the filters and the update out, and only the logits are meaningful."""
        (B, L), n_vocab, D, kc = tokens.shape, self.n_vocab, self.n_state, state["kc"]
        if B != kc.shape[1] or L > kc.shape[3] or not 1 <= new <= L:
            raise ValueError(f"{B} rows of {L} tokens ({new} new) for caches of {kc.shape[1]} rows of {kc.shape[3]}")
        rows = 2 if L - new <= sot < L - 1 else 1
        S, G = state["cross"].shape[1], state["blocks"]
        per_audio = B // state["cross"].shape[0]  # rows an audio: they share its cross K/V
        template = [("T", self.dtype), ("B", B), ("D", D), ("H", self.n_head), ("NL", self.packed.shape[0]),
                    ("CTX", kc.shape[3]), ("S", S), ("CC", state["chunks"]), ("NV", n_vocab)] + _template(rules) \
            + [("PICK", pick), ("PA", per_audio),
               ("SHARE", shares_cross_items(B, per_audio, self.n_head, state["chunks"], G))]
        meta = _meta(rules, B, new, sot)
        rest = [self.pos, self.lnf, self.packed, kc, state["vc"], state["path"], state["cross"], sum_logprobs, suppress,
                state["scratch"]]
        if self.bits:
            template += [("QB", self.bits), ("GS", self.group_size), ("EB", self.vocabulary_bits)]
            inputs, call = _QUANT_INPUTS, _QUANT_CALL
            args = [tokens, meta, *rest, self.embq, self.embs, self.lq, self.ls]
        else:
            inputs, call, args = _INPUTS, _CALL, [tokens, meta, self.emb, *rest]
        outputs = ("tokens_out", "sum_out", "completed", "logits")
        tokens, sums, completed, logits = _run(
            "decode_step_q" if self.bits else "decode_step", inputs, outputs, call, args, template, G, THREADS,
            [(B, L + 1), (max(B, 4),), FLAG_SHAPE, (B, rows, n_vocab)], [tokens.dtype, mx.float32, mx.bool_, mx.float32])
        self.launches += 1
        self.kernels.add(tuple(template))
        return tokens, completed, sums[:B], logits


_INPUTS = ("tokens", "meta", "emb", "pos", "lnf", "lw", "kc", "vc", "path", "cross", "sum_in", "suppress", "scratch")
_ARGS = ("pos, lnf, lw, kc, vc, path, cross, sum_in, suppress, scratch, scratch_shape[0], tokens_out, sum_out, "
         "completed, logits")
_CALL = ("wf::decode_step<T, B, D, H, NL, CTX, S, CC, NV, TS, EOT, NO_TS, RULES, PICK, PA, SHARE>(tokens, "
         f"tokens_shape[1], meta, emb, {_ARGS});")
# a quantized decoder's: no float embedding (nullptr), its packed matrices after the outputs
_QUANT_INPUTS = tuple(n for n in _INPUTS if n != "emb") + ("embq", "embs", "lq", "ls")
_QUANT_CALL = ("wf::decode_step<T, B, D, H, NL, CTX, S, CC, NV, TS, EOT, NO_TS, RULES, PICK, PA, SHARE, QB, GS, EB>(tokens, "
               f"tokens_shape[1], meta, nullptr, {_ARGS}, embq, embs, lq, ls);")


class CudaDecode:
    """One decode on the kernel. `prompt` runs a short prompt from empty caches in one launch,
    its positions one after another, and samples the first token with the first sample's
    filters; for a longer prompt the module path runs it and `resume` takes over its caches.
    Then each call is a step: (tokens, sum_logprobs) -> (tokens, completed, sum_logprobs).

    With `greedy`, mlx-whisper's filters and greedy update run on the device: in the step's
    launch (`picks`), or, for a batch too wide for its picks (`kernel_picks`), in a second
    launch after the forward pass (`greedy_picks`). With `beams` (CudaBeams) a second launch
    runs openai's beam update, and the next forward pass reads each beam's history where its
    source row's lies (the state's `path`; the caches do not move). With neither (sampling)
    the kernel is the decoder's forward pass only: `logits` gives each launch's logits, and
    the task applies the filters and the decoder's update."""

    # A prompt position costs the kernel about a step (0.17 ms for tiny.en, 0.27 for base on
    # an H100), the module pass a few ms of host time whatever the length: the SOT sequence
    # and short prefixes run here, prompts with previous text there. (Launches of one prompt
    # token each went wrong: MLX orders its CUDA graph's kernels by the buffers they read and
    # write, and these write their state in place, where MLX does not see it.)
    MAX_PROMPT = 8

    def __init__(self, step: CudaStep, suppress: mx.array, first: mx.array, rules: dict, greedy: bool = True,
                 beams: Optional[CudaBeams] = None, picks: bool = True):
        # picks: whether the step's launch picks the tokens (the kernel compiled with PICK);
        # False for beams and samples, and for greedy batches too wide for its picks
        self.step, self.suppress, self.first, self.rules, self.state = step, suppress, first, rules, None
        self.greedy, self.beams, self.picks = greedy, beams, picks and beams is None

    def prompt(self, tokens: mx.array, audio_features: mx.array, sot: int = -1):
        """tokens (B, L) -> (tokens (B, L+1), completed, sum_logprobs, logits (B, n_vocab) of
        position `sot`, or of the last position where sot is -1)."""
        out, completed, sums, logits = self._launch_prompt(tokens, audio_features, sot)
        if self.beams is not None:
            out, completed, sums = self.beam_update(tokens, logits, mx.zeros((tokens.shape[0],)), first=True)
        elif self.greedy and not self.picks:
            out, completed, sums = self.pick(tokens, logits, mx.zeros((tokens.shape[0],)), self.first)
        return out, completed, sums, logits[:, 0]

    def _launch_prompt(self, tokens: mx.array, audio_features: mx.array, sot: int):
        """The whole prompt from empty caches in one launch: the step's four outputs."""
        B, L = tokens.shape
        if L > self.MAX_PROMPT:
            raise ValueError(f"a prompt of {L} tokens; the kernel takes {self.MAX_PROMPT}")
        self.state = self.step.start(audio_features, B)
        return self.step(tokens, mx.zeros((B,)), self.state, self.first, self.rules, L, sot, pick=self.picks)

    def resume(self, audio_features: mx.array, cache: list, batch: int):
        self.state = self.step.start(audio_features, batch, cache)

    def __call__(self, tokens: mx.array, sum_logprobs: mx.array):
        if self.picks:
            return self.step(tokens, sum_logprobs, self.state, self.suppress, self.rules)[:3]
        logits = self.step(tokens, sum_logprobs, self.state, self.suppress, self.rules, pick=False)[3]
        if self.beams is not None:
            return self.beam_update(tokens, logits, sum_logprobs)
        return self.pick(tokens, logits, sum_logprobs, self.suppress)

    def pick(self, tokens: mx.array, logits: mx.array, sum_logprobs: mx.array, suppress: mx.array):
        """greedy_picks after a forward pass: -> (tokens, completed, sum_logprobs)."""
        self.step.pick_launches += 1
        return greedy_picks(logits, tokens, sum_logprobs, suppress, self.rules)

    def beam_update(self, tokens: mx.array, logits: mx.array, sum_logprobs: mx.array, first: bool = False):
        """openai's beam update on the device (`beams`), which also records where each beam's
        history lies (the state's `path`): -> (tokens, completed, sum_logprobs). `first`: the
        first sample's filters (SuppressBlank too)."""
        if self.beams.store is None:
            self.beams.start(tokens.shape[0], tokens.dtype)
        out, completed, sums, _ = self.beams(tokens, logits, sum_logprobs, self.first if first else self.suppress,
                                             self.rules, self.state["path"])
        self.step.beam_launches += 1
        return out, completed, sums

    def logits(self, tokens: mx.array, audio_features: Optional[mx.array] = None, sot: int = -1) -> mx.array:
        """The forward pass: tokens (B, L), the last one not yet in the caches (given
        `audio_features`: the whole prompt, from empty caches) -> logits (B, R, n_vocab)
        float32, as the decoder returns them: row R-1 the last position's, row 0 `sot`'s where
        that is another new position (R = 2)."""
        if audio_features is not None:
            return self._launch_prompt(tokens, audio_features, sot)[3]
        return self.step(tokens, mx.zeros((tokens.shape[0],)), self.state, self.first, self.rules, pick=False)[3]


def timestamp_rules(tokenizer, sample_begin: int, enabled: bool, max_initial: Optional[int] = None) -> dict:
    """The filters' constants (max_initial: ApplyTimestampRules' max_initial_timestamp_index):
    TS, EOT, NO_TS and RULES are template arguments, fixed per tokenizer and task; sample_begin
    and max_init go in at each launch, so prompts of any length share one compiled kernel."""
    no_ts = tokenizer.no_timestamps if tokenizer.no_timestamps is not None else NONE
    return dict(TS=tokenizer.timestamp_begin, EOT=tokenizer.eot, NO_TS=no_ts, RULES=enabled, sample_begin=sample_begin,
                max_init=NONE if max_initial is None else max_initial, must_reach=())


def _meta(rules: dict, rows: int, new: int = 0, sot: int = -1) -> mx.array:
    """A launch's meta, as decode_step.cu and filters.cuh's greedy read it: the new positions,
    the SOT's, the filters' sample_begin and max_init, then each row's must_reach."""
    return _ints(new, sot, rules["sample_begin"], rules["max_init"], *row_reach(rules, rows))


_GREEDY_CALL = ("wf::greedy<NV, TS, EOT, NO_TS, RULES>(logits, logits_shape[1], tokens, tokens_shape[1], meta, sum_in, "
                "suppress, tokens_out, sum_out, done);")


def greedy_picks(logits: mx.array, tokens: mx.array, sum_logprobs: mx.array, suppress: mx.array, rules: dict):
    """mlx-whisper's filters and greedy update at temperature 0 in one launch, a block a row
    (filters.cuh's greedy): SuppressTokens (and SuppressBlank at the first sample: `suppress`
    is their summed mask), the timestamp rules (when rules["RULES"]) and batched mode's
    HeldEnd (rules["must_reach"]), then GreedyDecoder.update. logits (B, R, n_vocab) float32,
    the picks from row R-1; tokens (B, L) -> (tokens (B, L+1), completed, sum_logprobs)."""
    (B, L), n_vocab = tokens.shape, logits.shape[-1]
    meta = _meta(rules, B)
    tokens, sums, done = _run("greedy", ["logits", "tokens", "meta", "sum_in", "suppress"],
                              ["tokens_out", "sum_out", "done"], _GREEDY_CALL,
                              [logits, tokens, meta, sum_logprobs, suppress], [("NV", n_vocab)] + _template(rules),
                              B, THREADS, [(B, L + 1), (B,), (B,)], [tokens.dtype, mx.float32, mx.bool_])
    return tokens, mx.all(done), sums


def cuda_step(task, batch: int, features: mx.Dtype) -> Optional[CudaDecode]:
    """The task's decode on the kernel, or None where it does not apply (`features`: the
    audio features' dtype, which must be the decoder's)."""
    filters = task.logit_filters
    step = _step_for(task.model, batch, features)
    if step is None:
        return None
    # the kernels run these filters with mlx-whisper's greedy update at temperature 0 (in the
    # step's launch where its picks take the batch, else in a launch of their own), or with
    # openai's beam update (beams.py); sampling takes the logits (CudaDecode.logits). Beams with
    # other filters stay off the kernel (the flat step), as their update would need its logits.
    known = all(type(f) in (SuppressBlank, SuppressTokens, DeviceTimestampRules, HeldEnd) for f in filters)
    greedy = known and isinstance(task.decoder, GreedyDecoder) and task.decoder.temperature == 0
    beams = None
    if isinstance(task.decoder, BeamSearchDecoder):
        if not known:
            return None
        beams = CudaBeams(task.decoder.beam_size, task.decoder.max_candidates, task.model.dims.n_text_ctx)
    n_vocab = step.n_vocab
    suppress = _mask_sum(tuple(f.mask for f in filters if type(f) is SuppressTokens), n_vocab)
    # SuppressBlank: the first sample only
    first = _mask_sum(tuple(f.mask for f in filters if type(f) in (SuppressTokens, SuppressBlank)), n_vocab)
    ts = [f for f in filters if type(f) is DeviceTimestampRules]
    rules = timestamp_rules(task.tokenizer, task.sample_begin, bool(ts), ts[0].max_initial_timestamp_index if ts else None)
    held = [f for f in filters if type(f) is HeldEnd]
    if held:
        rules["must_reach"] = tuple(int(x) for x in held[0].must_reach)
    return CudaDecode(step, suppress, first, rules, greedy, beams, picks=greedy and kernel_picks(task.model, batch))


_MASKS: dict = {}


def _mask_sum(masks: tuple, n_vocab: int) -> mx.array:
    """The filters' masks summed, once for as long as they live (rules.py keeps its
    tasks' filters): each sum is MLX ops, ~25 µs each on an H100."""
    key = tuple(map(id, masks)) + (n_vocab,)
    if key not in _MASKS:
        if len(_MASKS) >= 64:
            _MASKS.clear()
        _MASKS[key] = masks, sum(masks, mx.zeros((n_vocab,), mx.float32))  # the masks held: their ids stay theirs
    return _MASKS[key][1]


def prompt_logits(model, tokens: mx.array, audio_features: mx.array, tokenizer) -> Optional[mx.array]:
    """Whisper.logits for a one-token prompt from empty caches (language detection's SOT) on
    the kernel: (B, 1, n_vocab), or None where it does not apply. The kernel's logits are the
    decoder's, before any filter, and its pick goes unused; so it runs the kernel compiled for
    a transcription's filters (`tokenizer`'s ids, the timestamp rules on), with or without the
    picks as the transcription's greedy decode of these rows (`kernel_picks`), which a machine's
    first run then compiles once for both (1.4 s for base on the H200 before the compile got
    lean, benchmarks/h200-session10/)."""
    step = _step_for(model, tokens.shape[0], audio_features.dtype)
    if step is None or tokens.shape[1] != 1:
        return None
    none = mx.zeros((step.n_vocab,), mx.float32)
    rules = timestamp_rules(tokenizer, tokens.shape[1], True)
    picks = kernel_picks(model, tokens.shape[0])  # the kernel the transcription's decode runs
    return CudaDecode(step, none, none, rules, greedy=False, picks=picks).prompt(tokens, audio_features)[3][:, None]


def quantized_note(model) -> Optional[str]:
    """What the rewrite report says of a quantized decoder on a CUDA GPU: that the kernel
    reads it, or why it does not (None elsewhere)."""
    if not on_cuda():
        return None
    if _step_for(model, 1, model.decoder.positional_embedding.dtype) is not None:
        bits, group_size, vocabulary_bits = quantization(model.decoder)
        vocabulary = f", the vocabulary {vocabulary_bits}-bit" if vocabulary_bits != bits else ""
        return (f"quantized decoder ({bits}-bit{vocabulary}, groups of {group_size}) on the CUDA decode kernel: it reads "
                "the packed weights and dequantizes them in registers, so its sums agree with the stock lane's quantized "
                "matmuls to rounding")
    if quantization(model.decoder) is None:
        return ("quantized decoder: the CUDA decode kernel reads float weights and affine 8- or 4-bit ones (groups of "
                "32, 64 or 128, every layer alike, the vocabulary at their width or 8-bit) only, so decoding runs the "
                "flat step")
    return None


def kernel_picks(model, batch: int) -> bool:
    """Whether a greedy decode of `batch` rows picks its tokens in the kernel. Its picks'
    registers keep a group of rows to 3, and each group is a pass over the weights, the
    vocabulary included; without them a group takes up to 8 rows (5 packed), as many as its
    shared memory holds, and a second launch (greedy_picks) picks from the logits it writes.
    So the picks stay up to config().kernel_pick_rows rows, and wherever a group without them
    would hold no more rows (wide rows: large models in fp16, small ones in fp32)."""
    if batch <= config().kernel_pick_rows:
        return True
    dims, step = model.dims, _decoder_step(model)
    shape = (batch, dims.n_text_state, max(dims.n_audio_ctx, dims.n_text_ctx), step.dtype.size if step else 2)
    packed = step is not None and step.bits > 0
    return group_rows(*shape, pick=False, packed=packed) <= group_rows(*shape, pick=True, packed=packed)


def step_reads(batch: int, n_layer: int, n_state: int, n_audio_ctx: int, itemsize: int, weight_bytes: int,
               group: int) -> int:
    """Bytes a step of the kernel reads for `batch` rows: the weights once a group of `group`
    rows (decode_step.cu's for_groups), and every row's cross K/V (each row its own audio: beams
    and samples read theirs once an audio, so this overstates them)."""
    return -(-batch // group) * weight_bytes + batch * n_layer * 2 * n_audio_ctx * n_state * itemsize


def kernel_pays(model, step: CudaStep, batch: int) -> bool:
    """Whether the kernel is the faster step for `batch` rows, rather than the flat step (MLX's
    graph, its matrix products on cuBLAS: the weights read once for every row). The kernel's
    step is one launch that reads the weights again for each group of rows, and a group holds
    3 rows where the rows are wide (large-v3-turbo in fp16); the flat step costs the host ~0.6
    ms a layer, whatever the rows. So the kernel's step time follows its bytes, the flat
    step's its layers: on an H100 (benchmarks/h100-session28/) large-v3-turbo's shapes tie at
    12 rows, 409 MB a layer (1,633 MB a step, 2.3 ms either way), and at 32 rows the flat step
    is 2.0x faster; base and tiny.en stay on the kernel at 32 rows (163 and 130 MB a layer,
    1.7x faster than flat). Flat where a step would read more than config().kernel_layer_bytes
    (420 MB) a decoder layer: large-v3-turbo past 12 rows. Only those three were measured, in
    float16; other sizes follow their bytes (medium leaves the kernel from 29 rows, large-v3
    from 16, base in float32 from 29). One row, or beams of 5, of every Whisper size read far
    less."""
    dims = model.dims
    group = group_rows(batch, dims.n_text_state, max(dims.n_audio_ctx, dims.n_text_ctx), step.dtype.size,
                       pick=kernel_picks(model, batch), packed=step.bits > 0)
    reads = step_reads(batch, dims.n_text_layer, dims.n_text_state, dims.n_audio_ctx, step.dtype.size,
                       step.weight_bytes, group)
    return reads <= config().kernel_layer_bytes * dims.n_text_layer


def _step_for(model, batch: int, features: mx.Dtype) -> Optional[CudaStep]:
    if not config().cuda_step or not on_cuda() or batch > MAX_BATCH:
        return None
    step, dims = _decoder_step(model), model.dims
    if (step is None or features != step.dtype
            or group_rows(batch, dims.n_text_state, max(dims.n_audio_ctx, dims.n_text_ctx), features.size) < 1
            or not kernel_pays(model, step, batch)):
        return None
    return step


def quantization(decoder: TextDecoder) -> Optional[tuple]:
    """(bits, group_size, vocabulary_bits) of a decoder whose matrices the kernel reads are
    quantized as common.cuh's dot_qrow reads them: MLX's affine mode, groups of 32, 64 or
    128 throughout; the layers (self-attention's q, k, v, out, cross-attention's q, out, the
    MLP's two) all 8- or all 4-bit (the kernel's QB); the token embedding, which is also the
    vocabulary projection, at their width or at 8 bits (its EB: --quantize 4's, models.VOCABULARY_BITS).
    None where they are float, or quantized otherwise (a mix, other group sizes, another mode)."""
    layers = [m for b in decoder.blocks for m in (
        b.attn.query, b.attn.key, b.attn.value, b.attn.out, b.cross_attn.query, b.cross_attn.out, b.mlp1, b.mlp2)]
    kinds, vocabulary = {_packing(m) for m in layers}, _packing(decoder.token_embedding)
    if len(kinds) != 1 or None in kinds or vocabulary is None:
        return None
    (bits, group_size), (vocabulary_bits, vocabulary_group) = kinds.pop(), vocabulary
    if vocabulary_group != group_size or vocabulary_bits not in (bits, 8):
        return None
    return bits, group_size, vocabulary_bits


def _packing(m) -> Optional[tuple]:
    """(bits, group_size) of a layer packed as dot_qrow reads it (affine, with biases, 8 or 4
    bits, groups of 32, 64 or 128), else None (float, or packed otherwise)."""
    if "scales" not in m or "biases" not in m or getattr(m, "mode", "affine") != "affine":
        return None
    bits, group_size = getattr(m, "bits", None), getattr(m, "group_size", None)
    return (bits, group_size) if bits in (8, 4) and group_size in (32, 64, 128) else None


def _decoder_step(model) -> Optional[CudaStep]:
    """The model's CudaStep, or None where its decoder does not fit the kernel; checked and
    built once per decoder (the checks walk every parameter: ~1 ms)."""
    decoder = model.decoder
    if "_whisperfast_cuda" in decoder.__dict__:
        return decoder.__dict__["_whisperfast_cuda"]
    norms = [decoder.ln] + [n for b in decoder.blocks for n in (b.attn_ln, b.cross_attn_ln, b.mlp_ln)]
    dtype, head_dim = decoder.positional_embedding.dtype, model.dims.n_text_state // decoder.blocks[0].attn.n_head
    # float weights, or quantized ones the kernel reads (their packed words aside, every
    # parameter in the one float dtype)
    packed = quantization(decoder) is not None
    fits = (supports_static_cache(model) and all(isinstance(b.cross_attn, WhisperAttention) for b in decoder.blocks)
            and all(getattr(n, "eps", None) == 1e-5 and "bias" in n for n in norms)
            and dtype in (mx.float16, mx.bfloat16, mx.float32)
            and head_dim % (16 // dtype.size) == 0 and THREADS % head_dim == 0  # rows read as 16-byte vectors
            and all(w.dtype == dtype or (packed and w.dtype == mx.uint32) for _, w in tree_flatten(decoder.parameters())))
    decoder.__dict__["_whisperfast_cuda"] = CudaStep(decoder) if fits else None
    return decoder.__dict__["_whisperfast_cuda"]
