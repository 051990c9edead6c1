"""Launching the decode kernels on MLX's CUDA backend: each compiled once per machine
(kernels/cuda_cache.py), its small int arguments made once, and the grid sized to the SMs
whose blocks can all be resident at once (the step's grid barriers need that).

The kernels' source is one translation unit in five files, read in this order (`source`):
common.cuh (reductions, loads, dot products, the layer norm), attention.cuh (flash-decoding
partials and their merge), filters.cuh (mlx-whisper's logit filters and greedy update),
beam_update.cuh (openai's beam update) and decode_step.cu (barriers, row groups, the step)."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import mlx.core as mx

from ...config import config
from ...errors import WhisperfastError
from ...files import write_atomic
from ...kernels.cuda_cache import CachedCudaKernel

THREADS = 512  # common.cuh's kThreads
PICKS = 5  # filters.cuh's kPicks
NONE = 1 << 24  # "no such token" in template arguments: MLX names kernels after them, so no "-1"


SOURCE_PARTS = ("common.cuh", "attention.cuh", "filters.cuh", "beam_update.cuh", "decode_step.cu")


@lru_cache(maxsize=1)
def source() -> str:
    """The decode kernels' source, its parts in order."""
    return "".join(Path(__file__).with_name(part).read_text() for part in SOURCE_PARTS)


@lru_cache(maxsize=None)
def _kernel(name: str, inputs: tuple, outputs: tuple, call: str):
    source_ = source()
    # MLX names a kernel's binary after its name and template arguments (0.32 adds a hash of
    # its source): the source's hash in the name too keeps the cached binaries of other
    # whisperfast versions apart whatever MLX does.
    digest = hashlib.sha256((source_ + call).encode()).hexdigest()[:12]
    # compiled once per GPU architecture, model and dtype, then read from the cache (cuda_cache.py)
    return CachedCudaKernel(f"wf_{name}_{digest}", inputs, outputs, call, source_, config().cache / "kernels", write_atomic)


def _run(name, inputs, outputs, call, args, template, blocks, threads, shapes, dtypes):
    kernel = _kernel(name, tuple(inputs), tuple(outputs), call)
    return kernel(inputs=args, template=template, grid=(blocks * threads, 1, 1), threadgroup=(threads, 1, 1),
                  output_shapes=shapes, output_dtypes=dtypes)


# ids[blockIdx.x] = %smid, in PTX: MLX compiles a cuda_kernel's source anew in every process
# (NVRTC, ~1.7 s on the H100 for any kernel), the driver loads PTX this small at once
_SM_IDS_PTX = b"""
.version 7.0
.target sm_70
.address_size 64
.visible .entry wf_sm_ids(.param .u64 ids)
{
    .reg .pred %p<2>;
    .reg .b32 %r<4>;
    .reg .b64 %rd<5>;
    mov.u32 %r1, %tid.x;
    setp.ne.s32 %p1, %r1, 0;
    @%p1 bra DONE;
    ld.param.u64 %rd1, [ids];
    cvta.to.global.u64 %rd2, %rd1;
    mov.u32 %r2, %ctaid.x;
    mov.u32 %r3, %smid;
    mul.wide.u32 %rd3, %r2, 4;
    add.s64 %rd4, %rd2, %rd3;
    st.global.u32 [%rd4], %r3;
DONE:
    ret;
}
"""


@lru_cache(maxsize=1)
def _sm_count() -> int:
    """The SMs that ran blocks of a 1024-block probe: the step's grid, one block per SM, so
    that all its blocks are resident at once (its barriers need that)."""
    try:
        ids = mx.fast.precompiled_cuda_kernel(name="wf_sm_ids", compiled_source=_SM_IDS_PTX, inputs=[],
                                              output_shapes=[(1024,)], output_dtypes=[mx.uint32], scalars=[],
                                              grid=(1024 * 32, 1, 1), threadgroup=(32, 1, 1))[0].tolist()
    except (AttributeError, RuntimeError, ValueError):  # an MLX without it, a driver refusing the PTX
        ids = _run("sm_ids", ["unused"], ["ids"],
                   'if (threadIdx.x == 0) { unsigned s; asm volatile("mov.u32 %0, %%smid;" : "=r"(s)); ids[blockIdx.x] = s; }',
                   [mx.zeros((1,))], [], 1024, 32, [(1024,)], [mx.uint32])[0].tolist()
    return len(set(ids))


@lru_cache(maxsize=1)
def grid_blocks() -> int:
    """The step's grid: one block per SM. Its grid barriers wait for every block, so a block
    that is not resident until the others finish would hang the launch (and the kernel's
    watchdog then traps, ending the process's CUDA context). The probe counts the SMs this
    process's blocks really ran on (a MIG slice's, not the card's), and a block of the step
    takes 48 KiB of static shared memory at most and 512 threads: where its registers would
    not fit one block per SM, the launch fails instead of waiting. WHISPERFAST_STEP_BLOCKS
    (a test knob, read once) may only ask for fewer blocks, never more."""
    sms, knob = _sm_count(), config().step_blocks
    if not knob:
        return sms
    if not (knob.isascii() and knob.isdigit()) or not 1 <= int(knob) <= sms:
        raise WhisperfastError(f"WHISPERFAST_STEP_BLOCKS={knob!r}: the decode step's blocks must all be resident at once, "
                         f"so it takes 1 to {sms} (this GPU's SMs)")
    return int(knob)


@lru_cache(maxsize=1024)
def _ints(*values: int) -> mx.array:
    """A launch's small int32 arguments (meta), made once for each set of values."""
    return mx.array(values, mx.int32)


# The kernels' `completed` flag, which the decode loop reads on the host after every step: one
# byte, so that MLX allocates it from its small-array pool, which the host reads in place. A
# flag padded to 16 bytes (device memory, as the kernels' sums are: the next launch reads
# them on the device) and read through a view or a copy slowed every step of a warm decode
# (benchmarks/h200-session13/).
FLAG_SHAPE = (1,)


_TEMPLATE = ("TS", "EOT", "NO_TS", "RULES")  # fixed per tokenizer and task; the rest are launch arguments


def _template(rules: dict) -> list:
    return [(k, rules[k]) for k in _TEMPLATE]


def row_reach(rules: dict, rows: int) -> tuple:
    """Each row's must_reach (rules.HeldEnd's; 0 where there is none), the launch's meta after
    its four values."""
    reach = rules["must_reach"] or (0,) * rows
    if len(reach) != rows:
        raise ValueError(f"must_reach for {len(reach)} rows, {rows} decoding")
    return reach
