"""Host samples to a CUDA device through page-locked memory, read in place by a kernel.

An MLX array made from host data on CUDA lives in managed memory, whose pages move: the host
writing fresh pages costs ~0.3 ms a MB and the GPU's first read of them ~0.45 ms a MB more
(benchmarks/h100-session40/), where the bytes themselves cross the bus at tens of GB/s.
`PinnedUpload` copies each block into one of a few page-locked (pinned) host buffers, mapped
into the device's address space, and a kernel reads it from there into a device array:
float32 samples as they are, int16 ones times 2^-15 (exact: a power of two, what
`mx.array(x) * 2**-15` gives). A buffer is written again only once the kernel that read it
last has ended.

Only the CUDA driver's own calls (ctypes, libcuda) are made here, in the primary context MLX
computes in. Knows nothing of audio files or Whisper."""

from __future__ import annotations

import ctypes
import threading
import time
from functools import lru_cache
from typing import List, Optional

import mlx.core as mx
import numpy as np

from ..config import config
from ..files import write_atomic
from .cuda_cache import CachedCudaKernel

DEVICE = 0  # MLX's default GPU (mx.gpu), as _cuda_context.DEVICE
_PORTABLE, _DEVICEMAP = 0x01, 0x02  # CU_MEMHOSTALLOC_*
THREADS = 256
_VECTOR = 16  # bytes a thread reads at once

# meta = [pointer, count]: a block's pinned samples, read where the device maps them
_SOURCE = """
    const T* src = reinterpret_cast<const T*>(meta[0]);
    const int64_t n = meta[1];
    constexpr int V = 16 / sizeof(T);
    const int64_t first = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * V;
    if (first >= n) return;
    alignas(16) T v[V];
    if (first + V <= n) {
        *reinterpret_cast<int4*>(v) = *reinterpret_cast<const int4*>(src + first);
    } else {
        for (int i = 0; i < V; ++i) v[i] = first + i < n ? src[first + i] : T(0);
    }
    #pragma unroll
    for (int i = 0; i < V; ++i)
        if (first + i < n) out[first + i] = SCALED ? static_cast<float>(v[i]) * 3.0517578125e-05f : static_cast<float>(v[i]);
"""


@lru_cache(maxsize=1)
def _kernel() -> CachedCudaKernel:
    # compiled once per machine, then read from the cache (cuda_cache.py)
    return CachedCudaKernel("wf_pinned_read", ("meta",), ("out",), _SOURCE, "", config().cache / "kernels", write_atomic)


@lru_cache(maxsize=1)
def _driver() -> Optional[ctypes.CDLL]:
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    cuda.cuMemHostAlloc.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t, ctypes.c_uint]
    cuda.cuMemHostGetDevicePointer_v2.argtypes = [ctypes.POINTER(ctypes.c_uint64), ctypes.c_void_p, ctypes.c_uint]
    cuda.cuMemFreeHost.argtypes = [ctypes.c_void_p]
    cuda.cuCtxPushCurrent_v2.argtypes = [ctypes.c_void_p]
    cuda.cuCtxPopCurrent_v2.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
    return cuda


class _Context:
    """DEVICE's primary context made current on this thread for the calls inside."""

    def __init__(self, cuda: ctypes.CDLL):
        self.cuda, self.context = cuda, ctypes.c_void_p()
        device = ctypes.c_int()
        if cuda.cuInit(0) or cuda.cuDeviceGet(ctypes.byref(device), DEVICE) or \
                cuda.cuDevicePrimaryCtxRetain(ctypes.byref(self.context), device):
            raise OSError("no CUDA primary context")
        self.device = device

    def __enter__(self):
        if self.cuda.cuCtxPushCurrent_v2(self.context):
            raise OSError("cuCtxPushCurrent failed")
        return self

    def __exit__(self, *exc):
        self.cuda.cuCtxPopCurrent_v2(ctypes.byref(ctypes.c_void_p()))

    def release(self) -> None:
        self.cuda.cuDevicePrimaryCtxRelease_v2(self.device)


def to_device(block: np.ndarray) -> mx.array:
    """A block's float32 samples on MLX's default device (int16 ones times 2^-15): MLX's own
    copy, through managed memory on CUDA."""
    return mx.array(block) * 2.0 ** -15 if block.dtype == np.int16 else mx.array(block, mx.float32)


class PinnedUpload:
    """Blocks (numpy int16 or float32, 1-D) -> float32 MLX arrays on a CUDA device, through
    `slots` pinned buffers of `capacity` bytes used in turn; a longer block goes in pieces,
    joined on the device. `make` is None where the driver will not give pinned memory; `shared`
    keeps one for the process. `close()` frees it once every kernel reading it has ended."""

    def __init__(self, cuda: ctypes.CDLL, context: _Context, capacity: int, slots: int):
        self.cuda, self.context, self.capacity = cuda, context, capacity
        self.pointers: List[int] = []  # the buffers, as `make` allocates them
        self.devices: List[int] = []  # where the device maps each
        # the array each buffer last gave (kept until the buffer's next block: up to `slots`
        # blocks on the device after their reader let go of them)
        self.last: List[Optional[mx.array]] = [None] * slots
        self.metas: List[tuple] = [(0, None)] * slots  # each buffer's last (count, kernel arguments)
        self.turn = 0
        self.lock = threading.Lock()  # a shared one's buffers, taken in turn by any thread
        self.waited = 0.0  # seconds the host waited for a buffer's last kernel (too few buffers)
        self.closed = False
        self.for_process = False  # `shared`'s: never closed

    @classmethod
    def make(cls, capacity: int, slots: int = 8) -> Optional["PinnedUpload"]:
        cuda = _driver()
        if cuda is None:
            return None
        try:
            context = _Context(cuda)
        except OSError:
            return None
        stage = cls(cuda, context, capacity, slots)
        try:
            with context:
                for _ in range(slots):
                    p, d = ctypes.c_void_p(), ctypes.c_uint64()
                    if cuda.cuMemHostAlloc(ctypes.byref(p), capacity, _PORTABLE | _DEVICEMAP) or not p.value:
                        break
                    stage.pointers.append(p.value)
                    if cuda.cuMemHostGetDevicePointer_v2(ctypes.byref(d), p, 0):
                        break
                    stage.devices.append(d.value)
        except OSError:  # the context could not be made current
            pass
        if len(stage.devices) < slots:
            stage.close()
            return None
        return stage

    def __call__(self, block: np.ndarray) -> mx.array:
        """`block`'s float32 values on the device (int16 ones times 2^-15), queued, as
        `to_device` gives them. Other dtypes or shapes are its copies."""
        block = np.ascontiguousarray(block)
        if block.dtype not in (np.int16, np.float32) or block.ndim != 1:
            return to_device(block)
        if not len(block):
            return mx.zeros((0,), mx.float32)  # (a launch of no threads is an error)
        per = self.capacity // block.itemsize
        if len(block) > per:
            return mx.concatenate([self(block[a : a + per]) for a in range(0, len(block), per)])
        with self.lock:
            if self.closed:
                raise RuntimeError("PinnedUpload used after close()")
            k, self.turn = self.turn, (self.turn + 1) % len(self.pointers)
            if self.last[k] is not None:
                t = time.perf_counter()
                mx.eval(self.last[k])  # the kernel that read this buffer last has ended
                self.waited += time.perf_counter() - t
                self.last[k] = None
            ctypes.memmove(self.pointers[k], block.ctypes.data, block.nbytes)
            n, meta = len(block), self.metas[k][1]
            if self.metas[k][0] != n:  # (a file's blocks but its last are one length)
                meta = mx.array([self.devices[k], n], mx.int64)
                self.metas[k] = (n, meta)
            lanes = _VECTOR // block.itemsize
            out = _kernel()(inputs=[meta], template=[("T", mx.int16 if block.dtype == np.int16 else mx.float32),
                                                     ("SCALED", block.dtype == np.int16)],
                            grid=(-(-n // (lanes * THREADS)) * THREADS, 1, 1), threadgroup=(THREADS, 1, 1),
                            output_shapes=[(n,)], output_dtypes=[mx.float32])[0]
            self.last[k] = out  # before it is queued: were queueing to fail, the next turn still waits
            mx.async_eval(out)
        return out

    def close(self) -> None:
        """Wait for the kernels still reading, then free the buffers; a second close is nothing."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            mx.eval([a for a in self.last if a is not None])
            try:
                with self.context:
                    for p in self.pointers:
                        self.cuda.cuMemFreeHost(ctypes.c_void_p(p))
            except OSError:  # no context to free them in: the process frees them at its exit
                pass
            finally:
                self.pointers, self.last, self.metas = [], [], []
                self.context.release()

    def __del__(self):
        if getattr(self, "for_process", True):  # freed with the process: at its exit MLX and the driver may be gone
            return
        try:
            self.close()
        except Exception:  # noqa: BLE001 (interpreter shutdown: the process frees it)
            pass


_SHARED: dict = {}
_SHARED_LOCK = threading.Lock()


def shared(capacity: int) -> Optional[PinnedUpload]:
    """One PinnedUpload of `capacity`-byte buffers for the process, made at its first use (by
    one thread) and kept: making one costs the host ~0.6 ms a MB of pinned memory
    (benchmarks/h100-session41/), more than what it saves a transcription of a few minutes."""
    with _SHARED_LOCK:
        if capacity not in _SHARED:
            stage = _SHARED[capacity] = PinnedUpload.make(capacity)
            if stage is not None:
                stage.for_process = True
        return _SHARED[capacity]
