"""The settings' parsing (config.py): the knobs' defaults, and a bad value refused by name."""

import pytest

from whisperfast.config import Config, _parse
from whisperfast.errors import WhisperfastError


def test_defaults_without_the_environment():
    c = _parse({})
    assert c.cuda_step and c.kernel_pick_rows == Config.kernel_pick_rows == 3 and c.cross_chunks is None


def test_kernel_pick_rows_is_a_positive_whole_number():
    assert _parse({"WHISPERFAST_KERNEL_PICK_ROWS": "1000"}).kernel_pick_rows == 1000
    for bad in ("0", "-1", "x", "2.5"):
        with pytest.raises(WhisperfastError, match="WHISPERFAST_KERNEL_PICK_ROWS"):
            _parse({"WHISPERFAST_KERNEL_PICK_ROWS": bad})


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
