"""The CUDA decode step (decode/cuda/decode_step.cu) against what it replaces: the flat step's
logits and caches, mlx-whisper's filters + greedy update, and whole decodes on real audio. These need
MLX's CUDA backend: on other machines they are reported as skipped, not passed; the GPU
record (benchmarks/gpu.sh final) runs them."""

import mlx.core as mx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlx_whisper.decoding import DecodingOptions, GreedyDecoder, SuppressBlank, SuppressTokens

from whisperfast.decode.rules import DeviceTimestampRules, HeldEnd
from whisperfast.decode.flat import StaticInference
from whisperfast.decode.cuda.step import CudaDecode, CudaStep, greedy_picks, grid_blocks, timestamp_rules

from .conftest import needs_cuda
from .test_decoding import count_flat_steps, history

pytestmark = needs_cuda


@pytest.fixture(autouse=True)
def _grid_read_afresh():
    """WHISPERFAST_STEP_BLOCKS is read once per process; tests that set it read it again."""
    grid_blocks.cache_clear()
    yield
    grid_blocks.cache_clear()


@pytest.mark.parametrize("dtype", [mx.float32, mx.float16])
# with the picks (greedy), 5, 8 and 20 rows are groups of 3, the last one padded (for_groups);
# without (the forward pass of beams and samples), one group of 5 or 8, and 20 rows three
# groups of 8 side by side, each on its slice of the grid (one block each on 3 blocks, the
# groups in turn on 1)
@pytest.mark.parametrize("batch", [1, 3, 5, 8, 20])
# the grid the SMs give; fewer blocks than heads; 30: 5 chunks a head, so that the cross-attention
# items of 5 beams take their audio's rows together (step.shares_cross_items), and items of one
# row, more than the blocks, run two a block (decode_step.cu's half-block items: 3 and 8 rows)
@pytest.mark.parametrize("blocks", ["", "1", "3", "30"])
@pytest.mark.parametrize("prompt_len", [1, 3])
@pytest.mark.parametrize("pick", [True, False], ids=["greedy", "forward"])
def test_cuda_logits_match_the_flat_step(dtype, batch, blocks, prompt_len, pick, knobs):
    """The kernel's logits and caches against the flat step's, row by row. Without the picks
    the rows are one audio's (beams, samples): the kernel reads its one cross K/V for all."""
    from mlx_whisper.tokenizer import get_tokenizer

    from whisperfast.decode import rewrite_whisper

    from .test_rewrite import tiny_whisper

    knobs(WHISPERFAST_STEP_BLOCKS=blocks)
    m = tiny_whisper(seed=3)
    m.set_dtype(dtype)
    fused, _ = rewrite_whisper(m)
    audio = mx.random.normal((batch if pick else 1, 12, 32)).astype(dtype)
    xa = mx.repeat(audio, batch // audio.shape[0], axis=0)  # the flat step's: a row each
    flat = StaticInference(fused)
    prompt = mx.array([[50257, 50362, 11][:prompt_len]] * batch)
    rules = timestamp_rules(get_tokenizer(False, language="en"), prompt_len, False)
    tol = 1e-4 if dtype == mx.float32 else 2e-2
    none = mx.zeros((51864,))
    step = CudaStep(fused.decoder)
    state = step.start(audio, batch)
    assert state["blocks"] == int(blocks or grid_blocks())  # the grid asked for
    assert state["cross"].shape[0] == audio.shape[0]
    # the prompt in one launch from empty caches, the SOT's logits as well as the last position's
    got = step(prompt, mx.zeros((batch,)), state, none, rules, new=prompt_len, sot=0, pick=pick)[3]
    ref = flat.logits(prompt, xa)
    assert got.shape == (batch, 1 if prompt_len == 1 else 2, 51864)
    np.testing.assert_allclose(np.array(got[:, 0]), np.array(ref[:, 0]), atol=tol, rtol=tol)
    np.testing.assert_allclose(np.array(got[:, -1]), np.array(ref[:, -1]), atol=tol, rtol=tol)
    tokens = prompt
    for tok in (50362, 11, 5, 7, 9, 13, 50300):
        tokens = mx.concatenate([tokens, mx.array([[tok]] * batch)], axis=1)
        ref = flat.logits(tokens[:, -1:], xa)[:, -1]
        got = step(tokens, mx.zeros((batch,)), state, none, rules, pick=pick)
        assert got[3].shape == (batch, 1, 51864)
        np.testing.assert_allclose(np.array(got[3][:, 0]), np.array(ref), atol=tol, rtol=tol)
        if pick:
            assert got[0][:, -1].tolist() == mx.argmax(got[3][:, 0], axis=-1).tolist()  # no filters: the argmax
    assert step.launches == 1 + 7  # the prompt's launch, then a launch a step
    n = prompt_len + 7
    for layer, (a, _) in enumerate(flat.kv_cache):
        assert a.offset == n
        np.testing.assert_allclose(np.array(state["kc"][layer, ..., :n, :]), np.array(a.keys[..., :n, :]), atol=tol,
                                   rtol=tol)
        np.testing.assert_allclose(np.array(state["vc"][layer, ..., :n, :]), np.array(a.values[..., :n, :]), atol=tol)


@pytest.mark.parametrize("dtype", [mx.float32, mx.float16])
# the layers' bits, the vocabulary's: uniform, and --quantize 4's 8-bit vocabulary (decode_step.cu's EB)
@pytest.mark.parametrize("bits, vocabulary_bits", [(8, 8), (4, 4), (4, 8)], ids=["q8", "q4", "q4v8"])
@pytest.mark.parametrize("batch, pick", [(1, True), (5, True), (5, False)], ids=["1", "5", "5-forward"])
def test_cuda_quantized_logits_match_the_flat_step(dtype, bits, vocabulary_bits, batch, pick):
    """A quantized decoder on the kernel (packed words dequantized in registers, common.cuh's
    dot_qrow) against the flat step's quantized matmuls: the same values to rounding."""
    from mlx_whisper.tokenizer import get_tokenizer

    from whisperfast.decode import rewrite_whisper

    from .test_quantize import quantize_as
    from .test_rewrite import tiny_whisper

    m = tiny_whisper(seed=3)
    m.set_dtype(dtype)
    quantize_as(m, bits, 32, vocabulary_bits)
    fused, _ = rewrite_whisper(m)
    step = CudaStep(fused.decoder)
    assert (step.bits, step.vocabulary_bits) == (bits, vocabulary_bits) and step.emb is None
    xa = mx.random.normal((batch, 12, 32)).astype(dtype)
    flat = StaticInference(fused)
    prompt = mx.array([[50257, 50362, 11]] * batch)
    rules = timestamp_rules(get_tokenizer(False, language="en"), 3, False)
    tol = 1e-3 if dtype == mx.float32 else 3e-2
    none = mx.zeros((51864,))
    state = step.start(xa, batch)
    got = step(prompt, mx.zeros((batch,)), state, none, rules, new=3, sot=0, pick=pick)[3]
    ref = flat.logits(prompt, xa)
    np.testing.assert_allclose(np.array(got[:, 0]), np.array(ref[:, 0]), atol=tol, rtol=tol)
    np.testing.assert_allclose(np.array(got[:, -1]), np.array(ref[:, -1]), atol=tol, rtol=tol)
    tokens = prompt
    for tok in (50362, 11, 5, 7, 9):
        tokens = mx.concatenate([tokens, mx.array([[tok]] * batch)], axis=1)
        ref = flat.logits(tokens[:, -1:], xa)[:, -1]
        got = step(tokens, mx.zeros((batch,)), state, none, rules, pick=pick)
        np.testing.assert_allclose(np.array(got[3][:, 0]), np.array(ref), atol=tol, rtol=tol)
        if pick:
            assert got[0][:, -1].tolist() == mx.argmax(got[3][:, 0], axis=-1).tolist()
    assert step.launches == 1 + 5
    for layer, (a, _) in enumerate(flat.kv_cache):
        np.testing.assert_allclose(np.array(state["kc"][layer, ..., :8, :]), np.array(a.keys[..., :8, :]), atol=tol, rtol=tol)


def test_cuda_step_holds_each_rows_end():
    """The step's own picks (decode_step.cu) by each row's bound in its launch's meta: three
    rows at HeldEnd's edge (test_decoding.held_batch), EOT their top logit by the first
    sample's mask; EOT goes exactly where the rule holds."""
    from mlx_whisper.tokenizer import get_tokenizer

    from whisperfast.decode import rewrite_whisper

    from .test_decoding import held_batch
    from .test_rewrite import tiny_whisper

    tok = get_tokenizer(False, language="en")
    tokens, _, reach, want = held_batch(tok, 51864)
    rows = [0, 1, 4]  # held, not held (at the bound), held (a pair at 0.00)
    tokens = tokens[mx.array(rows)]
    fused, _ = rewrite_whisper(tiny_whisper(seed=5))
    rules = dict(timestamp_rules(tok, 1, True), must_reach=tuple(reach[r] for r in rows))
    eot_first = mx.zeros((51864,)).at[tok.eot].add(1e4)
    run = CudaDecode(CudaStep(fused.decoder), eot_first, eot_first, rules)
    out = run.prompt(tokens, mx.random.normal((3, 12, 32)))[0]
    assert [t != tok.eot for t in out[:, -1].tolist()] == [want[r] for r in rows], out[:, -1].tolist()


def test_cuda_prompt_samples_the_first_token_and_returns_the_sots_logits():
    """CudaDecode.prompt: the first sample's filters (SuppressBlank) apply, the SOT's logits come back."""
    from mlx_whisper.tokenizer import get_tokenizer

    from whisperfast.decode import rewrite_whisper

    from .test_rewrite import tiny_whisper

    fused, _ = rewrite_whisper(tiny_whisper(seed=5))
    xa = mx.random.normal((1, 12, 32))
    prompt = mx.array([[50257, 50362, 11]])
    ref = StaticInference(fused).logits(prompt, xa)
    banned = int(mx.argmax(ref[0, -1]))
    first = mx.zeros((51864,)).at[banned].add(-mx.inf)
    run = CudaDecode(CudaStep(fused.decoder), mx.zeros((51864,)), first, timestamp_rules(get_tokenizer(False), 3, False))
    tokens, completed, sums, sot_logits = run.prompt(prompt, xa, sot=0)
    assert run.step.launches == 1  # the whole prompt in one launch
    assert completed.shape == (1,) and completed.nbytes == 1  # launch.FLAG_SHAPE: read by the host in place
    np.testing.assert_allclose(np.array(sot_logits), np.array(ref[:, 0]), atol=1e-4, rtol=1e-4)
    assert tokens[0, :3].tolist() == [50257, 50362, 11]
    assert int(tokens[0, 3]) == int(mx.argmax(ref[0, -1] + first))  # the best token that is not banned
    assert int(tokens[0, 3]) != banned


@settings(max_examples=30, deadline=None)
@given(case=history(), reach=st.one_of(st.none(), st.lists(st.integers(0, 1502), min_size=3, max_size=3)),
       eot_top=st.booleans())
def test_greedy_kernel_matches_mlx_whispers_filters_and_update(case, reach, eot_top):
    """The greedy launch (greedy_picks: the picks of a greedy batch wider than the step's own)
    against mlx-whisper's filters and update: the first sample (SuppressBlank, the initial
    timestamp rules) and the ones after; with batched mode's HeldEnd (each row's must_reach),
    EOT the top logit or not."""
    tok, n_vocab, sample_begin, seqs, seed, scale, max_initial = case
    logits = mx.random.normal((len(seqs), n_vocab), key=mx.random.key(seed)) * scale
    if eot_top:
        logits = mx.where(mx.arange(n_vocab) == tok.eot, logits.max() + 3, logits)
    reach = None if reach is None else reach[: len(seqs)]
    tokens, sums = mx.array(seqs).astype(mx.int64), mx.random.normal((len(seqs),), key=mx.random.key(seed + 1))
    suppress = SuppressTokens([220, 50256 - 1, tok.no_speech or 0], n_vocab)
    blank = SuppressBlank(tok, sample_begin, n_vocab)
    mask = suppress.mask + (blank.mask if tokens.shape[1] == sample_begin else 0)
    for rules_on in (True, False):
        filtered = suppress.apply(blank.apply(logits, tokens), tokens)
        rules = timestamp_rules(tok, sample_begin, rules_on, max_initial)
        if rules_on:
            filtered = DeviceTimestampRules(tok, sample_begin, max_initial).apply(filtered, tokens)
            if reach is not None:
                filtered = HeldEnd(tok, sample_begin, reach).apply(filtered, tokens)
                rules["must_reach"] = tuple(reach)
        ref = GreedyDecoder(0.0, tok.eot).update(tokens, filtered, sums + 0)  # it adds to its sums in place
        got = greedy_picks(logits[:, None], tokens, sums, mask, rules)
        assert np.array_equal(np.array(got[0]), np.array(ref[0]))
        assert bool(got[1]) == bool(ref[1])
        np.testing.assert_allclose(np.array(got[2]), np.array(ref[2]), rtol=1e-5, atol=1e-5)
        # a prompt's launch writes the SOT's logits first (R = 2): the picks read the last row only
        decoy = mx.random.normal(logits.shape, key=mx.random.key(seed + 2)) * scale + 50
        two = greedy_picks(mx.stack([decoy, logits], axis=1), tokens, sums, mask, rules)
        assert np.array_equal(np.array(two[0]), np.array(got[0]))
        assert np.array_equal(np.array(two[2]), np.array(got[2]), equal_nan=True)  # (a row of -inf logits sums to nan in both)


# The kernel's tokens are stock mlx-whisper's (the oracle): in fp16 it rounds scores and softmax
# weights to T as stock's graph does, where the flat step's fused SDPA keeps them in fp32, so
# at an fp16 near-tie the flat step may pick the other token (JFK with tiny.en on the H200).
# A prompt over CudaDecode.MAX_PROMPT tokens: the module pass runs it, the kernel resumes from its caches.
@pytest.mark.parametrize("prompt", [None, "My fellow citizens, we meet today to speak plainly about the nation."])
def test_cuda_step_decodes_jfk_as_stock_does(tiny, prompt, monkeypatch, knobs):
    from mlx_whisper.decoding import DecodingTask

    from whisperfast.audio import first_window_mel
    from whisperfast.decode.task import StaticCacheTask
    from whisperfast.pipeline import rewritten

    from .conftest import SAMPLES

    fused = rewritten(tiny).whisper
    mel = first_window_mel(SAMPLES / "jfk.wav")  # the fp16 option casts it to the weights'
    flat_calls = count_flat_steps(monkeypatch)
    launches = lambda: getattr(fused.decoder.__dict__.get("_whisperfast_cuda"), "launches", 0)
    results, kernel, flat = {}, {}, {}
    for env, blocks in (("0", ""), ("1", ""), ("1", "3")):  # the flat step; the kernel, also on fewer blocks than heads
        knobs(WHISPERFAST_CUDA_STEP=env, WHISPERFAST_STEP_BLOCKS=blocks)
        grid_blocks.cache_clear()  # the knob is read once per process: read it for this lane
        options = DecodingOptions(language="en", fp16=tiny.dtype == "float16", prompt=prompt)
        k0, f0 = launches(), flat_calls[0]
        results[env + blocks] = StaticCacheTask(fused, options).run(mel)[0]
        kernel[env + blocks], flat[env + blocks] = launches() - k0, flat_calls[0] - f0
        if env + blocks == "13":
            assert grid_blocks() == 3  # the lane ran on 3 blocks, fewer than tiny.en's 6 heads
    # each lane ran what it claims: the flat step alone, else the kernel for every token the
    # module pass over the prompt did not sample (a short prompt's too), and no flat step
    assert isinstance(fused.decoder.__dict__.get("_whisperfast_cuda"), CudaStep)
    assert kernel["0"] == 0 and flat["0"] >= len(results["0"].tokens), (kernel, flat)
    for lane in ("1", "13"):
        assert kernel[lane] >= len(results[lane].tokens) and flat[lane] == 0, (lane, kernel, flat)
    stock = DecodingTask(tiny.whisper, options).run(mel)[0]
    assert results["13"].tokens == results["1"].tokens == stock.tokens
    assert abs(results["13"].avg_logprob - results["1"].avg_logprob) < 1e-3  # other summation orders
    assert abs(results["1"].avg_logprob - stock.avg_logprob) < 1e-3
    assert "fellow Americans" in results["1"].text and "fellow Americans" in results["0"].text


def test_one_compiled_kernel_serves_every_prompt_length(tiny):
    """sample_begin and max_init are launch arguments: windows whose prompts differ in length
    (previous text, an initial prompt) reuse the one kernel MLX compiled for the model."""
    from whisperfast.audio import first_window_mel
    from whisperfast.decode.task import StaticCacheTask
    from whisperfast.pipeline import rewritten

    from .conftest import SAMPLES

    fused = rewritten(tiny).whisper
    mel = first_window_mel(SAMPLES / "jfk.wav")
    texts = []
    for prompt in (None, "Hello.", "My fellow citizens, we meet today to speak plainly about the nation and its future."):
        options = DecodingOptions(language="en", fp16=tiny.dtype == "float16", prompt=prompt)
        texts.append(StaticCacheTask(fused, options).run(mel)[0].text)
    step = fused.decoder.__dict__["_whisperfast_cuda"]
    assert isinstance(step, CudaStep) and step.launches >= 3 * 20
    assert len(step.kernels) == 1, step.kernels
    assert all("fellow Americans" in t for t in texts)
