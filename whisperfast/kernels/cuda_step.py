"""The greedy decode step on MLX's CUDA backend as custom kernels (decode_step.cu): one
token through the decoder, mlx-whisper's logit filters and its greedy update.

Why: on an H100 a step of the module graph is ~350 MLX primitives and MLX spends 4-17 µs
of host time on each, while the math is ~20 µs (benchmarks/overhead.py). Here a step is
8 launches per layer plus 3: embedding, logits, filters + update. Same weights, same
caches: the self-attention KVCache gets its new row, the cross K/V come from the prompt
step. Only where it applies (CUDA, temperature 0, mlx-whisper's own filters, batch <= 4);
everything else, and WHISPERFAST_CUDA_STEP=0, runs FlatStep. H100, tiny.en fp16, JFK:
decode 1.0 ms/token against the flat step's 1.7-2.1 (benchmarks/README.md).

WHISPERFAST_CUDA_STEP=one runs batch 1 as a single launch whose phases meet at grid-wide
barriers: the same tokens, but measured no faster (1.16-1.25 ms/token)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Optional

import mlx.core as mx
from mlx.utils import tree_flatten
from mlx_whisper.decoding import GreedyDecoder, SuppressBlank, SuppressTokens
from mlx_whisper.whisper import TextDecoder

MAX_BATCH = 4  # the gemv keeps B activation rows in shared memory
_THREADS = 256


@lru_cache(maxsize=None)
def _kernel(name: str, inputs: tuple, outputs: tuple, call: str):
    source = Path(__file__).with_name("decode_step.cu").read_text()
    return mx.fast.cuda_kernel(name=f"wf_{name}", input_names=list(inputs), output_names=list(outputs),
                               source=call, header=source)


def _run(name, inputs, outputs, call, args, template, blocks, threads, shapes, dtypes):
    kernel = _kernel(name, tuple(inputs), tuple(outputs), call)
    return kernel(inputs=args, template=template, grid=(blocks * threads, 1, 1), threadgroup=(threads, 1, 1),
                  output_shapes=shapes, output_dtypes=dtypes)


def _gemv(x, w, bias, ln=None, res=None, gelu=False, out_dtype=None):
    """res + (LN(x) or x) @ w.T + bias, GELU'd; x (B, K), w (N, K) -> (B, N)."""
    (B, K), N = x.shape, w.shape[0]
    T, O = x.dtype, out_dtype or x.dtype
    blocks = min(-(-N // (_THREADS // 32)), 1024)  # a row per warp, up to 1024 blocks
    template = [("T", T), ("O", O), ("B", B), ("K", K), ("N", N), ("BIAS", bias is not None), ("GELU", gelu)]
    if res is not None:
        return _run("gemv_res", ["x", "w", "bias", "res"], ["y"],
                    "wf::gemv<T, O, B, K, N, false, BIAS, GELU, true>(x, nullptr, nullptr, w, bias, res, y);",
                    [x, w, bias, res], template, blocks, _THREADS, [(B, N)], [O])[0]
    return _run("ln_gemv", ["x", "g", "beta", "w", "bias"], ["y"],
                "wf::gemv<T, O, B, K, N, true, BIAS, GELU, false>(x, g, beta, w, bias, nullptr, y);",
                [x, ln.weight, ln.bias, w, w if bias is None else bias], template, blocks, _THREADS, [(B, N)], [O])[0]


class CudaStep:
    """The decoder's weights gathered once (q|k|v concatenated, all row-contiguous) for
    `logits`, one single-token step."""

    def __init__(self, decoder: TextDecoder):
        made = []

        def c(a):  # row-contiguous once, so no kernel call copies a weight
            made.append(mx.contiguous(a))
            return made[-1]

        self.layers = []
        for b in decoder.blocks:
            a, x = b.attn, b.cross_attn
            zero = mx.zeros(a.key.weight.shape[:1], a.key.weight.dtype)
            self.layers.append(dict(
                ln1=b.attn_ln, wqkv=c(mx.concatenate([a.query.weight, a.key.weight, a.value.weight])),
                bqkv=c(mx.concatenate([a.query.bias, zero, a.value.bias])), wo=c(a.out.weight), bo=a.out.bias,
                ln2=b.cross_attn_ln, wq=c(x.query.weight), bq=x.query.bias, wco=c(x.out.weight), bco=x.out.bias,
                ln3=b.mlp_ln, w1=c(b.mlp1.weight), b1=b.mlp1.bias, w2=c(b.mlp2.weight), b2=b.mlp2.bias))
        self.ln, self.emb, self.pos = decoder.ln, c(decoder.token_embedding.weight), c(decoder.positional_embedding)
        mx.eval(made)
        self.n_head = decoder.blocks[0].attn.n_head

    def logits(self, tokens: mx.array, cache: list) -> mx.array:
        """tokens (B, L), the last not yet in the caches -> its logits (B, n_vocab), float32;
        cache as `decoder_forward`'s: each KVCache gets the new row."""
        (B, L), D, H = tokens.shape, self.emb.shape[1], self.n_head
        T = self.emb.dtype
        x = _run("embed", ["tokens", "emb", "pos"], ["x"], "wf::embed<T, B, D>(tokens, tokens_shape[1], emb, pos, x);",
                 [tokens, self.emb, self.pos], [("T", T), ("B", B), ("D", D)], -(-B * D // 256), 256, [(B, D)], [T])[0]
        for p, (kv, (ck, cv)) in zip(self.layers, cache):
            if kv.offset != L - 1 or L > kv.n_ctx:
                raise ValueError(f"cache holds {kv.offset} positions for {L - 1} tokens (n_ctx {kv.n_ctx})")
            qkv = _gemv(x, p["wqkv"], p["bqkv"], ln=p["ln1"])
            o, kv.keys, kv.values = _run(
                "self_attention", ["qkv", "kc", "vc", "tokens"], ["o", "kc2", "vc2"],
                "wf::self_attention<T, B, H, HD, CTX>(qkv, kc, vc, tokens_shape[1] - 1, o, kc2, vc2);",
                [qkv, kv.keys, kv.values, tokens], [("T", T), ("B", B), ("H", H), ("HD", D // H), ("CTX", kv.n_ctx)],
                B * H, 128, [(B, D), kv.keys.shape, kv.values.shape], [T, T, T])
            kv.offset += 1
            x = _gemv(o, p["wo"], p["bo"], res=x)
            q = _gemv(x, p["wq"], p["bq"], ln=p["ln2"])
            o = _run("cross_attention", ["q", "ck", "cv"], ["o"], "wf::cross_attention<T, B, H, HD, S>(q, ck, cv, o);",
                     [q, ck, cv], [("T", T), ("B", B), ("H", H), ("HD", D // H), ("S", ck.shape[2])],
                     B * H, 256, [(B, D)], [T])[0]
            x = _gemv(o, p["wco"], p["bco"], res=x)
            x = _gemv(_gemv(x, p["w1"], p["b1"], ln=p["ln3"], gelu=True), p["w2"], p["b2"], res=x)
        return _gemv(x, self.emb, None, ln=self.ln, out_dtype=mx.float32)

    def one_launch(self, tokens: mx.array, sum_logprobs: mx.array, cache: list, state: dict, suppress: mx.array,
                   rules: dict):
        """The whole step, filters and update included, as one kernel for batch 1: the
        phases meet at grid-wide barriers instead of launch boundaries. `state` holds this
        decode's caches, all layers in one array each, built from `cache` on the first step
        (the KVCache objects are not updated after that) and a barrier counter."""
        (B, L), (n_vocab, D), H = tokens.shape, self.emb.shape, self.n_head
        if not state:
            if B != 1 or L != rules["SAMPLE_BEGIN"] + 1:
                raise ValueError("one_launch takes batch 1 from the first step after the prompt")
            self._pack()
            state.update(kc=mx.stack([kv.keys for kv, _ in cache]), vc=mx.stack([kv.values for kv, _ in cache]),
                         ck=mx.stack([c[0] for _, c in cache]), cv=mx.stack([c[1] for _, c in cache]),
                         counter=mx.zeros((32,), mx.uint32))
            # The counter must be a buffer of its own, in device memory: MLX puts arrays of
            # <= 8 bytes in a shared managed pool marked read-mostly, where atomics crawl.
            mx.eval(state)
        kc, ck, G = state["kc"], state["ck"], _resident_blocks()
        if L > kc.shape[3]:
            raise ValueError(f"{L} tokens overflow the cache (n_ctx {kc.shape[3]})")
        T = self.emb.dtype
        template = [("T", T), ("D", D), ("H", H), ("NL", len(self.layers)), ("CTX", kc.shape[3]), ("S", ck.shape[3]),
                    ("NV", n_vocab)] + list(rules.items())
        outs = _run("decode_step", DECODE_STEP_INPUTS, DECODE_STEP_OUTPUTS,
                    "wf::decode_step<T, D, H, NL, CTX, S, NV, TS, EOT, NO_TS, SAMPLE_BEGIN, RULES>(" +
                    ", ".join(DECODE_STEP_INPUTS[:1] + ("tokens_shape[1]",) + DECODE_STEP_INPUTS[1:] + DECODE_STEP_OUTPUTS) + ");",
                    [tokens, self.emb, self.pos, self.lnf, self.packed, state["kc"], state["vc"], ck, state["cv"],
                     sum_logprobs, suppress, state["counter"]], template, G, 256,
                    [(B, L + 1), (B, 4), (16,), kc.shape, kc.shape, (B, D), (B, 3 * D), (B, D), (B, 4 * D), (B, n_vocab),
                     (8 * G,)],  # sum and completed padded past 8 bytes: out of that pool too
                    [tokens.dtype, mx.float32, mx.bool_, T, T, T, T, T, T, mx.float32, mx.float32])
        tokens, sum_logprobs, completed, state["kc"], state["vc"] = outs[:5]
        return tokens, completed[0], sum_logprobs[:, 0]

    def _pack(self):
        """Each layer's weights in one row, in decode_step.cu's LayerOffsets order."""
        if hasattr(self, "packed"):
            return
        rows = []
        for p in self.layers:
            parts = [p["ln1"].weight, p["ln1"].bias, p["wqkv"], p["bqkv"], p["wo"], p["bo"], p["ln2"].weight,
                     p["ln2"].bias, p["wq"], p["bq"], p["wco"], p["bco"], p["ln3"].weight, p["ln3"].bias,
                     p["w1"], p["b1"], p["w2"], p["b2"]]
            rows.append(mx.concatenate([a.reshape(-1) for a in parts]))
        self.packed = mx.stack(rows)
        self.lnf = mx.concatenate([self.ln.weight, self.ln.bias])
        mx.eval(self.packed, self.lnf)


DECODE_STEP_INPUTS = ("tokens", "emb", "pos", "lnf", "lw", "kc", "vc", "ck", "cv", "sum_in", "suppress", "counter")
DECODE_STEP_OUTPUTS = ("tokens_out", "sum_out", "completed", "kc2", "vc2", "x", "qkv", "o", "h", "logits", "part")


@lru_cache(maxsize=1)
def _resident_blocks() -> int:
    """Blocks for the one-launch step: one per SM, so all are resident at once."""
    if os.environ.get("WHISPERFAST_STEP_BLOCKS"):
        return int(os.environ["WHISPERFAST_STEP_BLOCKS"])
    info = mx.device_info()
    for key in ("multi_processor_count", "multiprocessor_count", "num_sms", "sm_count"):
        if key in info:
            return max(1, min(int(info[key]), 128))
    return 32




def greedy_update(logits: mx.array, tokens: mx.array, sum_logprobs: mx.array, suppress: mx.array, rules: dict):
    """SuppressTokens (`suppress`, the additive mask), ApplyTimestampRules (when
    rules["RULES"]) and GreedyDecoder.update at temperature 0, for a step after the first:
    logits (B, n_vocab) float32, tokens (B, L) -> (tokens (B, L+1), completed, sum_logprobs)."""
    B, L = tokens.shape
    template = [("B", B), ("NV", logits.shape[-1])] + list(rules.items())
    tokens, sum_logprobs, completed = _run(
        "greedy", ["logits", "tokens", "sum_in", "suppress"], ["tokens_out", "sum_out", "completed"],
        "wf::greedy<B, NV, TS, EOT, NO_TS, SAMPLE_BEGIN, RULES>"
        "(logits, tokens, tokens_shape[1], sum_in, suppress, tokens_out, sum_out, completed);",
        [logits, tokens, sum_logprobs, suppress], template, 1, 1024, [(B, L + 1), (B,), ()],
        [tokens.dtype, mx.float32, mx.bool_])
    return tokens, completed, sum_logprobs


def timestamp_rules(tokenizer, sample_begin: int, enabled: bool) -> dict:
    """The template constants `greedy_update` takes."""
    no_ts = tokenizer.no_timestamps if tokenizer.no_timestamps is not None else -1
    return dict(TS=tokenizer.timestamp_begin, EOT=tokenizer.eot, NO_TS=no_ts, SAMPLE_BEGIN=sample_begin, RULES=enabled)


def cuda_step(task, batch: int, features: mx.Dtype) -> Optional[callable]:
    """The task's steps after the first as CudaStep, or None where it does not apply
    (`features`: the audio features' dtype, which must be the decoder's)."""
    model, filters = task.model, task.logit_filters
    cuda = getattr(mx, "cuda", None)
    if (os.environ.get("WHISPERFAST_CUDA_STEP", "1") == "0" or mx.default_device() != mx.gpu
            or cuda is None or not cuda.is_available() or not isinstance(task.decoder, GreedyDecoder)
            or task.decoder.temperature != 0 or batch > MAX_BATCH
            or features != task.model.decoder.token_embedding.weight.dtype):
        return None
    from ..decoding import DeviceTimestampRules, supports_static_cache
    from .layers import WhisperAttention
    decoder = model.decoder
    norms = [decoder.ln] + [n for b in decoder.blocks for n in (b.attn_ln, b.cross_attn_ln, b.mlp_ln)]
    dtype, n_head = decoder.token_embedding.weight.dtype, decoder.blocks[0].attn.n_head
    vec = 16 // dtype.size  # the kernels read rows as 16-byte vectors
    if (not supports_static_cache(model) or not all(isinstance(b.cross_attn, WhisperAttention) for b in decoder.blocks)
            or any(getattr(n, "eps", None) != 1e-5 or "bias" not in n for n in norms)
            or dtype not in (mx.float16, mx.bfloat16, mx.float32) or (model.dims.n_text_state // n_head) % vec
            or any(w.dtype != dtype for _, w in tree_flatten(decoder.parameters()))
            or any(type(f) not in (SuppressBlank, SuppressTokens, DeviceTimestampRules) for f in filters)):
        return None
    # SuppressBlank acts only on the first sampled token, which the prompt step samples.
    masks = [f.mask for f in filters if type(f) is SuppressTokens]
    suppress = sum(masks[1:], masks[0]) if masks else mx.zeros((model.dims.n_vocab,), mx.float32)
    rules = timestamp_rules(task.tokenizer, task.sample_begin, any(type(f) is DeviceTimestampRules for f in filters))
    if "_whisperfast_cuda" not in decoder.__dict__:
        decoder.__dict__["_whisperfast_cuda"] = CudaStep(decoder)
    step = decoder.__dict__["_whisperfast_cuda"]
    if batch == 1 and os.environ.get("WHISPERFAST_CUDA_STEP") == "one":  # opt-in: measured no faster
        state = {}  # this decode's: packed caches and the barrier counter
        return lambda tokens, sum_logprobs, cache: step.one_launch(tokens, sum_logprobs, cache, state, suppress, rules)
    return lambda tokens, sum_logprobs, cache: greedy_update(step.logits(tokens, cache), tokens, sum_logprobs,
                                                             suppress, rules)
