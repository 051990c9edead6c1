"""kernels/pinned.py: blocks through pinned host memory give MLX's own copies' values, bit for
bit, and a buffer is never written while a kernel may still read it (CUDA only, but for a
machine without the driver)."""

import mlx.core as mx
import numpy as np
import pytest

from whisperfast.kernels import pinned
from whisperfast.kernels.pinned import PinnedUpload, to_device

from .conftest import needs_cuda


def test_no_driver_no_pool(monkeypatch):
    """Without libcuda (this CPU machine, a driver-less container) there is no pool, and
    batched mode keeps MLX's own copies."""
    monkeypatch.setattr(pinned, "_driver", lambda: None)
    assert PinnedUpload.make(1 << 16) is None


def _busy_gpu() -> mx.array:
    """Seconds of queued work on the default stream, ahead of what is queued next."""
    a = mx.random.normal((4096, 4096))
    for _ in range(60):
        a = (a @ a) * 1e-3
    mx.async_eval(a)
    return a


@pytest.fixture
def upload():
    stage = PinnedUpload.make(64 * 1024, slots=2)
    assert stage is not None, "the driver gave no pinned memory"
    yield stage
    stage.close()


@needs_cuda
@pytest.mark.parametrize("dtype", [np.int16, np.float32])
@pytest.mark.parametrize("n", [1, 7, 8, 4096, 16001])  # tails shorter than a thread's 16 bytes, and none
def test_a_block_is_mlxs_copy_bit_for_bit(upload, dtype, n):
    rng = np.random.default_rng(n)
    block = (rng.integers(-32768, 32768, n).astype(np.int16) if dtype == np.int16
             else rng.standard_normal(n).astype(np.float32))
    out = upload(block)
    assert out.dtype == mx.float32 and out.shape == (n,)
    np.testing.assert_array_equal(np.array(out).view(np.uint32), np.array(to_device(block)).view(np.uint32))


@needs_cuda
def test_more_blocks_than_buffers_each_keep_their_own_values(upload):
    """Ten blocks through two buffers, queued behind seconds of other work, none evaluated by
    the caller before the last is written: each must still hold its own samples (a buffer
    rewritten under a pending read would give a later block's), so the host waited."""
    busy = _busy_gpu()
    blocks = [np.full(16000, k * 100, np.int16) for k in range(10)]
    outs = [upload(b) for b in blocks]
    for k, out in enumerate(outs):
        assert (np.array(out) == np.float32(k * 100 * 2.0 ** -15)).all(), k
    assert upload.waited > 0
    mx.eval(busy)


@needs_cuda
def test_blocks_longer_than_a_buffer_or_of_other_kinds_are_mlxs_copies(upload):
    """A block of 256 KiB goes through the 64 KiB buffers in pieces (more pieces than
    buffers), joined on the device; a strided block is copied first; a float64 block is MLX's
    own copy; an empty one is empty."""
    big = np.arange(64 * 1024, dtype=np.float32)
    for block in (big, big.astype(np.int16), big[::3], np.arange(10, dtype=np.float64), np.zeros(0, np.int16)):
        out = upload(block)
        assert out.dtype == mx.float32 and out.shape == block.shape
        np.testing.assert_array_equal(np.array(out), np.array(to_device(block)))


@needs_cuda
def test_the_shared_one_is_made_once():
    assert pinned.shared(1 << 16) is pinned.shared(1 << 16) is not None
    assert pinned.shared(1 << 16).for_process  # never closed, not even by the collector at exit


@needs_cuda
def test_close_waits_for_the_reads_and_frees_once(upload):
    """Closing with a read still queued behind other work waits for it (freed under it, the
    kernel would read unmapped memory); then the pool refuses blocks."""
    busy = _busy_gpu()
    out = upload(np.ones(1000, np.float32))
    upload.close()
    upload.close()  # a second close is nothing
    assert float(mx.sum(out)) == 1000.0
    with pytest.raises(RuntimeError, match="after close"):
        upload(np.ones(10, np.float32))
    mx.eval(busy)
