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
