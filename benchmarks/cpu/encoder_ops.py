"""tiny.en's CPU encoder op by op, as the fast engine runs it (decode/encoder.py's cpu_forward),
each op evaluated on its own (mx.eval boundaries), on JFK's first window, float32; medians of 15
windows, summed per op kind.

Usage: python benchmarks/cpu/encoder_ops.py"""
import time, statistics as st
import whisperfast as wf
import mlx.core as mx
from whisperfast.audio import load_audio
from whisperfast.kernels import cpu_simd
from whisperfast.kernels.layers import linear_across_cpu_streams, conv1d_across_cpu_streams
m = wf.load("tiny.en", dtype=mx.float32, fast=True)
enc = m.whisper.encoder
from mlx_whisper.audio import log_mel_spectrogram, pad_or_trim, N_FRAMES, N_SAMPLES
mel = log_mel_spectrogram(load_audio("samples/jfk.wav"), 80, padding=N_SAMPLES)
win = pad_or_trim(mel[:1100], N_FRAMES, axis=-2).astype(mx.float32)[None]; mx.eval(win)
simd = cpu_simd.chosen(mx.float32)
T = {}
def tm(name, f, *a):
    t = time.perf_counter(); y = f(*a); mx.eval(y); T.setdefault(name, []).append(time.perf_counter() - t); return y
for rep in range(15):
    x = tm("conv1", conv1d_across_cpu_streams, enc.conv1, win); x = tm("gelu", simd.gelu_, x)
    x = tm("conv2", conv1d_across_cpu_streams, enc.conv2, x); x = tm("gelu", simd.gelu_, x)
    x = tm("pos", lambda x: x + enc._positional_embedding, x)
    for b in enc.blocks:
        h = tm("ln", simd.layer_norm, b.attn_ln, x)
        a = tm("attn", lambda h: b.attn(h)[0], h)
        x = tm("add", lambda: x + a)
        h = tm("ln", simd.layer_norm, b.mlp_ln, x)
        h = tm("mlp1", linear_across_cpu_streams, b.mlp1, h)
        h = tm("gelu", simd.gelu_, h)
        h = tm("mlp2", linear_across_cpu_streams, b.mlp2, h)
        x = tm("add", lambda: x + h)
    x = tm("ln_post", simd.layer_norm, enc.ln_post, x)
tot = 0
for k, v in T.items():
    n = len(v) // 15
    sums = [sum(v[r*n:(r+1)*n]) for r in range(15)]
    med = st.median(sums) * 1e3; tot += med
    print(f"{k:8s} {med:7.1f} ms  ({n}/window)")
print("total", round(tot, 1))
