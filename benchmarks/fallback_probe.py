"""Where two seeded lanes part on long audio with the fallback on: each window's temperature,
average log probability, no-speech probability and compression ratio, stock and fused side by
side, from the first window whose tokens differ (and the two before it); then, for the first
decode whose tokens differ under the same options and prompt, stock's own margin there: the
logits (stock's model, its filters) of the token stock chose and of the one the fused lane
chose, after their common prefix (tests/contract.py). A margin within one step of the dtype is
a tie of stock's own.

    python benchmarks/fallback_probe.py MODEL AUDIO [DTYPE]   (one JSON line per window)"""

import json
import sys

import whisperfast  # noqa: F401  (BLAS preload)

import mlx.core as mx

from whisperfast.audio import load_audio
from whisperfast.options import TranscribeOptions
from whisperfast.pipeline import load, rewritten

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent))
from tests.contract import first_difference, recorded  # noqa: E402  (the tests' contract, measured here)

name, path = sys.argv[1], sys.argv[2]
dtype = getattr(mx, sys.argv[3] if len(sys.argv) > 3 else "float16")
stock = load(name, dtype=dtype)
lanes = {"stock": stock, "fused": rewritten(stock)}
audio, options = load_audio(path), TranscribeOptions(language="en" if name.endswith(".en") else None)
windows, decodes = {}, {}

for lane, model in lanes.items():
    result, decodes[lane] = recorded(model, audio, options)
    by_seek = {}
    for s in result.segments:
        by_seek.setdefault(s["seek"], []).append(s)
    windows[lane] = [(seek, segs) for seek, segs in sorted(by_seek.items())]
    print(json.dumps({"lane": lane, "decodes": len(decodes[lane])}), flush=True)
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
print(json.dumps({"first_different_decode": first_difference(stock, decodes["stock"], decodes["fused"])}), flush=True)
