"""Where a fresh process's first long transcription loses time against the same
transcription again (issue 13): one process loads MODEL (fp16, --fast), transcribes AUDIO
RUNS times, and times every window's encode and every decode (each temperature of a window
is a decode), with the engine it ran on, the prompt's length and the tokens it gave; inside
the fast decodes, the module pass over a prompt (prefill) and the kernel's state made from its
caches (resume).
Run 0 is what a fresh `whisperfast transcribe` pays; runs 1+ are the warm bench's.

Each call is timed to its result on the device (mx.eval / the decode's own host reads), so
the encoder's time is its own here rather than hidden behind the first decode.

    python benchmarks/fresh_windows.py MODEL AUDIO [RUNS]   (prints one JSON line a decode, then a line a run)"""

import json
import sys
import time

import whisperfast  # noqa: F401  (BLAS preload)

import mlx.core as mx

from whisperfast.decode import engine as engine_mod
from whisperfast.pipeline import load, transcribe
from whisperfast.runtime import parse_dtype

name, audio = sys.argv[1], sys.argv[2]
runs = int(sys.argv[3]) if len(sys.argv) > 3 else 3
t_load = time.perf_counter()
model = load(name, dtype=parse_dtype("float16"), fast=True)
t_load = time.perf_counter() - t_load
rows, run_no = [], [0]
plain_decode, plain_encode = engine_mod.Engine.decode, engine_mod.Engine.encode


def timed_encode(self, mel):  # a probe's wrapper: the library is not changed
    t0 = time.perf_counter()
    out = plain_encode(self, mel)
    mx.eval(out)
    rows.append({"run": run_no[0], "call": "encode", "s": round(time.perf_counter() - t0, 4)})
    return out


def timed_decode(self, features, options, mel=None, thresholds=()):
    before = dict(self.decodes)
    t0 = time.perf_counter()
    result = plain_decode(self, features, options, mel=mel, thresholds=thresholds)
    s = time.perf_counter() - t0
    where = [k for k, v in self.decodes.items() if v != before.get(k, 0)]
    prompt = len(options.prompt) if options.prompt else 0
    tokens = len(result.tokens) if hasattr(result, "tokens") else None
    rows.append({"run": run_no[0], "call": "decode", "s": round(s, 4), "engine": where, "t": options.temperature,
                 "prompt": prompt, "tokens": tokens})
    return result


engine_mod.Engine.decode, engine_mod.Engine.encode = timed_decode, timed_encode

# inside a decode: the module pass over a prompt (more than one token), and the kernel's state
# made from its caches (resume)
from whisperfast.decode.cuda import step as step_mod  # noqa: E402
from whisperfast.decode import flat as flat_mod  # noqa: E402

plain_logits, plain_resume = flat_mod.StaticInference.logits, step_mod.CudaDecode.resume


def timed_logits(self, tokens, audio_features):
    if tokens.shape[-1] == 1:
        return plain_logits(self, tokens, audio_features)
    t0 = time.perf_counter()
    out = plain_logits(self, tokens, audio_features)
    mx.eval(out)
    rows.append({"run": run_no[0], "call": "prefill", "s": round(time.perf_counter() - t0, 4), "prompt": tokens.shape[-1]})
    return out


def timed_resume(self, audio_features, cache, batch):
    t0 = time.perf_counter()
    plain_resume(self, audio_features, cache, batch)
    mx.eval([v for v in self.state.values() if isinstance(v, mx.array)])
    rows.append({"run": run_no[0], "call": "resume", "s": round(time.perf_counter() - t0, 4)})


flat_mod.StaticInference.logits, step_mod.CudaDecode.resume = timed_logits, timed_resume

# the first token after a prompt: each logit filter (as MLX ops) and the greedy update, timed
from mlx_whisper import decoding as stock_decoding  # noqa: E402
from whisperfast.decode import rules as rules_mod  # noqa: E402


def timed(cls, name, label):
    plain = getattr(cls, name)

    def wrapper(self, *args):
        t0 = time.perf_counter()
        out = plain(self, *args)
        mx.eval(out)
        rows.append({"run": run_no[0], "call": label, "s": round(time.perf_counter() - t0, 4)})
        return out

    setattr(cls, name, wrapper)


for cls, label in ((stock_decoding.SuppressBlank, "suppress blank"), (stock_decoding.SuppressTokens, "suppress tokens"),
                   (rules_mod.DeviceTimestampRules, "timestamp rules")):
    timed(cls, "apply", label)
timed(stock_decoding.GreedyDecoder, "update", "greedy update")
print(json.dumps({"model": name, "audio": audio, "load_s": round(t_load, 3), "device": str(mx.default_device())}), flush=True)
for r in range(runs):
    run_no[0] = r
    t0 = time.perf_counter()
    out = transcribe(model, audio)
    wall = time.perf_counter() - t0
    mine = [x for x in rows if x["run"] == r]
    for x in mine:
        print(json.dumps(x), flush=True)
    dec = [x for x in mine if x["call"] == "decode"]
    summary = {"run": r, "wall_s": round(wall, 3), "total_s": round(out.timings.total, 3),
               "mel_s": round(out.timings.mel, 3), "encode_s": round(sum(x["s"] for x in mine if x["call"] == "encode"), 3),
               "decode_s": round(sum(x["s"] for x in dec), 3), "decodes": len(dec),
               "by_engine": {}, "tokens": len(out.tokens)}
    for x in dec:
        k = ",".join(x["engine"]) or "?"
        e = summary["by_engine"].setdefault(k, {"n": 0, "s": 0.0})
        e["n"] += 1
        e["s"] = round(e["s"] + x["s"], 4)
    print(json.dumps(summary), flush=True)
