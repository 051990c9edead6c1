// One Whisper decoder step in one CUDA launch (cuda_step.py): the new token through every
// layer, the logits, mlx-whisper's logit filters and its greedy update. Float weights, or
// affine-quantized ones (the layers' QB bits, the token embedding's EB, groups of GS for both)
// dequantized in registers as they are read.
//
// Why one launch: MLX pays ~8 us of host time per graph node and a step of the module graph
// is ~230 nodes, while the step's math is ~20 us on an H100. Here the step's phases meet at
// grid-wide barriers instead of launch boundaries, and every phase spreads its work over the
// whole grid (one block per SM, all resident): matrix rows over all warps, attention over
// (head, chunk of keys) pairs merged flash-decoding style by the phase after.
//
// Numerics follow MLX's fp16 graph: statistics and dot products accumulate in fp32, and
// every value that is a tensor there (norm output, matmul output, residual sum) is rounded
// to T here at the same point, so greedy tokens match the module graph's. Where T is
// narrower than float (kNarrow), the rounding points are stock mlx-whisper's on MLX's CUDA
// backend, op for op: the layer norm's normalized row in T before its affine (in T's
// arithmetic), q and k each scaled by head_dim**-0.25 in T, attention scores and softmax
// weights in T, the GELU's every op in T. In float32 the one-rounding forms below already
// give stock's tokens and stay as they are.

#include <cuda/std/limits>

namespace wf {

constexpr float kInf = cuda::std::numeric_limits<float>::infinity();
enum { kThreads = 512 };

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// A block-wide reduction by a warp-wide one (`warp`: every lane gets its warp's result);
// `sh` is 32 values of shared scratch, `none` the reduction's identity. Every thread gets
// the result.
template <typename V, typename F>
__device__ __forceinline__ V block_reduce(V v, V* sh, V none, F&& warp) {
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  v = warp(v);
  __syncthreads();  // sh may still be read by the previous reduction
  if (lane == 0) sh[w] = v;
  __syncthreads();
  return warp(lane < nw ? sh[lane] : none);
}

__device__ float block_sum(float v, float* red) {
  return block_reduce(v, red, 0.f, [](float x) { return warp_sum(x); });
}

__device__ float block_max(float v, float* red) {
  return block_reduce(v, red, -kInf, [](float x) { return warp_max(x); });
}

// Activations are read with ld.global.cg (L2, not the SM's L1): other blocks wrote them
// after this block may have cached an older value. Weights are read-only: plain loads.
template <typename T>
__device__ __forceinline__ float ld(const T* p) {
  return static_cast<float>(__ldcg(p));
}

template <typename T>
__device__ __forceinline__ float round_to(float x) {
  return static_cast<float>(static_cast<T>(x));
}

template <typename T>
constexpr bool kNarrow = sizeof(T) < sizeof(float);

// mlx-whisper's qkv_attention scales q and k each by (head_dim)**-0.25, a Python float that
// MLX casts to T (kNarrow only: float32 keeps one 1/sqrt(head_dim) on q)
template <typename T, int HD>
__device__ __forceinline__ float qk_scale() {
  return round_to<T>(1.f / sqrtf(sqrtf(float(HD))));
}

__device__ void group_sync(unsigned* counter, unsigned target);
__device__ void group_sync_rows(unsigned* counter, int cstride, int rows, unsigned target);

// f(i, raw) for each 16-byte load i of one weight row of K / V loads (V values each), spread
// over the warp's lanes (lane, lane + 32, ...). R rows at a time (rows_dot) keep two loads per
// lane and row in flight (registers stay under 128 a thread at kThreads); a row alone (R = 1)
// has all its loads in flight. STREAM rows are read once a step and marked first to leave L2
// (ld.global.cs), so that they do not push out what the next step reads again.
template <int K, int V, int R, bool STREAM, typename F>
__device__ __forceinline__ void for_loads(const void* row, int lane, F&& f) {
  constexpr int N = (K / V + 31) / 32;
  static_assert(K % V == 0, "rows must be whole 16-byte vectors");
  const uint4* w4 = reinterpret_cast<const uint4*>(row);
#pragma unroll(R == 1 ? N : 2)
  for (int k = 0; k < N; ++k) {
    const int i = lane + 32 * k;
    if (K / V % 32 != 0 && i >= K / V) break;
    f(i, STREAM ? __ldcs(w4 + i) : w4[i]);
  }
}

// x <- V values of a row of xs as floats. xs holds floats, or T where a phase keeps its rows
// as they are stored (mlp2's h: half the shared memory, so more rows a group): the same
// values either way. Read 16 bytes at a time: lane i's values lie V apart from lane i+1's, so
// one value at a time would be a V-way shared-memory bank conflict.
template <int V, typename X>
__device__ __forceinline__ void read_xs(const X* xs, float (&x)[V]) {
  constexpr int E = 16 / sizeof(X);
  static_assert(V % E == 0, "whole 16-byte reads");
  const uint4* x16 = reinterpret_cast<const uint4*>(xs);
#pragma unroll
  for (int h = 0; h < V / E; ++h) {
    const uint4 raw = x16[h];
    const X* e = reinterpret_cast<const X*>(&raw);
#pragma unroll
    for (int k = 0; k < E; ++k) x[h * E + k] = static_cast<float>(e[k]);
  }
}

// acc[b] = sum_k xs[b, k] * w[k] over one weight row (for_loads)
template <typename T, int B, int K, int R, bool STREAM, typename X>
__device__ __forceinline__ void dot_row(const T* w, const X* xs, int lane, float (&acc)[B]) {
  constexpr int V = 16 / sizeof(T);
#pragma unroll
  for (int b = 0; b < B; ++b) acc[b] = 0.f;
  for_loads<K, V, R, STREAM>(w, lane, [&](int i, const uint4 raw) {
    const T* wv = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int b = 0; b < B; ++b) {
      float x[V];
      read_xs<V>(xs + b * K + i * V, x);
#pragma unroll
      for (int j = 0; j < V; ++j) acc[b] += static_cast<float>(wv[j]) * x[j];
    }
  });
}

// acc[b] = sum_k xs[b, k] * w[k] over one row of an affine-quantized matrix (MLX's mx.quantize:
// QB-bit values packed low bits first into 32-bit words, and per group of GS values a scale and
// a bias, w = scale * q + bias), dequantized in registers: per 16-byte load of 128 / QB values
// (one group's, GS being a multiple of that), scale * sum(q x) + bias * sum(x). MLX's
// quantized_matmul sums in another order, so the products agree with it to rounding.
// value j (from 0) of QB-bit values packed low bits first into 32-bit words
template <int QB>
__device__ __forceinline__ float unpack(const unsigned* words, int j) {
  return static_cast<float>((words[j / (32 / QB)] >> (QB * (j % (32 / QB)))) & ((1u << QB) - 1u));
}

template <typename T, int B, int K, int R, bool STREAM, int QB, int GS, typename X>
__device__ __forceinline__ void dot_qrow(const unsigned* q, const T* s, const T* z, const X* xs, int lane,
                                         float (&acc)[B]) {
  constexpr int V = 128 / QB;
  static_assert(GS % V == 0, "a 16-byte load must hold values of one group");
#pragma unroll
  for (int b = 0; b < B; ++b) acc[b] = 0.f;
  for_loads<K, V, R, STREAM>(q, lane, [&](int i, const uint4 raw) {
    const unsigned words[4] = {raw.x, raw.y, raw.z, raw.w};
    const int g = i * V / GS;
    const float sc = static_cast<float>(s[g]), bz = static_cast<float>(z[g]);
#pragma unroll
    for (int b = 0; b < B; ++b) {
      // four chains of sums, not one of V (16 or 32) dependent adds: the step waits on latency
      float d[4] = {0.f, 0.f, 0.f, 0.f}, sx[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
      for (int h = 0; h < V / 8; ++h) {  // eight values of xs at a time (16 bytes of T, 32 of floats)
        float x[8];
        read_xs<8>(xs + b * K + i * V + 8 * h, x);
#pragma unroll
        for (int e = 0; e < 8; ++e) {
          const int j = 8 * h + e;
          d[j % 4] += unpack<QB>(words, j) * x[e];
          sx[j % 4] += x[e];
        }
      }
      acc[b] += sc * ((d[0] + d[1]) + (d[2] + d[3])) + bz * ((sx[0] + sx[1]) + (sx[2] + sx[3]));
    }
  });
}

// The rows of a weight matrix, for rows_dot: plain rows of T, or packed ones (QB > 0) with their
// scales s and biases z (K / GS of each a row).
template <typename T>
struct Dense {
  const T* w;
  template <int B, int K, int R, bool STREAM, typename X>
  __device__ __forceinline__ void dot(int n, const X* xs, int lane, float (&acc)[B]) const {
    dot_row<T, B, K, R, STREAM>(w + size_t(n) * K, xs, lane, acc);
  }
  template <int K>
  __device__ __forceinline__ float at(size_t n, int k) const {
    return static_cast<float>(w[n * K + k]);
  }
};

template <typename T, int QB, int GS>
struct Packed {
  const unsigned* q;
  const T *s, *z;
  template <int B, int K, int R, bool STREAM, typename X>
  __device__ __forceinline__ void dot(int n, const X* xs, int lane, float (&acc)[B]) const {
    dot_qrow<T, B, K, R, STREAM, QB, GS>(q + size_t(n) * K * QB / 32, s + size_t(n) * K / GS, z + size_t(n) * K / GS,
                                         xs, lane, acc);
  }
  // value k of row n, dequantized to T as mx.dequantize gives it (QuantizedEmbedding's lookup)
  template <int K>
  __device__ __forceinline__ float at(size_t n, int k) const {
    const size_t g = (n * K + k) / GS;
    return round_to<T>(static_cast<float>(s[g]) * unpack<QB>(q + n * K * QB / 32, k) + static_cast<float>(z[g]));
  }
};

// Rows [n0, n1) of w (N, K; Dense or Packed) against the B rows of xs (B, K) in shared memory: `warp` of
// `warps` taking part, R rows per warp per turn (their loads in flight together; R = 1
// where the rows are fewer than the warps). Calls emit(n, b, w[n] . xs[b], pre(n, b)) once
// per row and batch row, in lane r * B + b of the row's warp (r = n % R: after the warp sums
// every lane holds every sum, so the R * B emits run side by side); pre (a bias, a residual:
// a float2) is loaded in that lane before the row, so its latency hides. The sums do not
// depend on R or on which lane emits.
template <typename T, int B, int K, int R = 4, bool STREAM = false, typename M, typename X, typename P, typename F>
__device__ void rows_dot(M w, const X* xs, int n0, int n1, int warp, int warps, P&& pre, F&& emit) {
  static_assert(R * B <= 32, "one lane per (row, batch row)");
  const int lane = threadIdx.x & 31, mr = lane / B, mb = lane % B;  // this lane's emit: row n + mr, batch row mb
  for (int n = n0 + warp * R; n < n1; n += warps * R) {
    const bool mine = lane < R * B && n + mr < n1;
    float2 e = make_float2(0.f, 0.f);
    if (mine) e = pre(n + mr, mb);
    float acc[R][B];
#pragma unroll
    for (int r = 0; r < R; ++r)  // past the end: recompute the last row, never emitted
      w.template dot<B, K, R, STREAM>(min(n + r, n1 - 1), xs, lane, acc[r]);
#pragma unroll
    for (int r = 0; r < R; ++r) {
#pragma unroll
      for (int b = 0; b < B; ++b) acc[r][b] = warp_sum(acc[r][b]);
    }
    if (mine) {
      float a = acc[0][0];
#pragma unroll
      for (int r = 0; r < R; ++r) {
#pragma unroll
        for (int b = 0; b < B; ++b) a = r == mr && b == mb ? acc[r][b] : a;
      }
      emit(n + mr, mb, a, e);
    }
  }
}

// Rows [0, n) of `bytes` each, `stride` bytes apart from `base`, on their way into L2 (the
// block's threads share the 128-byte lines).
__device__ void prefetch_rows(const void* base, size_t stride, int n, int bytes) {
  const int lines = (bytes + 127) / 128;
  for (int i = threadIdx.x; i < n * lines; i += blockDim.x) {
    const char* line = static_cast<const char*>(base) + (i / lines) * stride + (i % lines) * 128;
    asm volatile("prefetch.global.L2 [%0];" ::"l"(line));
  }
}

// xs (B, K) <- src (B, K), as floats or as they are (X: float or T); the caller syncs.
template <typename T, int N, typename X>
__device__ void load(const T* src, X* xs) {
  for (int i = threadIdx.x; i < N; i += blockDim.x) {
    if constexpr (sizeof(X) == sizeof(float))
      xs[i] = ld(src + i);
    else
      xs[i] = __ldcg(src + i);
  }
}

// mx.fast.layer_norm of each of the B rows of xs (eps 1e-5, as Whisper's): fp32 mean and
// variance, output rounded to T.
template <typename T, int B, int K>
__device__ void layer_norm(float* xs, const T* g, const T* beta, float* red) {
  __syncthreads();
  for (int b = 0; b < B; ++b) {
    float* r = xs + b * K;
    float s = 0.f;
    for (int k = threadIdx.x; k < K; k += blockDim.x) s += r[k];
    const float mean = block_sum(s, red) / K;
    float q = 0.f;
    for (int k = threadIdx.x; k < K; k += blockDim.x) q += (r[k] - mean) * (r[k] - mean);
    const float rstd = rsqrtf(block_sum(q, red) / K + 1e-5f);
    for (int k = threadIdx.x; k < K; k += blockDim.x) {
      // kNarrow: MLX's CUDA layer_norm, w * T(norm) + b in T's mul and add (which ptxas
      // contracts to one HFMA2 there as here)
      if constexpr (kNarrow<T>)
        r[k] = static_cast<float>(__hadd(__hmul(g[k], static_cast<T>((r[k] - mean) * rstd)), beta[k]));
      else
        r[k] = round_to<T>((r[k] - mean) * rstd * static_cast<float>(g[k]) + static_cast<float>(beta[k]));
    }
  }
  __syncthreads();
}

// ---- attention ------------------------------------------------------------------------
// A (head, chunk of keys) pair gives a flash-decoding partial: out = (m, l, acc[HD]) with m
// the chunk's maximum score, l = sum_j exp(s_j - m), acc = sum_j exp(s_j - m) v_j, for q
// (HD floats in shared memory, already scaled). key(j) and value(j) point at rows of HD.
// kNarrow: as stock's graph, each key is scaled in T, each score q.k rounded to T, and the
// weights are MLX's softmax (precise: fp32 inside, __expf, times 1/sum) rounded to T, so
// acc = sum_j w_j v_j is already normalized and merge_heads only adds the chunks' accs. The
// weights need the head's max and sum over all its C chunks: chunk c's (m, l) lie at
// peers + c * stride, and the C blocks of the head meet at `counter` before reading them.
template <typename T, int HD, typename KF, typename VF>
__device__ void attend_part(const float* q, int j0, int j1, KF key, VF value, float* p, float* part, float* red,
                            float* out, const float* peers, size_t stride, int C, unsigned* counter, unsigned target) {
  constexpr int V = 16 / sizeof(T);
  const float ks = qk_scale<T, HD>();
  for (int j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
    const uint4* k4 = reinterpret_cast<const uint4*>(key(j));
    float s = 0.f;
#pragma unroll
    for (int i = 0; i < HD / V; ++i) {
      uint4 raw = __ldcg(k4 + i);
      const T* kv = reinterpret_cast<const T*>(&raw);
#pragma unroll
      for (int e = 0; e < V; ++e)
        s += q[i * V + e] * (kNarrow<T> ? round_to<T>(static_cast<float>(kv[e]) * ks) : static_cast<float>(kv[e]));
    }
    p[j - j0] = kNarrow<T> ? round_to<T>(s) : s;
  }
  float m = -kInf;
  for (int j = threadIdx.x; j < j1 - j0; j += blockDim.x) m = fmaxf(m, p[j]);  // this thread's own writes
  m = block_max(m, red);
  float l = 0.f;
  if constexpr (kNarrow<T>) {
    for (int j = threadIdx.x; j < j1 - j0; j += blockDim.x) l += __expf(p[j] - m);
    l = block_sum(l, red);
    if (C > 1) {  // the head's statistics: every chunk's, merged in chunk order
      if (threadIdx.x == 0) out[0] = m, out[1] = l;
      group_sync(counter, target);
      float mm = -kInf, ll = 0.f;
      for (int c = 0; c < C; ++c) mm = fmaxf(mm, ld(peers + c * stride));
      for (int c = 0; c < C; ++c) ll += ld(peers + c * stride + 1) * __expf(ld(peers + c * stride) - mm);
      m = mm, l = ll;
    }
    const float inv = 1.f / l;
    for (int j = threadIdx.x; j < j1 - j0; j += blockDim.x) p[j] = round_to<T>(__expf(p[j] - m) * inv);
    __syncthreads();
  } else {
    for (int j = threadIdx.x; j < j1 - j0; j += blockDim.x) {
      p[j] = expf(p[j] - m);
      l += p[j];
    }
    l = block_sum(l, red);  // also orders the p writes before the reads below
  }
  const int d = threadIdx.x % HD, grp = threadIdx.x / HD, groups = blockDim.x / HD;
  float acc = 0.f;
#pragma unroll 8
  for (int j = j0 + grp; j < j1; j += groups) acc += p[j - j0] * ld(value(j) + d);
  part[threadIdx.x] = acc;
  __syncthreads();
  if (grp == 0) {
    for (int r = 1; r < groups; ++r) acc += part[r * HD + d];
    out[2 + d] = acc;
  }
  // (kNarrow: the other chunks may still read this one's statistics, written above)
  if (!kNarrow<T> && threadIdx.x == 0) out[0] = m, out[1] = l;
  __syncthreads();  // p, part and red are reused by the block's next partial
}

// attend_part for NR rows that share their keys and values (cross-attention: the rows of one
// audio), the keys and values read once for all of them. Row r's query lies at q + r * HD,
// its partial at out + r * (HD + 2), its peers' at peers + r * (HD + 2) (the rows are
// consecutive batch rows), its counter at counter + r * cstride. Each row's sums run in
// attend_part's order, so each row's partial is what attend_part gives it. NR rows' scores
// must fit in p.
template <typename T, int HD, int NR, typename KF, typename VF>
__device__ void attend_rows(const float* q, int j0, int j1, KF key, VF value, float* p, float* part, float* red,
                            float* out, const float* peers, size_t stride, int C, unsigned* counter, int cstride,
                            unsigned target) {
  constexpr int V = 16 / sizeof(T), O = HD + 2;
  const float ks = qk_scale<T, HD>();
  const int n = j1 - j0;
  for (int j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
    const uint4* k4 = reinterpret_cast<const uint4*>(key(j));
    float s[NR];
#pragma unroll
    for (int r = 0; r < NR; ++r) s[r] = 0.f;
#pragma unroll
    for (int i = 0; i < HD / V; ++i) {
      uint4 raw = __ldcg(k4 + i);
      const T* kv = reinterpret_cast<const T*>(&raw);
#pragma unroll
      for (int e = 0; e < V; ++e) {
        const float k = kNarrow<T> ? round_to<T>(static_cast<float>(kv[e]) * ks) : static_cast<float>(kv[e]);
#pragma unroll
        for (int r = 0; r < NR; ++r) s[r] += q[r * HD + i * V + e] * k;
      }
    }
#pragma unroll
    for (int r = 0; r < NR; ++r) p[r * n + j - j0] = kNarrow<T> ? round_to<T>(s[r]) : s[r];
  }
  float m[NR], l[NR];
  for (int r = 0; r < NR; ++r) {
    float mr = -kInf;
    for (int j = threadIdx.x; j < n; j += blockDim.x) mr = fmaxf(mr, p[r * n + j]);  // this thread's own writes
    m[r] = block_max(mr, red);
  }
  if constexpr (kNarrow<T>) {
    for (int r = 0; r < NR; ++r) {
      float lr = 0.f;
      for (int j = threadIdx.x; j < n; j += blockDim.x) lr += __expf(p[r * n + j] - m[r]);
      l[r] = block_sum(lr, red);
    }
    if (C > 1) {  // each row's head statistics: every chunk's, merged in chunk order
      if (threadIdx.x == 0)
        for (int r = 0; r < NR; ++r) out[r * O] = m[r], out[r * O + 1] = l[r];
      group_sync_rows(counter, cstride, NR, target);
      for (int r = 0; r < NR; ++r) {
        const float* pr = peers + r * O;
        float mm = -kInf, ll = 0.f;
        for (int c = 0; c < C; ++c) mm = fmaxf(mm, ld(pr + c * stride));
        for (int c = 0; c < C; ++c) ll += ld(pr + c * stride + 1) * __expf(ld(pr + c * stride) - mm);
        m[r] = mm, l[r] = ll;
      }
    }
    for (int r = 0; r < NR; ++r) {
      const float inv = 1.f / l[r];
      for (int j = threadIdx.x; j < n; j += blockDim.x) p[r * n + j] = round_to<T>(__expf(p[r * n + j] - m[r]) * inv);
    }
    __syncthreads();
  } else {
    for (int r = 0; r < NR; ++r) {
      float lr = 0.f;
      for (int j = threadIdx.x; j < n; j += blockDim.x) {
        p[r * n + j] = expf(p[r * n + j] - m[r]);
        lr += p[r * n + j];
      }
      l[r] = block_sum(lr, red);  // also orders the p writes before the reads below
    }
  }
  const int d = threadIdx.x % HD, grp = threadIdx.x / HD, groups = blockDim.x / HD;
  float acc[NR];
#pragma unroll
  for (int r = 0; r < NR; ++r) acc[r] = 0.f;
#pragma unroll 4
  for (int j = j0 + grp; j < j1; j += groups) {
    const float v = ld(value(j) + d);
#pragma unroll
    for (int r = 0; r < NR; ++r) acc[r] += p[r * n + j - j0] * v;
  }
  for (int r = 0; r < NR; ++r) {
    part[threadIdx.x] = acc[r];
    __syncthreads();
    if (grp == 0) {
      float a = acc[r];
      for (int g = 1; g < groups; ++g) a += part[g * HD + d];
      out[r * O + 2 + d] = a;
    }
    __syncthreads();  // part is written again for the next row
  }
  if (!kNarrow<T> && threadIdx.x == 0)
    for (int r = 0; r < NR; ++r) out[r * O] = m[r], out[r * O + 1] = l[r];
  __syncthreads();  // p, part and red are reused by the block's next item
}

// xs (NB, H*HD) <- the attention outputs of rows [g0, g0 + NB), rounded to T, from C
// partials per (b, h): att[((h * C + c) * B + b) * (HD + 2)], merged in chunk order. No
// chunk is empty. (A padding row, b >= B, reads the next partials' rows: within att, and
// its outputs go nowhere but its own padding rows.)
template <typename T, int B, int NB, int H, int HD>
__device__ void merge_heads(const float* att, int C, float* xs, int g0) {
  for (int i = threadIdx.x; i < NB * H * HD; i += blockDim.x) {
    const int b = g0 + i / (H * HD), h = i / HD % H, e = i % HD;
    if constexpr (kNarrow<T>) {  // the chunks' accs are already weighted by the head's softmax
      float acc = 0.f;
#pragma unroll 8
      for (int c = 0; c < C; ++c) acc += ld(att + (size_t(h * C + c) * B + b) * (HD + 2) + 2 + e);
      xs[i] = round_to<T>(acc);
      continue;
    }
    float m = -kInf, l = 0.f, acc = 0.f;
#pragma unroll 8
    for (int c = 0; c < C; ++c) {  // unrolled: the chunks' loads in flight together
      const float* a = att + (size_t(h * C + c) * B + b) * (HD + 2);
      const float mc = ld(a), mm = fmaxf(m, mc), f = expf(m - mm), g = expf(mc - mm);  // exp(-inf) = 0
      l = l * f + ld(a + 1) * g;
      acc = acc * f + ld(a + 2 + e) * g;
      m = mm;
    }
    xs[i] = round_to<T>(acc / l);
  }
}

// ---- mlx-whisper's logit filters and greedy update --------------------------------------
// (max, sum of exp(x - max), first index of the max) over a set of logits: the softmax
// statistics and mx.argmax's pick in one pass. -inf entries carry no mass.
struct Pick {
  float m, s;
  int i;
  __device__ void add(float m2, float s2, int i2) {
    if (m2 > m) {
      s = (m == -kInf ? 0.f : s * expf(m - m2)) + s2;
      m = m2, i = i2;
    } else {
      if (m2 != -kInf) s += s2 * expf(m2 - m);
      if (m2 == m && i2 < i) i = i2;
    }
  }
  __device__ float lse() const { return m + logf(s); }
};

__device__ __forceinline__ Pick no_pick() { return {-kInf, 0.f, 0x7fffffff}; }

// SuppressTokens (an additive mask; SuppressBlank's too at the first sample), then
// ApplyTimestampRules (when RULES), then GreedyDecoder.update at temperature 0, for one row
// in one pass. Whether the rules ban text depends on the softmax of the whole row, so the
// pass keeps the pick with text (`keep`) and without (`late`); `finish` chooses once it is known.
enum { kAll, kText, kTs, kKeep, kLate, kPicks };

// The row's timestamp history: the first sample (no token sampled yet) must be a timestamp
// up to TS + max_init; after a lone timestamp no text may follow; after a pair, no
// timestamp. sample_begin and max_init change with the prompt, so they are launch arguments
// (meta[2], meta[3]), not template constants: one compiled kernel serves every prompt length.
struct History {
  bool first, last_ts, penult_ts;
  int max_init;
};

template <int TS, typename Tok>
__device__ __forceinline__ History timestamp_history(const Tok* row, int L, int sample_begin, int max_init) {
  return {L == sample_begin, L > sample_begin && row[L - 1] >= TS, L - sample_begin < 2 || row[L - 2] >= TS, max_init};
}

// Whether the timestamp rules ban token v outright (the ban on text that depends on the
// row's softmax aside)
template <int TS, int EOT, int NO_TS, bool RULES>
__device__ __forceinline__ bool rule_banned(int v, History r) {
  return RULES && (v == NO_TS || (r.first && (v < TS || v > TS + r.max_init)) ||
                   (r.last_ts && r.penult_ts && v >= TS) || (r.last_ts && !r.penult_ts && v < EOT));
}

// FOLD: text or timestamp picked by a branch, which keeps f in registers (one row's picks);
// else by an index the compiler cannot fold, which puts f in local memory, where a group's
// rows of picks would take too many registers (3 rows: 162 a thread)
template <int TS, int EOT, int NO_TS, bool RULES, bool FOLD = true>
__device__ __forceinline__ void filter_add(Pick* f, int v, float l, History r) {
  f[kAll].add(l, 1.f, v);
  if constexpr (FOLD) {
    if (v < TS)
      f[kText].add(l, 1.f, v);
    else
      f[kTs].add(l, 1.f, v);
  } else {
    f[v < TS ? kText : kTs].add(l, 1.f, v);
  }
  if (rule_banned<TS, EOT, NO_TS, RULES>(v, r)) l = -kInf;
  f[kKeep].add(l, 1.f, v);
  if (v >= TS) f[kLate].add(l, 1.f, v);
}

__device__ __forceinline__ Pick shfl(const Pick& p, int o) {
  return {__shfl_xor_sync(0xffffffffu, p.m, o), __shfl_xor_sync(0xffffffffu, p.s, o),
          __shfl_xor_sync(0xffffffffu, p.i, o)};
}

// Merges every thread's f[0..kPicks) over the block; thread 0 gets the result. `sh` is
// 32 * kPicks Picks of shared scratch.
__device__ void block_merge(Pick* f, Pick* sh) {
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  for (int o = 16; o > 0; o >>= 1)
    for (int k = 0; k < kPicks; ++k) {
      const Pick p = shfl(f[k], o);
      f[k].add(p.m, p.s, p.i);
    }
  __syncthreads();
  if (lane == 0)
    for (int k = 0; k < kPicks; ++k) sh[w * kPicks + k] = f[k];
  __syncthreads();
  if (w == 0) {
    for (int k = 0; k < kPicks; ++k) f[k] = lane < nw ? sh[lane * kPicks + k] : no_pick();
    for (int o = 16; o > 0; o >>= 1)
      for (int k = 0; k < kPicks; ++k) {
        const Pick p = shfl(f[k], o);
        f[k].add(p.m, p.s, p.i);
      }
  }
}

// Whether the rules ban the row's text: the timestamps' total logprob above the best text
// token's (from the row's merged picks)
template <bool RULES>
__device__ __forceinline__ bool text_banned(const Pick* f) {
  if (!RULES) return false;
  const float lse = f[kAll].lse();
  const float ts_logprob = f[kTs].m == -kInf ? -kInf : (f[kTs].m - lse) + logf(f[kTs].s);
  return ts_logprob > f[kText].m - lse;
}

// The row's next token, logprob sum and whether it is done, from its merged picks.
template <int TS, int EOT, bool RULES, typename Tok>
__device__ bool finish(const Pick* f, const Tok* tok_row, int L, float sum_in, Tok* out_row, float* sum_out) {
  const Pick p = text_banned<RULES>(f) ? f[kLate] : f[kKeep];  // (constant indices: f stays in registers)
  const Tok last = tok_row[L - 1];
  const Tok next = last == EOT ? static_cast<Tok>(EOT) : static_cast<Tok>(p.m == -kInf ? 0 : p.i);  // argmax of -infs: 0
  out_row[L] = next;
  *sum_out = sum_in + (p.m - p.lse()) * static_cast<float>(last != EOT);
  return next == EOT;
}

// The filters + update alone, in one block, for logits (B, NV): tokens (B, L) -> (B, L+1);
// meta[2], meta[3]: sample_begin, max_init (as decode_step's).
template <int B, int NV, int TS, int EOT, int NO_TS, bool RULES, typename Tok>
__device__ void greedy(const float* logits, const Tok* tokens, int L, const int* meta, const float* sum_in,
                       const float* suppress, Tok* tokens_out, float* sum_out, bool* completed) {
  __shared__ Pick sh[32 * kPicks];
  bool done = true;
  for (int b = 0; b < B; ++b) {
    const History r = timestamp_history<TS>(tokens + b * L, L, meta[2], meta[3]);
    Pick f[kPicks];
    for (int k = 0; k < kPicks; ++k) f[k] = no_pick();
    for (int v = threadIdx.x; v < NV; v += blockDim.x)
      filter_add<TS, EOT, NO_TS, RULES>(f, v, logits[size_t(b) * NV + v] + suppress[v], r);
    block_merge(f, sh);
    for (int i = threadIdx.x; i < L; i += blockDim.x) tokens_out[b * (L + 1) + i] = tokens[b * L + i];
    if (threadIdx.x == 0)
      done = finish<TS, EOT, RULES>(f, tokens + b * L, L, sum_in[b], tokens_out + b * (L + 1), sum_out + b) && done;
  }
  if (threadIdx.x == 0) *completed = done;
}

// ---- openai's beam search update, on the device ------------------------------------------
// BeamSearchDecoder.update (beam.py, openai/whisper's decoding.py) after the filters, in one
// launch, so that a beam step never waits for the host. Blocks take (row, chunk of the
// vocabulary): the chunk's filter statistics (as the greedy update's) and its K + 1 largest
// filtered logits, twice (with text, and timestamps alone, for a row whose text the rules
// ban). The last block to arrive merges each row's chunks into its K + 1 candidates (the
// largest logits, ties to the lower id, as beam.py's argpartition), ordered by log
// probability, then ranks each audio's candidates as openai does: identical sequences
// counted once (rows of one audio start identical), a stable sort by summed log
// probability, sequences ending in EOT finished into the store until it holds
// max_candidates, the best K others the next rows. The caches stay where they are: row b's
// history is now row source[b]'s, which `path` records for the next forward pass (decode_step's
// self_row). A launch after the decode is complete writes nothing to the store.

struct Cand {
  float lp;  // a logit or a log probability
  int v;
};

constexpr int kNoCand = 0x7fffffff;

__device__ __forceinline__ bool better(Cand a, Cand b) { return a.lp > b.lp || (a.lp == b.lp && a.v < b.v); }

__device__ __forceinline__ Cand warp_best(Cand c) {
  for (int o = 16; o > 0; o >>= 1) {
    const Cand d{__shfl_xor_sync(0xffffffffu, c.lp, o), __shfl_xor_sync(0xffffffffu, c.v, o)};
    if (better(d, c)) c = d;
  }
  return c;
}

// A thread's C best candidates, best first, in registers (every index a compile-time one)
template <int C>
struct Top {
  Cand c[C];
  __device__ __forceinline__ void clear() {
#pragma unroll
    for (int k = 0; k < C; ++k) c[k] = Cand{-kInf, kNoCand};
  }
  __device__ __forceinline__ void insert(Cand d) {
#pragma unroll
    for (int k = C - 1; k >= 0; --k)  // slot k (not yet written) takes d, or moves down from k - 1
      if (better(d, c[k])) c[k] = k > 0 && better(d, c[k - 1]) ? c[k - 1] : d;
  }
  __device__ __forceinline__ void pop() {
#pragma unroll
    for (int k = 0; k + 1 < C; ++k) c[k] = c[k + 1];
    c[C - 1] = Cand{-kInf, kNoCand};
  }
  // The C best of the warp's lists, best first, to every lane through emit(k, cand): each
  // round the best head leaves its list (ids are unique, so one lane's)
  template <typename F>
  __device__ __forceinline__ void warp_select(F&& emit) {
#pragma unroll
    for (int k = 0; k < C; ++k) {
      const Cand b = warp_best(c[0]);
      if (b.v != kNoCand && c[0].v == b.v) pop();
      emit(k, b);
    }
  }
};

enum { kBeamChunks = 16 };  // blocks a row: the vocabulary in chunks

// Rows' histories after a beam step (one block): row b continues row src[b], whose first
// L - 1 positions lie where src[b]'s table says and whose position L - 1 (the forward pass's
// last) in the cache's row src[b]. path (2, B, ctx), each position's row as an offset from b
// (zeros: every row its own; a fresh mx.zeros needs no kernel of MLX's that compiles): the
// table for L tokens at L % 2 is read, the one for L + 1 written.
template <int B>
__device__ void follow(const int* path_in, int ctx, int L, const int* src) {
  int* path = const_cast<int*>(path_in);
  const int *old = path + size_t(L % 2) * B * ctx;
  int* next = path + size_t((L + 1) % 2) * B * ctx;
  for (int i = threadIdx.x; i < B * L; i += blockDim.x) {
    const int b = i / L, j = i % L;
    next[b * ctx + j] = (j == L - 1 ? src[b] : src[b] + old[src[b] * ctx + j]) - b;
  }
}

// logits (B, R, NV) float32: row R-1 the last position's; tokens (B, L); meta: sample_begin,
// max_init (the filters'), max_candidates, the store's slot length (>= L + 1); sum_in (>= B);
// suppress: the additive mask; work (float32, in place): [0] the arrival counter (0 between
// launches), from 4 each (row, chunk)'s picks and two lists of K + 1 (logit, id). The store,
// in place: fin_tokens (A * MC slots), fin_meta (A counts, then A * MC lengths), fin_score
// (A * MC); path (2, B, ctx), the rows' histories (decode_step's self_row): read at L % 2,
// written at (L + 1) % 2. Out: tokens_out (B, L + 1), sum_out (>= B), source (>= B), completed.
template <int B, int K, int NV, int TS, int EOT, int NO_TS, bool RULES, typename Tok>
__device__ void beam_update(const float* logits, int R, const Tok* tokens, int L, const int* meta,
                            const float* sum_in, const float* suppress, const float* work_in,
                            const Tok* fin_tokens_in, const int* fin_meta_in, const float* fin_score_in,
                            const int* path_in, int ctx, Tok* tokens_out, float* sum_out, int* source, bool* completed) {
  static_assert(B % K == 0, "rows come in groups of K beams, one group an audio");
  constexpr int A = B / K, C = K + 1, SC = kBeamChunks, PER = kPicks * 3 + 4 * C;
  __shared__ Pick sh[32 * kPicks];
  __shared__ Cand warps[2][kThreads / 32][C];  // each warp's best, of both lists
  __shared__ bool done_before;
  __shared__ unsigned arrived;
  float* work = const_cast<float*>(work_in);
  unsigned* count = reinterpret_cast<unsigned*>(work);
  const int mc = meta[2], slot = meta[3];
  if (blockDim.x != kThreads || gridDim.x != B * SC) __trap();
  {
    const int b = blockIdx.x / SC, s = blockIdx.x % SC, v0 = s * NV / SC, v1 = (s + 1) * NV / SC;
    const float* row = logits + (size_t(b) * R + R - 1) * NV;
    const History r = timestamp_history<TS>(tokens + size_t(b) * L, L, meta[0], meta[1]);
    float* mine = work + 4 + size_t(blockIdx.x) * PER;
    // one pass: the filter statistics, and each thread's K + 1 best (filtered) logits of every
    // token the rules leave and of their timestamps; then each warp's, then the block's
    Pick f[kPicks];
    for (int k = 0; k < kPicks; ++k) f[k] = no_pick();
    Top<C> all, late;
    all.clear(), late.clear();
    for (int v = v0 + threadIdx.x; v < v1; v += blockDim.x) {
      const float l = row[v] + suppress[v];
      filter_add<TS, EOT, NO_TS, RULES>(f, v, l, r);
      const Cand d{rule_banned<TS, EOT, NO_TS, RULES>(v, r) ? -kInf : l, v};
      all.insert(d);
      if (v >= TS) late.insert(d);
    }
    block_merge(f, sh);
    if (threadIdx.x == 0)
      for (int k = 0; k < kPicks; ++k) mine[k * 3] = f[k].m, mine[k * 3 + 1] = f[k].s, mine[k * 3 + 2] = __int_as_float(f[k].i);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    all.warp_select([&](int k, Cand b) { if (lane == 0) warps[0][warp][k] = b; });
    late.warp_select([&](int k, Cand b) { if (lane == 0) warps[1][warp][k] = b; });
    __syncthreads();
    if (warp < 2) {  // warp `list`: 0 every token the rules leave, 1 their timestamps
      Top<C> t;
      t.clear();
      if (lane < kThreads / 32) {  // (braces: a pragma between an if and its loop may end the if)
#pragma unroll
        for (int k = 0; k < C; ++k) t.c[k] = warps[warp][lane][k];
      }
      t.warp_select([&](int k, Cand b) {
        if (lane == 0) mine[kPicks * 3 + (warp * C + k) * 2] = b.lp, mine[kPicks * 3 + (warp * C + k) * 2 + 1] = __int_as_float(b.v);
      });
      __threadfence();  // (thread 0's fence below orders its own writes)
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    arrived = atomicAdd(count, 1u);
  }
  __syncthreads();
  if (arrived != B * SC - 1) return;  // not the last block
  __threadfence();

  // 2. the last block. Each row's candidates, a warp a row: its chunks' statistics merged
  //    (whether the rules ban its text, the log-sum-exp of its filtered logits), the K + 1
  //    largest of its chunks' lists, ordered by log probability (ties: the lower id)
  __shared__ Cand rc[B * C];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int b = warp; b < B; b += kThreads / 32) {
    Pick g[kPicks];
    for (int k = 0; k < kPicks; ++k) {
      g[k] = no_pick();
      if (lane < SC) {
        const float* o = work + 4 + size_t(b * SC + lane) * PER + k * 3;
        g[k] = {ld(o), ld(o + 1), __float_as_int(ld(o + 2))};
      }
    }
    for (int o = 16; o > 0; o >>= 1)
      for (int k = 0; k < kPicks; ++k) {
        const Pick p = shfl(g[k], o);
        g[k].add(p.m, p.s, p.i);
      }
    const bool ban = text_banned<RULES>(g);
    const float lse = (ban ? g[kLate] : g[kKeep]).lse();  // (constant indices: g stays in registers)
    Top<C> t;
    t.clear();
    for (int e = lane; e < SC * C; e += 32) {
      const float* o = work + 4 + size_t(b * SC + e / C) * PER + kPicks * 3 + (int(ban) * C + e % C) * 2;
      const Cand d{ld(o), __float_as_int(ld(o + 1))};
      if (d.v != kNoCand) t.insert(d);
    }
    Cand sel[C];
    t.warp_select([&](int k, Cand c) { sel[k] = c; });
    if (lane == 0) {
#pragma unroll
      for (int k = 0; k < C; ++k) {  // insertion, by log probability
        const Cand d{sel[k].lp - lse, sel[k].v};
        int at = k;
        for (; at > 0 && better(d, rc[b * C + at - 1]); --at) rc[b * C + at] = rc[b * C + at - 1];
        rc[b * C + at] = d;
      }
    }
  }

  // 3. openai's ranking, an audio (a group of K rows) a thread
  Tok* fin_tokens = const_cast<Tok*>(fin_tokens_in);
  int* fin_meta = const_cast<int*>(fin_meta_in);
  float* fin_score = const_cast<float*>(fin_score_in);
  __shared__ float sc[B * C], sums[B];
  __shared__ int tk[B * C], src[B * C], root_of[B * C], order[B * C];
  __shared__ int n_of[A], root[B], pick_src[B], pick_tok[B], nf_of[A], nf_from[B], nf_slot[B];
  __shared__ unsigned char differ[B * K];
  if (threadIdx.x == 0) {
    bool all = true;
    for (int g = 0; g < A; ++g) all = all && fin_meta[g] >= mc;
    done_before = all;
  }
  for (int i = threadIdx.x; i < B * K; i += blockDim.x) differ[i] = 0;
  for (int i = threadIdx.x; i < B; i += blockDim.x) sums[i] = sum_in[i];
  __syncthreads();
  if (done_before) {  // openai's update returns at once; the host reads this launch no more
    for (int i = threadIdx.x; i < B * (L + 1); i += blockDim.x)
      tokens_out[i] = i % (L + 1) < L ? tokens[i / (L + 1) * L + i % (L + 1)] : static_cast<Tok>(EOT);
    for (int i = threadIdx.x; i < B; i += blockDim.x) source[i] = i, sum_out[i] = sums[i];
    for (int i = threadIdx.x; i < B; i += blockDim.x) pick_src[i] = i;
    __syncthreads();
    follow<B>(path_in, ctx, L, pick_src);
    if (threadIdx.x == 0) *completed = true, *count = 0;
    return;
  }
  // rows of one audio with the same tokens (the first update's: every beam starts as the
  // prompt) propose the same sequences; a row's root is the first row of its audio like it
  for (int i = threadIdx.x; i < B * K * L; i += blockDim.x) {
    const int pair = i / L, pos = i % L, row1 = pair / K, j2 = pair % K, row2 = row1 / K * K + j2;
    if (j2 < row1 % K && tokens[size_t(row1) * L + pos] != tokens[size_t(row2) * L + pos]) differ[pair] = 1;
  }
  __syncthreads();
  for (int i = threadIdx.x; i < B; i += blockDim.x) {
    int j = i % K;
    for (int j2 = 0; j2 < i % K; ++j2)
      if (!differ[i * K + j2]) {
        j = j2;
        break;
      }
    root[i] = j;
  }
  __syncthreads();
  // the candidates in openai's order (beam by beam, each beam's likeliest first), a sequence
  // met again keeping its first place and taking the later score and source (a dict's update)
  for (int g = threadIdx.x; g < A; g += blockDim.x) {
    const int base = g * K * C;
    int n = 0;
    for (int j = 0; j < K; ++j) {
      const int bi = g * K + j, rj = root[bi];
      for (int k = 0; k < C; ++k) {
        const Cand d = rc[bi * C + k];
        int at = -1;
        if (rj != j)
          for (int c = 0; c < n && at < 0; ++c)
            if (root_of[base + c] == rj && tk[base + c] == d.v) at = c;
        if (at < 0) at = n++, tk[base + at] = d.v, root_of[base + at] = rj;
        sc[base + at] = sums[bi] + d.lp, src[base + at] = bi;
      }
    }
    n_of[g] = n;
  }
  __syncthreads();
  // a stable sort, best first: each candidate's place is how many go before it
  for (int i = threadIdx.x; i < A * K * C; i += blockDim.x) {
    const int g = i / (K * C), base = g * K * C, c = i - base;
    if (c >= n_of[g]) continue;
    int place = 0;
    for (int c2 = 0; c2 < n_of[g]; ++c2) place += sc[base + c2] > sc[base + c] || (sc[base + c2] == sc[base + c] && c2 < c);
    order[base + place] = c;
  }
  __syncthreads();
  for (int g = threadIdx.x; g < A; g += blockDim.x) {
    const int base = g * K * C;
    int saved = 0, done = fin_meta[g], nf = 0;
    for (int p = 0; p < n_of[g] && saved < K; ++p) {
      const int c = order[base + p], tok = tk[base + c], from = src[base + c];
      if (tok == EOT) {
        if (done < mc) {  // finished, while the audio's list has room (its tokens copied below)
          const int s = g * mc + done++;
          nf_from[g * K + nf] = from, nf_slot[g * K + nf] = s, ++nf;
          fin_meta[A + s] = L + 1;
          fin_score[s] = sc[base + c];
        }
      } else {
        pick_src[g * K + saved] = from, pick_tok[g * K + saved] = tok;
        sum_out[g * K + saved] = sc[base + c];
        ++saved;
      }
    }
    for (; saved < K; ++saved)  // (never: K + 1 candidates a row, at most one of them EOT)
      pick_src[g * K + saved] = g * K, pick_tok[g * K + saved] = EOT, sum_out[g * K + saved] = -kInf;
    fin_meta[g] = done;
    nf_of[g] = nf;
  }
  __syncthreads();
  for (int i = threadIdx.x; i < B * (L + 1); i += blockDim.x) {
    const int rw = i / (L + 1), pos = i % (L + 1);
    tokens_out[i] = pos < L ? tokens[size_t(pick_src[rw]) * L + pos] : static_cast<Tok>(pick_tok[rw]);
    const int g = rw / K, j = rw % K;  // a newly finished sequence's tokens: its source row, then EOT
    if (j < nf_of[g])
      fin_tokens[size_t(nf_slot[rw]) * slot + pos] = pos < L ? tokens[size_t(nf_from[rw]) * L + pos] : static_cast<Tok>(EOT);
  }
  for (int i = threadIdx.x; i < B; i += blockDim.x) source[i] = pick_src[i];
  follow<B>(path_in, ctx, L, pick_src);
  if (threadIdx.x == 0) {
    bool all = true;
    for (int g = 0; g < A; ++g) all = all && fin_meta[g] >= mc;
    *completed = all;
    *count = 0;  // every block has arrived: the next launch starts from 0
  }
}

// ---- the step ---------------------------------------------------------------------------
__device__ __forceinline__ unsigned long long clock_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// Every block arrives at each barrier once: barrier k of a launch waits for k * gridDim.x
// arrivals. A launch starts from 0 because its last block resets `count`, after every block's
// last arrival. All blocks must be resident at once (cuda_step.py sizes the grid to the SMs);
// one that never arrives traps after 2 s.
__device__ __forceinline__ unsigned load_acquire(const unsigned* p) {
  unsigned v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}

__device__ void grid_sync(unsigned* count, unsigned& target, unsigned long long* stamp) {
  __syncthreads();
  target += gridDim.x;
  if (threadIdx.x == 0) {  // CUTLASS's grid barrier: a release add after the block's barrier, acquire loads
    asm volatile("red.release.gpu.global.add.u32 [%0], %1;" ::"l"(count), "r"(1u) : "memory");
    const unsigned long long t0 = clock_ns();
    for (int spin = 1; load_acquire(count) < target; ++spin)
      if (spin % 1024 == 0 && clock_ns() - t0 > 2000000000ull) __trap();
    if (blockIdx.x == 0) *stamp = clock_ns();
  }
  __syncthreads();
}

// The blocks of one (row, head)'s attention chunks meet here (attend_part, kNarrow):
// `counter` (the scratch's, for that row and head) counts the launch's arrivals, one per chunk
// and phase, and every block of the grid keeps the same running target (`met`, advanced by
// the phase's chunks); the launch's last block resets the counters. A block takes its items
// in increasing order and a group's chunks are consecutive items, so a block waits only on
// items of its own round or one before it: no wait goes round in a circle.
__device__ void group_sync(unsigned* counter, unsigned target) {
  __syncthreads();
  if (threadIdx.x == 0) {
    asm volatile("red.release.gpu.global.add.u32 [%0], %1;" ::"l"(counter), "r"(1u) : "memory");
    const unsigned long long t0 = clock_ns();
    for (int spin = 1; load_acquire(counter) < target; ++spin)
      if (spin % 1024 == 0 && clock_ns() - t0 > 2000000000ull) __trap();
  }
  __syncthreads();
}

// group_sync for `rows` counters `cstride` apart (attend_rows' rows): arrive at every one, then
// wait for every one
__device__ void group_sync_rows(unsigned* counter, int cstride, int rows, unsigned target) {
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int r = 0; r < rows; ++r)
      asm volatile("red.release.gpu.global.add.u32 [%0], %1;" ::"l"(counter + r * cstride), "r"(1u) : "memory");
    const unsigned long long t0 = clock_ns();
    for (int r = 0; r < rows; ++r)
      for (int spin = 1; load_acquire(counter + r * cstride) < target; ++spin)
        if (spin % 1024 == 0 && clock_ns() - t0 > 2000000000ull) __trap();
  }
  __syncthreads();
}

// ---- rows in groups --------------------------------------------------------------------
// The attention phases take each row as items of their own (row, head, chunk), spread over the
// grid. The matrix phases take a launch's B rows in groups of RB rows (group_rows): a group's
// dot products stay in registers, and each group reads the phase's weight rows once (groups
// after the first mostly from L2). B <= RB is one group, the whole batch: g0 is 0.
// f(g0) runs rows [g0, g0 + RB). Where RB does not divide B, the last group's rows past B are
// padding: x and h have rows for them in the scratch (zeros, or whatever the padding wrote),
// nothing is read for them outside it, and they write nothing else (no cache, logits,
// attention partial or pick): every row's math is its own, so they change no real row.
// (One group size, not a smaller last group, the loop not unrolled and g0 opaque to the
// compiler: else it keeps pointers and addresses of every group live through the layer loop,
// 128-138 registers a thread at B = 5.)
__device__ __forceinline__ int opaque(int v) {
  asm volatile("" : "+r"(v));
  return v;
}

template <int B, int RB, typename F>
__device__ __forceinline__ void for_groups(F&& f) {
  if constexpr (B <= RB) {
    f(0);
  } else {
#pragma unroll 1
    for (int g0 = 0; g0 < B; g0 += RB) f(opaque(g0));
  }
}

// The group size. With PICK, at most 3 rows: the filters' picks of every row of the group stay
// in registers (4 rows take over 128 a thread at kThreads). Without (the forward pass of beams
// and samples), at most 8, 5 for packed weights (their dequantizing takes registers too), the
// logits' rows_dot taking fewer weight rows a turn (logit_rows).
// And no more than a chunk's P scores and xs fit in kSharedFloats of static shared memory
// (cuda_step.py's _SHARED_FLOATS: 40 KiB of the 48): xs holds a group's rows of D floats,
// or of 4D values of T (mlp2's h, kept in T), sizeof(T) * D floats a row either way.
enum { kSharedFloats = 10240 };

template <typename T, int B, int D, int P, bool PICK, int QB>
constexpr int group_rows() {
  constexpr int most = PICK ? 3 : QB ? 5 : 8, fit = (kSharedFloats - P) / (int(sizeof(T)) * D), r = B < most ? B : most;
  return r < fit ? r : fit;
}

// Weight rows a warp takes at a turn in the logits' rows_dot (R * RB sums, one emitting lane
// each): fewer as the group grows, so that the kernel stays within 128 registers a thread
// (a packed vocabulary's dequantizing takes more of them: tests/test_cuda_cache.py)
template <int RB, int QB>
constexpr int logit_rows() {
  return QB ? (RB == 1 ? 4 : RB == 2 ? 2 : 1) : RB <= 3 ? 4 : RB <= 6 ? 2 : 1;
}

// Rows a cross-attention item takes (attend_rows): all PA rows of one audio, where they are
// no more than a group's (q holds RB rows) and their scores over a chunk of CH keys fit in
// the P floats of p; else one. (Parts of an audio's rows, 4 of 8, took 142 registers.)
template <int PA, int RB, int CH, int P>
constexpr int item_rows() {
  return PA <= RB && PA * CH <= P ? PA : 1;
}

// Rows of x and h in the scratch: B, and the last group's padding
template <int B, int RB>
constexpr int padded_rows() {
  return (B + RB - 1) / RB * RB;
}

// Per layer, the packed weights `lw` hold, in order: attn_ln w, b; q|k|v (3D, D); its bias
// (k's is 0); out (D, D), bias; cross_attn_ln w, b; cross q (D, D), bias; cross out (D, D),
// bias; mlp_ln w, b; mlp1 (4D, D), bias; mlp2 (D, 4D), bias. With M = 0 (a quantized decoder)
// the six matrices are left out of `lw` (size 0): QuantOffsets places them.
template <int D, int M = 1>
struct LayerOffsets {
  static constexpr size_t ln1 = 0, qkv = ln1 + 2 * D, bqkv = qkv + M * 3 * D * D, out = bqkv + 3 * D,
                          bout = out + M * D * D, ln2 = bout + D, cq = ln2 + 2 * D, bcq = cq + M * D * D, co = bcq + D,
                          bco = co + M * D * D, ln3 = bco + D, fc1 = ln3 + 2 * D, bfc1 = fc1 + M * 4 * D * D,
                          fc2 = bfc1 + 4 * D, bfc2 = fc2 + M * 4 * D * D, size = bfc2 + D;
};

// A quantized decoder's six matrices per layer, in LayerOffsets' order: `lq` holds their packed
// words (D * D * QB / 32 a D x D matrix), `ls` each one's scales and then its biases (D * D / GS
// of each a D x D matrix), in T.
template <int D, int QB, int GS>
struct QuantOffsets {
  static constexpr size_t W1 = size_t(D) * D * QB / 32, S1 = size_t(D) * D / GS;
  static constexpr size_t qkv = 0, out = 3 * W1, cq = 4 * W1, co = 5 * W1, fc1 = 6 * W1, fc2 = 10 * W1, size = 14 * W1;
  static constexpr size_t s_qkv = 0, s_out = 6 * S1, s_cq = 8 * S1, s_co = 10 * S1, s_fc1 = 12 * S1, s_fc2 = 20 * S1,
                          s_size = 28 * S1;
};

// The float32 scratch a decode keeps across its launches, written in place: the barrier
// counter at 0; from float 32, a uint64
// %globaltimer stamp per barrier of the launch's last position (block 0's view:
// benchmarks/cuda_step_profile.py reads them); then the residual
// stream x (BP, D) and the MLP activation h (BP, 4D) in T (BP: B and the last group's
// padding, padded_rows), the attention partials, each block's filter picks, and a
// group_sync counter per (row, head).
template <typename T, int B, int BP, int D, int H, int NL>
struct Scratch {
  static constexpr int ARRIVALS = 6 * NL + 1, HD = D / H;
  static constexpr size_t stamps = 32, x = stamps + 2 * (ARRIVALS + 1) + 4, h = x + BP * D * sizeof(T) / 4 + 4,
                          att = h + 4 * BP * D * sizeof(T) / 4 + 4;
  static __host__ __device__ size_t picks(int G) { return att + size_t(G + H) * B * (HD + 2); }
  static __host__ __device__ size_t counters(int G) { return picks(G) + size_t(G) * B * kPicks * 3; }
  static __host__ __device__ size_t size(int G) { return counters(G) + size_t(B) * H; }
};

// emb, lw: the token embedding (NV, D) and the layers' weights (LayerOffsets). With QB > 0 (a
// quantized decoder, groups of GS) the matrices are packed instead: the embedding in embq (its
// scales, then its biases, in embs) and the layers' in lq, ls (QuantOffsets); emb is unused.
// The embedding may be wider than the layers (EB bits against QB): --quantize 4 keeps it, which
// is also every logit's projection, at 8 bits (models.VOCABULARY_BITS).
// tokens (B, L): the last meta[0] tokens are new, the caches hold the positions before them;
// the new positions run one after another through every layer (a prompt in one launch).
// meta[1]: a position whose logits are wanted as well (the SOT, for no_speech_prob), or -1;
// meta[2], meta[3]: the filters' sample_begin and max_init.
// kc, vc (NL, B, H, CTX, HD): the self-attention caches, the new rows written in place. cross
// (B / PA, S, 2 * NL * D): each audio's cross K/V, layer l's keys at column 2lD, its values at
// (2l+1)D, attended in CC chunks per head (cuda_step.py); rows [a * PA, (a + 1) * PA) are audio
// a's (beams and samples share their audio's: it stays in L2, and a cross-attention item
// takes several of its rows at once, item_rows). Out:
// tokens_out (B, L+1), sum_out (>= B), completed, logits (B, R, NV): row R-1 the last
// position's, row 0 meta[1]'s when that is another new position (R = 2).
template <typename T, int B, int D, int H, int NL, int CTX, int S, int CC, int NV, int TS, int EOT, int NO_TS,
          bool RULES, bool PICK, int PA, bool SHARE, int QB = 0, int GS = 64, int EB = QB, typename Tok>
__device__ void decode_step(const Tok* tokens, int L, const int* meta, const T* emb, const T* pos, const T* lnf,
                            const T* lw, const T* kc_in, const T* vc_in, const int* path, const T* cross,
                            const float* sum_in,
                            const float* suppress, const float* scratch_in, int scratch_size, Tok* tokens_out,
                            float* sum_out, bool* completed, float* logits, const unsigned* embq = nullptr,
                            const T* embs = nullptr, const unsigned* lq = nullptr, const T* ls = nullptr) {
  static_assert((QB == 0) == (EB == 0), "the embedding is packed where the layers are");
  static_assert(PA >= 1 && B % PA == 0, "whole audio");
  using W = LayerOffsets<D, QB == 0>;
  using Q = QuantOffsets<D, QB == 0 ? 32 : QB, GS>;
  // layer l's matrix at LayerOffsets `fo` (QuantOffsets `qo`, `so`) of `rows` rows of K: its
  // rows in lw, or its packed rows
  auto mat = [&](int l, size_t fo, size_t qo, size_t so, int rows, int K) {
    if constexpr (QB == 0) {
      return Dense<T>{lw + l * W::size + fo};
    } else {
      const T* sc = ls + l * Q::s_size + so;
      return Packed<T, QB, GS>{lq + l * Q::size + qo, sc, sc + size_t(rows) * K / GS};
    }
  };
  auto embedding = [&]() {
    if constexpr (QB == 0) {
      return Dense<T>{emb};
    } else {
      return Packed<T, EB, GS>{embq, embs, embs + size_t(NV) * D / GS};
    }
  };
  constexpr int RB = group_rows<T, B, D, (S > CTX ? S : CTX), PICK, QB>(), BP = padded_rows<B, RB>();  // rows a group (for_groups)
  static_assert(RB >= 1, "a row of xs (sizeof(T) * D floats) and a chunk's scores must fit in shared memory");
  using Sc = Scratch<T, B, BP, D, H, NL>;
  constexpr int HD = D / H, XR = SHARE ? item_rows<PA, RB, (S + CC - 1) / CC, (S > CTX ? S : CTX)>() : 1;
  constexpr size_t KV = size_t(B) * H * CTX * HD, XS = 2 * NL * D;
  __shared__ __align__(16) float xs[RB * sizeof(T) * D];  // read 16 bytes at a time (read_xs)
  __shared__ float q[RB * HD], p[S > CTX ? S : CTX], part[kThreads], red[32];
  __shared__ Pick sh[32 * kPicks];
  __shared__ unsigned arrived, met;  // met: group_sync's running target, the same in every block
  constexpr int kWarps = kThreads / 32;
  const int G = gridDim.x, warp = threadIdx.x >> 5, gwarp = blockIdx.x * kWarps + warp, gwarps = G * kWarps;
  if (blockDim.x != kThreads || size_t(scratch_size) < Sc::size(G)) __trap();
  float* scratch = const_cast<float*>(scratch_in);  // persistent across launches, like the caches
  unsigned* count = reinterpret_cast<unsigned*>(scratch);
  unsigned long long* stamps = reinterpret_cast<unsigned long long*>(scratch + Sc::stamps);
  T *x = reinterpret_cast<T*>(scratch + Sc::x), *h = reinterpret_cast<T*>(scratch + Sc::h);
  T *kc = const_cast<T*>(kc_in), *vc = const_cast<T*>(vc_in);
  float *att = scratch + Sc::att, *picks = scratch + Sc::picks(G);
  unsigned* heads = reinterpret_cast<unsigned*>(scratch + Sc::counters(G));  // group_sync's, per (row, head)
  const int t0 = L - meta[0], sot = meta[1], R = sot >= t0 && sot < L - 1 ? 2 : 1;
  if (threadIdx.x == 0 && blockIdx.x == 0) stamps[0] = clock_ns();
  unsigned target = 0;
  unsigned long long* stamp;
  const float scale = rsqrtf(float(HD)), qs = qk_scale<T, HD>();
  if (threadIdx.x == 0) met = 0;  // (in shared memory: kept in registers, it cost 20 of them at B = 3)
  // pre: a weight row's bias, and the residual where the row adds to x (b: the group's row
  // b, the batch's g0 + b)
  auto bias = [](const T* bv) { return [bv](int n, int) { return make_float2(static_cast<float>(bv[n]), 0.f); }; };
  auto bias_x = [x](const T* bv, int g0) {
    return [bv, x, g0](int n, int b) { return make_float2(static_cast<float>(bv[n]), ld(x + (g0 + b) * D + n)); };
  };
  auto residual = [x](int g0) {
    return [x, g0](int n, int b, float a, float2 e) {
      x[(g0 + b) * D + n] = static_cast<T>(round_to<T>(e.y + round_to<T>(a + e.x)));
    };
  };
  // q <- head hd's query row of wq against xs (one row), scaled
  auto head_q1 = [&](auto wq, const T* bq, int hd) {
    rows_dot<T, 1, D>(wq, xs, hd * HD, (hd + 1) * HD, warp, kWarps, bias(bq),
                      [&](int n, int, float a, float2 e) {
                        const float v = round_to<T>(a + e.x);
                        q[n - hd * HD] = kNarrow<T> ? round_to<T>(v * qs) : scale * v;
                      });
  };
  // att's partial for (item, b): q[b - g0] over keys [j0, j1) (key(j), value(j): rows of HD);
  // item = head hd's chunk c of C (kNarrow: the C meet at met + C, on the counter of row b
  // and head hd)
  auto partial = [&](int item, int g0, int b, int j0, int j1, auto key, auto value, int C) {
    const int hd = item / C;
    attend_part<T, HD>(q + (b - g0) * HD, j0, j1, key, value, p, part, red, att + (size_t(item) * B + b) * (HD + 2),
                       att + (size_t(hd) * C * B + b) * (HD + 2), size_t(B) * (HD + 2), C, heads + b * H + hd,
                       met + C);
  };
  // after each attention phase, in every block (the grid_sync after it orders the write)
  auto met_all = [&](int C) {
    if (kNarrow<T> && C > 1 && threadIdx.x == 0) met += C;
  };

  // self-attention's keys (or values) of row b and head hd, position j: in the cache's row b
  // where this launch wrote it (j >= t0), else in row b + path's offset. Without PICK rows may
  // trade histories (beam search: beams.py's beam_update writes path, (2, B, CTX), the table
  // for L tokens at path[L % 2]; zeros where every row's history is its own); with PICK every
  // row's history is its own.
  const int* hist = path + size_t(L % 2) * B * CTX;
  auto self_row = [&](T* cache, int b, int hd) {
    return [=](int j) {
      const int r = PICK || j >= t0 ? b : b + hist[b * CTX + j];
      return cache + (size_t(r * H + hd) * CTX + j) * HD;
    };
  };
  // cross-attention item (head hd, chunk c): its keys [first(c), first(c + 1)) of the window,
  // and the rows that batch row b reads (its audio's), layer l, keys (kv = 0) or values (1)
  // for that head
  auto first = [](int c) { return c * S / CC; };
  auto cross_rows = [&](int b, int l, int kv, int hd) {
    return cross + size_t(b / PA) * S * XS + (2 * l + kv) * D + hd * HD;
  };

  // a row to read the inputs of: the padding's are the last real row's
  auto real = [](int b) { return BP > B ? min(b, B - 1) : b; };
  // logits row r = LN(x) @ token_embedding.T, in float32 as the decoder returns them, for
  // the group's rows; each is passed to emit(n, b, logit, suppress[n]) (b: the group's) as it
  // comes out
  auto logits_pass = [&](int r, int g0, auto&& emit) {
    load<T, RB * D>(x + g0 * D, xs);
    layer_norm<T, RB, D>(xs, lnf, lnf + D, red);
    // the embedding (40 MB for tiny, 53 MB for base) would push the layers' weights and the
    // cross K/V out of the H100's 50 MB L2 at every step
    rows_dot<T, RB, D, logit_rows<RB, QB>(), true>(embedding(), xs, 0, NV, gwarp, gwarps, [&](int n, int) { return make_float2(suppress[n], 0.f); },
                      [&](int n, int b, float a, float2 e) {
                        const float z = round_to<T>(a);
                        if (g0 + b < B) logits[(size_t(g0 + b) * R + r) * NV + n] = z;
                        emit(n, b, z, e.x);
                      });
  };

  for (int t = t0; t < L; ++t) {
    stamp = stamps + 1;
    // chunks of keys per head: self-attention's >= 64 positions each, at most the grid's
    const int cs = max(1, min(G / H, (t + 64) / 64));
    for (int l = 0; l < NL; ++l) {
      const T* w = lw + l * W::size;
      T *kl = kc + l * KV, *vl = vc + l * KV;
      // 1. Per item (row b, head hd, chunk c of its positions <= t): LN of the row, the head's q
      //    (and, in the chunk with position t, its k, v into the cache), self-attention over
      //    the chunk. Rows are items of their own, so that the rows' attention runs side by side.
      for (int item = blockIdx.x; item < B * H * cs; item += G) {
        const int b = item / (H * cs), hd = item / cs % H, c = item % cs, j0 = c * (t + 1) / cs,
                  j1 = (c + 1) * (t + 1) / cs;
        __syncthreads();  // the last item's xs, q are still read
        if (l == 0) {  // x = token_embedding[token] + positional_embedding[t]
          const size_t tok = static_cast<size_t>(tokens[b * L + t]);
          for (int d = threadIdx.x; d < D; d += blockDim.x) {
            xs[d] = round_to<T>(embedding().template at<D>(tok, d) + static_cast<float>(pos[size_t(t) * D + d]));
            if (hd == 0 && c == 0) x[b * D + d] = static_cast<T>(xs[d]);
          }
        } else {
          load<T, D>(x + b * D, xs);
        }
        layer_norm<T, 1, D>(xs, w + W::ln1, w + W::ln1 + D, red);
        head_q1(mat(l, W::qkv, Q::qkv, Q::s_qkv, 3 * D, D), w + W::bqkv, hd);
        if (j1 == t + 1) {
          for (int kv = 1; kv <= 2; ++kv) {
            T* cache = kv == 1 ? kl : vl;
            const int n0 = kv * D + hd * HD;
            rows_dot<T, 1, D>(mat(l, W::qkv, Q::qkv, Q::s_qkv, 3 * D, D), xs, n0, n0 + HD, warp, kWarps, bias(w + W::bqkv),
                              [&](int n, int, float a, float2 e) {
                                cache[(size_t(b * H + hd) * CTX + t) * HD + n - n0] = static_cast<T>(a + e.x);
                              });
          }
        }
        __syncthreads();
        partial(hd * cs + c, b, b, j0, j1, self_row(kl, b, hd), self_row(vl, b, hd), cs);
      }
      met_all(cs);
      grid_sync(count, target, stamp++);
      // 2. x += out(attention) + bias; meanwhile what this block's phase 3 reads heads for L2
      //    (the layers' weights and cross K/V do not all stay there: 62 MB for base)
      for (int item = blockIdx.x; item < B * H * CC; item += G) {
        const int b = item / (H * CC), hd = item / CC % H, c = item % CC;
        if constexpr (QB == 0)
          prefetch_rows(w + W::cq + size_t(hd) * HD * D, D * sizeof(T), HD, D * sizeof(T));
        else
          prefetch_rows(lq + l * Q::size + Q::cq + size_t(hd) * HD * D * QB / 32, D * QB / 8, HD, D * QB / 8);
        for (int kv = 0; kv < 2; ++kv)
          prefetch_rows(cross_rows(b, l, kv, hd) + first(c) * XS, XS * sizeof(T), first(c + 1) - first(c),
                        HD * sizeof(T));
      }
      for_groups<B, RB>([&](int g0) {
        if (g0 > 0) __syncthreads();
        merge_heads<T, B, RB, H, HD>(att, cs, xs, g0);
        __syncthreads();
        rows_dot<T, RB, D, 1>(mat(l, W::out, Q::out, Q::s_out, D, D), xs, 0, D, gwarp, gwarps, bias_x(w + W::bout, g0),
                              residual(g0));
      });
      grid_sync(count, target, stamp++);
      // 3. Per item (XR rows of one audio from b0, head hd, chunk c of the window): LN, the
      //    head's cross q, cross-attention over the chunk (the rows' keys and values read once)
      for (int item = blockIdx.x; item < B / XR * H * CC; item += G) {
        const int b0 = item / (H * CC) * XR, hd = item / CC % H, c = item % CC;
        __syncthreads();
        if constexpr (XR == 1) {
          load<T, D>(x + b0 * D, xs);
          layer_norm<T, 1, D>(xs, w + W::ln2, w + W::ln2 + D, red);
          head_q1(mat(l, W::cq, Q::cq, Q::s_cq, D, D), w + W::bcq, hd);
          __syncthreads();
          const T *kb = cross_rows(b0, l, 0, hd), *vb = cross_rows(b0, l, 1, hd);
          partial(hd * CC + c, b0, b0, first(c), first(c + 1), [&](int j) { return kb + j * XS; },
                  [&](int j) { return vb + j * XS; }, CC);
        } else {
          load<T, XR * D>(x + b0 * D, xs);
          layer_norm<T, XR, D>(xs, w + W::ln2, w + W::ln2 + D, red);
          rows_dot<T, XR, D, 1>(mat(l, W::cq, Q::cq, Q::s_cq, D, D), xs, hd * HD, (hd + 1) * HD, warp, kWarps,
                             bias(w + W::bcq), [&](int n, int b, float a, float2 e) {
                               const float v = round_to<T>(a + e.x);
                               q[b * HD + n - hd * HD] = kNarrow<T> ? round_to<T>(v * qs) : scale * v;
                             });
          __syncthreads();
          const T *kb = cross_rows(b0, l, 0, hd), *vb = cross_rows(b0, l, 1, hd);
          attend_rows<T, HD, XR>(q, first(c), first(c + 1), [&](int j) { return kb + j * XS; },
                                 [&](int j) { return vb + j * XS; }, p, part, red,
                                 att + (size_t(hd * CC + c) * B + b0) * (HD + 2), att + (size_t(hd) * CC * B + b0) * (HD + 2),
                                 size_t(B) * (HD + 2), CC, heads + b0 * H + hd, H, met + CC);
        }
      }
      met_all(CC);
      grid_sync(count, target, stamp++);
      // 4. x += cross_out(attention) + bias
      for_groups<B, RB>([&](int g0) {
        if (g0 > 0) __syncthreads();
        merge_heads<T, B, RB, H, HD>(att, CC, xs, g0);
        __syncthreads();
        rows_dot<T, RB, D, 1>(mat(l, W::co, Q::co, Q::s_co, D, D), xs, 0, D, gwarp, gwarps, bias_x(w + W::bco, g0),
                              residual(g0));
      });
      grid_sync(count, target, stamp++);
      // 5. h = GELU(mlp1(LN(x)) + bias), GELU in erf form (nn.gelu); kNarrow: as MLX compiles
      //    nn.gelu, x * (1 + erf(x / sqrt(2))) / 2 with each op in T (__hdiv as MLX's Divide)
      for_groups<B, RB>([&](int g0) {
        if (g0 > 0) __syncthreads();
        load<T, RB * D>(x + g0 * D, xs);
        layer_norm<T, RB, D>(xs, w + W::ln3, w + W::ln3 + D, red);
        rows_dot<T, RB, D, 1>(mat(l, W::fc1, Q::fc1, Q::s_fc1, 4 * D, D), xs, 0, 4 * D, gwarp, gwarps, bias(w + W::bfc1),
                          [&](int n, int b, float a, float2 e) {
                            const float v = round_to<T>(a + e.x);
                            if constexpr (kNarrow<T>) {
                              const T u = static_cast<T>(v);
                              const T z = static_cast<T>(erff(static_cast<float>(__hdiv(u, static_cast<T>(1.4142135623730951f)))));
                              h[(g0 + b) * 4 * D + n] = __hdiv(__hmul(u, __hadd(static_cast<T>(1.f), z)), static_cast<T>(2.f));
                            } else {
                              h[(g0 + b) * 4 * D + n] = static_cast<T>(0.5f * v * (1.f + erff(v * 0.70710678118654752f)));
                            }
                          });
      });
      grid_sync(count, target, stamp++);
      // 6. x += mlp2(h) + bias
      for_groups<B, RB>([&](int g0) {
        if (g0 > 0) __syncthreads();
        T* hs = reinterpret_cast<T*>(xs);  // h's rows as they are: T takes half a float's room, or all of it
        load<T, RB * 4 * D>(h + g0 * 4 * D, hs);
        __syncthreads();
        rows_dot<T, RB, 4 * D, 1>(mat(l, W::fc2, Q::fc2, Q::s_fc2, D, 4 * D), hs, 0, D, gwarp, gwarps,
                                  bias_x(w + W::bfc2, g0), residual(g0));
      });
      grid_sync(count, target, stamp++);
    }
    if (t == sot && R == 2) {  // the next position's embedding overwrites x: wait for every block
      for_groups<B, RB>([&](int g0) {
        if (g0 > 0) __syncthreads();
        logits_pass(0, g0, [](int, int, float, float) {});
      });
      grid_sync(count, target, stamp);
    }
  }
  // the last position's logits through the filters as they come out: each block merges its
  // picks, the last block to arrive the grid's. Without PICK (the forward pass of beams and
  // samples, whose updates take the logits) the logits only.
  for_groups<B, RB>([&](int g0) {
    if (g0 > 0) __syncthreads();
    if constexpr (!PICK) {
      logits_pass(R - 1, g0, [](int, int, float, float) {});
      return;
    }
    History r[RB];
    Pick f[RB][kPicks];
    for (int b = 0; b < RB; ++b) {
      r[b] = timestamp_history<TS>(tokens + real(g0 + b) * L, L, meta[2], meta[3]);
      for (int k = 0; k < kPicks; ++k) f[b][k] = no_pick();
    }
    logits_pass(R - 1, g0, [&](int n, int b, float z, float sup) {
#pragma unroll
      for (int i = 0; i < RB; ++i)  // f, r indexed by constants: they stay in registers
        if (i == b) filter_add<TS, EOT, NO_TS, RULES, RB == 1>(f[i], n, z + sup, r[i]);
    });
    for (int b = 0; b < RB; ++b) {
      block_merge(f[b], sh);
      if (threadIdx.x == 0 && g0 + b < B)
        for (int k = 0; k < kPicks; ++k) {
          float* o = picks + ((size_t(blockIdx.x) * B + g0 + b) * kPicks + k) * 3;
          o[0] = f[b][k].m, o[1] = f[b][k].s, o[2] = __int_as_float(f[b][k].i);
        }
    }
  });
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    arrived = atomicAdd(count, 1u);
  }
  __syncthreads();
  if (arrived != target + G - 1) return;  // not the last block
  __threadfence();
  bool done = true;
  for (int b = 0; b < (PICK ? B : 0); ++b) {
    Pick g[kPicks];
    for (int k = 0; k < kPicks; ++k) g[k] = no_pick();
    for (int i = threadIdx.x; i < G; i += blockDim.x)
      for (int k = 0; k < kPicks; ++k) {
        const float* o = picks + ((size_t(i) * B + b) * kPicks + k) * 3;
        g[k].add(ld(o), ld(o + 1), __float_as_int(ld(o + 2)));
      }
    block_merge(g, sh);
    for (int i = threadIdx.x; i < L; i += blockDim.x) tokens_out[b * (L + 1) + i] = tokens[b * L + i];
    if (threadIdx.x == 0)
      done = finish<TS, EOT, RULES>(g, tokens + b * L, L, sum_in[b], tokens_out + b * (L + 1), sum_out + b) && done;
  }
  if (threadIdx.x == 0) {
    *completed = done;
    *stamp = clock_ns();
    *count = 0;  // every block has arrived for the last time: the next launch starts from 0
    if (kNarrow<T>)
      for (int i = 0; i < B * H; ++i) heads[i] = 0;
  }
}

}  // namespace wf
