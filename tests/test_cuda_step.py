"""The CUDA decode step (kernels/decode_step.cu) against what it replaces: the flat step's
logits, mlx-whisper's filters + greedy update, and whole decodes on real audio. These need
MLX's CUDA backend: on other machines they are reported as skipped, not passed; the GPU
record (benchmarks/gpu.sh tests) runs them."""

import mlx.core as mx
import numpy as np
import pytest
from hypothesis import given, settings
from mlx_whisper.decoding import DecodingOptions, GreedyDecoder, SuppressTokens

from whisperfast.decoding import DeviceTimestampRules, StaticInference
from whisperfast.kernels.cuda_step import CudaStep, greedy_update, timestamp_rules

from .test_decoding import history

cuda = getattr(mx, "cuda", None)
pytestmark = pytest.mark.skipif(cuda is None or not cuda.is_available() or mx.default_device() != mx.gpu,
                                reason="needs MLX's CUDA backend")


@pytest.mark.parametrize("dtype", [mx.float32, mx.float16])
@pytest.mark.parametrize("batch", [1, 3])
def test_cuda_logits_match_the_flat_step(dtype, batch):
    from whisperfast.kernels import rewrite_whisper

    from .test_rewrite import tiny_whisper

    m = tiny_whisper(seed=3)
    m.set_dtype(dtype)
    fused, _ = rewrite_whisper(m)
    xa = mx.random.normal((batch, 12, 32)).astype(dtype)
    flat, ours = StaticInference(fused), StaticInference(fused)
    prompt = mx.array([[50257, 50362, 11]] * batch)
    flat.logits(prompt, xa)
    ours.logits(prompt, xa)
    step, tokens = CudaStep(fused.decoder), prompt
    tol = 1e-4 if dtype == mx.float32 else 2e-2
    for tok in (5, 7, 9, 13, 50300):
        tokens = mx.concatenate([tokens, mx.array([[tok]] * batch)], axis=1)
        ref = flat.logits(tokens[:, -1:], xa)[:, -1]
        got = step.logits(tokens, ours.kv_cache)
        np.testing.assert_allclose(np.array(got), np.array(ref), atol=tol, rtol=tol)
    for (a, _), (b, _) in zip(flat.kv_cache, ours.kv_cache):
        assert a.offset == b.offset == 8
        np.testing.assert_allclose(np.array(a.keys[..., :8, :]), np.array(b.keys[..., :8, :]), atol=tol, rtol=tol)
        np.testing.assert_allclose(np.array(a.values[..., :8, :]), np.array(b.values[..., :8, :]), atol=tol)


@pytest.mark.parametrize("dtype", [mx.float32, mx.float16])
def test_one_launch_step_equals_the_kernel_chain(dtype):
    """The one-launch step (grid-wide barriers) runs the same device code as the chain of
    launches, with other block sizes (so other summation orders): the same tokens, and the
    same logprob sums to float32 rounding, step after step."""
    from mlx_whisper.tokenizer import get_tokenizer

    from whisperfast.kernels import rewrite_whisper

    from .test_rewrite import tiny_whisper

    m = tiny_whisper(seed=4)
    m.set_dtype(dtype)
    fused, _ = rewrite_whisper(m)
    xa = mx.random.normal((1, 12, 32)).astype(dtype)
    prompt = mx.array([[50257, 50362, 50363]]).astype(mx.int64)
    chain, one = StaticInference(fused), StaticInference(fused)
    chain.logits(prompt, xa)
    one.logits(prompt, xa)
    tokens = mx.concatenate([prompt, mx.array([[50400]])], axis=1)
    rules = timestamp_rules(get_tokenizer(False, language="en"), 3, True)
    suppress = mx.zeros((51864,))
    step, state = CudaStep(fused.decoder), {}
    a = b = (tokens, None, mx.zeros((1,)))
    for _ in range(8):
        a = greedy_update(step.logits(a[0], chain.kv_cache), a[0], a[2], suppress, rules)
        b = step.one_launch(b[0], b[2], one.kv_cache, state, suppress, rules)
        assert a[0].tolist() == b[0].tolist() and bool(a[1]) == bool(b[1])
        np.testing.assert_allclose(np.array(b[2]), np.array(a[2]), rtol=1e-5, atol=1e-5)


@settings(max_examples=30, deadline=None)
@given(case=history())
def test_greedy_kernel_matches_mlx_whispers_filters_and_update(case):
    tok, n_vocab, sample_begin, seqs, seed, scale, _ = case
    if len(seqs[0]) == sample_begin:  # the prompt step samples the first token, not the kernel
        seqs = [s + [tok.timestamp_begin] for s in seqs]
    logits = mx.random.normal((len(seqs), n_vocab), key=mx.random.key(seed)) * scale
    tokens, sums = mx.array(seqs).astype(mx.int64), mx.random.normal((len(seqs),), key=mx.random.key(seed + 1))
    suppress = SuppressTokens([220, 50256 - 1, tok.no_speech or 0], n_vocab)
    for rules_on in (True, False):
        filtered = suppress.apply(logits, tokens)
        if rules_on:
            filtered = DeviceTimestampRules(tok, sample_begin, None).apply(filtered, tokens)
        ref = GreedyDecoder(0.0, tok.eot).update(tokens, filtered, sums + 0)  # it adds to its sums in place
        got = greedy_update(logits, tokens, sums, suppress.mask, timestamp_rules(tok, sample_begin, rules_on))
        assert np.array_equal(np.array(got[0]), np.array(ref[0]))
        assert bool(got[1]) == bool(ref[1])
        np.testing.assert_allclose(np.array(got[2]), np.array(ref[2]), rtol=1e-5, atol=1e-5)


def test_cuda_step_decodes_jfk_as_the_flat_step_does(tiny, monkeypatch):
    from whisperfast.audio import first_window_mel
    from whisperfast.decoding import StaticCacheTask
    from whisperfast.pipeline import rewritten

    from .conftest import SAMPLES

    fused = rewritten(tiny).whisper
    mel = first_window_mel(SAMPLES / "jfk.wav")  # the fp16 option casts it to the weights'
    results = {}
    for env in ("0", "1", "one"):  # the flat step, the kernel chain, the one-launch step
        monkeypatch.setenv("WHISPERFAST_CUDA_STEP", env)
        options = DecodingOptions(language="en", fp16=tiny.dtype == "float16")
        results[env] = StaticCacheTask(fused, options).run(mel)[0]
    assert "_whisperfast_cuda" in fused.decoder.__dict__  # the kernels ran
    assert results["one"].tokens == results["1"].tokens == results["0"].tokens
    assert abs(results["one"].avg_logprob - results["1"].avg_logprob) < 1e-3  # fp16 sums, other orders
    assert abs(results["1"].avg_logprob - results["0"].avg_logprob) < 1e-3
    assert "fellow Americans" in results["1"].text
