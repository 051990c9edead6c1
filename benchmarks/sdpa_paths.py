"""Which SDPA kernel MLX picks for Whisper's shapes: `force_fused=True` raises where no
fused kernel applies (mlx 0.32.4 has it). Prints one line per case."""

import mlx.core as mx

import whisperfast  # noqa: F401
from whisperfast.decode.attention import KVCache

dt = mx.float16 if mx.default_device() == mx.gpu else mx.float32
r = lambda *s: mx.random.normal(s).astype(dt)
cache = KVCache(448)
for _ in range(40):
    k, v, _ = cache.update(r(1, 6, 1, 64), r(1, 6, 1, 64), False)
mx.eval(k, v)
qkv = r(1, 1, 3 * 384)  # FlatStep's query: a slice of the fused q|k|v row, reshaped to heads
cases = {
    "decoder step, q from a q|k|v slice, static-cache slice 40": (qkv[..., :384].reshape(1, 6, 1, 64), k, v, None),
    "encoder self 1x6x1500x64": (r(1, 6, 1500, 64), r(1, 6, 1500, 64), r(1, 6, 1500, 64), None),
    "decoder prompt causal 1x6x3x64": (r(1, 6, 3, 64), r(1, 6, 3, 64), r(1, 6, 3, 64), "causal"),
    "decoder step, static-cache slice 40": (r(1, 6, 1, 64), k, v, None),
    "decoder step, contiguous kv 40": (r(1, 6, 1, 64), r(1, 6, 40, 64), r(1, 6, 40, 64), None),
    "decoder step, array mask": (r(1, 6, 1, 64), r(1, 6, 40, 64), r(1, 6, 40, 64), mx.zeros((1, 40), dt)),
    "cross step 1x6x1x64 vs 1500": (r(1, 6, 1, 64), r(1, 6, 1500, 64), r(1, 6, 1500, 64), None),
}
for name, (q, k, v, mask) in cases.items():
    try:
        mx.eval(mx.fast.scaled_dot_product_attention(q, k, v, scale=0.125, mask=mask, force_fused=True))
        print(f"fused kernel   | {name}")
    except Exception as e:  # noqa: BLE001
        print(f"no fused kernel | {name} | {str(e).splitlines()[0][:120]}")
