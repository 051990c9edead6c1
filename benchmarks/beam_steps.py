"""Where a beam step's time goes on the CUDA kernel: per step, wall and host time of the
forward pass (decode_step), the beam update (beam_update) and the whole step, at 1 row
(greedy) and 5 (beam 5), tiny.en and base fp16. Each is queued 60 times on a JFK prompt's state, then waited for once: "host" is the time to
queue a step (MLX's queue may make it wait for the device), "wall" the time per step.

    python benchmarks/beam_steps.py   (a CUDA machine; run from a tree's folder, it measures that tree)"""
import time
from pathlib import Path
import whisperfast  # noqa
import mlx.core as mx
from mlx_whisper.decoding import DecodingOptions
from whisperfast.audio import first_window_mel
from whisperfast.pipeline import load, rewritten
from whisperfast.decode.task import StaticCacheTask
from whisperfast.decode.cuda.step import cuda_step
for name in ("tiny.en", "base"):
    dt = mx.float16
    fused = rewritten(load(name, dtype=dt)).whisper
    feats = fused.encoder(first_window_mel(Path(__file__).resolve().parent.parent / "samples" / "jfk.wav").astype(dt))
    for K in (1, 5):
        task = StaticCacheTask(fused, DecodingOptions(language="en", fp16=True, beam_size=K if K > 1 else None))
        d = cuda_step(task, K, dt)
        tok0 = mx.repeat(mx.array([task.initial_tokens]), K, 0)
        out = d.prompt(tok0, feats, task.sot_index); mx.eval(out)
        tokens, sums = out[0], out[2]
        res = {}
        def beams(lg):  # (a tree from before the path table: no path argument, the caches gathered in `step`)
            return d.beams(tokens, lg, sums, d.suppress, d.rules, *[d.state[k] for k in ("path",) if k in d.state])[0]
        def run(kind, n=60):
            mx.synchronize(); t0 = time.perf_counter()
            for _ in range(n):
                if kind == "forward":  # greedy's whole step at 1 row, the forward pass of beams at 5
                    o = d.step(tokens, sums, d.state, d.suppress, d.rules, pick=K == 1)[3]
                elif kind == "forward+beam":
                    lg = d.step(tokens, sums, d.state, d.suppress, d.rules, pick=False)[3]
                    o = beams(lg)
                elif kind == "beam only":
                    o = beams(lg0)
                elif kind == "step":
                    o = d(tokens, sums)[0]
                mx.async_eval(o)
            t1 = time.perf_counter(); mx.synchronize(); t2 = time.perf_counter()
            res[kind] = (round((t1 - t0) / n * 1e6), round((t2 - t0) / n * 1e6))
        lg0 = d.step(tokens, sums, d.state, d.suppress, d.rules, pick=False)[3]; mx.eval(lg0)
        kinds = ["forward"] + (["beam only", "forward+beam", "step"] if K > 1 else ["step"])
        for k in kinds: run(k, 10)
        for k in kinds: run(k)
        print(name, "K", K, {k: f"host {v[0]} us, wall {v[1]} us per step" for k, v in res.items()}, flush=True)
