"""The model rewrite: what it swaps, what it leaves, what it reports; Whisper attention
against mlx-whisper's own; RoPE and RMSNorm proven on a small Llama-style model."""

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten
from mlx_whisper import whisper as mw

from whisperfast.decode import attention, rewrite_whisper
from whisperfast.decode.rewrite import TABLE as WHISPER_TABLE
from whisperfast.decode.words import alignment_view
from whisperfast.kernels import layers, rewrite


def tiny_whisper(seed=0):
    mx.random.seed(seed)
    dims = mw.ModelDimensions(n_mels=8, n_audio_ctx=12, n_audio_state=32, n_audio_head=4, n_audio_layer=2,
                              n_vocab=51864, n_text_ctx=16, n_text_state=32, n_text_head=4, n_text_layer=2)
    m = mw.Whisper(dims, mx.float32)
    m.update({"decoder": {"positional_embedding": mx.random.normal((16, 32)) * 0.1}})
    return m


def params(m):
    return dict(tree_flatten(m.parameters()))


def test_rewrite_leaves_the_given_model_alone_and_shares_weights():
    m = tiny_whisper()
    before = {k: id(v) for k, v in params(m).items()}
    fused, report = rewrite_whisper(m)
    assert type(m.encoder.blocks[0].attn) is mw.MultiHeadAttention
    assert type(fused.encoder.blocks[0].attn) is attention.WhisperAttention
    assert {k: id(v) for k, v in params(m).items()} == before
    assert all(params(fused)[k] is v for k, v in params(m).items())  # same arrays: same weights
    fused.update({"decoder": {"ln": {"bias": mx.ones((32,))}}})
    assert float(m.decoder.ln.bias.sum()) == 0.0  # updating the copy does not reach the original


def test_whisper_report_counts_every_site():
    report = rewrite_whisper(tiny_whisper())[1]
    c = report.counts()
    assert c["attention"] == {"sites": 6, "rewritten": 6, "already_fused": 0, "skipped": 0}  # 2 enc self, 2 dec self + 2 cross
    assert c["layer_norm"]["sites"] == c["layer_norm"]["already_fused"] == 2 * 2 + 2 * 3 + 2
    assert c["rope"] == {"sites": 0, "rewritten": 0, "already_fused": 0, "skipped": 0}  # Whisper has no RoPE
    assert report.to_dict()["mode"] == "fused"


def test_word_timestamps_view_has_the_alignment_layers_as_built():
    m = tiny_whisper()
    m.set_alignment_heads(np.array([[1, 0], [1, 3]]))
    fused, _ = rewrite_whisper(m)
    view = alignment_view(fused)
    assert type(view.decoder.blocks[1].cross_attn) is mw.MultiHeadAttention  # returns its weights
    assert type(view.decoder.blocks[0].cross_attn) is attention.WhisperAttention
    assert type(fused.decoder.blocks[1].cross_attn) is attention.WhisperAttention  # the decode model untouched
    assert view.decoder.blocks[1].cross_attn.query.weight is fused.decoder.blocks[1].cross_attn.query.weight


def test_composed_mode_and_only():
    m = tiny_whisper()
    composed, report = rewrite_whisper(m, mode="composed")
    assert report.counts()["layer_norm"]["rewritten"] == 12 and report.counts()["attention"]["already_composed"] == 6
    assert all(type(x) is layers.LayerNorm and x.mode == "composed" for x in composed.decoder.blocks[0].children().values()
               if isinstance(x, layers.LayerNorm))
    only, report = rewrite_whisper(m, only=["layer_norm"], mode="composed")
    assert report.counts()["attention"]["skipped"] == 6 and type(only.encoder.blocks[0].attn) is mw.MultiHeadAttention
    with pytest.raises(ValueError, match="unknown rewrite kinds"):
        rewrite_whisper(m, only=["softmax"])
    # the generic rewrite knows mlx.nn's layers only: Whisper's attention is the table row
    # whisperfast.decode.rewrite adds
    generic, report = rewrite(m, mode="composed")
    assert report.counts()["attention"]["sites"] == 0 and type(generic.encoder.blocks[0].attn) is mw.MultiHeadAttention


def test_unsupported_sites_are_skipped_with_reasons():
    class DropoutAttention(nn.MultiHeadAttention):
        def __init__(self):
            super().__init__(16, 2)
            self.dropout = 0.1

    model = nn.Sequential(nn.GroupNorm(2, 16), DropoutAttention(), nn.LayerNorm(16))
    new, report = rewrite(model, mode="composed")
    reasons = {s.layer: s.reason for s in report.sites if s.action == "skipped"}
    assert "axes other than the last" in reasons["GroupNorm"]
    assert "dropout 0.1 > 0" in reasons["DropoutAttention"]
    assert type(new.layers[1]) is DropoutAttention and type(new.layers[2]) is layers.LayerNorm


@pytest.mark.parametrize("mode", ["fused", "composed"])
def test_whisper_attention_matches_mlx_whisper(mode):
    mx.random.seed(3)
    stock = mw.MultiHeadAttention(64, 4)
    fused = rewrite(nn.Sequential(stock), table=WHISPER_TABLE)[0]
    ours = (fused if mode == "fused" else rewrite(fused, mode="composed", table=WHISPER_TABLE)[0]).layers[0]
    assert type(ours) is attention.WhisperAttention and ours.mode == mode
    x, xa = mx.random.normal((2, 5, 64)), mx.random.normal((2, 12, 64))
    mask = nn.MultiHeadAttention.create_additive_causal_mask(16)
    # self-attention over a prompt, then one cached step, then cross-attention
    a, kv_a, qk = stock(x, mask=mask)
    b, kv_b, none = ours(x, mask=mask)
    assert none is None and qk.shape == (2, 4, 5, 5)
    np.testing.assert_allclose(np.array(a), np.array(b), atol=1e-5, rtol=1e-5)
    step = mx.random.normal((2, 1, 64))
    a2, _, _ = stock(step, mask=mask, kv_cache=kv_a)
    b2, _, _ = ours(step, mask=mask, kv_cache=kv_b)
    np.testing.assert_allclose(np.array(a2), np.array(b2), atol=1e-5, rtol=1e-5)
    a3, _, _ = stock(x, xa)
    b3, _, _ = ours(x, xa)
    np.testing.assert_allclose(np.array(a3), np.array(b3), atol=1e-5, rtol=1e-5)


class LlamaBlock(nn.Module):
    """mlx-lm style: RMSNorm, GQA attention with RoPE through mx.fast SDPA, SwiGLU."""

    def __init__(self, dims=64, n_heads=4, n_kv=2, rope=None):
        super().__init__()
        self.n_heads, self.n_kv, self.hd = n_heads, n_kv, dims // n_heads
        self.q, self.k = nn.Linear(dims, dims, bias=False), nn.Linear(dims, n_kv * self.hd, bias=False)
        self.v, self.o = nn.Linear(dims, n_kv * self.hd, bias=False), nn.Linear(dims, dims, bias=False)
        self.rope = rope or nn.RoPE(self.hd, base=10000)
        self.norm1, self.norm2 = nn.RMSNorm(dims), nn.RMSNorm(dims)
        self.up, self.gate, self.down = nn.Linear(dims, 128, bias=False), nn.Linear(dims, 128, bias=False), nn.Linear(128, dims, bias=False)

    def __call__(self, x, offset=0):
        B, L, _ = x.shape
        h = self.norm1(x)
        q = self.rope(self.q(h).reshape(B, L, self.n_heads, -1).transpose(0, 2, 1, 3), offset)
        k = self.rope(self.k(h).reshape(B, L, self.n_kv, -1).transpose(0, 2, 1, 3), offset)
        v = self.v(h).reshape(B, L, self.n_kv, -1).transpose(0, 2, 1, 3)
        a = mx.fast.scaled_dot_product_attention(q, k, v, scale=self.hd**-0.5, mask="causal")
        x = x + self.o(a.transpose(0, 2, 1, 3).reshape(B, L, -1))
        h = self.norm2(x)
        return x + self.down(nn.silu(self.gate(h)) * self.up(h))


class TinyLlama(nn.Module):
    def __init__(self, rope_factory=lambda: None):
        super().__init__()
        self.embed = nn.Embedding(100, 64)
        self.blocks = [LlamaBlock(rope=rope_factory()) for _ in range(2)]
        self.norm = nn.RMSNorm(64)

    def __call__(self, tokens, offset=0):
        x = self.embed(tokens)
        for b in self.blocks:
            x = b(x, offset)
        return self.embed.as_linear(self.norm(x))


@pytest.mark.parametrize("rope", ["nn.RoPE", "llama3", "dynamic"])
def test_llama_rms_norm_and_rope_paths(rope):
    mx.random.seed(5)
    scaling = {"llama3": {"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 32},
               "dynamic": {"type": "dynamic", "factor": 2.0, "original_max_position_embeddings": 32}}.get(rope)
    factory = (lambda: None) if scaling is None else (lambda: layers.RoPE(16, scaling=scaling))
    model = TinyLlama(factory)
    tokens = mx.array([[1, 5, 9, 33, 2, 7, 64, 11]])
    ref = model(tokens, offset=40)
    composed, report = rewrite(model, mode="composed")
    c = report.counts()
    assert c["rms_norm"]["rewritten"] == 5 and c["rope"]["sites"] == 2 and c["attention"]["sites"] == 0
    assert c["rope"]["rewritten"] == (2 if rope != "dynamic" else 0)  # dynamic already runs composed
    np.testing.assert_allclose(np.array(composed(tokens, offset=40)), np.array(ref), atol=1e-4, rtol=1e-4)
    fused, report = rewrite(composed, mode="fused")
    assert report.counts()["rms_norm"]["rewritten"] == 5
    if rope == "dynamic":
        assert "live sequence length" in [s for s in report.sites if s.kind == "rope"][0].reason
    np.testing.assert_allclose(np.array(fused(tokens, offset=40)), np.array(ref), atol=1e-4, rtol=1e-4)
    # the same weights drive all three graphs
    assert all(params(fused)[k] is v for k, v in params(model).items())


def test_static_kv_cache_decoder_matches_stock_step_by_step():
    from whisperfast.decode.attention import KVCache, supports_static_cache
    from whisperfast.decode.flat import decoder_forward

    m = tiny_whisper(seed=1)
    fused, _ = rewrite_whisper(m)
    # the class stays mlx-whisper's: the engine is chosen per decode, from the layers
    assert type(fused) is mw.Whisper and type(m) is mw.Whisper
    assert supports_static_cache(fused) and not supports_static_cache(m)
    xa = mx.random.normal((2, 12, 32))
    prompt = mx.array([[50257, 50362, 11]] * 2)
    ref, kv, _ = m.decoder(prompt, xa)
    cache = [[KVCache(16), None] for _ in fused.decoder.blocks]
    ours = decoder_forward(fused.decoder, prompt, xa, cache)
    np.testing.assert_allclose(np.array(ours), np.array(ref), atol=1e-4, rtol=1e-4)
    for tok in (5, 7, 9):  # single-token steps attend to every cached position
        step = mx.array([[tok]] * 2)
        ref, kv, _ = m.decoder(step, xa, kv_cache=kv)
        ours = decoder_forward(fused.decoder, step, xa, cache)
        np.testing.assert_allclose(np.array(ours), np.array(ref), atol=1e-4, rtol=1e-4)
    assert cache[0][0].offset == 6 and cache[0][0].keys.shape == (2, 4, 16, 8)
    # two tokens at once after a cached prefix: causal must be lower-right aligned
    two = mx.array([[3, 4]] * 2)
    full, _, _ = m.decoder(mx.array([[50257, 50362, 11, 5, 7, 9, 3, 4]] * 2), xa)
    ours = decoder_forward(fused.decoder, two, xa, cache)
    np.testing.assert_allclose(np.array(ours), np.array(full[:, -2:]), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="KV cache full"):
        cache[0][0].update(mx.zeros((2, 4, 9, 8)), mx.zeros((2, 4, 9, 8)), True)


@pytest.mark.parametrize("mask", [None, "causal"])
def test_heads_split_across_cpu_streams_change_nothing(mask):
    from whisperfast.kernels import ops
    from whisperfast.kernels.layers import heads_across_cpu_streams

    q, k, v = (mx.random.normal((1, 6, 40, 64), key=mx.random.key(i)) for i in range(3))
    with mx.stream(mx.cpu):  # the split is a CPU strategy; on a GPU machine compare CPU with CPU
        whole = ops.fused_scaled_dot_product_attention(q, k, v, 0.125, mask)
    split = heads_across_cpu_streams(ops.fused_scaled_dot_product_attention, q, k, v, 0.125, mask)
    assert np.array_equal(np.array(whole), np.array(split))
