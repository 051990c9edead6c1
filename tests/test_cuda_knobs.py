"""The CUDA step's test knob, checked up front on any machine: a grid larger than the GPU's SMs
could leave a block waiting for the others at a grid barrier, so it is refused, not run."""

import pytest

from whisperfast.errors import WhisperfastError
from whisperfast.decode.cuda import launch as cuda_step


@pytest.fixture
def sms(monkeypatch):
    monkeypatch.setattr(cuda_step, "_sm_count", lambda: 132)  # an H100's or H200's SMs
    cuda_step.grid_blocks.cache_clear()
    yield
    cuda_step.grid_blocks.cache_clear()


@pytest.mark.parametrize("knob, blocks", [("", 132), ("1", 1), ("64", 64), ("132", 132)])
def test_step_blocks_default_and_fewer(sms, knobs, knob, blocks):
    knobs(WHISPERFAST_STEP_BLOCKS=knob)
    assert cuda_step.grid_blocks() == blocks


@pytest.mark.parametrize("knob", ["133", "0", "-4", "many"])
def test_step_blocks_that_could_deadlock_are_an_error(sms, knobs, knob):
    knobs(WHISPERFAST_STEP_BLOCKS=knob)
    with pytest.raises(WhisperfastError, match="1 to 132"):
        cuda_step.grid_blocks()
