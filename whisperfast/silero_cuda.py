"""Silero VAD's frame-by-frame part in one CUDA launch: a group's frames -> the LSTM's input
projection (STFT, four convolutions with their ReLUs, W x + both biases), in float32 FMAs.

Why not MLX's ops (silero.py's `features`, the reference this kernel is tested against): on
CUDA they ran on MLX's TF32 matmuls and cuDNN convolutions, whose probabilities lay up to
6e-3 from onnxruntime's and moved the speech pieces of the 600 s clip, and cuDNN built a plan
for every new group length in every process (a fresh 60-minute transcription spent 1.3 s in
the VAD). Here each block takes F frames: their samples in shared memory, the weights read
from L2 once for the F frames, every output a thread's sum.

Weights are laid out once (SileroNet): the STFT basis as (256, 258), each convolution's as
(in, kernel, out) and W as (128, 4H), so that the threads of a warp, one output channel each,
read consecutive words."""

from __future__ import annotations

from functools import lru_cache

import mlx.core as mx

from .config import config
from .files import write_atomic
from .kernels.cuda_cache import CachedCudaKernel

F = 4  # frames a block
THREADS = 256
INPUTS = ("frames", "basis_t", "w0", "b0", "w1", "b1", "w2", "b2", "w3", "b3", "w_in", "bias")

_SOURCE = """
    constexpr int F = 4, N = 576, X = 640, C = 258, BINS = 129, G = 512;
    __shared__ float xs[F * X];      // the frames' samples and right padding; later enc0's output
    __shared__ float spec[F * 4 * C];  // the STFT's 4 columns; later enc1's, enc2's and enc3's outputs
    __shared__ float mag[F * BINS * 4];
    const int tid = threadIdx.x, first = blockIdx.x * F, n = frames_shape[0];
    for (int q = tid; q < F * X; q += blockDim.x) {
        const int f = q / X, s = q % X, g = first + f;
        // reflect padding on the right; the left's lies in the STFT column left out
        xs[q] = g < n ? frames[(size_t)g * N + (s < N ? s : 2 * N - 2 - s)] : 0.0f;
    }
    __syncthreads();
    for (int o = tid; o < 4 * C; o += blockDim.x) {  // output k of the STFT's column c + 1 (the first is dropped)
        const int c = o / C, k = o % C;
        float acc[F] = {};
        for (int t = 0; t < 256; ++t) {
            const float w = basis_t[t * C + k];
            #pragma unroll
            for (int f = 0; f < F; ++f) acc[f] = fmaf(w, xs[f * X + 128 * c + t], acc[f]);
        }
        #pragma unroll
        for (int f = 0; f < F; ++f) spec[f * 4 * C + o] = acc[f];
    }
    __syncthreads();
    for (int q = tid; q < F * BINS * 4; q += blockDim.x) {
        const int f = q / (BINS * 4), r = q % (BINS * 4), c = r / BINS, b = r % BINS;
        const float re = spec[f * 4 * C + c * C + b], im = spec[f * 4 * C + c * C + BINS + b];
        mag[f * BINS * 4 + b * 4 + c] = sqrtf(re * re + im * im);
    }
    __syncthreads();
    float* e0 = xs;  // (128 channels, 4 steps)
    for (int o = tid; o < 128 * 4; o += blockDim.x) {
        const int ch = o % 128, t = o / 128;
        float acc[F];
        #pragma unroll
        for (int f = 0; f < F; ++f) acc[f] = b0[ch];
        for (int i = 0; i < BINS; ++i)
            #pragma unroll
            for (int j = 0; j < 3; ++j) {
                const int tt = t + j - 1;
                if (tt < 0 || tt > 3) continue;
                const float w = w0[(i * 3 + j) * 128 + ch];
                #pragma unroll
                for (int f = 0; f < F; ++f) acc[f] = fmaf(w, mag[f * BINS * 4 + i * 4 + tt], acc[f]);
            }
        #pragma unroll
        for (int f = 0; f < F; ++f) e0[f * 512 + ch * 4 + t] = fmaxf(acc[f], 0.0f);
    }
    __syncthreads();
    float* e1 = spec;  // (64, 2): stride 2
    for (int o = tid; o < 64 * 2; o += blockDim.x) {
        const int ch = o % 64, t = o / 64;
        float acc[F];
        #pragma unroll
        for (int f = 0; f < F; ++f) acc[f] = b1[ch];
        for (int i = 0; i < 128; ++i)
            #pragma unroll
            for (int j = 0; j < 3; ++j) {
                const int tt = 2 * t + j - 1;
                if (tt < 0) continue;
                const float w = w1[(i * 3 + j) * 64 + ch];
                #pragma unroll
                for (int f = 0; f < F; ++f) acc[f] = fmaf(w, e0[f * 512 + i * 4 + tt], acc[f]);
            }
        #pragma unroll
        for (int f = 0; f < F; ++f) e1[f * 128 + ch * 2 + t] = fmaxf(acc[f], 0.0f);
    }
    __syncthreads();
    float* e2 = spec + F * 128;  // (64, 1): stride 2, so its taps are steps -1 (padding), 0, 1
    if (tid < 64) {
        float acc[F];
        #pragma unroll
        for (int f = 0; f < F; ++f) acc[f] = b2[tid];
        for (int i = 0; i < 64; ++i) {
            const float wa = w2[(i * 3 + 1) * 64 + tid], wb = w2[(i * 3 + 2) * 64 + tid];
            #pragma unroll
            for (int f = 0; f < F; ++f) acc[f] = fmaf(wb, e1[f * 128 + i * 2 + 1], fmaf(wa, e1[f * 128 + i * 2], acc[f]));
        }
        #pragma unroll
        for (int f = 0; f < F; ++f) e2[f * 64 + tid] = fmaxf(acc[f], 0.0f);
    }
    __syncthreads();
    float* e3 = spec + F * 192;  // (128, 1): one step, so only the middle tap sees data
    if (tid < 128) {
        float acc[F];
        #pragma unroll
        for (int f = 0; f < F; ++f) acc[f] = b3[tid];
        for (int i = 0; i < 64; ++i) {
            const float w = w3[(i * 3 + 1) * 128 + tid];
            #pragma unroll
            for (int f = 0; f < F; ++f) acc[f] = fmaf(w, e2[f * 64 + i], acc[f]);
        }
        #pragma unroll
        for (int f = 0; f < F; ++f) e3[f * 128 + tid] = fmaxf(acc[f], 0.0f);
    }
    __syncthreads();
    for (int j = tid; j < G; j += blockDim.x) {
        float acc[F];
        #pragma unroll
        for (int f = 0; f < F; ++f) acc[f] = bias[j];
        for (int i = 0; i < 128; ++i) {
            const float w = w_in[i * G + j];
            #pragma unroll
            for (int f = 0; f < F; ++f) acc[f] = fmaf(w, e3[f * 128 + i], acc[f]);
        }
        #pragma unroll
        for (int f = 0; f < F; ++f)
            if (first + f < n) xw[(size_t)(first + f) * G + j] = acc[f];
    }
"""


@lru_cache(maxsize=1)
def _kernel() -> CachedCudaKernel:
    # compiled once per machine, then read from the cache (kernels/cuda_cache.py)
    return CachedCudaKernel("wf_silero_features", INPUTS, ("xw",), _SOURCE, "", config().cache / "kernels", write_atomic)


def input_projection(frames: mx.array, weights: tuple) -> mx.array:
    """frames (n, 576) float32, `weights` in INPUTS' order after frames (laid out as the
    module's docstring says) -> (n, 512): W x + Wb + Rb for every frame."""
    n = frames.shape[0]
    return _kernel()(inputs=[frames, *weights], grid=(max(-(-n // F), 1) * THREADS, 1, 1), threadgroup=(THREADS, 1, 1),
                     output_shapes=[(n, 512)], output_dtypes=[mx.float32])[0]
