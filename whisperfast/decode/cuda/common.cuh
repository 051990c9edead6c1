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

// Threads that work on an item together as if they were a block of kThreads: the block
// itself, or half of it, each thread then playing two of a block's threads (its own tid and
// tid + 256), so that every sum runs in the whole block's order, bit for bit. Two halves take
// two items side by side where a phase's items outnumber the blocks (decode_step's
// cross-attention). `sync` is the team's barrier: a named one for each half.
struct Block {
  static constexpr int kSize = kThreads, kVirtual = 1;
  __device__ __forceinline__ int tid() const { return threadIdx.x; }
  __device__ __forceinline__ void sync() const { __syncthreads(); }
  __device__ __forceinline__ int warps() const { return (blockDim.x + 31) >> 5; }  // a reduction's warps
};

struct Half {
  static constexpr int kSize = kThreads / 2, kVirtual = 2;
  int id;  // threads [id * kSize, (id + 1) * kSize)
  __device__ __forceinline__ int tid() const { return threadIdx.x - id * kSize; }
  __device__ __forceinline__ void sync() const {
    if (id == 0)
      asm volatile("bar.sync 1, 256;" ::: "memory");
    else
      asm volatile("bar.sync 2, 256;" ::: "memory");
  }
  __device__ __forceinline__ int warps() const { return kThreads / 32; }  // the block's it plays
};

// A reduction over the threads a team plays by a warp-wide one (`warp`: every lane gets its
// warp's result), thread tid + u * kSize's value in v[u]: each (virtual) warp's result at
// sh[its warp], those then merged in one warp, as a block merges its warps'. `sh` is 32
// values of shared scratch, `none` the reduction's identity. Every thread gets the result.
template <typename Team, typename V, typename F>
__device__ __forceinline__ V team_reduce(const Team& team, const V (&v)[Team::kVirtual], V* sh, V none, F&& warp) {
  const int lane = threadIdx.x & 31, w = team.tid() >> 5;
  V s[Team::kVirtual];
#pragma unroll
  for (int u = 0; u < Team::kVirtual; ++u) s[u] = warp(v[u]);
  team.sync();  // sh may still be read by the previous reduction
  if (lane == 0)
#pragma unroll
    for (int u = 0; u < Team::kVirtual; ++u) sh[u * (Team::kSize / 32) + w] = s[u];
  team.sync();
  return warp(lane < team.warps() ? sh[lane] : none);
}

template <typename Team>
__device__ __forceinline__ float team_sum(const Team& team, const float (&v)[Team::kVirtual], float* sh) {
  return team_reduce(team, v, sh, 0.f, [](float x) { return warp_sum(x); });
}

// The maximum of every thread's v over a team (its other virtual threads' values -inf: the
// maximum is the same in any order)
template <typename Team>
__device__ __forceinline__ float team_max(const Team& team, float v, float* sh) {
  float vs[Team::kVirtual];
#pragma unroll
  for (int u = 0; u < Team::kVirtual; ++u) vs[u] = u == 0 ? v : -kInf;
  return team_reduce(team, vs, sh, -kInf, [](float x) { return warp_max(x); });
}

__device__ float block_sum(float v, float* red) {
  const float vs[1] = {v};
  return team_sum(Block{}, vs, red);
}

__device__ float block_max(float v, float* red) {
  return team_max(Block{}, v, red);
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

template <typename Team>
__device__ void group_sync_rows(const Team& team, unsigned* counter, int cstride, int rows, unsigned target);

// f(i, raw) for each load i (L: 16 bytes, or 8) of one weight row of K / V loads (V values
// each), spread over the warp's lanes (lane, lane + 32, ...). R rows at a time (rows_dot) keep
// two loads per lane and row in flight (registers stay under 128 a thread at kThreads); a row
// alone (R = 1) has all its loads in flight. STREAM rows are read once a step and marked first
// to leave L2 (ld.global.cs), so that they do not push out what the next step reads again.
template <int K, int V, int R, bool STREAM, typename L = uint4, typename F>
__device__ __forceinline__ void for_loads(const void* row, int lane, F&& f) {
  constexpr int M = K / V, N = (M + 31) / 32, P = R == 1 ? N : 2;  // P: loads in flight a lane and row
  static_assert(K % V == 0, "rows must be whole vectors");
  const L* w = reinterpret_cast<const L*>(row);
#pragma unroll 1
  for (int k0 = 0; k0 < N; k0 += P) {
    // A batch's loads are issued before any of its sums, and a lane past the row's end loads
    // the row's last vector and drops it, so no load waits behind a branch or a packed row's
    // dequantizing (this alone measured level: benchmarks/h100-session37/)
    L raw[P];
#pragma unroll
    for (int p = 0; p < P; ++p) {
      const int at = M % 32 ? min(lane + 32 * (k0 + p), M - 1) : lane + 32 * (k0 + p);
      if (N % P == 0 || k0 + p < N) raw[p] = STREAM ? __ldcs(w + at) : w[at];
    }
#pragma unroll
    for (int p = 0; p < P; ++p) {
      const int i = lane + 32 * (k0 + p);
      if ((N % P == 0 || k0 + p < N) && (M % 32 == 0 || i < M)) f(i, raw[p]);
    }
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

template <bool HALF>
struct Load {
  using type = uint4;
};
template <>
struct Load<true> {
  using type = uint2;
};

// Values a lane dequantizes in a row of K at QB bits with loads of `bytes`: the row's chain
// that finishes last.
template <int K, int QB>
constexpr int lane_values(int bytes) {
  return (K / (bytes * 8 / QB) + 31) / 32 * (bytes * 8 / QB);
}

template <typename T, int B, int K, int R, bool STREAM, int QB, int GS, typename X>
__device__ __forceinline__ void dot_qrow(const unsigned* q, const T* s, const T* z, const X* xs, int lane,
                                         float (&acc)[B]) {
  // 16-byte loads, or 8 where that leaves a lane fewer values to dequantize: a 4-bit row of
  // 384 or 512 filled 12 or 16 of the warp's 32 lanes with 32 values each (base's 4-bit step
  // 22-25 % faster with 8: benchmarks/h100-session37/)
  constexpr bool kHalfLoads = lane_values<K, QB>(8) < lane_values<K, QB>(16) && GS % (64 / QB) == 0;
  using L = typename Load<kHalfLoads>::type;
  constexpr int V = int(sizeof(L)) * 8 / QB;
  static_assert(GS % V == 0, "a load must hold values of one group");
#pragma unroll
  for (int b = 0; b < B; ++b) acc[b] = 0.f;
  for_loads<K, V, R, STREAM, L>(q, lane, [&](int i, const L raw) {
    const unsigned* words = reinterpret_cast<const unsigned*>(&raw);
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
  // row n's 128-byte lines (kLines of them), one line at a time into L2
  template <int K>
  static constexpr int kLines = (K * int(sizeof(T)) + 127) / 128;
  template <int K>
  __device__ __forceinline__ void prefetch(size_t n, int line) const {
    asm volatile("prefetch.global.L2 [%0];" ::"l"(reinterpret_cast<const char*>(w + n * K) + 128 * line));
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
  // row n's packed words' 128-byte lines, into L2 (its scales and biases, an eighth as many
  // bytes or fewer at groups of 64, are read as before)
  template <int K>
  static constexpr int kLines = (K * QB / 8 + 127) / 128;
  template <int K>
  __device__ __forceinline__ void prefetch(size_t n, int line) const {
    asm volatile("prefetch.global.L2 [%0];" ::"l"(reinterpret_cast<const char*>(q + n * K * QB / 32) + 128 * line));
  }
};

// STREAM rows (the logits' vocabulary) come from HBM, one or a few rows a warp a turn: too few
// loads in flight to keep it busy, so a turn would wait on HBM's latency. With PREFETCH a warp
// also sends into L2 the rows it takes kAhead turns later (a prefetch holds no registers), and
// its turn finds its own rows there. STREAM loads mark their lines first to leave L2, so that
// they do not push out the layers' weights; a prefetch has no such form, and its lines enter
// L2 as any line does. So only the forward pass prefetches: there it was measured faster
// (8 turns ahead no faster than 3: benchmarks/h200-session34/), the step's own picks were not.
constexpr int kAhead = 3;

// Rows [n0, n1) of w (N, K; Dense or Packed) against the B rows of xs (B, K) in shared memory: `warp` of
// `warps` taking part, R rows per warp per turn (their loads in flight together; R = 1
// where the rows are fewer than the warps). Calls emit(n, b, w[n] . xs[b], pre(n, b)) once
// per row and batch row, in lane r * B + b of the row's warp (r = n % R: after the warp sums
// every lane holds every sum, so the R * B emits run side by side); pre (a bias, a residual:
// a float2) is loaded in that lane before the row, so its latency hides. The sums do not
// depend on R or on which lane emits.
template <typename T, int B, int K, int R = 4, bool STREAM = false, bool PREFETCH = false, typename M, typename X,
          typename P, typename F>
__device__ void rows_dot(M w, const X* xs, int n0, int n1, int warp, int warps, P&& pre, F&& emit) {
  static_assert(R * B <= 32, "one lane per (row, batch row)");
  const int lane = threadIdx.x & 31, mr = lane / B, mb = lane % B;  // this lane's emit: row n + mr, batch row mb
  for (int n = n0 + warp * R; n < n1; n += warps * R) {
    if constexpr (PREFETCH) {  // the rows of this warp's turn kAhead turns on, on their way into L2 meanwhile
      constexpr int lines = M::template kLines<K>;
      const int ahead = n + kAhead * warps * R;
      for (int i = lane; i < R * lines; i += 32)
        if (ahead + i / lines < n1) w.template prefetch<K>(ahead + i / lines, i % lines);
    }
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
// variance, output rounded to T; by a team, in a block's order (team_sum)
template <typename T, int B, int K, typename Team = Block>
__device__ void layer_norm(float* xs, const T* g, const T* beta, float* red, const Team& team = Team{}) {
  constexpr int U = Team::kVirtual;
  team.sync();
  for (int b = 0; b < B; ++b) {
    float* r = xs + b * K;
    float v[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      v[u] = 0.f;
      for (int k = team.tid() + u * Team::kSize; k < K; k += kThreads) v[u] += r[k];
    }
    const float mean = team_sum(team, v, red) / K;
#pragma unroll
    for (int u = 0; u < U; ++u) {
      v[u] = 0.f;
      for (int k = team.tid() + u * Team::kSize; k < K; k += kThreads) v[u] += (r[k] - mean) * (r[k] - mean);
    }
    const float rstd = rsqrtf(team_sum(team, v, red) / K + 1e-5f);
    for (int k = team.tid(); k < K; k += Team::kSize) {
      // kNarrow: MLX's CUDA layer_norm, w * T(norm) + b in T's mul and add (which ptxas
      // contracts to one HFMA2 there as here)
      if constexpr (kNarrow<T>)
        r[k] = static_cast<float>(__hadd(__hmul(g[k], static_cast<T>((r[k] - mean) * rstd)), beta[k]));
      else
        r[k] = round_to<T>((r[k] - mean) * rstd * static_cast<float>(g[k]) + static_cast<float>(beta[k]));
    }
  }
  team.sync();
}
