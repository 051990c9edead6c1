"""The equality contract, as the README states it, in one place the tests share.

On the CPU the fused lane computes stock's arithmetic bit for bit: its tokens must equal
stock's, nothing else passes. On a GPU the kernels sum in their own orders, so two candidates
whose logits stock itself cannot tell apart at the model dtype's resolution may go either way.
There the lanes pass when their tokens are equal, or when the first decode in which they part
was asked the same thing in both lanes (same prompt, temperature and earlier windows) and, at
its first differing token, stock's own logits of the two candidates (stock's model over the
common prefix, its filters) lie within one step of the model's dtype of each other: a tie of stock's own.
Anything after that tie is another transcript, and the contract says nothing of it.

`benchmarks/fallback_probe.py` prints the same measurements on a long clip."""

from __future__ import annotations

from dataclasses import replace

import mlx.core as mx
import numpy as np
from mlx_whisper.decoding import DecodingTask

from whisperfast import longform
from whisperfast.decode import Engine
from whisperfast.pipeline import seed_generator


def exact_required() -> bool:
    """Bit-for-bit equality is the contract on the CPU."""
    return mx.default_device() == mx.cpu


class Recording(Engine):
    """An Engine that keeps every decode's options, mel and result (for the probes)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.log = []

    def decode(self, features, options, mel=None, thresholds=()):
        result = super().decode(features, options, mel, thresholds)
        self.log.append((options, mel, result))
        return result


def recorded(model, audio, options):
    """The lane's long-form transcription, seeded as pipeline.transcribe seeds it, and every
    decode it made: (result, [(options, mel, DecodingResult), ...])."""
    seed_generator(options.seed)
    engine = Recording(model.whisper, stock=model.stock)
    result = longform.transcribe(engine, audio, options, fp16=model.dtype == "float16")
    return result, engine.log


def dtype_step(x: float, dtype=mx.float16) -> float:
    """The distance from |x| to the next number of `dtype`: what one rounding of a logit
    computed in that dtype can move it."""
    if dtype == mx.bfloat16:  # 8 significant bits, float32's exponent
        return 2.0 ** (np.floor(np.log2(max(abs(x), np.finfo(np.float32).tiny))) - 7)
    return float(np.spacing({mx.float16: np.float16, mx.float32: np.float32}[dtype](abs(x))))


def _stock_task(stock, options) -> DecodingTask:
    """mlx-whisper's task for `options`: its prompt and its filters (its constructor refuses
    beam options, which change neither)."""
    return DecodingTask(stock.whisper, replace(options, beam_size=None, patience=None))


def _forward(stock, mel, tokens: mx.array) -> mx.array:
    """Stock's logits (1, T, n_vocab), float32, for tokens (1, T) over the window's mel."""
    return stock.whisper.decoder(tokens, stock.whisper.encoder(mel[None]))[0].astype(mx.float32)


def _filtered(task: DecodingTask, logits: mx.array, prefix: mx.array) -> mx.array:
    """One position's logits (1, n_vocab) after the task's filters, given the tokens so far."""
    for f in task.logit_filters:
        logits = f.apply(logits, prefix)
    return logits


def stock_margin(stock, options, mel, ours, theirs) -> dict:
    """Stock's logits, after the tokens both lanes chose, of its own next token and of the
    other lane's (a full forward pass of stock's model over the prefix, its filters applied;
    EOT where a sequence ended)."""
    k = next(i for i, (a, b) in enumerate(zip(ours + [None], theirs + [None])) if a != b)
    task = _stock_task(stock, options)
    tokens = mx.array([list(task.initial_tokens) + ours[:k]])
    logits = _filtered(task, _forward(stock, mel, tokens)[:, -1], tokens)
    pick = lambda seq: seq[k] if k < len(seq) else task.tokenizer.eot  # noqa: E731
    a, b = pick(ours), pick(theirs)
    la, lb = float(logits[0, a]), float(logits[0, b])
    step = dtype_step(max(abs(la), abs(lb)), stock.whisper.decoder.token_embedding.weight.dtype)
    return {"token_index": k, "stock_token": a, "fused_token": b, "stock_logit": la, "fused_token_logit": lb,
            "margin": la - lb, "dtype_step": step}


def first_difference(stock, stock_log, fused_log) -> dict | None:
    """Where two lanes' decodes first part, and stock's margin there; None if they never do.
    A decode asked something else (another prompt or temperature) is reported as such."""
    for i, ((oa, mel, ra), (ob, _, rb)) in enumerate(zip(stock_log, fused_log)):
        if (oa.temperature, oa.prompt) != (ob.temperature, ob.prompt):
            return {"decode": i, "options_differ": True}
        if ra.tokens != rb.tokens:
            return {"decode": i, "options_differ": False, "temperature": oa.temperature,
                    **stock_margin(stock, oa, mel, ra.tokens, rb.tokens)}
    if len(stock_log) != len(fused_log):
        return {"decode": min(len(stock_log), len(fused_log)), "options_differ": True}
    return None


def assert_same_or_stock_tie(stock, fused, audio, options, a, b):
    """The contract for one input: `a` and `b` are the two lanes' Transcripts."""
    if a.tokens == b.tokens and a.text == b.text:
        assert (a.windows, a.sampled_windows) == (b.windows, b.sampled_windows)
        return None
    assert not exact_required(), (a.text, b.text)
    (_, la), (_, lb) = recorded(stock, audio, options), recorded(fused, audio, options)
    where = first_difference(stock, la, lb)
    assert where is not None, "the recorded lanes agree, the transcripts did not: not reproducible"
    assert not where["options_differ"], where
    assert abs(where["margin"]) <= where["dtype_step"], where
    return where


def stock_score(stock, options, mel, tokens) -> tuple[float, float]:
    """Stock's ranking score of one finished sequence (MaximumLikelihoodRanker: the summed log
    probabilities of its tokens and EOT, stock's model teacher-forced, its filters at every
    position, over the length penalty), and the largest dtype step among the chosen logits:
    one rounding of each per token moves the score by at most about that much."""
    task = _stock_task(stock, options)
    seq = list(task.initial_tokens) + list(tokens) + [task.tokenizer.eot]
    begin = len(task.initial_tokens)
    full = mx.array([seq])
    logits = _forward(stock, mel, full[:, :-1])
    total, step = 0.0, 0.0
    dtype = stock.whisper.decoder.token_embedding.weight.dtype
    for pos in range(begin - 1, len(seq) - 1):
        row = _filtered(task, logits[:, pos], full[:, : pos + 1])
        logprobs = row - mx.logsumexp(row, axis=-1, keepdims=True)
        total += float(logprobs[0, seq[pos + 1]])
        step = max(step, dtype_step(float(row[0, seq[pos + 1]]), dtype))
    n, lp = len(tokens), options.length_penalty
    return total / (n if lp is None else ((5 + n) / 6) ** lp), step


def assert_beams_same_or_stock_tie(stock, options, mel, ours, theirs):
    """Beam search's contract for one window (`ours`, `theirs`: stock's and the fused lane's
    tokens): equal, or (off the CPU) stock itself ranks the two finished sequences within one
    dtype step of each other, the most one rounding per token moves an average log probability."""
    if ours == theirs:
        return None
    assert not exact_required(), (ours, theirs)
    (a, step_a), (b, step_b) = stock_score(stock, options, mel, ours), stock_score(stock, options, mel, theirs)
    where = {"stock_score": a, "fused_sequence_score": b, "margin": a - b, "dtype_step": max(step_a, step_b)}
    assert abs(a - b) <= where["dtype_step"], where
    return where
