"""Silero VAD on MLX (silero.py) and the LSTM kernel under it (kernels/lstm.py), against
onnxruntime's run of the same ONNX model on real speech: the same probabilities to float
rounding, the same speech pieces; the weights read once per machine; the fused LSTM against
the composed one on a CUDA GPU."""

import sys
import uuid

import mlx.core as mx
import numpy as np
import pytest

from whisperfast import silero, silero_cuda, vad
from whisperfast.audio import SAMPLE_RATE, load_audio
from whisperfast.kernels import cuda_cache, lstm

from .conftest import SAMPLES, needs_cuda
from .test_cuda_cache import _toolchain

TOLERANCE = 1e-4  # probabilities: the port sums in other orders than onnxruntime (seen: 2e-6)


@pytest.fixture(scope="module")
def speech():
    """JFK, 20 s of faint noise, the TIMIT sentence, cut short of a whole group of frames."""
    jfk, timit = load_audio(SAMPLES / "jfk.wav"), load_audio(SAMPLES / "en_ldc93s1_timit_16k.wav")
    noise = np.random.default_rng(0).normal(0, 1e-3, 20 * SAMPLE_RATE).astype(np.float32)
    return np.concatenate([jfk, noise, timit])[:-1000]


@pytest.fixture(scope="module")
def onnx_probs(speech):
    """onnxruntime's run of the whole model: the reference every port is held to."""
    return vad.SileroVAD(net=False, split=False)(speech)


def _onnx_lstm(xw, r, h, c):
    """ONNX's LSTM equations in numpy, float64: the reference for both recurrences."""
    n, out = h.shape[0], []
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    for x in xw.astype(np.float64):
        g = x + r @ h
        i, o, f, z = sig(g[:n]), sig(g[n : 2 * n]), sig(g[2 * n : 3 * n]), np.tanh(g[3 * n :])
        c = f * c + i * z
        h = o * np.tanh(c)
        out.append(h)
    return np.array(out), c


def _random_lstm(steps, hidden=lstm.HIDDEN, seed=0):
    rng = np.random.default_rng(seed)
    xw = rng.normal(0, 1, (steps, 4 * hidden)).astype(np.float32)
    r = rng.normal(0, 0.15, (4 * hidden, hidden)).astype(np.float32)
    h, c = (rng.normal(0, 0.5, hidden).astype(np.float32) for _ in range(2))
    return xw, r, h, c


def test_the_composed_lstm_is_onnxs():
    xw, r, h, c = _random_lstm(40)
    with mx.stream(mx.cpu):
        hs, c_last = lstm.lstm_composed(*(mx.array(a) for a in (xw, r, h, c)))
        want_h, want_c = _onnx_lstm(xw, r, h.astype(np.float64), c.astype(np.float64))
        assert np.abs(np.array(hs) - want_h).max() < 1e-5 and np.abs(np.array(c_last) - want_c).max() < 1e-5
        empty, c0 = lstm.lstm_composed(mx.zeros((0, 4 * lstm.HIDDEN)), *(mx.array(a) for a in (r, h, c)))
        assert empty.shape == (0, lstm.HIDDEN) and np.array_equal(np.array(c0), c)


@pytest.mark.parametrize("port", ["net", "host"])
def test_the_port_gives_onnxruntimes_probabilities_and_pieces(speech, onnx_probs, tmp_path, knobs, port):
    """The MLX port on MLX's default device (here the CPU, its LSTM composed), and the CPU's
    default (the convolutions in numpy, silero.HostFrames, then onnxruntime's LSTM), over
    speech, noise and a last group cut short: within TOLERANCE of onnxruntime's whole model,
    so the same speech pieces under both of faster-whisper's settings."""
    knobs(WHISPERFAST_CACHE=str(tmp_path))
    if port == "net":
        model = vad.SileroVAD(net=True)
        assert model.net is not None and model.session is None and model.lstm is None
    else:
        model = vad.SileroVAD(net=False)
        assert model.host_frames is not None and model.lstm is not None and model._pool is None
    got = model(speech)
    assert got.shape == onnx_probs.shape == (-(-len(speech) // vad.FRAME),)
    assert onnx_probs.max() > 0.9 and onnx_probs.min() < 0.1
    assert np.abs(got - onnx_probs).max() < TOLERANCE
    for options in (vad.VadOptions(), vad.BATCHED_VAD):
        want = vad.get_speech_timestamps(speech, options, probs=onnx_probs)
        assert len(want) >= 2 and vad.get_speech_timestamps(speech, options, probs=got) == want


def test_the_port_carries_its_state_across_groups(speech, onnx_probs, tmp_path, knobs):
    """Groups of any size give the same probabilities: the LSTM state and the last frame's
    samples go from group to group. The port reads a group's probabilities with the next
    group's call: a call may complete several groups, or none, and what each call gives is
    every frame up to the last group it started, but that one."""
    knobs(WHISPERFAST_CACHE=str(tmp_path))
    model = vad.SileroVAD(net=True)
    stream = model.stream(300)
    got = np.concatenate([stream(speech[: 7 * SAMPLE_RATE]), stream(speech[7 * SAMPLE_RATE :]), stream.finish()])
    assert np.abs(got - onnx_probs).max() < TOLERANCE
    stream, cuts, got = model.stream(64), [1000, 70000, 70500, 200000, len(speech)], []
    for a, b in zip([0] + cuts, cuts):
        got.append(stream(speech[a:b]))
        started = b // (64 * vad.FRAME)  # whole groups so far
        assert sum(map(len, got)) == 64 * max(started - 1, 0)
    got = np.concatenate(got + [stream.finish()])
    assert got.shape == onnx_probs.shape and np.abs(got - onnx_probs).max() < TOLERANCE


def test_host_frames_are_the_cut_models_convolutions(speech, tmp_path, knobs):
    """silero.HostFrames (the STFT's windows and each convolution's taps as one product over
    the frames) against onnxruntime's run of the cut model's convolutions, on real speech and
    noise: the same features to float rounding (sums in other orders)."""
    knobs(WHISPERFAST_CACHE=str(tmp_path))
    cut = vad.SileroVAD(net=False, host=False)
    assert cut.host_frames is None and cut.convolutions is not None
    frames, _ = vad.model_frames(speech, np.zeros(vad.CONTEXT, np.float32))
    want = cut.convolutions.run(None, {"input": frames})[0]
    got = silero.HostFrames(_weights())(frames)
    assert got.shape == want.shape == (len(frames), 1, 128) and got.dtype == np.float32
    assert want.max() > 1 and (want == 0).any()  # the ReLUs' both sides
    # float32 sums of up to 387 terms in other orders, through five products: far under 1e-4 of
    # the largest feature; a wrong tap, padding, bias or ReLU moves features by whole units
    assert np.abs(got - want).max() < 1e-4 * float(np.abs(want).max())


def _weights():
    data = vad.model_path().read_bytes()
    return silero.read_weights(data, vad.cache_folder(data))


def test_the_weights_are_read_once_then_from_the_cache(tmp_path, knobs, monkeypatch):
    """The first port reads the ONNX file with the onnx package and keeps its weights; later
    ones need no onnx; a torn cache file is read again from the model."""
    knobs(WHISPERFAST_CACHE=str(tmp_path))
    first = _weights()
    cached = list(tmp_path.glob(f"vad/*/{silero.WEIGHTS_FILE}"))
    assert first is not None and len(cached) == 1
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "onnx", None)  # import onnx -> ImportError
        again = _weights()
        assert again.keys() == first.keys() and all(np.array_equal(again[k], first[k]) for k in first)
        cached[0].write_bytes(cached[0].read_bytes()[:100])
        assert _weights() is None  # torn, and no onnx to read the model again
    # onnx back as it was (the module itself: a fresh import beside its submodules, still
    # loaded, fails in some onnx versions)
    assert all(np.array_equal(_weights()[k], first[k]) for k in first)


def test_without_onnx_or_its_weights_onnxruntime_runs(tmp_path, knobs, monkeypatch):
    """No onnx package and no cached weights: the port cannot be made, onnxruntime's whole
    model serves instead, nothing raised."""
    knobs(WHISPERFAST_CACHE=str(tmp_path))
    monkeypatch.setitem(sys.modules, "onnx", None)
    model = vad.SileroVAD(net=True)
    assert model.net is None and model.session is not None and model.group == 256


def test_the_port_is_wanted_on_cuda_unless_switched_off(knobs, monkeypatch):
    """The choice SileroVAD() makes: the port where MLX computes on a CUDA GPU (here made to
    say so), onnxruntime with WHISPERFAST_VAD_GPU=0 or anywhere else."""
    from whisperfast.kernels import ops

    monkeypatch.setattr(ops, "on_cuda", lambda: True)
    knobs(WHISPERFAST_VAD_GPU="1")
    assert vad._net_wanted()
    knobs(WHISPERFAST_VAD_GPU="0")
    assert not vad._net_wanted()
    monkeypatch.setattr(ops, "on_cuda", lambda: False)
    knobs(WHISPERFAST_VAD_GPU="1")
    assert not vad._net_wanted()


_F32 = mx.float32
_LSTM_INPUTS = [(n, 2 if n in ("xw", "r", "ri") else 1) for n in lstm.INPUTS]
# the CUDA kernels as they are launched: (name, header, body, inputs (name, ndim), outputs, template, threads a block)
_CUDA_KERNELS = {
    **{f"lstm-cluster{cl}": ("wf_lstm_sequence", lstm.header(cl), lstm._SOURCE, _LSTM_INPUTS, lstm.OUTPUTS,
                             [("H", lstm.HIDDEN), ("REG", lstm.REG if cl == 1 else lstm.HIDDEN), ("CL", cl)],
                             4 * lstm.HIDDEN // cl) for cl in (1, 2, 4, 8)},
    "features": ("wf_silero_features", "", silero_cuda._SOURCE,
                 [(n, 1 if n.startswith("b") else 3 if n[1:].isdigit() else 2) for n in silero_cuda.INPUTS],
                 ("xw",), [], silero_cuda.THREADS),
}


@pytest.mark.parametrize("kernel", sorted(_CUDA_KERNELS))
def test_the_kernels_sources_compile_for_sm_90a(kernel):
    """The source MLX builds for each kernel compiles with NVRTC (where it and MLX's headers
    are at hand), within its block's share of the registers, without spills."""
    _, nv, options = _toolchain()
    name, header, body, inputs, outputs, template, threads = _CUDA_KERNELS[kernel]
    func = cuda_cache.kernel_name(name, template)
    source = cuda_cache.build_source(func, header, body, [(n, _F32, d) for n, d in inputs], [(n, _F32) for n in outputs],
                                     template)
    source += f"\n__device__ int wf_probe_{uuid.uuid4().hex} = 1;\n"  # new code: NVRTC reports only on code it has not seen
    binary, _ = nv.compile(source, list(options) + ["--ptxas-options=-v"], cuda_cache.HEADERS, [f"mlx::core::cu::{func}"])
    report = nv.last_log
    registers = int(report.split(" registers")[0].rsplit(" ", 1)[1])
    assert binary[:4] == b"\x7fELF" and registers <= min(255, 65536 // threads)
    assert "0 bytes spill stores" in report
    cluster = dict(template).get("CL", 1)
    if cluster > 1:  # the blocks launch as a cluster of CL: PTX's .reqnctapercluster
        ptx, _ = nv.compile(source, [o.replace("--gpu-architecture=sm_", "--gpu-architecture=compute_") for o in options],
                            cuda_cache.HEADERS, [f"mlx::core::cu::{func}"])
        assert f".reqnctapercluster {cluster}, 1, 1" in ptx.decode()


@needs_cuda
@pytest.mark.parametrize("steps", [0, 1, 2, 37, 2048])
def test_the_fused_lstm_is_the_composed_one(steps):
    xw, r, h, c = (mx.array(a) for a in _random_lstm(steps, seed=steps))
    hs, c_last = lstm.lstm_fused(xw, r, h, c)
    want_h, want_c = lstm.lstm_composed(xw, r, h, c)
    assert hs.shape == (steps, lstm.HIDDEN)
    if steps:
        assert mx.abs(hs - want_h).max().item() < 1e-5
    assert mx.abs(c_last - want_c).max().item() < 1e-5


@needs_cuda
@pytest.mark.parametrize("cluster, reg", [(1, 64), (2, None), (4, None), (4, 64), (8, None)])
def test_the_fused_lstm_gives_one_blocks_bits_however_it_is_shared(cluster, reg):
    """A step's rows shared over a cluster's blocks (h handed between their shared memories),
    or some of R read through L1: every row's sum is still one thread's, in one order, so
    the bits are one block's with REG columns in registers. Each case has its own inputs (a
    kernel's outputs start as whatever memory MLX hands it: a case before with the same inputs
    could have left the right bits there)."""
    if cluster > 1 and not lstm.has_clusters():
        pytest.skip("this GPU has no thread block clusters (compute capability under 9)")
    xw, r, h, c = (mx.array(a) for a in _random_lstm(2085, seed=100 * cluster + (reg or 0)))
    want = lstm.lstm_fused(xw, r, h, c, cluster=1, reg=lstm.REG)
    got = lstm.lstm_fused(xw, r, h, c, cluster=cluster, reg=reg)
    composed = lstm.lstm_composed(xw[:64], r, h, c)[0]
    assert mx.abs(got[0][:64] - composed).max().item() < 1e-5  # the recurrence itself, not leftovers
    assert all(np.array_equal(np.array(a), np.array(b)) for a, b in zip(got, want))


def test_the_fused_lstms_arguments_are_checked():
    xw, r, h, c = (mx.array(a) for a in _random_lstm(3))
    with pytest.raises(ValueError, match="cluster"):
        lstm.lstm_fused(xw, r, h, c, cluster=3)
    with pytest.raises(ValueError, match="reg"):
        lstm.lstm_fused(xw, r, h, c, cluster=1, reg=128)
    if not lstm.has_clusters():
        with pytest.raises(ValueError, match="compute capability 9"):
            lstm.lstm_fused(xw, r, h, c, cluster=4)


@needs_cuda
def test_on_cuda_the_vad_is_the_port_with_the_fused_lstm(speech, onnx_probs, tmp_path, knobs):
    knobs(WHISPERFAST_CACHE=str(tmp_path))
    model = vad.SileroVAD()
    assert model.net is not None and model.group == 2048
    assert lstm.fused_available(lstm.HIDDEN, mx.float32)
    assert np.abs(model(speech) - onnx_probs).max() < TOLERANCE


@needs_cuda
def test_the_fused_input_projection_is_the_composed_one(speech, tmp_path, knobs):
    """silero_cuda's kernel (STFT, convolutions, W x + b in float32 FMAs) against the port's MLX
    ops on the CPU (float32 throughout; on the GPU MLX may use TF32), frames of real speech and
    noise, a last block of frames not full."""
    knobs(WHISPERFAST_CACHE=str(tmp_path))
    net = vad.SileroVAD().net
    assert net.cuda
    n = len(speech) // vad.FRAME  # 1058 frames: the last block of 4 holds 2
    frames, _ = vad.model_frames(speech[: n * vad.FRAME], np.zeros(vad.CONTEXT, np.float32))
    got = silero_cuda.input_projection(mx.array(frames), net.cuda_weights)
    with mx.stream(mx.cpu):
        want = net.features(mx.array(frames)) @ net.w_in + net.bias
        assert got.shape == want.shape == (n, 4 * lstm.HIDDEN) and n % silero_cuda.F
        assert np.abs(np.array(got) - np.array(want)).max() < 1e-3 * max(1.0, float(mx.abs(want).max()))
