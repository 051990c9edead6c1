"""What a decoder prompt of a new length costs the first time in a process, and again
(issue 13): each lane in a fresh child process loads tiny.en fp16, takes stock's features of
JFK, and runs the module pass over prompts of several lengths (previous text + the SOT
sequence), each length twice, timed to its result.
- stock: mlx-whisper's Inference (its hand-written attention: matmuls and a softmax);
- fused-sdpa: the rewritten decoder as it was before the ninth session, every prompt on
  MLX's fused SDPA (on CUDA: cuDNN for several queries);
- rounded: the rewritten decoder now (whisperfast/decode/attention.py: a prompt on CUDA attends
  as mlx-whisper's graph).
Then, per lane, what the process's exit costs: the child stamps the time just before
os._exit, and the parent's wall clock runs until the child is gone.

    python benchmarks/prompt_first_calls.py   (prints one JSON line a lane)"""

import json
import subprocess
import sys
import time

CHILD = r'''
import json, os, sys, time
t_spawn = float(sys.argv[2])
import whisperfast  # noqa
import mlx.core as mx
from mlx_whisper.decoding import Inference
from mlx_whisper.tokenizer import get_tokenizer
from whisperfast.audio import first_window_mel
from whisperfast.decode import attention
from whisperfast.decode.flat import StaticInference
from whisperfast.pipeline import load, rewritten
lane = sys.argv[1]
tiny = load("tiny.en", dtype=mx.float16)
if lane == "fused-sdpa":
    attention.on_cuda = lambda: False  # a probe's switch: the rule that sends prompts to the rounded graph is off
fused = rewritten(tiny).whisper
features = tiny.whisper.encoder(first_window_mel("samples/jfk.wav", mx.float16))
mx.eval(features)
tok = get_tokenizer(False, language="en")
words = tok.encode(" And so my fellow Americans ask not what your country can do for you, ask what you can do for your country." * 12)
out = {"lane": lane, "calls": []}
for L in (12, 40, 41, 90, 150, 223):
    tokens = mx.array([[tok.sot_prev, *words[:L], *tok.sot_sequence_including_notimestamps]])
    for again in (0, 1):
        inf = Inference(tiny.whisper) if lane == "stock" else StaticInference(fused)
        t0 = time.perf_counter()
        mx.eval(inf.logits(tokens, features))
        out["calls"].append({"prompt": tokens.shape[1], "again": again, "s": round(time.perf_counter() - t0, 4)})
out["before_exit_s"] = round(time.time() - t_spawn, 3)
print(json.dumps(out), flush=True)
os._exit(0)
'''

for lane in ("stock", "fused-sdpa", "rounded", "stock", "fused-sdpa", "rounded"):
    t_spawn = time.time()
    r = subprocess.run([sys.executable, "-c", CHILD, lane, repr(t_spawn)], capture_output=True, text=True)
    wall = time.time() - t_spawn
    if r.returncode:
        print(json.dumps({"lane": lane, "rc": r.returncode, "err": r.stderr[-400:]}), flush=True)
        continue
    out = json.loads(r.stdout.strip().splitlines()[-1])
    first = [c["s"] for c in out["calls"] if not c["again"]]
    again = [c["s"] for c in out["calls"] if c["again"]]
    out.update(wall_s=round(wall, 3), exit_s=round(wall - out["before_exit_s"], 3),
               first_sum_s=round(sum(first), 4), again_sum_s=round(sum(again), 4))
    print(json.dumps(out), flush=True)
