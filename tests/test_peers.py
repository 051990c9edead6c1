"""bench's peer lanes (whisperfast/peers/): the same weights in other engines. The ggml file is
checked on any machine; each engine's lane runs where its package is installed (`uv sync
--extra peers`; the torch peers by hand, README), and must hear JFK as whisperfast does."""

import importlib.util
import struct
import sys

import numpy as np
import pytest

from tests.conftest import SAMPLES, needs_base
from tests.text import error_rate

from whisperfast.audio import load_audio
from whisperfast.errors import WhisperfastError
from whisperfast.peers import PEERS, ggml, peer
from whisperfast.peers.weights import dims, openai_state


def installed(*packages):
    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    return pytest.mark.skipif(bool(missing), reason=f"needs {', '.join(missing)}")


@pytest.fixture(scope="module")
def jfk():
    return load_audio(SAMPLES / "jfk.wav")


@pytest.fixture(scope="module")
def stock_jfk(tiny, jfk):
    from whisperfast.pipeline import transcribe

    return transcribe(tiny, jfk).text


def test_openai_state_is_the_models_weights(tiny):
    """openai-whisper's names and layouts, the values the model computes with."""
    state, w = openai_state(tiny.whisper), tiny.whisper
    assert "decoder.blocks.0.mlp.0.weight" in state and not any(".mlp1." in k for k in state)
    conv = np.array(w.encoder.conv1.weight).astype(np.float32)  # MLX's (out, kernel, in)
    assert state["encoder.conv1.weight"].shape == (384, 80, 3)  # torch's (out, in, kernel)
    assert np.array_equal(state["encoder.conv1.weight"], conv.transpose(0, 2, 1))
    assert np.array_equal(state["encoder.positional_embedding"], np.array(w.encoder._positional_embedding).astype(np.float32))
    assert np.array_equal(state["decoder.token_embedding.weight"],
                          np.array(w.decoder.token_embedding.weight).astype(np.float32))


def test_openai_state_refuses_a_quantized_model():
    from whisperfast.errors import WhisperfastError
    from whisperfast.pipeline import load

    with pytest.raises(WhisperfastError, match="quantized"):
        openai_state(load("tiny.en", quantize=8).whisper)


def test_ggml_file_holds_every_tensor_as_whisper_cpp_reads_it(tiny, tmp_path):
    out = tmp_path / "ggml-tiny.en.bin"
    ggml.write(tiny.whisper, out)
    assert not list(tmp_path.glob("*.partial"))
    with pytest.raises(WhisperfastError, match="exists"):
        ggml.write(tiny.whisper, out)  # a file there is never replaced
    h, tensors = read_header(out)
    d = dims(tiny.whisper)
    assert {k: h[k] for k in d} == d and h["ftype"] == 1
    assert h["tokens"] == 50256  # gpt2.tiktoken's; whisper.cpp adds the specials up to n_vocab
    assert list(tensors) == ggml.tensor_order(d)
    state = openai_state(tiny.whisper)
    for name, (shape, ftype) in tensors.items():
        want = state[name].shape if name not in ("encoder.conv1.bias", "encoder.conv2.bias") else (384, 1)
        assert shape == want, name
        assert ftype == (0 if len(shape) < 2 or name in ggml.F32_NAMES else 1), name


def test_ggml_tensor_data_round_trips(tiny, tmp_path):
    """The token embedding's bytes as written are its float16 values (the file's layout holds)."""
    out = tmp_path / "m.bin"
    ggml.write(tiny.whisper, out)
    raw = out.read_bytes()
    key = b"decoder.token_embedding.weight"
    at = raw.index(key) + len(key)
    emb = np.frombuffer(raw, dtype="<f2", count=51864 * 384, offset=at).reshape(51864, 384)
    assert np.array_equal(emb, np.array(tiny.whisper.decoder.token_embedding.weight).astype(np.float16))


def read_header(path) -> tuple[dict[str, int], dict[str, tuple[tuple[int, ...], int]]]:
    """(hyperparameters, {tensor name: (torch-order shape, type)}) of a ggml file, read as
    whisper.cpp's loader walks it."""
    with path.open("rb") as f:
        magic, *hp = struct.unpack("12i", f.read(48))
        assert magic == ggml.MAGIC, hex(magic)
        h = dict(zip(ggml.HPARAMS + ("ftype",), hp))
        n_mel, n_fft = struct.unpack("ii", f.read(8))
        f.seek(4 * n_mel * n_fft, 1)
        (n_tokens,) = struct.unpack("i", f.read(4))
        for _ in range(n_tokens):
            (n,) = struct.unpack("i", f.read(4))
            f.seek(n, 1)
        h["tokens"] = n_tokens
        tensors = {}
        while head := f.read(12):
            n_dims, n_name, ftype = struct.unpack("iii", head)
            shape = struct.unpack(f"{n_dims}i", f.read(4 * n_dims))[::-1]
            name = f.read(n_name).decode()
            tensors[name] = (shape, ftype)
            f.seek(int(np.prod(shape)) * (2 if ftype == 1 else 4), 1)
    return h, tensors


def _same_words(a: str, b: str) -> bool:
    return error_rate(a, b) == 0.0


@installed("pywhispercpp")
def test_whisper_cpp_lane_hears_jfk(tiny, jfk, stock_jfk):
    p = peer("whisper.cpp", tiny, 1, gpu=False)
    (text,) = p.run([jfk])
    assert _same_words(stock_jfk, text), text
    assert "whisper.cpp" in p.how and "threads" in p.how


@installed("faster_whisper")
def test_faster_whisper_lanes_hear_jfk(tiny, jfk, stock_jfk):
    p = peer("faster-whisper", tiny, 1, gpu=False)
    assert _same_words(stock_jfk, p.run([jfk])[0])
    b = peer("faster-whisper", tiny, 4, gpu=False)
    assert "BatchedInferencePipeline" in b.how
    assert _same_words(stock_jfk, b.run([jfk])[0])


@installed("torch", "whisper")
def test_openai_whisper_lane_says_what_stock_says(tiny, jfk, stock_jfk):
    """openai-whisper on the same float32 weights decodes as mlx-whisper does: the same text."""
    p = peer("openai-whisper", tiny, 1, gpu=False)
    (text,) = p.run([jfk])
    assert text.strip() == stock_jfk.strip()


@installed("torch", "transformers")
def test_transformers_pipeline_lane_is_greedy_and_hears_jfk(tiny, jfk, stock_jfk):
    """transformers' pipeline adds 5 beams unless told otherwise: every generate call must be greedy."""
    from whisperfast.peers.torch_peers import hf_pipeline

    pipe, call, how = hf_pipeline(tiny, gpu=False)
    seen, generate = [], pipe.model.generate
    pipe.model.generate = lambda *a, **k: seen.append(k) or generate(*a, **k)
    texts = [o["text"] for o in pipe([jfk, jfk[: 16000 * 5]], batch_size=2, **call)]
    assert seen and all(k.get("num_beams") == 1 and k.get("do_sample") is False for k in seen), seen
    assert _same_words(stock_jfk, texts[0]), texts[0]
    assert 0 < len(texts[1].split()) < len(texts[0].split())
    assert "greedy" in how


@pytest.mark.parametrize("lane", PEERS)
def test_a_peer_without_its_package_is_one_error(tiny, lane, monkeypatch):
    """Each lane names what to install when an import it needs fails (here: made to fail)."""
    module = {"faster-whisper": "faster_whisper", "openai-whisper": "whisper", "transformers": "transformers",
              "whisper.cpp": "pywhispercpp"}[lane]
    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    install = {"whisper": "openai-whisper", "pywhispercpp": "pywhispercpp", "faster_whisper": "faster-whisper",
               "transformers": "transformers"}[module]
    with pytest.raises(WhisperfastError, match=f"lane '{lane}' needs .*{install}"):
        peer(lane, tiny, 1, gpu=False)


@needs_base
def test_ct2_dir_joins_a_split_bundle_once():
    """base's model.bin comes in two packages; faster-whisper reads one folder: joined, checked
    against the pinned digest, with the bundle's tokenizer and config beside it."""
    import hashlib

    from whisperfast.models import EMBEDDED, ct2_dir

    d = ct2_dir("base")
    assert hashlib.sha256((d / "model.bin").read_bytes()).hexdigest() == EMBEDDED["base"].sha256
    assert {"config.json", "tokenizer.json", "vocabulary.txt"} <= {p.name for p in d.iterdir()}
    mtime = (d / "model.bin").stat().st_mtime_ns
    assert ct2_dir("base") == d and (d / "model.bin").stat().st_mtime_ns == mtime  # not written again
    assert (ct2_dir("tiny.en") / "model.bin").exists()  # one part: the package's own folder


@installed("pywhispercpp", "matplotlib")
def test_bench_runs_a_peer_lane_beside_whisperfasts(tiny, jfk, tmp_path):
    """bench's peer lane: text compared with stock's, its setup in the notes, no stage times, and
    the plot draws its total."""
    from dataclasses import replace

    from whisperfast import bench
    from whisperfast.plot import plot

    lanes, notes = bench.run_pipeline(tiny, [jfk], ("stock", "whisper.cpp"), runs=1, warmup=0)
    peer_lane = lanes["whisper.cpp"]
    assert isinstance(peer_lane.matches_stock, bool) and peer_lane.mel_ms is None and peer_lane.tokens == 0
    assert peer_lane.total_ms.median > 0 and _same_words(lanes["stock"].transcript, peer_lane.transcript)
    assert any(n.startswith("whisper.cpp: whisper.cpp (pywhispercpp) on the CPU") for n in notes)
    report = replace(bench.BenchReport(device="cpu", mlx_version="x", dtype="float32", blas="", model="tiny.en",
                                       audio=["jfk"], audio_seconds=11.0, runs=1, warmup=0, batch_size=1), lanes=lanes)
    png = tmp_path / "peers.png"
    plot(report, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
