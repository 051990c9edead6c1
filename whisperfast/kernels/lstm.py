"""An LSTM layer's recurrence over a sequence, fused (one CUDA launch for the whole sequence)
beside composed (MLX ops, a step at a time), in ONNX's convention.

ONNX's LSTM (gates in the order i, o, f, c; sigmoid, sigmoid, sigmoid, tanh):
    g_t = xw_t + R h_{t-1}        xw_t = W x_t + Wb + Rb, computed for every t beforehand
    c_t = f_t * c_{t-1} + i_t * c~_t;    h_t = o_t * tanh(c_t)
The input projection has no recurrence, so it is one matmul over the sequence; only R h
waits on the step before. A step's work is one (4H, H) matrix-vector product, and a launch per
step would cost more than the step. So the fused kernel walks the whole sequence in one
launch, a gate row a thread, h in shared memory. A unit's four gates sit in adjacent lanes of
a warp, which combine them by shuffles, so a step needs one barrier.
- One block of 4H threads (CL = 1): REG of its row's H weights in registers, the rest read
  through the L1 cache (a block's registers hold 64 K words, R is 4H * H = 64 K for H = 128).
  R's columns read from L1 are laid out a unit's gates side by side (`interleaved`), so that a
  warp's loads stay one run of words (in ONNX's order they were four, and a step took 3.3 µs
  against 1.5 µs with the gate rows in ONNX's order and two barriers: benchmarks/h200-session16/).
  The 4H * H FMAs of a step all wait on one SM's issue.
- A cluster of CL blocks (compute capability 9 on: `has_clusters`): each block takes 4H / CL
  of the rows with all of R's columns in registers, and writes each h it makes into every
  block's shared memory (PTX's shared::cluster window); the cluster's barrier ends the step.
Every row's sum is one thread's, in the same order, in either form: the bits are the same.

Shapes: xw (T, 4H) float32; r (4H, H); h, c (H,) -> hs (T, H) every step's h, c (H,) the last
cell state."""

from __future__ import annotations

from functools import lru_cache

import mlx.core as mx

from ..config import config
from ..files import write_atomic
from .cuda_cache import CachedCudaKernel
from .ops import on_cuda

HIDDEN = 128  # the fused kernel's H (Silero VAD's); other sizes take the composed steps
INPUTS, OUTPUTS = ("xw", "r", "ri", "h0", "c0"), ("out", "c_out")  # the fused kernel's parameters
# columns of R a thread keeps in registers in one block of 4H = 512 threads, and the most it
# may: 128 registers a thread, no spills (128 columns took 164); in a cluster's blocks of 4H /
# CL threads every column fits
REG = 96
# blocks lstm_fused shares a step over by default where the GPU has clusters: 4 ran the 600 s
# clip's 18,750 steps fastest of 1, 2, 4 and 8 on an H100, with one block's bits
# (benchmarks/h100-session36/)
CLUSTER = 4


def lstm_composed(xw: mx.array, r: mx.array, h: mx.array, c: mx.array) -> tuple[mx.array, mx.array]:
    """The recurrence a step at a time in MLX ops (the fused kernel's reference; slow on long
    sequences: a few ops a step)."""
    n = h.shape[-1]
    rt = r.T
    hs = []
    for t in range(xw.shape[0]):
        g = xw[t] + h @ rt
        i, o, f = (mx.sigmoid(g[k * n : (k + 1) * n]) for k in range(3))
        c = f * c + i * mx.tanh(g[3 * n :])
        h = o * mx.tanh(c)
        hs.append(h)
    return (mx.stack(hs) if hs else mx.zeros((0, n), xw.dtype)), c


_SOURCE = """
    constexpr int G = 4 * H, T = G / CL;  // T: a block's gate rows, a thread each (the cluster's CL blocks share them)
    __shared__ __align__(16) float hs[2][H];  // h of the step before, and the one being made
    const int j = wf_rank<CL>() * T + threadIdx.x, unit = j / 4, gate = j % 4;  // a unit's four gates in adjacent lanes
    const int row = gate * H + unit;  // ONNX's row of this gate
    float w[REG];
    #pragma unroll
    for (int k = 0; k < REG; ++k) w[k] = r[row * H + k];
    float cell = gate == 0 ? c0[unit] : 0.0f;
    for (int k = threadIdx.x; k < H; k += T) hs[0][k] = h0[k];
    unsigned to[CL];  // where this unit's h goes: its place in every block's hs[0] (this block's too)
    wf_places<CL>(&hs[0][unit], to);
    wf_sync<CL>();  // with CL > 1 also: every block of the cluster runs before any writes into it
    const int steps = xw_shape[0];
    float next = steps > 0 ? xw[row] : 0.0f;
    for (int t = 0; t < steps; ++t) {
        const float4* h = reinterpret_cast<const float4*>(hs[t & 1]);  // four of h a load
        float a0 = next, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
        if (t + 1 < steps) next = xw[(size_t)(t + 1) * G + row];
        #pragma unroll
        for (int k = 0; k < REG; k += 4) {
            const float4 v = h[k / 4];
            a0 = fmaf(w[k], v.x, a0); a1 = fmaf(w[k + 1], v.y, a1); a2 = fmaf(w[k + 2], v.z, a2); a3 = fmaf(w[k + 3], v.w, a3);
        }
        #pragma unroll 4
        for (int k = REG; k < H; k += 4) {
            const float4 v = h[k / 4];
            a0 = fmaf(__ldg(&ri[k * G + j]), v.x, a0); a1 = fmaf(__ldg(&ri[(k + 1) * G + j]), v.y, a1);
            a2 = fmaf(__ldg(&ri[(k + 2) * G + j]), v.z, a2); a3 = fmaf(__ldg(&ri[(k + 3) * G + j]), v.w, a3);
        }
        const float g = (a0 + a1) + (a2 + a3);
        const float act = gate < 3 ? 1.0f / (1.0f + expf(-g)) : tanhf(g);
        const int base = threadIdx.x & 31 & ~3;
        const float i = __shfl_sync(0xffffffffu, act, base), o = __shfl_sync(0xffffffffu, act, base + 1);
        const float f = __shfl_sync(0xffffffffu, act, base + 2), z = __shfl_sync(0xffffffffu, act, base + 3);
        if (gate == 0) {
            cell = f * cell + i * z;
            const float hn = o * tanhf(cell);
            wf_put<CL>(to, ((t + 1) & 1) * H, hn, &hs[(t + 1) & 1][unit]);
            out[(size_t)t * H + unit] = hn;
        }
        wf_sync<CL>();  // one barrier a step: h is double-buffered
    }
    if (gate == 0) c_out[unit] = cell;
"""

# A cluster's blocks (compute capability 9 on) hand each other h through their shared memory
# (PTX's shared::cluster window) and wait at the cluster's barrier; one block (CL = 1) keeps
# to its own shared memory and __syncthreads.
_HELPERS = """
template <int CL> __device__ __forceinline__ unsigned wf_rank() {
  unsigned r = 0;
  if constexpr (CL > 1) asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
  return r;
}
template <int CL> __device__ __forceinline__ void wf_places(float* mine, unsigned* to) {
  if constexpr (CL > 1) {
    const unsigned local = static_cast<unsigned>(__cvta_generic_to_shared(mine));
    #pragma unroll
    for (int q = 0; q < CL; ++q) asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(to[q]) : "r"(local), "r"(q));
  }
}
template <int CL> __device__ __forceinline__ void wf_put(const unsigned* to, int offset, float v, float* local) {
  if constexpr (CL > 1) {
    #pragma unroll
    for (int q = 0; q < CL; ++q) asm volatile("st.shared::cluster.f32 [%0], %1;" :: "r"(to[q] + 4 * offset), "f"(v) : "memory");
  } else {
    *local = v;
  }
}
template <int CL> __device__ __forceinline__ void wf_sync() {
  if constexpr (CL > 1) {
    asm volatile("barrier.cluster.arrive.release;" ::: "memory");
    asm volatile("barrier.cluster.wait.acquire;" ::: "memory");
  } else {
    __syncthreads();
  }
}
"""


def header(cluster: int) -> str:
    """The kernel's helpers, and with cluster > 1 its blocks' cluster size, fixed at compile
    time (MLX launches it as any kernel)."""
    dims = f"#undef __global__\n#define __global__ __attribute__((global)) __cluster_dims__({cluster}, 1, 1)\n" \
        if cluster > 1 else ""
    return _HELPERS + dims


@lru_cache(maxsize=None)
def _kernel(cluster: int) -> CachedCudaKernel:
    # compiled once per machine, then read from the cache (cuda_cache.py)
    return CachedCudaKernel("wf_lstm_sequence", INPUTS, OUTPUTS, _SOURCE, header(cluster),
                            config().cache / "kernels", write_atomic)


@lru_cache(maxsize=1)
def has_clusters() -> bool:
    """Whether the GPU has thread block clusters (compute capability 9 on)."""
    return int(mx.device_info().get("compute_capability_major", 0)) >= 9


def interleaved(r: mx.array) -> mx.array:
    """R as the fused kernel reads its columns past REG: (H, 4H), a unit's four gate rows
    side by side (column 4u + g is ONNX's row g * H + u), so that a warp's loads are one
    run of words."""
    n = r.shape[1]
    return mx.contiguous(r.reshape(4, n, n).transpose(2, 1, 0).reshape(n, 4 * n))


def lstm_fused(xw: mx.array, r: mx.array, h: mx.array, c: mx.array, ri: mx.array | None = None,
               reg: int | None = None, cluster: int | None = None) -> tuple[mx.array, mx.array]:
    """The recurrence in one CUDA launch (H = HIDDEN, float32). ri: interleaved(r), when the
    caller keeps one; reg: R's columns to keep in registers, a multiple of 4 (default: REG
    in one block, all of them in a cluster); cluster: the blocks a step is shared over (1, 2,
    4 or 8; default CLUSTER where the GPU has clusters, else 1). Every row's sum is one
    thread's, in one order, so the bits do not depend on reg or cluster."""
    n = h.shape[-1]
    cluster = (CLUSTER if has_clusters() else 1) if cluster is None else cluster
    most = REG if cluster == 1 else n
    reg = most if reg is None else reg
    if cluster not in (1, 2, 4, 8):
        raise ValueError(f"cluster must be 1, 2, 4 or 8 blocks, not {cluster}")
    if cluster > 1 and not has_clusters():
        raise ValueError(f"a cluster of {cluster} blocks needs thread block clusters (compute capability 9 on)")
    if reg % 4 or not 0 < reg <= most:
        raise ValueError(f"reg must be a multiple of 4 from 4 to {most}, not {reg}")
    ri = interleaved(r) if ri is None else ri
    hs, c = _kernel(cluster)(inputs=[xw, r, ri, h, c], template=[("H", n), ("REG", reg), ("CL", cluster)],
                             grid=(4 * n, 1, 1), threadgroup=(4 * n // cluster, 1, 1),
                             output_shapes=[(xw.shape[0], n), (n,)], output_dtypes=[mx.float32, mx.float32])
    return hs, c


def fused_available(hidden: int, dtype: mx.Dtype) -> bool:
    """Whether lstm_fused runs here: a CUDA GPU, H = HIDDEN, float32."""
    return hidden == HIDDEN and dtype == mx.float32 and on_cuda()

