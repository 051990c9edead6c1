"""Could the fast engine decode the sampled windows in fp16 on a GPU, with each draw checked?
How far its logits lie from stock's there, and how close each window's draws come to turning.

mlx-whisper samples with `categorical`, an `mx.compile`d `mx.random.categorical(logits / T)`
that captures its key when first traced: the Gumbel noise is one constant per shape and
temperature for the rest of the process, whatever the seed. Calling it again on other logits
of the same shape therefore draws nothing new and meets the same noise, so a draw can be
checked: it stands against logits moved by up to `slack` if it still wins with its own logit
lowered by 2 * slack. A check like that could keep a window on the fast engine only if its
tightest draw were wider than the logits' real distance from stock's.

For each window the stock lane decoded at temperature > 0, the same options run on both
models, each through its own task, with a decoder that draws as mlx-whisper's (the same
compiled `categorical`, so the same noise) and keeps every step's filtered logits. Where the
two decodes draw the same tokens, it prints per window:
- `max_diff`: the largest |fast - stock| over every step, row and finite logit;
- `tightest`: the smallest slack in LADDER at which some draw of the fast lane would turn,
  None if none does;
- `rank_gap`: the best candidate's score above the next one with other tokens (best_of), and
  `rank_diff`: the largest |fast - stock| score of one candidate.
Then, per slack, how many sampled windows such a check would keep on the fast engine.
Recorded in benchmarks/h200-session8/ (the check was built at 509dbfe and taken out again).

    python benchmarks/sampling_probe.py MODEL AUDIO [DTYPE]   (AUDIO: a file, or noisy-jfk)"""

import json
import sys
from pathlib import Path

import whisperfast  # noqa: F401  (BLAS preload)

import mlx.core as mx
import numpy as np
from mlx_whisper.decoding import GreedyDecoder, MaximumLikelihoodRanker, categorical

from whisperfast.audio import load_audio
from whisperfast.decode import encode
from whisperfast.decode.task import StaticCacheTask, StockTask
from whisperfast.options import TranscribeOptions
from whisperfast.pipeline import load, rewritten

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.contract import recorded  # noqa: E402

LADDER = [0.0078125, 0.015625, 0.03125, 0.0625, 0.125, 0.25, 0.5, 1.0]
RANK_MARGIN = 0.01  # how close two candidates' scores would count as a tie of the ranking


class Keeping(GreedyDecoder):
    """mlx-whisper's sampling update that keeps each step's (tokens before, filtered logits, drawn)."""

    def __init__(self, temperature, eot):
        super().__init__(temperature, eot)
        self.steps = []

    def update(self, tokens, logits, sum_logprobs):
        out = super().update(tokens, logits, sum_logprobs)
        mx.eval(out[0], logits)
        self.steps.append((tokens[:, -1], logits, out[0][:, -1]))
        return out


def tightest(steps, temperature, eot):
    for slack in LADDER:
        for last, logits, drawn in steps:
            own = mx.arange(logits.shape[-1])[None] == drawn[:, None]
            again = categorical(logits - mx.where(own, 2 * slack, 0.0), temperature)
            if not mx.all((again == drawn) | (last == eot)).item():
                return slack
    return None


def run(task, features):
    task.decoder = Keeping(task.options.temperature, task.tokenizer.eot)
    ranker, penalty, scores = task.sequence_ranker, task.options.length_penalty, []

    class KeepingRanker(MaximumLikelihoodRanker):  # the candidates and their scores, as ranked
        def rank(self, tokens, sums):
            scores.append([(t, s / (len(t) if penalty is None else ((5 + len(t)) / 6) ** penalty))
                           for t, s in zip(tokens[0], sums[0])])
            return ranker.rank(tokens, sums)

    task.sequence_ranker = KeepingRanker(penalty)
    result = task.run(features[None])[0]
    return result, task.decoder.steps, scores[0]


def main():
    name, source = sys.argv[1], sys.argv[2]
    dtype = getattr(mx, sys.argv[3] if len(sys.argv) > 3 else "float16")
    if source == "noisy-jfk":  # tests/test_heldout.noisy_jfk
        jfk = load_audio(Path(__file__).resolve().parent.parent / "samples" / "jfk.wav")
        audio = jfk + np.random.default_rng(0).standard_normal(len(jfk)).astype(np.float32) * 0.25
    else:
        audio = load_audio(source)
    stock = load(name, dtype=dtype)
    fused = rewritten(stock)
    options = TranscribeOptions(language="en" if name.endswith(".en") else None)
    _, decodes = recorded(stock, audio, options)
    sampled = [(o, mel) for o, mel, _ in decodes if o.temperature > 0]
    print(json.dumps({"model": name, "audio": source, "dtype": str(dtype), "decodes": len(decodes),
                      "sampled": len(sampled)}), flush=True)
    rows = []
    for i, (opts, mel) in enumerate(sampled):
        fast_task = StaticCacheTask(fused.whisper, opts)
        a, sa, ranked_a = run(StockTask(stock.whisper, opts), stock.whisper.encoder(mel[None])[0])
        b, sb, ranked_b = run(fast_task, encode(fused.whisper, mel[None])[0])
        row = {"i": i, "temperature": opts.temperature, "same_tokens": a.tokens == b.tokens,
               "steps": [len(sa), len(sb)], "avg_logprob": [a.avg_logprob, b.avg_logprob]}
        if len(sa) == len(sb) and all(mx.array_equal(x[2], y[2]).item() for x, y in zip(sa, sb)):
            # every row and step drew alike: compare the logits they saw (ended rows' too)
            row["max_diff"] = max(mx.max(mx.where(mx.isfinite(la) & mx.isfinite(lb), mx.abs(la - lb), 0.0)).item()
                                  for (_, la, _), (_, lb, _) in zip(sa, sb))
            row["tightest"] = tightest(sb, opts.temperature, fast_task.tokenizer.eot)
            best = max(range(len(ranked_b)), key=lambda j: ranked_b[j][1])
            others = [ranked_b[best][1] - s for t, s in ranked_b if t != ranked_b[best][0]]
            row["rank_gap"] = min(others) if others else None
            row["rank_diff"] = max(abs(x[1] - y[1]) for x, y in zip(ranked_a, ranked_b))
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {}
    for slack in LADDER:
        kept = sum(1 for r in rows if "max_diff" in r and (r["tightest"] is None or r["tightest"] > slack)
                   and (r["rank_gap"] is None or r["rank_gap"] > RANK_MARGIN))
        summary[str(slack)] = kept
    print(json.dumps({"kept_by_slack": summary, "of": len(rows),
                      "max_diff": max((r["max_diff"] for r in rows if "max_diff" in r), default=None)}), flush=True)


if __name__ == "__main__":
    main()
