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

// Activations are read with ld.global.cg (L2, not the SM's L1): in the one-launch step other
// blocks wrote them after this block may have cached an older value.
template <typename T>
__device__ __forceinline__ float ld(const T* p) {
  return static_cast<float>(__ldcg(p));
}

// Block partials (shared memory, or global memory other blocks wrote): volatile, past L1.
__device__ __forceinline__ float ldv(const float* p) {
  return *reinterpret_cast<const volatile float*>(p);
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

// y[b, n] = f(x[b]) . w[n] + bias[n] for B rows of x (B, K) and w (N, K): R rows of w per
// warp per turn (loads in flight), reused across the batch. f is LayerNorm (eps 1e-5, as
// Whisper's) when LN; GELU (erf form, nn.gelu) follows when GELU; res[b, n] is added when RES.
template <typename T, typename O, int B, int K, int N, bool LN, bool BIAS, bool GELU, bool RES>
__device__ void gemv(const T* x, const T* g, const T* beta, const T* w, const T* bias, const T* res, O* y) {
  constexpr int R = 4;
  __shared__ float xs[B * K];
  __shared__ float red[32];
  for (int i = threadIdx.x; i < B * K; i += blockDim.x) xs[i] = ld(x + i);
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
  for (int n0 = ((blockIdx.x * blockDim.x + threadIdx.x) >> 5) * R; n0 < N; n0 += warps * R) {
    float acc[R][B];
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int n = min(n0 + r, N - 1);  // past the end: recompute the last row, never stored
#pragma unroll
      for (int b = 0; b < B; ++b) acc[r][b] = dot_row<T, K>(w + size_t(n) * K, xs + b * K, lane);
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
#pragma unroll
      for (int b = 0; b < B; ++b) acc[r][b] = warp_sum(acc[r][b]);
    }
    if (lane < R && n0 + lane < N) {
      const int n = n0 + lane;
#pragma unroll
      for (int b = 0; b < B; ++b) {
        float a = acc[0][b];
#pragma unroll
        for (int r = 1; r < R; ++r) a = lane == r ? acc[r][b] : a;
        float v = round_to<T>(a + (BIAS ? static_cast<float>(bias[n]) : 0.f));
        if constexpr (GELU) v = round_to<T>(0.5f * v * (1.f + erff(v * 0.70710678118654752f)));
        if constexpr (RES) v = round_to<T>(ld(res + b * N + n) + v);
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

// Softmax attention of one query row over S <= CAP keys, for one (batch, head) of the
// block: query(d) gives its elements, keys(j) and values(j) point at rows of HD elements.
template <typename T, int HD, int CAP, typename QF, typename KF, typename VF>
__device__ void attend(int S, QF query, KF keys, VF values, T* o) {
  constexpr int V = 16 / sizeof(T);
  __shared__ float q[HD];
  __shared__ float p[CAP];  // the scores
  __shared__ float red[32];
  __shared__ float part[1024];  // per-thread partial outputs
  for (int d = threadIdx.x; d < HD; d += blockDim.x) q[d] = rsqrtf(float(HD)) * query(d);
  __syncthreads();
  for (int j = threadIdx.x; j < S; j += blockDim.x) {
    const uint4* k4 = reinterpret_cast<const uint4*>(keys(j));
    float s = 0.f;
#pragma unroll
    for (int i = 0; i < HD / V; ++i) {
      uint4 raw = __ldcg(k4 + i);
      const T* kv = reinterpret_cast<const T*>(&raw);
#pragma unroll
      for (int e = 0; e < V; ++e) s += q[i * V + e] * static_cast<float>(kv[e]);
    }
    p[j] = s;
  }
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
#pragma unroll 4
  for (int j = grp; j < S; j += groups) acc += p[j] * ld(values(j) + d);
  part[threadIdx.x] = acc;
  __syncthreads();
  if (grp == 0) {
    for (int r = 1; r < groups; ++r) acc += part[r * HD + d];
    o[d] = static_cast<T>(acc / l);
  }
  __syncthreads();  // p, part and red are reused by the block's next (batch, head)
}

// Self-attention for the new token at position t: qkv (B, 3D) holds its q|k|v; the cache
// (B, H, CTX, HD) holds positions < t. Writes the cache with row t added to kc2/vc2 (a
// fresh buffer each step: MLX arrays are values, so rows < t are copied over).
template <typename T, int B, int H, int HD, int CTX>
__device__ void self_attention(const T* qkv, const T* kc, const T* vc, int t, T* o, T* kc2, T* vc2) {
  constexpr int D = H * HD, V = 16 / sizeof(T);
  for (int bh = blockIdx.x; bh < B * H; bh += gridDim.x) {
    const int b = bh / H, h = bh % H;
    const T* row = qkv + size_t(b) * 3 * D;
    const T *knew = row + D + h * HD, *vnew = row + 2 * D + h * HD;
    const size_t base = size_t(bh) * CTX * HD;
    const uint4 *ks = reinterpret_cast<const uint4*>(kc + base), *vs = reinterpret_cast<const uint4*>(vc + base);
    uint4 *kd = reinterpret_cast<uint4*>(kc2 + base), *vd = reinterpret_cast<uint4*>(vc2 + base);
    for (int i = threadIdx.x; i < t * HD / V; i += blockDim.x) {
      kd[i] = ks[i];
      vd[i] = vs[i];
    }
    for (int d = threadIdx.x; d < HD; d += blockDim.x) {
      kc2[base + size_t(t) * HD + d] = static_cast<T>(ld(knew + d));
      vc2[base + size_t(t) * HD + d] = static_cast<T>(ld(vnew + d));
    }
    attend<T, HD, CTX>(t + 1, [&](int d) { return ld(row + h * HD + d); },
        [&](int j) { return j < t ? kc + base + size_t(j) * HD : knew; },
        [&](int j) { return j < t ? vc + base + size_t(j) * HD : vnew; },
        o + size_t(b) * D + h * HD);
  }
}

// Cross-attention of q (B, D) over the window's K/V, each (B, H, S, HD), row-contiguous.
template <typename T, int B, int H, int HD, int S>
__device__ void cross_attention(const T* qin, const T* ck, const T* cv, T* o) {
  constexpr int D = H * HD;
  for (int bh = blockIdx.x; bh < B * H; bh += gridDim.x) {
    const int b = bh / H, h = bh % H;
    const size_t base = size_t(bh) * S * HD;
    attend<T, HD, S>(S, [&](int d) { return ld(qin + size_t(b) * D + h * HD + d); },
        [&](int j) { return ck + base + size_t(j) * HD; },
        [&](int j) { return cv + base + size_t(j) * HD; },
        o + size_t(b) * D + h * HD);
  }
}

// ---- mlx-whisper's logit filters and greedy update, over vocabulary slices ----------------
// For a step after the first: SuppressTokens (`suppress`, its additive mask), then
// ApplyTimestampRules when RULES, then GreedyDecoder.update at temperature 0. Pass 1 takes
// per-slice statistics of the suppressed logits, pass 2 the filtered argmax and exp-sum;
// `finish` merges the slices. One block does every slice, or the grid splits them.

// Online (max, sum of exp(x - max)) pairs, merged; -inf maxima carry no mass.
__device__ __forceinline__ void lse_merge(float& m, float& s, float m2, float s2) {
  if (m2 == -kInf) return;
  if (m2 > m) {
    s = (m == -kInf ? 0.f : s * expf(m - m2)) + s2;
    m = m2;
  } else {
    s += s2 * expf(m2 - m);
  }
}

__device__ void block_lse(float& m, float& s, float* red) {
  const float mb = block_max(m, red);
  s = block_sum(m == -kInf ? 0.f : s * expf(m - mb), red);
  m = mb;
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

// Pass 1 over z[v0, v1) (one row): writes (max, sum) over all tokens, the text maximum and
// (max, sum) over timestamps to out[0..4].
template <int TS>
__device__ void filter_stats(const float* z, const float* suppress, int v0, int v1, float* out) {
  __shared__ float red[32];
  float m = -kInf, s = 0.f, mt = -kInf, mts = -kInf, sts = 0.f;
  for (int v = v0 + threadIdx.x; v < v1; v += blockDim.x) {
    const float l = ld(z + v) + suppress[v];
    lse_merge(m, s, l, 1.f);
    if (v < TS) mt = fmaxf(mt, l);
    else lse_merge(mts, sts, l, 1.f);
  }
  block_lse(m, s, red);
  mt = block_max(mt, red);
  block_lse(mts, sts, red);
  if (threadIdx.x == 0) {
    out[0] = m, out[1] = s, out[2] = mt, out[3] = mts, out[4] = sts;
  }
}

// Pass 2 over z[v0, v1): with the merged pass-1 statistics of n parts, applies the timestamp
// rules and writes (max, first argmax, sum of exp(x - max)) of the filtered logits to out.
template <int TS, int EOT, int NO_TS, int SAMPLE_BEGIN, bool RULES, typename Tok>
__device__ void filter_pick(const float* z, const float* suppress, const Tok* tok_row, int L, const float* stats, int n,
                            int v0, int v1, float* out) {
  __shared__ float red[32];
  __shared__ int redi[32];
  bool text_banned = false, last_ts = false, penult_ts = true;
  if constexpr (RULES) {
    float m = -kInf, s = 0.f, mt = -kInf, mts = -kInf, sts = 0.f;
    for (int i = 0; i < n; ++i) {
      lse_merge(m, s, ldv(stats + 5 * i), ldv(stats + 5 * i + 1));
      mt = fmaxf(mt, ldv(stats + 5 * i + 2));
      lse_merge(mts, sts, ldv(stats + 5 * i + 3), ldv(stats + 5 * i + 4));
    }
    // ApplyTimestampRules: logsumexp of the timestamp logprobs against the best text logprob
    const float lse = m + logf(s);
    const float ts_logprob = mts == -kInf ? -kInf : (mts - lse) + logf(sts);
    text_banned = ts_logprob > mt - lse;
    last_ts = tok_row[L - 1] >= TS;
    if (L - SAMPLE_BEGIN >= 2) penult_ts = tok_row[L - 2] >= TS;
  }
  float best = -kInf, top = -kInf, sum = 0.f;  // top: lse_merge's maximum, the same as best
  int arg = 0x7fffffff;
  for (int v = v0 + threadIdx.x; v < v1; v += blockDim.x) {
    float l = ld(z + v) + suppress[v];
    if constexpr (RULES) {
      if (v == NO_TS || (last_ts && penult_ts && v >= TS) || (last_ts && !penult_ts && v < EOT) ||
          (text_banned && v < TS))
        l = -kInf;
    }
    arg_better(best, arg, l, v);
    lse_merge(top, sum, l, 1.f);
  }
  const float m = best;
  block_argmax(best, arg, red, redi);
  sum = block_sum(m == -kInf ? 0.f : sum * expf(m - best), red);
  if (threadIdx.x == 0) {
    out[0] = best, out[1] = __int_as_float(arg), out[2] = sum;
  }
}

// Merges n pass-2 parts for one row (thread 0 of one block): next token, logprob sum, row done.
template <int EOT, typename Tok>
__device__ bool greedy_finish(const Tok* tok_row, int L, const float* picks, int n, const float* sum_in, Tok* out_row,
                              float* sum_out) {
  float best = -kInf, top = -kInf, s = 0.f;
  int arg = 0x7fffffff;
  for (int i = 0; i < n; ++i) {
    const float b = ldv(picks + 3 * i), si = ldv(picks + 3 * i + 2);
    lse_merge(top, s, b, si);
    arg_better(best, arg, b, __float_as_int(ldv(picks + 3 * i + 1)));
  }
  const Tok last = tok_row[L - 1];
  const Tok next = last == EOT ? static_cast<Tok>(EOT) : static_cast<Tok>(arg);
  out_row[L] = next;
  *sum_out = *sum_in + (best - (best + logf(s))) * static_cast<float>(last != EOT);
  return next == EOT;
}

// The filters + greedy update in one block, for B rows: tokens (B, L) -> tokens_out (B, L+1).
template <int B, int NV, int TS, int EOT, int NO_TS, int SAMPLE_BEGIN, bool RULES, typename Tok>
__device__ void greedy(const float* logits, const Tok* tokens, int L, const float* sum_in, const float* suppress,
                       Tok* tokens_out, float* sum_out, bool* completed) {
  __shared__ float stats[5], pick[3];
  bool done = true;
  for (int b = 0; b < B; ++b) {
    const float* z = logits + size_t(b) * NV;
    filter_stats<TS>(z, suppress, 0, NV, stats);
    __syncthreads();
    filter_pick<TS, EOT, NO_TS, SAMPLE_BEGIN, RULES>(z, suppress, tokens + b * L, L, stats, 1, 0, NV, pick);
    __syncthreads();
    for (int i = threadIdx.x; i < L; i += blockDim.x) tokens_out[b * (L + 1) + i] = tokens[b * L + i];
    if (threadIdx.x == 0)
      done = greedy_finish<EOT>(tokens + b * L, L, pick, 1, sum_in + b, tokens_out + b * (L + 1), sum_out + b) && done;
    __syncthreads();
  }
  if (threadIdx.x == 0) *completed = done;
}

// ---- the whole step in one launch ------------------------------------------------------
// Every block arrives at each barrier once; `count` only grows (a launch passes
// gridDim.x * BARRIERS), so launch k waits for k * BARRIERS * gridDim.x + its arrivals.
// All blocks must be resident at once: the grid is sized to the GPU (cuda_step.py).
__device__ void grid_sync(unsigned* count, unsigned& target) {
  __syncthreads();
  target += gridDim.x;
  if (threadIdx.x == 0) {
    __threadfence();
    atomicAdd(count, 1u);
    long spins = 0;
    while (atomicAdd(count, 0u) < target) {
      __nanosleep(32);
      if (++spins > (1l << 26)) __trap();  // a block never arrived: fail instead of hanging
    }
    __threadfence();
  }
  __syncthreads();
}

// Per layer, the packed weights `lw` hold, in order: attn_ln w, b; q|k|v (3D, D); its bias
// (k's is 0); out (D, D), bias; cross_attn_ln w, b; cross q (D, D), bias; cross out (D, D),
// bias; mlp_ln w, b; mlp1 (4D, D), bias; mlp2 (D, 4D), bias.
template <int D>
struct LayerOffsets {
  static constexpr size_t ln1 = 0, qkv = ln1 + 2 * D, bqkv = qkv + 3 * D * D, out = bqkv + 3 * D, bout = out + D * D,
                          ln2 = bout + D, cq = ln2 + 2 * D, bcq = cq + D * D, co = bcq + D, bco = co + D * D,
                          ln3 = bco + D, fc1 = ln3 + 2 * D, bfc1 = fc1 + 4 * D * D, fc2 = bfc1 + 4 * D,
                          bfc2 = fc2 + 4 * D * D, size = bfc2 + D;
};

template <typename T, int D, int H, int NL, int CTX, int S, int NV, int TS, int EOT, int NO_TS, int SAMPLE_BEGIN,
          bool RULES, typename Tok>
__device__ void decode_step(const Tok* tokens, int L, const T* emb, const T* pos, const T* lnf, const T* lw,
                            const T* kc, const T* vc, const T* ck, const T* cv, const float* sum_in,
                            const float* suppress, const unsigned* counter, Tok* tokens_out, float* sum_out,
                            bool* completed, T* kc2, T* vc2, T* x, T* qkv, T* o, T* h, float* logits, float* part) {
  using W = LayerOffsets<D>;
  constexpr int HD = D / H, BARRIERS = 4 + 8 * NL;
  constexpr size_t KV = size_t(H) * CTX * HD, CK = size_t(H) * S * HD;
  unsigned* count = const_cast<unsigned*>(counter);  // a scratch counter that lives across steps
  const int t = L - 1;
  unsigned target = unsigned(t - SAMPLE_BEGIN) * BARRIERS * gridDim.x;  // launches before this one
  embed<T, 1, D>(tokens, L, emb, pos, x);
  grid_sync(count, target);
  for (int l = 0; l < NL; ++l) {
    const T* w = lw + l * W::size;
    gemv<T, T, 1, D, 3 * D, true, true, false, false>(x, w + W::ln1, w + W::ln1 + D, w + W::qkv, w + W::bqkv, nullptr, qkv);
    grid_sync(count, target);
    self_attention<T, 1, H, HD, CTX>(qkv, kc + l * KV, vc + l * KV, t, o, kc2 + l * KV, vc2 + l * KV);
    grid_sync(count, target);
    gemv<T, T, 1, D, D, false, true, false, true>(o, nullptr, nullptr, w + W::out, w + W::bout, x, x);
    grid_sync(count, target);
    gemv<T, T, 1, D, D, true, true, false, false>(x, w + W::ln2, w + W::ln2 + D, w + W::cq, w + W::bcq, nullptr, qkv);
    grid_sync(count, target);
    cross_attention<T, 1, H, HD, S>(qkv, ck + l * CK, cv + l * CK, o);
    grid_sync(count, target);
    gemv<T, T, 1, D, D, false, true, false, true>(o, nullptr, nullptr, w + W::co, w + W::bco, x, x);
    grid_sync(count, target);
    gemv<T, T, 1, D, 4 * D, true, true, true, false>(x, w + W::ln3, w + W::ln3 + D, w + W::fc1, w + W::bfc1, nullptr, h);
    grid_sync(count, target);
    gemv<T, T, 1, 4 * D, D, false, true, false, true>(h, nullptr, nullptr, w + W::fc2, w + W::bfc2, x, x);
    grid_sync(count, target);
  }
  gemv<T, float, 1, D, NV, true, false, false, false>(x, lnf, lnf + D, emb, emb, nullptr, logits);
  grid_sync(count, target);
  const int slice = (NV + gridDim.x - 1) / gridDim.x, v0 = blockIdx.x * slice, v1 = min(NV, v0 + slice);
  filter_stats<TS>(logits, suppress, v0, v1, part + 5 * blockIdx.x);
  grid_sync(count, target);
  float* picks = part + 5 * gridDim.x;
  filter_pick<TS, EOT, NO_TS, SAMPLE_BEGIN, RULES>(logits, suppress, tokens, L, part, gridDim.x, v0, v1,
                                                   picks + 3 * blockIdx.x);
  grid_sync(count, target);
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < L; i += gridDim.x * blockDim.x) tokens_out[i] = tokens[i];
  if (blockIdx.x == 0 && threadIdx.x == 0)
    *completed = greedy_finish<EOT>(tokens, L, picks, gridDim.x, sum_in, tokens_out, sum_out);
}

}  // namespace wf
