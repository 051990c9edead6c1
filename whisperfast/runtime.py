"""Where MLX computes, and with what: device selection and the `info` report; on CUDA, the
thread that warms the GPU up and then makes the CLI's MLX calls (GpuThread), and the hand-off
of the context's teardown at exit."""

from __future__ import annotations

import ctypes
import math
import os
import platform
import queue
import sys
import threading
from dataclasses import dataclass, field
from typing import Callable

import mlx.core as mx

from . import _blas, _malloc

from .config import config
from .errors import WhisperfastError


def gpu_backend() -> str | None:
    if mx.metal.is_available():
        return "metal"
    if mx.cuda.is_available():
        return "cuda"
    return None


def use_device(name: str | None) -> None:
    """Set MLX's default device: "cpu", "gpu", or None to keep MLX's choice."""
    if name is None:
        return
    if name == "gpu":
        if gpu_backend() is None:
            raise WhisperfastError("no GPU backend in this mlx build (Linux: install the 'cuda' extra; macOS: Metal)")
        mx.set_default_device(mx.gpu)
    elif name == "cpu":
        mx.set_default_device(mx.cpu)
    else:
        raise WhisperfastError(f"unknown device '{name}' (use cpu or gpu)")


def warm_up_gpu(dtype: mx.Dtype, fast: bool = False) -> GpuThread | None:
    """On a CUDA GPU, start the thread that will make the caller's MLX calls (GpuThread), its
    first job the calls whose first use in a process is slow (the context, cuFFT, cuBLAS,
    cuDNN's convolution, MLX's JIT kernels: benchmarks/h200-coldstart/), made while the caller
    imports the rest. It computes on zeros of its own and draws no random numbers: nothing the
    caller computes changes. Elsewhere (CPU, Metal) it starts nothing. `fast`: the fast
    engine's encoder follows (its GELU is composed on CUDA, decode/encoder.py), else the
    model's own."""
    if not config().gpu_warmup or mx.default_device() != mx.gpu or gpu_backend() != "cuda":
        return None
    return GpuThread(lambda: _first_calls(dtype, fast))


# how long a Ctrl-C waits for the GPU thread's job to unwind before the caller goes on
UNWIND_SECONDS = 5.0
# how often a caller waiting on the GPU thread looks for a Ctrl-C
SIGNAL_POLL_SECONDS = 0.05


class GpuThread:
    """A thread that runs `first`, then the calls handed to it (`run`), one at a time.

    The caller's MLX work runs here, after the warm-up, and not on the caller's thread: MLX's
    CUDA streams are per thread, and a warmed thread's first encoder pass costs less than
    another thread's (benchmarks/h200-session12/). MLX work stays on one thread at a time:
    MLX records its work as CUDA graphs, and another thread's calls during a capture break it
    (benchmarks/h200-session9/). The caller's thread meanwhile does host work of its own."""

    def __init__(self, first: Callable[[], object]):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()  # guards _current: an interrupt reaches only the job it was meant for
        self._current: _Job | None = None
        self._thread = threading.Thread(target=self._serve, args=(first,), name="whisperfast-gpu", daemon=True)
        self._thread.start()

    def run(self, fn: Callable, *args, **kwargs):
        """fn(*args, **kwargs) on this thread, once the calls before it are done: its value, or
        its exception raised here. Ctrl-C here cancels fn too: a running fn stops at its next
        Python line (its `finally` clauses run), a queued one never starts; the caller waits
        UNWIND_SECONDS at most for that."""
        if threading.current_thread() is self._thread:  # a job's own nested call
            return fn(*args, **kwargs)
        job = _Job(fn, args, kwargs)
        self._jobs.put(job)
        try:
            # in slices: the kernel may hand a Ctrl-C's SIGINT to any thread, and Python runs
            # its handler on this one only when this one runs Python again
            while not job.done.wait(SIGNAL_POLL_SECONDS):
                pass
        except KeyboardInterrupt:
            with self._lock:
                job.cancelled = True
                if self._current is job:
                    _interrupt(self._thread.ident, KeyboardInterrupt)
            job.done.wait(UNWIND_SECONDS)
            raise
        if job.error is not None:
            raise job.error
        return job.value

    def _serve(self, first: Callable[[], object]) -> None:
        try:
            first()
        except BaseException:  # noqa: BLE001
            # a failed warm-up is the GPU's: the real calls meet it again and report it as an
            # Error line (a thread's traceback would say nothing more), so they must still run
            pass
        while True:
            job = self._jobs.get()
            try:
                self._execute(job)
            except BaseException:  # noqa: BLE001  (an interrupt that landed in _execute's handler: recorded there)
                pass

    def _execute(self, job: _Job) -> None:
        try:
            try:
                with self._lock:
                    if job.cancelled:
                        raise KeyboardInterrupt
                    self._current = job
                job.value = job.fn(*job.args, **job.kwargs)
            except BaseException as e:  # noqa: BLE001  (the caller's to raise)
                job.error = e
        except BaseException as e:  # noqa: BLE001  (the interrupt, landing in the handler above)
            job.error = e
        finally:
            self._settle()
            job.done.set()

    def _settle(self) -> None:
        """No job again, and no interrupt pending for this thread: one sent for the job that
        has ended (it may land here, before the lock: then again) never reaches the next."""
        while True:
            try:
                with self._lock:
                    self._current = None
                    _interrupt(self._thread.ident, None)
                return
            except BaseException:  # noqa: BLE001
                continue


def _interrupt(ident: int, exception) -> None:
    """Raise `exception` in thread `ident` at its next Python line (None: withdraw one pending)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(exception) if exception else None)


@dataclass
class _Job:
    fn: Callable
    args: tuple
    kwargs: dict
    value: object = None
    error: BaseException | None = None
    cancelled: bool = False
    done: threading.Event = field(default_factory=threading.Event)


def _first_calls(dtype: mx.Dtype, fast: bool) -> None:
    """The first window's mel front end and an encoder block at tiny's widths, on zeros, op for
    op as mlx-whisper 0.4.3 writes them and the fast model runs them. A first call costs per
    kernel (its module load, cuFFT's plan, cuBLAS's choice for an operand layout, MLX's
    compiled GELU), so an op only alike the real one (an `x @ w` for Linear's
    `addmm(b, x, w.T)`) warms a kernel the real pass never calls. mlx.core and mlx.nn (which
    imports nothing else), so that the thread waits on no import of the caller's.

    One thread, not two: with the mel on a second thread the warm-up ended 0.1 s sooner on the
    H200, but a process then died now and then (cudaStreamEndCapture failed, GpuThread)."""
    _first_encoder_block(_first_mel(), dtype, fast)


N_MELS = 80


def _first_mel() -> mx.array:
    """log_mel_spectrogram(audio, padding=N_SAMPLES) of 11 s: audio.py's stft, its reflect pad
    (lazy: the caller evaluates it)."""
    x = mx.pad(mx.zeros((176000,)), (0, 480000))
    x = mx.concatenate([x[1:201][::-1], x, x[-201:-1][::-1]])
    frames = mx.as_strided(x, shape=[(x.size - 400 + 160) // 160, 400], strides=[160, 1])
    magnitudes = mx.fft.rfft(frames * mx.zeros((400,)))[:-1, :].abs().square()
    log_spec = mx.maximum(magnitudes @ mx.zeros((N_MELS, 201)).T, 1e-10).log10()
    return (mx.maximum(log_spec, log_spec.max() - 8.0) + 4.0) / 4.0


def _first_encoder_block(mel: mx.array, dtype: mx.Dtype, fast: bool) -> None:
    """longform.generate_segments' window of a mel (N, N_MELS), then an encoder block, its GELU
    the fast engine's (`fast`) or the model's own (mlx.nn's compiled one)."""
    import mlx.nn as nn

    def gelu(x):  # kernels.ops' composed_gelu (the fast encoder's on CUDA), or mlx.nn's compiled one
        return x * (1 + mx.erf(x / math.sqrt(2))) / 2 if fast else nn.gelu(x)

    n_mels, n_state, n_head, n_ctx = N_MELS, 384, 6, 1500

    def zeros(*shape):
        return mx.zeros(shape, dtype)

    def linear(x, bias=True):
        w = zeros(n_state, n_state)
        return mx.addmm(zeros(n_state), x, w.T) if bias else x @ w.T

    def heads(x):
        return x.reshape(1, n_ctx, n_head, n_state // n_head).transpose(0, 2, 1, 3)

    # AudioEncoder: Conv1d is conv1d then + bias,
    # Linear is addmm(bias, x, weight.T) (the key's: x @ weight.T)
    x = mx.pad(mel[0:1100], [(0, 1900), (0, 0)]).astype(dtype)[None]
    x = gelu(mx.conv1d(x, zeros(n_state, 3, n_mels), 1, 1) + zeros(n_state))
    x = gelu(mx.conv1d(x, zeros(n_state, 3, n_state), 2, 1) + zeros(n_state))
    x = x + zeros(n_ctx, n_state)
    h = mx.fast.layer_norm(x, zeros(n_state), zeros(n_state), 1e-5)
    scale = (n_state // n_head) ** -0.25
    out = mx.fast.scaled_dot_product_attention(heads(linear(h)) * scale, heads(linear(h, False)) * scale,
                                               heads(linear(h)), scale=1.0)
    x = x + linear(out.transpose(0, 2, 1, 3).reshape(1, n_ctx, n_state))
    h = mx.fast.layer_norm(x, zeros(n_state), zeros(n_state), 1e-5)
    h = mx.addmm(zeros(4 * n_state), h, zeros(4 * n_state, n_state).T)
    x = x + mx.addmm(zeros(n_state), gelu(h), zeros(n_state, 4 * n_state).T)
    mx.eval(mx.fast.layer_norm(x, zeros(n_state), zeros(n_state), 1e-5))


def hand_off_teardown() -> int | None:
    """For a process about to end (`os._exit`) that computed on a CUDA GPU: fork a child that
    keeps the driver's open files (/dev/nvidia*) until this process is gone, then ends. The
    driver tears a CUDA context down when the last of its files closes, which made every exit
    wait 0.11-0.16 s on the H200; the shell now waits for none of it (atexit to reaped: 0.147 ->
    0.017 s, benchmarks/h200-session11/).
    The child holds nothing else (stdin, stdout and stderr are closed, so a reader sees EOF when
    this process ends), touches no CUDA call, and lives as long as the teardown. Returns its pid,
    or None where nothing was handed off (the CPU, Metal, WHISPERFAST_GPU_TEARDOWN_HANDOFF=0)."""
    if not (config().teardown_handoff and hasattr(os, "fork") and mx.default_device() == mx.gpu
            and gpu_backend() == "cuda"):
        return None
    return _fork_keeper(("/dev/nvidia",))


def _fork_keeper(kept: tuple[str, ...]) -> int | None:
    """A child that closes every file but those whose path starts with one of `kept`, waits until
    the caller's process has ended (EOF on a pipe whose write end only the caller holds) and
    exits. Only os calls run in the child: the caller's other threads are not there."""
    import warnings

    r, w = os.pipe()
    try:
        with warnings.catch_warnings():  # Python 3.12 warns of fork() in a threaded process
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
    except OSError:
        os.close(r)
        os.close(w)
        return None
    if pid:
        os.close(r)
        return pid  # w closes when this process ends
    try:
        os.close(w)
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd == r:
                continue
            try:
                if not os.readlink(f"/proc/self/fd/{fd}").startswith(kept):
                    os.close(fd)
            except OSError:
                pass
        os.read(r, 1)
    finally:
        os._exit(0)


def device_name() -> str:
    return f"gpu ({gpu_backend()})" if mx.default_device() == mx.gpu else "cpu"


def dtype_name(dtype: mx.Dtype) -> str:
    names = {mx.float16: "float16", mx.float32: "float32", mx.bfloat16: "bfloat16"}
    if dtype not in names:  # an int32 model was converted and cached, then failed here
        raise WhisperfastError(f"a model computes in float16, float32 or bfloat16, not {dtype}")
    return names[dtype]


def parse_dtype(name: str | None) -> mx.Dtype | None:
    if name is None:
        return None
    table = {"float16": mx.float16, "fp16": mx.float16, "float32": mx.float32, "fp32": mx.float32,
             "bfloat16": mx.bfloat16, "bf16": mx.bfloat16}
    if name not in table:
        raise WhisperfastError(f"unknown dtype '{name}' (use float16, float32 or bfloat16)")
    return table[name]


def cpu_kernels() -> str:
    """Whether the fast engine's CPU math runs on x86 vectors (kernels/cpu_simd.py), or why not."""
    from .kernels import cpu_simd

    if not config().cpu_simd:
        return "off (WHISPERFAST_CPU_SIMD=0)"
    found = cpu_simd.status(config().cache / "kernels")
    if found.endswith("AMX bfloat16 tiles"):
        found += " for batched mode's encoder" if config().cpu_amx else " (off: WHISPERFAST_CPU_AMX=0)"
    return found


def info() -> dict:
    """Versions, device and BLAS: what a bug report or a benchmark record needs."""
    import importlib.metadata as md

    def version(pkg: str) -> str | None:
        try:
            return md.version(pkg)
        except md.PackageNotFoundError:
            return None

    return {
        "whisperfast": version("whisperfast"),
        "mlx": mx.__version__,
        "mlx_whisper": version("mlx-whisper"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": device_name(),
        "gpu_backend": gpu_backend(),
        "blas": _blas.describe(),
        "malloc": _malloc.describe(),
        # On the CPU every mx.fast op falls back to composed ops: fusion pays only on a GPU.
        "fused_kernels_native": mx.default_device() == mx.gpu,
        # The fast engine's CPU softmax, GELU and layer norm in C, MLX's arithmetic (kernels/cpu_simd.py);
        # where the CPU has AMX tiles, batched mode's encoder products in bfloat16 (kernels/cpu_amx.c)
        "cpu_kernels": cpu_kernels(),
    }
