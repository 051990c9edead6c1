"""The settings' parsing (config.py): the knobs' defaults, and a bad value refused by name."""

import pytest

from whisperfast.config import Config, _parse
from whisperfast.errors import WhisperfastError


def test_defaults_without_the_environment():
    c = _parse({})
    assert c.cuda_step and c.kernel_pick_rows == Config.kernel_pick_rows == 3 and c.cross_chunks is None


def test_kernel_pick_rows_is_a_positive_whole_number():
    assert _parse({"WHISPERFAST_KERNEL_PICK_ROWS": "1000"}).kernel_pick_rows == 1000
    for bad in ("0", "-1", "x", "2.5", "\u00b2"):  # "²" passed str.isdigit, then int() raised ValueError
        with pytest.raises(WhisperfastError, match="WHISPERFAST_KERNEL_PICK_ROWS"):
            _parse({"WHISPERFAST_KERNEL_PICK_ROWS": bad})


def test_switches_take_words_and_refuse_the_rest():
    """Only "0" turned a switch off ("false" left it on), and WHISPERFAST_DEBUG=0 turned debugging on."""
    for off in ("0", "false", "No", " off "):
        c = _parse({"WHISPERFAST_CPU_SIMD": off, "WHISPERFAST_CUDA_STEP": off, "WHISPERFAST_DEBUG": off})
        assert not c.cpu_simd and not c.cuda_step and not c.debug, off
    for on in ("1", "true", "YES", "on"):
        c = _parse({"WHISPERFAST_CPU_SIMD": on, "WHISPERFAST_DEBUG": on})
        assert c.cpu_simd and c.debug, on
    assert _parse({"WHISPERFAST_CPU_SIMD": ""}).cpu_simd and not _parse({"WHISPERFAST_DEBUG": ""}).debug
    for bad in ("2", "maybe", "nope"):
        with pytest.raises(WhisperfastError, match="WHISPERFAST_MALLOC"):
            _parse({"WHISPERFAST_MALLOC": bad})


def test_the_cache_knob_expands_the_home_folder():
    from pathlib import Path

    assert _parse({"WHISPERFAST_CACHE": "~/wf"}).cache == Path.home() / "wf"  # was a folder named "~" here


def test_a_bad_knob_is_one_error_line_before_any_command():
    """It raised a traceback at `import whisperfast` (the BLAS preload reads the settings), for every command."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, WHISPERFAST_CROSS_CHUNKS="abc")
    r = subprocess.run([sys.executable, "-c", "from whisperfast.cli import main; main()", "info"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1 and r.stdout == "", r
    assert r.stderr.splitlines() == ["Error: WHISPERFAST_CROSS_CHUNKS='abc': expected a positive integer"], r.stderr


def _stub(n_state):
    """What kernel_picks reads of a model: its dims, and a decoder whose CudaStep was found not
    to fit (so the kernel's rows are taken as fp16's)."""
    from types import SimpleNamespace

    return SimpleNamespace(dims=SimpleNamespace(n_text_state=n_state, n_audio_ctx=1500, n_text_ctx=448),
                           decoder=SimpleNamespace(_whisperfast_cuda=None))


def test_the_kernel_picks_where_a_group_without_them_holds_no_more_rows(knobs):
    from whisperfast.decode.cuda.step import kernel_picks

    tiny, turbo = _stub(384), _stub(1280)
    assert kernel_picks(tiny, 3) and not kernel_picks(tiny, 4) and not kernel_picks(tiny, 32)  # groups of 3 vs 8
    assert kernel_picks(turbo, 32)  # 1280-wide fp16 rows: 3 a group either way, so the picks stay
    knobs(WHISPERFAST_KERNEL_PICK_ROWS="1000")
    assert kernel_picks(tiny, 32)


def test_kernel_layer_bytes_is_a_positive_whole_number():
    assert _parse({}).kernel_layer_bytes == Config.kernel_layer_bytes
    assert _parse({"WHISPERFAST_KERNEL_LAYER_BYTES": "1000"}).kernel_layer_bytes == 1000
    with pytest.raises(WhisperfastError, match="WHISPERFAST_KERNEL_LAYER_BYTES"):
        _parse({"WHISPERFAST_KERNEL_LAYER_BYTES": "0"})


# Whisper's decoder sizes: width, layers (the vocabulary 51,866 tokens)
SIZES = {"tiny": (384, 4), "base": (512, 6), "small": (768, 12), "medium": (1024, 24), "large-v3": (1280, 32),
         "large-v3-turbo": (1280, 4)}


def _weight_bytes(d, layers, vocab=51866, itemsize=2):
    """CudaStep.weight_bytes of a float decoder: a layer's 14 d^2 of matrices (q|k|v, out,
    cross q, cross out, the MLP's two) and 17 d of norms and biases; the last norm; the vocabulary."""
    return itemsize * (layers * (14 * d * d + 17 * d) + 2 * d + vocab * d)


def test_the_weights_a_kernel_step_reads_are_counted_as_they_are_packed():
    import mlx.core as mx
    from mlx_whisper.whisper import TextDecoder

    from whisperfast.decode.cuda.step import CudaStep

    decoder = TextDecoder(51864, 448, 384, 6, 4, mx.float16)
    decoder.set_dtype(mx.float16)
    assert CudaStep(decoder).weight_bytes == _weight_bytes(384, 4, vocab=51864)


def _pays(name, rows):
    """kernel_pays for a float16 decoder of `name`'s size."""
    from types import SimpleNamespace

    import mlx.core as mx

    from whisperfast.decode.cuda.step import kernel_pays

    d, layers = SIZES[name]
    model = _stub(d)
    model.dims.n_text_layer = layers
    step = SimpleNamespace(dtype=mx.float16, bits=0, weight_bytes=_weight_bytes(d, layers))
    return kernel_pays(model, step, rows)


def test_wide_models_leave_the_kernel_at_many_rows_only(knobs):
    """The kernel reads the weights once a group of rows (3 where rows are 1280 wide): past
    kernel_layer_bytes a layer a step, the flat step runs the batch. One row and beams of 5 stay
    on the kernel at every size, and so do tiny's and base's batches of 32 (faster there,
    benchmarks/h100-session28/); large-v3-turbo's shapes leave it past 12 rows (a tie at 12)."""
    assert all(_pays(name, rows) for name in SIZES for rows in (1, 5))
    assert _pays("tiny", 32) and _pays("base", 32)
    assert _pays("large-v3-turbo", 12) and not _pays("large-v3-turbo", 13) and not _pays("large-v3-turbo", 32)
    knobs(WHISPERFAST_KERNEL_LAYER_BYTES=str(10**12))
    assert _pays("large-v3-turbo", 32)
