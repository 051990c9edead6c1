"""Beam search and best_of (issue 14): openai/whisper's BeamSearchDecoder semantics in both
lanes, the fused lane equal to the stock lane on real speech, the decoder equal to a numpy
transcription of openai's own algorithm, and the CUDA kernel declining what it cannot run."""

import zlib

import mlx.core as mx
import numpy as np
import pytest
from mlx_whisper.decoding import DecodingOptions, MaximumLikelihoodRanker

from whisperfast.audio import first_window_mel
from whisperfast.decode.beam import BeamSearchDecoder
from whisperfast.decode.task import StaticCacheTask, StockBeamTask
from whisperfast.decode import decode_window
from .contract import assert_beams_same_or_stock_tie
from .text import normalize

from .conftest import SAMPLES, manifest

JFK = next(r["reference_transcript"] for r in manifest() if r["file"] == "jfk.wav")


@pytest.fixture(scope="module")
def lanes():
    """tiny.en float32: the stock model, the fused rewrite, and its word-timestamp view, whose
    alignment heads' cross-attention is as built (no flat step: the module path runs every
    token)."""
    from whisperfast.pipeline import load, rewritten

    stock = load("tiny.en", dtype=mx.float32)
    fused = rewritten(stock)
    _loaded.update(stock=stock, fused=fused)
    from whisperfast.decode import rewrite_whisper

    rounded, _ = rewrite_whisper(stock.whisper, attention="rounded")  # as rewritten(exact=True) builds it on a GPU in fp16
    from whisperfast.decode.words import alignment_view

    return {"stock": stock.whisper, "fused": fused.whisper, "fused-wt": alignment_view(fused.whisper),
            "fused-rounded": rounded}


_loaded = {}  # the LoadedModels behind lanes' "stock" and "fused"


_features = {}


def features(lanes, lane: str, file: str = "jfk.wav") -> mx.array:
    """The lane's own encoder output for the file's first window, (1500, n_state), once."""
    if (lane, file) not in _features:
        _features[lane, file] = lanes[lane].encoder(first_window_mel(SAMPLES / file))[0]
        mx.eval(_features[lane, file])
    return _features[lane, file]


def options(**kw) -> DecodingOptions:
    return DecodingOptions(language="en", fp16=False, **kw)


# ---- (1) beam 5 on JFK gives the reference text, in both lanes ------------------------------

@pytest.mark.parametrize("lane", ["stock", "fused"])
def test_beam5_jfk_reference_text(lanes, lane):
    """The whole transcription (the long-form loop, its window's decode through decode_window)."""
    from whisperfast.pipeline import TranscribeOptions, transcribe

    t = transcribe(_loaded[lane], SAMPLES / "jfk.wav", TranscribeOptions(beam_size=5))
    assert normalize(t.text) == normalize(JFK) and t.windows == 1 and t.sampled_windows == 0
    r = decode_window(lanes[lane], features(lanes, lane), options(beam_size=5))
    assert [x for x in r.tokens if x < 50256] == [x for x in t.tokens if x < 50256]  # the window's text


# ---- (2) fused-lane beams == stock-lane beams -----------------------------------------------

def run_task(cls, model, feats, opts):
    task = cls(model, opts)
    return task, task.run(feats[None])[0]


@pytest.mark.parametrize("variant", [dict(beam_size=5), dict(beam_size=5, patience=2.0),
                                     dict(beam_size=5, length_penalty=1.0),
                                     dict(beam_size=5, patience=1.5, length_penalty=0.3, without_timestamps=True)],
                         ids=["beam5", "patience2", "lp1", "patience1.5-lp0.3-notimestamps"])
def test_fused_beams_equal_stock_beams(lanes, variant):
    opts = options(**variant)
    st, a = run_task(StockBeamTask, lanes["stock"], features(lanes, "stock"), opts)
    ft, b = run_task(StaticCacheTask, lanes["fused"], features(lanes, "fused"), opts)
    assert a.tokens == b.tokens and a.text == b.text
    assert b.avg_logprob == pytest.approx(a.avg_logprob, abs=1e-4)
    # every finished candidate, not only the one ranked first
    fa, fb = st.decoder.finished_sequences, ft.decoder.finished_sequences
    assert [list(s) for s in fa] == [list(s) for s in fb]
    assert np.allclose([list(s.values()) for s in fa], [list(s.values()) for s in fb], atol=1e-4)
    assert len(fa[0]) == round(5 * (opts.patience or 1.0))  # completed: max_candidates finished


def test_rounded_attention_beams_equal_stock_beams(lanes, knobs):
    """The flat step with attention rounded as stock's keeps one cross K/V per row (a matrix
    product over a group's queries could sum in another order than stock's per-row ones).
    (On CUDA the kernel would run the beams' forward pass: the flat step is asked for.)"""
    knobs(WHISPERFAST_CUDA_STEP="0")
    opts = options(beam_size=5, patience=1.5)
    a = decode_window(lanes["stock"], features(lanes, "stock"), opts)
    ft, b = run_task(StaticCacheTask, lanes["fused-rounded"], features(lanes, "fused-rounded"), opts)
    step = lanes["fused-rounded"].decoder.__dict__["_whisperfast_step"]
    assert step.exact and ft.inference.kv_cache[0][1][0].shape[0] == 5  # the flat step ran, cross K/V per row
    assert a.tokens == b.tokens and a.text == b.text


def test_module_path_beams_equal_stock_beams(lanes):
    """The word-timestamp rewrite runs no flat step: its cross K/V are copied per row."""
    opts = options(beam_size=5)
    a = decode_window(lanes["stock"], features(lanes, "stock"), opts)
    b = decode_window(lanes["fused-wt"], features(lanes, "fused-wt"), opts)
    assert a.tokens == b.tokens


@pytest.mark.slow
def test_fused_beams_equal_stock_beams_batch_of_two(lanes):
    """Two audios in one batch: the stock lane repeats their features per beam, the fused
    lane keeps one cross K/V row per audio; each audio's result is its result alone."""
    files = ("jfk.wav", "en_new_home_in_the_stars_deepspeech.wav")
    opts = options(beam_size=5, patience=1.5)
    got = {}
    for lane in ("stock", "fused"):
        feats = mx.stack([features(lanes, lane, f) for f in files])
        got[lane] = decode_window(lanes[lane], feats, opts)
        alone = [decode_window(lanes[lane], features(lanes, lane, f), opts) for f in files]
        assert [r.tokens for r in got[lane]] == [r.tokens for r in alone]
    assert [r.tokens for r in got["stock"]] == [r.tokens for r in got["fused"]]


@pytest.mark.slow
def test_fused_beams_equal_stock_beams_fp16():
    from whisperfast.pipeline import load, rewritten

    stock = load("tiny.en", dtype=mx.float16)
    fused = rewritten(stock)
    mel = first_window_mel(SAMPLES / "jfk.wav")
    opts = DecodingOptions(language="en", fp16=True, beam_size=5)
    mel = mel[0].astype(mx.float16)  # (N_FRAMES, n_mels), as the long-form loop hands a window over
    a = decode_window(stock.whisper, stock.whisper.encoder(mel[None])[0], opts)
    b = decode_window(fused.whisper, fused.whisper.encoder(mel[None])[0], opts)
    assert normalize(a.text) == normalize(JFK)
    assert_beams_same_or_stock_tie(stock, opts, mel, a.tokens, b.tokens)  # README's contract


# ---- (3) the decoder against openai/whisper's algorithm itself ------------------------------
# openai/whisper, whisper/decoding.py (release 20250625, commit c0d2f62):
# BeamSearchDecoder.update / finalize and MaximumLikelihoodRanker.rank, transcribed from
# torch to numpy line by line. Only the tensor calls are translated: F.log_softmax (float32),
# Tensor.topk (sorted; ties, which the data here avoids, to the lower id), .item(), .tolist().

def log_softmax(x: np.ndarray) -> np.ndarray:
    """F.log_softmax(logits.float(), dim=-1), computed as mlx-whisper computes log
    probabilities (GreedyDecoder: logits - logsumexp, float32): the reference checks the
    search, not float32 summation, and MLX's CPU logsumexp sums a vocabulary in another
    order than torch's or numpy's (up to ~2e-4 apart on real logits)."""
    x = mx.array(x, mx.float32)
    return np.array(x - mx.logsumexp(x, axis=-1, keepdims=True))


def topk(x: np.ndarray, k: int):
    order = np.argsort(-x, kind="stable")[:k]
    return x[order], order


class OpenAIBeamSearchDecoder:
    def __init__(self, beam_size, eot, rearrange_kv_cache, patience=None):
        self.beam_size = beam_size
        self.eot = eot
        self.rearrange_kv_cache = rearrange_kv_cache  # inference.rearrange_kv_cache
        self.patience = patience or 1.0
        self.max_candidates: int = round(beam_size * self.patience)
        self.finished_sequences = None
        assert self.max_candidates > 0, f"Invalid beam size ({beam_size}) or patience ({patience})"

    def update(self, tokens, logits, sum_logprobs):
        if tokens.shape[0] % self.beam_size != 0:
            raise ValueError(f"{tokens.shape}[0] % {self.beam_size} != 0")

        n_audio = tokens.shape[0] // self.beam_size
        if self.finished_sequences is None:  # for the first update
            self.finished_sequences = [{} for _ in range(n_audio)]

        logprobs = log_softmax(logits)
        next_tokens, source_indices, finished_sequences = [], [], []
        for i in range(n_audio):
            scores, sources, finished = {}, {}, {}

            # STEP 1: calculate the cumulative log probabilities for possible candidates
            for j in range(self.beam_size):
                idx = i * self.beam_size + j
                prefix = tokens[idx].tolist()
                for logprob, token in zip(*topk(logprobs[idx], self.beam_size + 1)):
                    new_logprob = (sum_logprobs[idx] + logprob).item()
                    sequence = tuple(prefix + [token.item()])
                    scores[sequence] = new_logprob
                    sources[sequence] = idx

            # STEP 2: rank the candidates and keep the top beam_size sequences for each audio
            saved = 0
            for sequence in sorted(scores, key=scores.get, reverse=True):
                if sequence[-1] == self.eot:
                    finished[sequence] = scores[sequence]
                else:
                    sum_logprobs[len(next_tokens)] = scores[sequence]
                    next_tokens.append(sequence)
                    source_indices.append(sources[sequence])

                    saved += 1
                    if saved == self.beam_size:
                        break

            finished_sequences.append(finished)

        tokens = np.array(next_tokens)
        self.rearrange_kv_cache(source_indices)

        # add newly finished sequences to self.finished_sequences
        assert len(self.finished_sequences) == len(finished_sequences)
        for previously_finished, newly_finished in zip(self.finished_sequences, finished_sequences):
            for seq in sorted(newly_finished, key=newly_finished.get, reverse=True):
                if len(previously_finished) >= self.max_candidates:
                    break  # the candidate list is full
                previously_finished[seq] = newly_finished[seq]

        # mark as completed if all audio has enough number of samples
        completed = all(len(sequences) >= self.max_candidates for sequences in self.finished_sequences)
        return tokens, completed

    def finalize(self, preceding_tokens, sum_logprobs):
        # collect all finished sequences, including patience, and add unfinished ones if not enough
        for i, sequences in enumerate(self.finished_sequences):
            if len(sequences) < self.beam_size:  # when not enough sequences are finished
                for j in list(np.argsort(sum_logprobs[i]))[::-1]:
                    sequence = preceding_tokens[i, j].tolist() + [self.eot]
                    sequences[tuple(sequence)] = sum_logprobs[i][j].item()
                    if len(sequences) >= self.beam_size:
                        break

        tokens = [[np.array(seq) for seq in sequences.keys()] for sequences in self.finished_sequences]
        sum_logprobs = [list(sequences.values()) for sequences in self.finished_sequences]
        return tokens, sum_logprobs


def openai_rank(tokens, sum_logprobs, length_penalty):
    """MaximumLikelihoodRanker(length_penalty).rank"""
    def scores(logprobs, lengths):
        result = []
        for logprob, length in zip(logprobs, lengths):
            if length_penalty is None:
                penalty = length
            else:
                # from the Google NMT paper
                penalty = ((5 + length) / 6) ** length_penalty
            result.append(logprob / penalty)
        return result

    # get the sequence with the highest score
    lengths = [[len(t) for t in s] for s in tokens]
    return [np.argmax(scores(p, l)) for p, l in zip(sum_logprobs, lengths)]


def openai_select(tokens, sum_logprobs, sample_begin, eot, length_penalty):
    """DecodingTask.run after finalize: slice between the first sampled token and EOT, rank."""
    tokens = [[t[sample_begin: np.nonzero(t == eot)[0][0]] for t in s] for s in tokens]
    selected = openai_rank(tokens, sum_logprobs, length_penalty)
    return [t[i].tolist() for i, t in zip(selected, tokens)], [lp[i] for i, lp in zip(selected, sum_logprobs)]


class Rows:
    """An Inference that records the rearrangements asked of it."""

    def __init__(self):
        self.calls = []

    def rearrange_kv_cache(self, source_indices):
        self.calls.append(list(source_indices))


V, EOT, SAMPLE_BEGIN = 40, 7, 2


def synthetic_logits(tokens: np.ndarray) -> np.ndarray:
    """A fixed function of each row's tokens: normal logits seeded by the row, EOT likelier
    as the row grows, token 0 suppressed (-inf, as a filter would)."""
    rows = []
    for row in tokens:
        x = np.random.default_rng(zlib.crc32(np.asarray(row, np.int64).tobytes())).normal(size=V) * 2.0
        x[EOT] += (len(row) - 10) * 0.5
        x[0] = -np.inf
        rows.append(x)
    return np.array(rows, np.float32)


def drive(n_audio, beam_size, patience, length_penalty, ours: bool, sample_len=40):
    """openai's _main_loop (update until completed) and the end of its run, on synthetic
    logits, with openai's decoder (transcribed) or ours."""
    rows = Rows()
    initial = np.array([[100 + i, 200] for i in range(n_audio)]).repeat(beam_size, axis=0)
    tokens, sums, history = initial, np.zeros(len(initial), np.float32), []
    if ours:
        decoder = BeamSearchDecoder(beam_size, EOT, rows, patience)
        tokens, sums = mx.array(tokens), mx.array(sums)
    else:
        decoder = OpenAIBeamSearchDecoder(beam_size, EOT, rows.rearrange_kv_cache, patience)
    for _ in range(sample_len):
        logits = synthetic_logits(np.array(tokens))
        if ours:
            tokens, completed, sums = decoder.update(tokens, mx.array(logits), sums)
            completed = bool(completed)
        else:
            tokens, completed = decoder.update(tokens, logits, sums)
        history.append((np.array(tokens).tolist(), np.array(sums).tolist()))
        if completed:
            break
    tokens = np.array(tokens).reshape(n_audio, beam_size, -1)
    sums = np.array(sums, np.float32).reshape(n_audio, beam_size)
    if ours:
        cands, cand_sums = decoder.finalize(mx.array(tokens), mx.array(sums))
        cut = [[t[SAMPLE_BEGIN: t.index(EOT)] for t in s] for s in cands]
        selected = MaximumLikelihoodRanker(length_penalty).rank(cut, cand_sums)
        best = [t[i] for i, t in zip(selected, cut)], [lp[i] for i, lp in zip(selected, cand_sums)]
        cands = [[list(t) for t in s] for s in cands]
    else:
        cands, cand_sums = decoder.finalize(tokens, sums)
        best = openai_select(cands, cand_sums, SAMPLE_BEGIN, EOT, length_penalty)
        cands = [[t.tolist() for t in s] for s in cands]
    return history, rows.calls, cands, cand_sums, best


@pytest.mark.parametrize("n_audio,beam_size,patience,length_penalty",
                         [(1, 5, None, None), (1, 5, 2.0, None), (1, 5, 1.5, 0.6), (2, 5, None, 1.0),
                          (2, 3, 2.0, 0.0), (3, 4, 0.5, 0.3), (1, 2, None, None), (1, 5, 1.0, 1.0)])
def test_beam_search_is_openais_on_synthetic_logits(n_audio, beam_size, patience, length_penalty):
    ref = drive(n_audio, beam_size, patience, length_penalty, ours=False)
    got = drive(n_audio, beam_size, patience, length_penalty, ours=True)
    (rh, rrows, rc, rs, (rbest, rbest_sum)), (gh, grows, gc, gs, (gbest, gbest_sum)) = ref, got
    assert len(rh) == len(gh) and len(rh) > 3  # as many steps
    assert gh == rh  # every step's beams, in order, and their float32 sums
    assert grows == rrows  # the same rearrangements of the cache
    assert gc == rc and gs == rs  # the same candidates, in the same order, with the same sums
    assert gbest == rbest and gbest_sum == rbest_sum


def test_beam_search_is_openais_on_real_logits(lanes, monkeypatch, knobs):
    """The fused lane's beam decode of JFK, every update recorded (the filtered logits it
    was given, its beams in and out); openai's decoder replayed on the same logits takes the
    same beams at every step, and finalize and the ranker pick the same text. This is the
    host's update (beam.py): on CUDA the kernel, whose update runs on the device, is asked off
    here (tests/test_cuda_beams.py holds the device's update to this one)."""
    knobs(WHISPERFAST_CUDA_STEP="0")
    steps, original = [], BeamSearchDecoder.update

    def recorded(self, tokens, logits, sum_logprobs):
        done = self.completed
        out = original(self, tokens, logits, sum_logprobs)
        if not done:  # an update after completion (queued by the loop) changes nothing
            steps.append((np.array(tokens), np.array(logits), np.array(sum_logprobs), np.array(out[0]), np.array(out[2])))
        return out

    monkeypatch.setattr(BeamSearchDecoder, "update", recorded)
    opts = options(beam_size=5, patience=2.0, length_penalty=0.5)
    task = StaticCacheTask(lanes["fused"], opts)
    r = task.run(features(lanes, "fused")[None])[0]

    rows = Rows()
    ref = OpenAIBeamSearchDecoder(5, task.tokenizer.eot, rows.rearrange_kv_cache, 2.0)
    tokens, sums = steps[0][0], np.zeros(5, np.float32)
    for tokens_in, logits, sums_in, tokens_out, sums_out in steps:
        assert np.array_equal(tokens, tokens_in) and np.array_equal(sums, sums_in)
        tokens, completed = ref.update(tokens, logits, sums)
        assert np.array_equal(tokens, tokens_out) and np.array_equal(sums, sums_out)
    assert completed and len(steps) > 20
    cands, cand_sums = ref.finalize(tokens.reshape(1, 5, -1), sums.reshape(1, 5))
    assert [[t.tolist() for t in s] for s in cands] == [[list(t) for t in s] for s in task.decoder.finished_sequences]
    assert cand_sums == [list(s.values()) for s in task.decoder.finished_sequences]
    (best,), (best_sum,) = openai_select(cands, cand_sums, task.sample_begin, task.tokenizer.eot, 0.5)
    assert best == r.tokens and normalize(r.text) == normalize(JFK)
    assert r.avg_logprob == best_sum / (len(best) + 1)


# ---- (4) best_of: sampled trajectories, ranked --------------------------------------------

_sampled = {}


def best_of_5(lanes, lane):
    """best_of=5 at temperature 0.6, MLX's generator seeded alike for every lane."""
    if lane not in _sampled:
        mx.random.seed(7)
        _sampled[lane] = decode_window(lanes[lane], features(lanes, lane), options(temperature=0.6, best_of=5))
    return _sampled[lane]


def test_best_of_5_equal_in_both_lanes(lanes):
    a, b = best_of_5(lanes, "stock"), best_of_5(lanes, "fused")  # mlx-whisper's own decode, then ours
    assert a.tokens == b.tokens and a.temperature == b.temperature == 0.6 and "fellow" in a.text
    assert b.avg_logprob == pytest.approx(a.avg_logprob, abs=1e-4)


@pytest.mark.slow
def test_best_of_5_on_the_module_path(lanes):
    assert best_of_5(lanes, "fused-wt").tokens == best_of_5(lanes, "stock").tokens


@pytest.mark.slow
def test_quantized_lanes_beams_and_best_of_equal():
    """A quantized decoder (8-bit, as mlx-whisper's converted models) on both lanes: the flat
    step runs its quantized matmuls."""
    import mlx.nn as nn

    from whisperfast.pipeline import load, rewritten

    stock = load("tiny.en", dtype=mx.float32)
    nn.quantize(stock.whisper, group_size=64, bits=8, class_predicate=lambda p, m: isinstance(m, (nn.Linear, nn.Embedding)))
    fused = rewritten(stock).whisper
    mel = first_window_mel(SAMPLES / "jfk.wav")
    got = []
    for model in (stock.whisper, fused):
        feats = model.encoder(mel)[0]
        mx.random.seed(7)
        got.append([decode_window(model, feats, opts).tokens
                    for opts in (options(beam_size=5), options(temperature=0.6, best_of=5))])
    assert got[0] == got[1]


# ---- (5) beams and samples on the CUDA kernel ------------------------------------------------

def test_cuda_kernel_is_the_forward_pass_for_beams_and_samples(lanes, monkeypatch):
    """With a kernel standing in wherever it would apply (any device, any batch), the task's
    strategy decides how: greedy at temperature 0 runs the kernel's own update, beam search its
    device update (at any temperature: beams ignore it), sampling takes its logits.
    (tests/test_cuda_beams.py checks the device update against beam.py's on a CUDA machine.)"""
    import whisperfast.decode.cuda.step as cs

    class Step:
        n_vocab = lanes["fused"].dims.n_vocab

    monkeypatch.setattr(cs, "_step_for", lambda model, batch, features: Step())
    task = lambda **kw: StaticCacheTask(lanes["fused"], options(**kw))
    assert cs.cuda_step(task(), 1, mx.float32).greedy
    for kw in (dict(beam_size=5), dict(beam_size=2, patience=2.0), dict(beam_size=5, temperature=0.2),
               dict(temperature=0.6, best_of=5), dict(temperature=0.6)):
        t = task(**kw)
        decode = cs.cuda_step(t, t.n_group, mx.float32)
        assert not decode.greedy and (decode.beams is not None) == ("beam_size" in kw), kw
        assert t.eot_check == 1  # these read their end every step


class ForwardOnly:
    """CudaDecode's forward-pass interface (sampling: greedy False, no beams) over the
    static-cache engine, so that the task's kernel path runs on the CPU: the prompt's logits
    as the kernel returns them (row 0 the SOT's, the last row the last position's), steps,
    resume."""

    MAX_PROMPT, greedy, beams = 8, False, None

    def __init__(self, model):
        self.model, self.calls = model, {"prompt": 0, "step": 0, "resume": 0}

    def logits(self, tokens, audio_features=None, sot=-1):
        from whisperfast.decode.flat import StaticInference

        if audio_features is not None:
            self.inference, self.features = StaticInference(self.model), audio_features
            self.calls["prompt"] += 1
            out = self.inference.logits(tokens, audio_features)
            return out[:, [sot, -1]] if 0 <= sot < tokens.shape[1] - 1 else out[:, -1:]
        self.calls["step"] += 1
        return self.inference.logits(tokens[:, -1:], self.features)

    def resume(self, audio_features, cache, batch):
        from whisperfast.decode.flat import StaticInference

        self.inference, self.features = StaticInference(self.model), audio_features
        self.inference.kv_cache = cache
        self.calls["resume"] += 1


@pytest.mark.parametrize("prompt", [None, "Ask not what your country can do."])  # the kernel's prompt; the module's
@pytest.mark.parametrize("kw", [dict(temperature=0.6, best_of=3), dict(temperature=0.4)])
def test_kernel_forward_path_decodes_as_the_flat_step(lanes, monkeypatch, knobs, prompt, kw):
    """The task's path for samples on the kernel, with the flat step standing in for the
    kernel: the same tokens, sums and no-speech probability as without a kernel, and a long
    prompt handed over (resume). (The reference is the flat step on a CUDA machine too.)"""
    import whisperfast.decode.task as task_module
    from mlx_whisper.tokenizer import get_tokenizer

    knobs(WHISPERFAST_CUDA_STEP="0")
    ids = get_tokenizer(False).encode(" " + prompt) if prompt else []
    feats = features(lanes, "fused")
    mx.random.seed(3)
    _, ref = run_task(StaticCacheTask, lanes["fused"], feats, options(prompt=ids, **kw))
    kernel = ForwardOnly(lanes["fused"])
    monkeypatch.setattr(task_module, "cuda_step", lambda task, batch, dtype: kernel)
    mx.random.seed(3)
    _, got = run_task(StaticCacheTask, lanes["fused"], feats, options(prompt=ids, **kw))
    assert (got.tokens, got.avg_logprob, got.no_speech_prob) == (ref.tokens, ref.avg_logprob, ref.no_speech_prob)
    assert kernel.calls["prompt"] == (prompt is None) and kernel.calls["resume"] == (prompt is not None)
    assert kernel.calls["step"] >= len(ref.tokens)


# ---- the seam ------------------------------------------------------------------------------

def test_decode_window_keeps_mlx_whispers_own_decode_for_greedy_and_sampling(lanes, monkeypatch):
    """On the stock model, only beams go elsewhere: greedy and sampling are mlx-whisper's
    decode itself (the oracle)."""
    import mlx_whisper.decoding

    import whisperfast.decode.engine as engine

    calls = []
    assert engine.stock_decode is mlx_whisper.decoding.decode  # the function Whisper.decode is
    monkeypatch.setattr(engine, "stock_decode", lambda model, mel, options: calls.append(options) or "mlx-whisper")
    monkeypatch.setattr(engine, "StockBeamTask", None)
    mel = features(lanes, "stock")
    for kw in (dict(), dict(temperature=0.4), dict(temperature=0.6, best_of=5)):
        assert decode_window(lanes["stock"], mel, options(**kw)) == "mlx-whisper"
    assert calls == [options(), options(temperature=0.4), options(temperature=0.6, best_of=5)]
