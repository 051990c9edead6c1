// One Whisper decoder step for a single new token, in a few CUDA kernels (cuda_step.py).
//
// MLX launches a kernel per primitive and pays 4-17 us of host time for each; a stock
// step is ~350 of them while its math takes ~20 us on an H100. These kernels do the same
// math in 8 launches a layer: the weight rows are read once per step, whole rows per warp.
//
// Numerics follow MLX's fp16 graph: statistics and dot products accumulate in fp32, and
// every value that is a tensor there (norm output, matmul output, residual sum) is rounded
// to T here at the same point, so greedy tokens match the module graph's.

#include <cuda/std/limits>

namespace wf {

constexpr float kInf = cuda::std::numeric_limits<float>::infinity();

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Block-wide reductions; `red` is 32 floats of shared scratch. Every thread gets the result.
__device__ float block_sum(float v, float* red) {
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  __syncthreads();  // red may still be read by the previous reduction
  if (lane == 0) red[w] = v;
  __syncthreads();
  return warp_sum(lane < nw ? red[lane] : 0.f);
}

__device__ float block_max(float v, float* red) {
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) red[w] = v;
  __syncthreads();
  return warp_max(lane < nw ? red[lane] : -kInf);
}

template <typename T>
__device__ __forceinline__ float round_to(float x) {
  return static_cast<float>(static_cast<T>(x));
}

// sum_k xs[k] * w[k] over one weight row, 16-byte loads spread over the warp's lanes.
template <typename T, int K>
__device__ __forceinline__ float dot_row(const T* w, const float* xs, int lane) {
  constexpr int V = 16 / sizeof(T);
  static_assert(K % V == 0, "rows must be whole 16-byte vectors");
  const uint4* w4 = reinterpret_cast<const uint4*>(w);
  float acc = 0.f;
  for (int i = lane; i < K / V; i += 32) {
    uint4 raw = w4[i];
    const T* wv = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int j = 0; j < V; ++j) acc += static_cast<float>(wv[j]) * xs[i * V + j];
  }
  return acc;
}

// y[b, n] = f(x[b]) . w[n] + bias[n] for B rows of x (B, K) and w (N, K): a row of w per
// warp per turn, reused across the batch. f is LayerNorm (eps 1e-5, as Whisper's) when LN;
// GELU (erf form, nn.gelu) follows when GELU; res[b, n] is added when RES.
template <typename T, typename O, int B, int K, int N, bool LN, bool BIAS, bool GELU, bool RES>
__device__ void gemv(const T* x, const T* g, const T* beta, const T* w, const T* bias, const T* res, O* y) {
  __shared__ float xs[B * K];
  __shared__ float red[32];
  for (int i = threadIdx.x; i < B * K; i += blockDim.x) xs[i] = static_cast<float>(x[i]);
  __syncthreads();
  if constexpr (LN) {
    // mx.fast.layer_norm: fp32 mean and variance, output rounded to T
    for (int b = 0; b < B; ++b) {
      float* r = xs + b * K;
      float s = 0.f;
      for (int k = threadIdx.x; k < K; k += blockDim.x) s += r[k];
      const float mean = block_sum(s, red) / K;
      float q = 0.f;
      for (int k = threadIdx.x; k < K; k += blockDim.x) q += (r[k] - mean) * (r[k] - mean);
      const float rstd = rsqrtf(block_sum(q, red) / K + 1e-5f);
      for (int k = threadIdx.x; k < K; k += blockDim.x)
        r[k] = round_to<T>((r[k] - mean) * rstd * static_cast<float>(g[k]) + static_cast<float>(beta[k]));
    }
    __syncthreads();
  }
  const int lane = threadIdx.x & 31;
  const int warps = (gridDim.x * blockDim.x) >> 5;
  for (int n = (blockIdx.x * blockDim.x + threadIdx.x) >> 5; n < N; n += warps) {
    float acc[B];
#pragma unroll
    for (int b = 0; b < B; ++b) acc[b] = warp_sum(dot_row<T, K>(w + size_t(n) * K, xs + b * K, lane));
    if (lane == 0) {
#pragma unroll
      for (int b = 0; b < B; ++b) {
        float v = round_to<T>(acc[b] + (BIAS ? static_cast<float>(bias[n]) : 0.f));
        if constexpr (GELU) v = round_to<T>(0.5f * v * (1.f + erff(v * 0.70710678118654752f)));
        if constexpr (RES) v = round_to<T>(static_cast<float>(res[b * N + n]) + v);
        y[b * N + n] = static_cast<O>(v);
      }
    }
  }
}

// x[b] = token_embedding[tokens[b, L-1]] + positional_embedding[L-1]
template <typename T, int B, int D, typename Tok>
__device__ void embed(const Tok* tokens, int L, const T* emb, const T* pos, T* x) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < B * D; i += gridDim.x * blockDim.x) {
    const int b = i / D, d = i % D;
    const size_t tok = static_cast<size_t>(tokens[b * L + L - 1]);
    x[i] = static_cast<T>(static_cast<float>(emb[tok * D + d]) + static_cast<float>(pos[size_t(L - 1) * D + d]));
  }
}

// Softmax attention of one query row over S keys, for the block's (batch, head): p holds
// the S scores; keys(j) and values(j) point at rows of HD elements.
template <typename T, int HD, typename KF, typename VF>
__device__ void attend(const float* q, int S, float* p, float* red, float* part, KF keys, VF values, T* o) {
  constexpr int V = 16 / sizeof(T);
  for (int j = threadIdx.x; j < S; j += blockDim.x) {
    const uint4* k4 = reinterpret_cast<const uint4*>(keys(j));
    float s = 0.f;
#pragma unroll
    for (int i = 0; i < HD / V; ++i) {
      uint4 raw = k4[i];
      const T* kv = reinterpret_cast<const T*>(&raw);
#pragma unroll
      for (int e = 0; e < V; ++e) s += q[i * V + e] * static_cast<float>(kv[e]);
    }
    p[j] = s;
  }
  __syncthreads();
  float m = -kInf;
  for (int j = threadIdx.x; j < S; j += blockDim.x) m = fmaxf(m, p[j]);
  m = block_max(m, red);
  float l = 0.f;
  for (int j = threadIdx.x; j < S; j += blockDim.x) {
    p[j] = expf(p[j] - m);
    l += p[j];
  }
  l = block_sum(l, red);  // also orders the p writes before the reads below
  const int d = threadIdx.x % HD, grp = threadIdx.x / HD, groups = blockDim.x / HD;
  float acc = 0.f;
  for (int j = grp; j < S; j += groups) acc += p[j] * static_cast<float>(values(j)[d]);
  part[threadIdx.x] = acc;
  __syncthreads();
  if (grp == 0) {
    for (int r = 1; r < groups; ++r) acc += part[r * HD + d];
    o[d] = static_cast<T>(acc / l);
  }
}

// Self-attention for the new token at position t = L-1: qkv (B, 3D) holds its q|k|v;
// cache (B, H, CTX, HD) holds positions < t. Writes the cache with row t added to kc2/vc2
// (a fresh buffer each step: MLX arrays are values, so the old one is copied, up to t).
template <typename T, int B, int H, int HD, int CTX>
__device__ void self_attention(const T* qkv, const T* kc, const T* vc, int t, T* o, T* kc2, T* vc2) {
  constexpr int D = H * HD;
  __shared__ float q[HD];
  __shared__ float p[CTX];
  __shared__ float red[32];
  __shared__ float part[1024];
  const int b = blockIdx.x / H, h = blockIdx.x % H;
  const T* row = qkv + size_t(b) * 3 * D;
  const T *knew = row + D + h * HD, *vnew = row + 2 * D + h * HD;
  const size_t base = (size_t(b) * H + h) * CTX * HD;
  const float scale = rsqrtf(static_cast<float>(HD));
  for (int d = threadIdx.x; d < HD; d += blockDim.x) q[d] = scale * static_cast<float>(row[h * HD + d]);
  const uint4 *ks = reinterpret_cast<const uint4*>(kc + base), *vs = reinterpret_cast<const uint4*>(vc + base);
  uint4 *kd = reinterpret_cast<uint4*>(kc2 + base), *vd = reinterpret_cast<uint4*>(vc2 + base);
  constexpr int V = 16 / sizeof(T);
  for (int i = threadIdx.x; i < t * HD / V; i += blockDim.x) {
    kd[i] = ks[i];
    vd[i] = vs[i];
  }
  for (int d = threadIdx.x; d < HD; d += blockDim.x) {
    kc2[base + size_t(t) * HD + d] = knew[d];
    vc2[base + size_t(t) * HD + d] = vnew[d];
  }
  __syncthreads();
  attend<T, HD>(q, t + 1, p, red, part,
      [&](int j) { return j < t ? kc + base + size_t(j) * HD : knew; },
      [&](int j) { return j < t ? vc + base + size_t(j) * HD : vnew; },
      o + size_t(b) * D + h * HD);
}

// Cross-attention of q (B, D) over the window's K/V, each (B, H, S, HD), row-contiguous.
template <typename T, int B, int H, int HD, int S>
__device__ void cross_attention(const T* qin, const T* ck, const T* cv, T* o) {
  constexpr int D = H * HD;
  __shared__ float q[HD];
  __shared__ float p[S];
  __shared__ float red[32];
  __shared__ float part[1024];
  const int b = blockIdx.x / H, h = blockIdx.x % H;
  const size_t base = (size_t(b) * H + h) * S * HD;
  const float scale = rsqrtf(static_cast<float>(HD));
  for (int d = threadIdx.x; d < HD; d += blockDim.x) q[d] = scale * static_cast<float>(qin[size_t(b) * D + h * HD + d]);
  __syncthreads();
  attend<T, HD>(q, S, p, red, part,
      [&](int j) { return ck + base + size_t(j) * HD; },
      [&](int j) { return cv + base + size_t(j) * HD; },
      o + size_t(b) * D + h * HD);
}

// (value, index) maximum with the lowest index on ties, as mx.argmax picks.
__device__ __forceinline__ void arg_better(float& v, int& i, float v2, int i2) {
  if (v2 > v || (v2 == v && i2 < i)) {
    v = v2;
    i = i2;
  }
}

__device__ void block_argmax(float& v, int& i, float* red, int* redi) {
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  for (int o = 16; o > 0; o >>= 1) arg_better(v, i, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, i, o));
  __syncthreads();
  if (lane == 0) {
    red[w] = v;
    redi[w] = i;
  }
  __syncthreads();
  v = lane < nw ? red[lane] : -kInf;
  i = lane < nw ? redi[lane] : 0x7fffffff;
  for (int o = 16; o > 0; o >>= 1) arg_better(v, i, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, i, o));
}

// mlx-whisper's logit filters for a step after the first (SuppressTokens as `suppress`,
// then ApplyTimestampRules when RULES) and GreedyDecoder.update at temperature 0, for
// B rows in one block: tokens (B, L) -> tokens_out (B, L+1), sum_logprobs, completed.
template <int B, int NV, int TS, int EOT, int NO_TS, int SAMPLE_BEGIN, bool RULES, typename Tok>
__device__ void greedy(const float* logits, const Tok* tokens, int L, const float* sum_in, const float* suppress,
                       Tok* tokens_out, float* sum_out, bool* completed) {
  __shared__ float red[32];
  __shared__ int redi[32];
  bool all_eot = true;
  for (int b = 0; b < B; ++b) {
    const float* z = logits + size_t(b) * NV;
    const Tok last = tokens[b * L + L - 1];
    float m = -kInf, m_text = -kInf, m_ts = -kInf;
    for (int v = threadIdx.x; v < NV; v += blockDim.x) {
      const float l1 = z[v] + suppress[v];
      m = fmaxf(m, l1);
      if (v < TS) m_text = fmaxf(m_text, l1);
      else m_ts = fmaxf(m_ts, l1);
    }
    m = block_max(m, red);
    bool text_banned = false, last_ts = false, penult_ts = true;
    if constexpr (RULES) {
      m_text = block_max(m_text, red);
      m_ts = block_max(m_ts, red);
      float s = 0.f;
      for (int v = threadIdx.x; v < NV; v += blockDim.x) s += expf(z[v] + suppress[v] - m);
      const float lse = m + logf(block_sum(s, red));
      // logsumexp of the timestamp logprobs against the best text logprob, as
      // ApplyTimestampRules computes them (logprobs = logits - logsumexp(logits))
      const float top_ts = m_ts - lse;
      float st = 0.f;
      for (int v = TS + threadIdx.x; v < NV; v += blockDim.x) st += expf((z[v] + suppress[v] - lse) - top_ts);
      st = block_sum(st, red);
      const float ts_logprob = m_ts == -kInf ? -kInf : top_ts + logf(st);
      text_banned = ts_logprob > m_text - lse;
      last_ts = last >= TS;
      if (L - SAMPLE_BEGIN >= 2) penult_ts = tokens[b * L + L - 2] >= TS;
    }
    auto filtered = [&](int v) {
      float l = z[v] + suppress[v];
      if constexpr (RULES) {
        const bool ban = v == NO_TS || (last_ts && penult_ts && v >= TS) || (last_ts && !penult_ts && v < EOT) ||
                         (text_banned && v < TS);
        if (ban) l += -kInf;
      }
      return l;
    };
    float best = -kInf;
    int arg = 0x7fffffff;
    for (int v = threadIdx.x; v < NV; v += blockDim.x) arg_better(best, arg, filtered(v), v);
    block_argmax(best, arg, red, redi);
    float s = 0.f;
    for (int v = threadIdx.x; v < NV; v += blockDim.x) s += expf(filtered(v) - best);
    const float lse = best + logf(block_sum(s, red));
    for (int i = threadIdx.x; i < L; i += blockDim.x) tokens_out[b * (L + 1) + i] = tokens[b * L + i];
    if (threadIdx.x == 0) {
      const Tok next = last == EOT ? static_cast<Tok>(EOT) : static_cast<Tok>(arg);
      tokens_out[b * (L + 1) + L] = next;
      sum_out[b] = sum_in[b] + (best - lse) * static_cast<float>(last != EOT);
      all_eot = all_eot && next == EOT;
    }
  }
  if (threadIdx.x == 0) *completed = all_eot;
}

}  // namespace wf
