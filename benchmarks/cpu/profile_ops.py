"""Issue 16's first step: where the CPU time goes, op class by op class (record only).

tiny.en fp32, samples/jfk.wav, stock lane (`load("tiny.en", dtype=mx.float32)`) and fused
lane (`rewritten(...)`), MLX's CPU backend with the BLAS whisperfast preloads.
  1. the BLAS: (1500x384)@(384x1536) through mx.matmul and numpy's np.dot; memory bandwidth;
  2. encoder, one 30 s window: every op evaluated on its own (`mx.eval` after each), summed
     per op class over the 4 blocks; each matmul against its FLOPs at the measured GFLOP/s;
  3. decoder, one greedy step at position 20: primitives (mx.export_to_dot), step time,
     dispatch cost of a tiny op, the logits matmul alone, bytes the step must read;
  4. mel front end (11 s) and tokenizer warm-up (fresh process);
  5. probes for the fixes: elementwise ops split over CPU streams, mx.compile on the CPU.
Usage: OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/cpu/profile_ops.py > benchmarks/cpu/profile_ops.json"""

import io
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter, defaultdict

import whisperfast  # noqa: F401  (before mlx: the CPU BLAS preload)

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from whisperfast.audio import first_window_mel, load_audio
from whisperfast.decode.flat import FlatStep, decoder_forward
from whisperfast.decode.attention import KVCache
from whisperfast.pipeline import load, rewritten

R = {"env": {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "WHISPERFAST_BLAS")},
     "mlx": mx.__version__, "device": str(mx.default_device()), "cpus": os.cpu_count(),
     "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}


def med(fn, reps=7, warm=1):
    for _ in range(warm):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)) * 1000, float(np.min(ts)) * 1000


# -- 1. the BLAS --------------------------------------------------------------------------
a, b = mx.random.normal((1500, 384)), mx.random.normal((384, 1536))
mx.eval(a, b)
F = 2 * 1500 * 384 * 1536
ms_mx, min_mx = med(lambda: mx.eval(mx.matmul(a, b)), 15)
an, bn = np.array(a), np.array(b)
ms_np, min_np = med(lambda: np.dot(an, bn), 15)
big = np.ones(80 * 2**20 // 4, np.float32)  # 80 MiB, the size of tiny's token embedding
ms_rd, _ = med(lambda: big.sum(), 7)
GF = F / (min_mx / 1000) / 1e9  # best-case rate: what the bound uses
R["blas"] = {"shape": "(1500x384)@(384x1536)", "gflop": F / 1e9,
             "mx_matmul_ms": round(ms_mx, 2), "mx_gflops_median": round(F / ms_mx / 1e6, 1),
             "mx_gflops_best": round(GF, 1),
             "np_dot_ms": round(ms_np, 2), "np_gflops_median": round(F / ms_np / 1e6, 1),
             "np_gflops_best": round(F / min_np / 1e6, 1),
             "read_80MiB_ms": round(ms_rd, 2), "read_GBps": round(big.nbytes / ms_rd / 1e6, 1)}
del big

# -- 2. encoder, op by op -----------------------------------------------------------------
stock = load("tiny.en", dtype=mx.float32)
fused = rewritten(stock)
mel = first_window_mel("samples/jfk.wav", mx.float32)
mx.eval(mel)
n_state, n_head = 384, 6
T, hd = 1500, 64

# FLOPs per matmul class, summed over the window (4 blocks)
MM = {"conv1": 2 * 3000 * 80 * 3 * 384, "conv2": 2 * 1500 * 384 * 3 * 384,
      "q": 4 * 2 * T * 384 * 384, "k": 4 * 2 * T * 384 * 384, "v": 4 * 2 * T * 384 * 384,
      "out": 4 * 2 * T * 384 * 384, "scores q@k": 4 * 2 * n_head * T * T * hd,
      "weights@v": 4 * 2 * n_head * T * T * hd, "mlp1": 4 * 2 * T * 384 * 1536, "mlp2": 4 * 2 * T * 1536 * 384}


def encoder_ops(model, lane):
    enc, acc = model.whisper.encoder, defaultdict(float)

    def op(cls, fn, *args):
        t0 = time.perf_counter()
        y = fn(*args)
        mx.eval(y)
        acc[cls] += time.perf_counter() - t0
        return y

    x = op("conv1", enc.conv1, mel)
    x = op("gelu (convs)", nn.gelu, x)
    x = op("conv2", enc.conv2, x)
    x = op("gelu (convs)", nn.gelu, x)
    x = op("residual/pos add", lambda: x + enc._positional_embedding)
    for blk in enc.blocks:
        at = blk.attn
        h = op("layer_norm", blk.attn_ln, x)
        q = op("q", at.query, h)
        k = op("k", at.key, h)
        v = op("v", at.value, h)
        if lane == "stock":  # mlx-whisper's qkv_attention, op by op
            s = hd ** -0.25
            q4, k4, v4 = op("attn reshape/transpose/scale", lambda: (
                q.reshape(1, T, n_head, hd).transpose(0, 2, 1, 3) * s,
                k.reshape(1, T, n_head, hd).transpose(0, 2, 3, 1) * s,
                v.reshape(1, T, n_head, hd).transpose(0, 2, 1, 3)))
            qk = op("scores q@k", lambda: q4 @ k4)
            w = op("softmax", lambda: mx.softmax(qk, axis=-1, precise=True))
            o = op("weights@v", lambda: w @ v4)
            o = op("attn reshape/transpose/scale", lambda: o.transpose(0, 2, 1, 3).reshape(1, T, n_state))
        else:  # WhisperAttention._attend: fused SDPA (composed inside MLX on the CPU), heads over CPU streams
            k4, v4 = op("attn reshape/transpose/scale", lambda: (at._heads(k) * at.qk_scale, at._heads(v)))
            o = op("attention (mx.fast SDPA, heads over streams)", lambda: at._attend(q, k4, v4, None))
        y = op("out", at.out, o)
        x = op("residual/pos add", lambda: x + y)
        h = op("layer_norm", blk.mlp_ln, x)
        h = op("mlp1", blk.mlp1, h)
        h = op("gelu (mlp)", nn.gelu, h)
        h = op("mlp2", blk.mlp2, h)
        x = op("residual/pos add", lambda: x + h)
    x = op("layer_norm", enc.ln_post, x)
    return x, dict(acc)


enc_rows = {}
for lane, model in (("stock", stock), ("fused", fused)):
    ref = model.whisper.encoder(mel)
    mx.eval(ref)
    whole, whole_min = med(lambda: mx.eval(model.whisper.encoder(mel)), 5)
    runs = [encoder_ops(model, lane) for _ in range(4)][1:]
    out = runs[-1][0]
    ops = {k: float(np.median([r[1][k] for r in runs])) * 1000 for k in runs[0][1]}
    rows = {}
    for k, ms in sorted(ops.items(), key=lambda kv: -kv[1]):
        row = {"ms": round(ms, 2)}
        if k in MM:
            row["gflop"] = round(MM[k] / 1e9, 3)
            row["bound_ms"] = round(MM[k] / GF / 1e6, 2)
            row["gflops_achieved"] = round(MM[k] / ms / 1e6, 1)
        rows[k] = row
    mm = sum(v for k, v in ops.items() if k in MM)
    enc_rows[lane] = {"whole_encoder_ms_median": round(whole, 1), "whole_encoder_ms_min": round(whole_min, 1),
                      "sum_of_ops_ms": round(sum(ops.values()), 1), "matmul_ms": round(mm, 1),
                      "non_matmul_ms": round(sum(ops.values()) - mm, 1),
                      "matmul_bound_ms": round(sum(MM.values()) / GF / 1e6, 1),
                      "gflop_total": round(sum(MM.values()) / 1e9, 2),
                      "op_by_op_equals_whole": bool(mx.array_equal(out, ref).item()), "ops": rows}
R["encoder"] = enc_rows
xa_s = stock.whisper.encoder(mel)
xa_f = fused.whisper.encoder(mel)
mx.eval(xa_s, xa_f)

# -- 3. decoder, one greedy step at position 20 --------------------------------------------
from mlx_whisper.tokenizer import get_tokenizer  # noqa: E402

tok = get_tokenizer(False, language="en")
text = tok.encode(" And so my fellow Americans, ask not what your country can do for you, ask what you can do")
prompt = ([tok.sot, tok.timestamp_begin] + text)[:20]
nxt = mx.array([[text[18]]])
P = mx.array([prompt])


def prims(arr):
    buf = io.StringIO()
    mx.export_to_dot(buf, arr)
    c = Counter(re.findall(r'label ="(\w+)', buf.getvalue()))
    return {"total": sum(c.values()), "by_name": dict(c.most_common())}


def stock_step():
    dec = stock.whisper.decoder
    _, cache, _ = dec(P, xa_s, None)
    mx.eval(cache)

    def step():
        logits, _, _ = dec(nxt, xa_s, list(cache))
        return logits
    return step


def fused_step():
    dec = fused.whisper.decoder
    flat = FlatStep(dec)
    cache = [[KVCache(448), None] for _ in dec.blocks]
    mx.eval(decoder_forward(dec, P, xa_f, cache))
    mx.eval([(kv.keys, kv.values, cr) for kv, cr in cache])

    def step():
        for kv, _ in cache:
            kv.offset = 20  # the same position each call: step 21 overwrites its own slot
        return flat(nxt, cache)
    return step


dec_rows = {}
for lane, mk in (("stock", stock_step), ("fused (FlatStep)", fused_step)):
    step = mk()
    logits = step()
    dec_rows[lane] = {"primitives": prims(logits)}
    mx.eval(logits)
    ms, mn = med(lambda: mx.eval(step()), 30, 3)
    dec_rows[lane].update(step_ms_median=round(ms, 3), step_ms_min=round(mn, 3))

# the fused step op by op (FlatStep.__call__'s ops, an mx.eval after each), summed over blocks
def flat_ops():
    dec = fused.whisper.decoder
    flat = FlatStep(dec)
    cache = [[KVCache(448), None] for _ in dec.blocks]
    mx.eval(decoder_forward(dec, P, xa_f, cache))
    mx.eval([(kv.keys, kv.values, cr) for kv, cr in cache])
    D, H, sc = flat.n_state, flat.n_head, flat.scale
    heads = (1, H, 1, D // H)

    def run():
        acc = defaultdict(float)

        def op(cls, fn):
            t0 = time.perf_counter()
            y = fn()
            mx.eval(y)
            acc[cls] += time.perf_counter() - t0
            return y
        for kv, _ in cache:
            kv.offset = 20
        x = op("embed + pos", lambda: dec.token_embedding(nxt) + dec.positional_embedding[20:21])
        for (ln1, qkv, out, ln2, cq, co, ln3, fc1, fc2, sdpa, csdpa), (kv, cross) in zip(flat.layers, cache):
            h = op("layer_norm", lambda: ln1(x))
            q, k, v = op("qkv addmm (1x384 @ 384x1152)", lambda: qkv(h))
            k, v, mask = op("kv cache write", lambda: kv.update(k.reshape(heads), v.reshape(heads), False))
            a = op("self attention (SDPA, 21 keys)", lambda: sdpa(q.reshape(heads) * sc, k * sc, v, 1.0, mask))
            x = op("out addmm + residual", lambda: x + out(a.reshape(1, 1, D)))
            h = op("layer_norm", lambda: ln2(x))
            q = op("cross q addmm", lambda: cq(h))
            a = op("cross attention (SDPA, 1500 keys)", lambda: csdpa(q.reshape(heads) * sc, *cross, 1.0, None))
            x = op("out addmm + residual", lambda: x + co(a.reshape(1, 1, D)))
            h = op("layer_norm", lambda: ln3(x))
            h = op("mlp1 addmm (1x384 @ 384x1536)", lambda: fc1(h))
            h = op("gelu", lambda: nn.gelu(h))
            x = op("mlp2 addmm + residual", lambda: x + fc2(h))
        h = op("layer_norm", lambda: dec.ln(x))
        y = op("logits (1x384 @ 384x51864)", lambda: dec.token_embedding.as_linear(h))
        return y, acc
    runs = [run() for _ in range(12)][2:]
    return {k: round(float(np.median([r[1][k] for r in runs])) * 1000, 3) for k in runs[0][1]}


fo = flat_ops()
dec_rows["fused (FlatStep)"]["op_by_op_ms"] = dict(sorted(fo.items(), key=lambda kv: -kv[1]))
dec_rows["fused (FlatStep)"]["op_by_op_sum_ms"] = round(sum(fo.values()), 2)

# dispatch: one tiny op, evaluated alone; and a chain of 400 evaluated at once
t1 = mx.ones((4,))
mx.eval(t1)
one, _ = med(lambda: mx.eval(t1 + 1), 2000, 50)
c400 = mx.ones((1, 384))
mx.eval(c400)


def chain():
    y = c400
    for _ in range(400):
        y = y + 1
    mx.eval(y)


ch, _ = med(chain, 20, 2)
emb = stock.whisper.decoder.token_embedding.weight
xrow = mx.random.normal((1, 1, 384))
mx.eval(emb, xrow)
lg, lgmin = med(lambda: mx.eval(stock.whisper.decoder.token_embedding.as_linear(xrow)), 30, 3)
embT = np.array(emb)
xn = np.array(xrow).reshape(1, 384)
lgnp, _ = med(lambda: embT @ xn[0], 30, 3)
# what one step must read: the decoder's weights, the cross K/V, the embedding
dec_w = sum(v.nbytes for k, v in __import__("mlx.utils", fromlist=["tree_flatten"]).tree_flatten(
    stock.whisper.decoder.parameters()) if "positional" not in k)
cross_kv = 4 * 2 * 1500 * 384 * 4
layer_flop = 4 * (2 * 4 * 384 * 384 + 2 * 2 * 384 * 384 + 2 * 2 * 384 * 1536 + 2 * 2 * 1500 * 384 + 2 * 2 * 21 * 384)
R["decoder"] = {
    "position": 20, "lanes": dec_rows,
    "dispatch_us_one_tiny_op_eval": round(one * 1000, 1),
    "dispatch_us_per_op_in_chain_of_400": round(ch * 1000 / 400, 2),
    "logits_matmul_ms_median": round(lg, 3), "logits_matmul_ms_min": round(lgmin, 3),
    "logits_np_gemv_ms": round(lgnp, 3), "logits_gflop": round(2 * 384 * 51864 / 1e9, 4),
    "embedding_MB": round(emb.nbytes / 1e6, 1),
    "decoder_weights_MB_incl_embedding": round(dec_w / 1e6, 1), "cross_kv_MB": round(cross_kv / 1e6, 1),
    "blocks_gflop": round(layer_flop / 1e9, 4),
    "bytes_bound_ms_at_read_GBps": round((dec_w + cross_kv) / R["blas"]["read_GBps"] / 1e6, 2)}

# -- 4. mel front end, tokenizer -------------------------------------------------------------
from mlx_whisper.audio import log_mel_spectrogram  # noqa: E402

audio = load_audio("samples/jfk.wav")
melms, _ = med(lambda: mx.eval(log_mel_spectrogram(audio)), 7)
melpad, _ = med(lambda: mx.eval(log_mel_spectrogram(audio, padding=480000)), 5)
code = ("import time,whisperfast,mlx.core as mx;from mlx_whisper.tokenizer import get_tokenizer;t=time.perf_counter();"
        "get_tokenizer(False,language='en').encode(' ');print((time.perf_counter()-t)*1000)")
tk = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout) for _ in range(3)]
R["front"] = {"audio_s": round(len(audio) / 16000, 2), "log_mel_ms": round(melms, 2),
              "log_mel_padded_30s_ms": round(melpad, 2), "tokenizer_warm_ms_fresh_process": [round(t, 1) for t in tk]}

# -- 5. probes for the fixes -----------------------------------------------------------------
h = mx.random.normal((1, 1500, 1536))
mx.eval(h)
g1, _ = med(lambda: mx.eval(nn.gelu(h)), 7)
st = [mx.new_stream(mx.cpu) for _ in range(2)]


def gelu2():
    outs = []
    for s, (a0, a1) in zip(st, ((0, 750), (750, 1500))):
        with mx.stream(s):
            outs.append(nn.gelu(h[:, a0:a1]))
    y = mx.concatenate(outs, axis=1)
    mx.eval(y)
    return y


g2, _ = med(gelu2, 7)
eq2 = bool(mx.array_equal(gelu2(), nn.gelu(h)).item())
cg = mx.compile(nn.gelu)
t0 = time.perf_counter()
mx.eval(cg(h))
first = (time.perf_counter() - t0) * 1000
gc, _ = med(lambda: mx.eval(cg(h)), 7)
eqc = bool(mx.array_equal(cg(h), nn.gelu(h)).item())
maxdiff = float(mx.abs(cg(h) - nn.gelu(h)).max().item())
# does mx.compile need a C++ compiler at run time? the same thing with no compiler on PATH
nocc = ("import time,whisperfast,mlx.core as mx,mlx.nn as nn;h=mx.random.normal((1500,1536));mx.eval(h);"
        "f=mx.compile(lambda x: mx.exp(x)*3+1);t=time.perf_counter();y=f(h);mx.eval(y);"
        "print('ran, first call ms', round((time.perf_counter()-t)*1000,1), 'equal uncompiled',"
        " mx.array_equal(y, mx.exp(h)*3+1).item())")
import tempfile  # noqa: E402

env = dict(os.environ, PATH="/nonexistent", TMPDIR=tempfile.mkdtemp())  # no g++, no kernel cache
r = subprocess.run([sys.executable, "-c", nocc], capture_output=True, text=True, env=env)
R["probes"] = {"gelu_1500x1536_ms_one_stream": round(g1, 2), "gelu_two_cpu_streams_ms": round(g2, 2),
               "two_streams_bit_equal": eq2, "gelu_mx_compile_first_call_ms": round(first, 1),
               "gelu_mx_compile_ms": round(gc, 2), "mx_compile_bit_equal": eqc, "mx_compile_max_abs_diff": maxdiff,
               "mx_compile_without_compiler_on_PATH": {"rc": r.returncode, "out": (r.stdout + r.stderr)[-400:]}}
# what vectorized transcendental math costs here: numpy's SIMD exp over one block's scores
sc = np.random.default_rng(0).standard_normal((6, 1500, 1500), dtype=np.float32)
npexp, _ = med(lambda: np.exp(sc), 5)
scm = mx.array(sc)
mx.eval(scm)
mxexp, _ = med(lambda: mx.eval(mx.exp(scm)), 5)
mxsm, _ = med(lambda: mx.eval(mx.softmax(scm, axis=-1, precise=True)), 5)
R["probes"].update(exp_6x1500x1500_numpy_ms=round(npexp, 2), exp_6x1500x1500_mlx_ms=round(mxexp, 2),
                   softmax_6x1500x1500_mlx_ms=round(mxsm, 2))
# one-row matmuls (the decode step's): MLX's x @ W.T (as nn.Linear and as_linear issue them) vs numpy's gemv
W1 = stock.whisper.decoder.blocks[0].mlp1.weight
x1 = mx.random.normal((1, 1, 384))
mx.eval(W1, x1)
W1n, x1n = np.array(W1), np.array(x1).reshape(384)
Wc = mx.contiguous(emb.T)
mx.eval(Wc)
R["probes"]["gemv"] = {
    "mlp1_1x384_at_384x1536_mx_ms": round(med(lambda: mx.eval(x1 @ W1.T), 50, 5)[0], 4),
    "mlp1_np_gemv_ms": round(med(lambda: W1n @ x1n, 50, 5)[0], 4),
    "logits_mx_x_at_embT_ms": round(lg, 3),
    "logits_mx_x_at_contiguous_embT_ms": round(med(lambda: mx.eval(xrow @ Wc), 20, 3)[0], 3),
    "logits_mx_emb_at_x_ms": round(med(lambda: mx.eval(emb @ xrow.reshape(384, 1)), 20, 3)[0], 3),
    "logits_np_gemv_ms": round(lgnp, 3)}
print(json.dumps(R, indent=1))
