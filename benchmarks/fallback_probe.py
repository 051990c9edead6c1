"""Where two seeded lanes part on long audio with the fallback on: each window's temperature,
average log probability, no-speech probability and compression ratio, stock and fused side by
side, from the first window whose tokens differ (and the two before it); then, for the first
decode whose tokens differ under the same options and prompt, stock's own margin there: the log
probabilities (stock's model, its filters) of the token stock chose and of the one the fused
lane chose, after their common prefix. A margin near 0 is a near-tie of stock's own.

    python benchmarks/fallback_probe.py MODEL AUDIO [DTYPE]   (one JSON line per window)"""

import json
import sys

import whisperfast  # noqa: F401  (BLAS preload)

import mlx.core as mx

from mlx_whisper.decoding import DecodingTask

from whisperfast import longform
from whisperfast.audio import load_audio
from whisperfast.decode import Engine
from whisperfast.options import TranscribeOptions
from whisperfast.pipeline import load, rewritten, seed_generator

name, path = sys.argv[1], sys.argv[2]
dtype = getattr(mx, sys.argv[3] if len(sys.argv) > 3 else "float16")
stock = load(name, dtype=dtype)
lanes = {"stock": stock, "fused": rewritten(stock)}
audio, options = load_audio(path), TranscribeOptions(language="en" if name.endswith(".en") else None)
windows, decodes = {}, {}


class Recording(Engine):
    """An Engine that keeps every decode's options, mel and result (a probe)."""

    def decode(self, features, options, mel=None, thresholds=()):
        result = super().decode(features, options, mel, thresholds)
        self.log.append((options, mel, result))
        return result


for lane, model in lanes.items():
    seed_generator(options.seed)
    engine = Recording(model.whisper, stock=model.stock)
    engine.log = decodes[lane] = []
    result = longform.transcribe(engine, audio, options, fp16=dtype == mx.float16)
    by_seek = {}
    for s in result.segments:
        by_seek.setdefault(s["seek"], []).append(s)
    windows[lane] = [(seek, segs) for seek, segs in sorted(by_seek.items())]
    print(json.dumps({"lane": lane, "decodes": dict(engine.decodes)}), flush=True)
first = next((i for i, (a, b) in enumerate(zip(windows["stock"], windows["fused"]))
              if [s["tokens"] for s in a[1]] != [s["tokens"] for s in b[1]] or a[0] != b[0]), None)
print(json.dumps({"windows": [len(windows["stock"]), len(windows["fused"])], "first_different_window": first}))
if first is not None:
    for i in range(max(0, first - 2), first + 2):
        row = {}
        for lane in lanes:
            if i < len(windows[lane]):
                seek, segs = windows[lane][i]
                s = segs[0]
                row[lane] = {"seek": seek, "temperature": s["temperature"], "avg_logprob": s["avg_logprob"],
                             "no_speech_prob": s["no_speech_prob"], "compression_ratio": s["compression_ratio"],
                             "text": "".join(x["text"] for x in segs)[:80]}
        print(json.dumps({"window": i, **row}), flush=True)


def margin(options, mel, ours, theirs):
    """Stock's log probabilities of its own next token and of the other lane's, after the
    tokens both chose (a full forward pass of stock's model over the prefix, its filters)."""
    k = next(i for i, (a, b) in enumerate(zip(ours + [None], theirs + [None])) if a != b)
    task = DecodingTask(stock.whisper, options)
    prefix = list(task.initial_tokens) + ours[:k]
    tokens = mx.array([prefix])
    logits = stock.whisper.decoder(tokens, stock.whisper.encoder(mel[None]))[0][:, -1].astype(mx.float32)
    for f in task.logit_filters:
        logits = f.apply(logits, tokens)
    logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    pick = lambda seq: seq[k] if k < len(seq) else task.tokenizer.eot  # noqa: E731
    a, b = pick(ours), pick(theirs)
    return {"token_index": k, "stock_token": a, "fused_token": b, "stock_logprob": float(logprobs[0, a]),
            "fused_token_logprob": float(logprobs[0, b]), "margin": float(logprobs[0, a] - logprobs[0, b])}


pairs = [(a, b) for a, b in zip(decodes["stock"], decodes["fused"]) if a[0] == b[0]]
first = next(((a, b) for a, b in pairs if a[2].tokens != b[2].tokens), None)
if first is not None:
    (opts, mel, ra), (_, _, rb) = first
    print(json.dumps({"first_different_decode": {"temperature": opts.temperature, "prompt_tokens": len(opts.prompt or []),
                                                 **margin(opts, mel, ra.tokens, rb.tokens)}}), flush=True)

