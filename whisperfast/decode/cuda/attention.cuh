// The decode kernels' attention (launch.py reads the parts in order, as one source after
// common.cuh): flash-decoding partials of one row or of an audio's rows, and their merge.

// ---- attention ------------------------------------------------------------------------
enum { kInFlight = 16 };  // attend_part's value loads out at once

// A (head, chunk of keys) pair gives a flash-decoding partial: out = (m, l, acc[HD]) with m
// the chunk's maximum score, l = sum_j exp(s_j - m), acc = sum_j exp(s_j - m) v_j, for q
// (HD floats in shared memory, already scaled). key(j) and value(j) point at rows of HD.
// kNarrow: as stock's graph, each key is scaled in T, each score q.k rounded to T, and the
// weights are MLX's softmax (precise: fp32 inside, __expf, times 1/sum) rounded to T, so
// acc = sum_j w_j v_j is already normalized and merge_heads only adds the chunks' accs. The
// weights need the head's max and sum over all its C chunks: chunk c's (m, l) lie at
// peers + c * stride, and the C blocks of the head meet at `counter` before reading them.
// A team (common.cuh's Block, or a Half playing one) computes it, in a block's order either
// way; `part` holds kThreads floats, `red` 32.
template <typename T, int HD, typename KF, typename VF, typename Team = Block>
__device__ void attend_part(const float* q, int j0, int j1, KF key, VF value, float* p, float* part, float* red,
                            float* out, const float* peers, size_t stride, int C, unsigned* counter, unsigned target,
                            const Team& team = Team{}) {
  constexpr int V = 16 / sizeof(T), U = Team::kVirtual;
  const float ks = qk_scale<T, HD>();
  const int tid = team.tid();
  for (int j = j0 + tid; j < j1; j += Team::kSize) {
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
  float m = -kInf, l[U];
  for (int j = tid; j < j1 - j0; j += Team::kSize) m = fmaxf(m, p[j]);  // this thread's own writes
  m = team_max(team, m, red);
  if constexpr (kNarrow<T>) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      l[u] = 0.f;
      for (int j = tid + u * Team::kSize; j < j1 - j0; j += kThreads) l[u] += __expf(p[j] - m);
    }
    l[0] = team_sum(team, l, red);
    if (C > 1) {  // the head's statistics: every chunk's, merged in chunk order
      if (tid == 0) out[0] = m, out[1] = l[0];
      group_sync_rows(team, counter, 0, 1, target);
      float mm = -kInf, ll = 0.f;
      for (int c = 0; c < C; ++c) mm = fmaxf(mm, ld(peers + c * stride));
      for (int c = 0; c < C; ++c) ll += ld(peers + c * stride + 1) * __expf(ld(peers + c * stride) - mm);
      m = mm, l[0] = ll;
    }
    const float inv = 1.f / l[0];
    for (int j = tid; j < j1 - j0; j += Team::kSize) p[j] = round_to<T>(__expf(p[j] - m) * inv);
    team.sync();
  } else {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      l[u] = 0.f;
      for (int j = tid + u * Team::kSize; j < j1 - j0; j += kThreads) {
        p[j] = expf(p[j] - m);
        l[u] += p[j];
      }
    }
    l[0] = team_sum(team, l, red);  // also orders the p writes before the reads below
  }
  // the values: (virtual) thread t sums element t % HD of keys t / HD, + kThreads / HD, ...;
  // then the groups' sums in order
  constexpr int groups = kThreads / HD;
  float acc[U];
#pragma unroll
  for (int u = 0; u < U; ++u) {
    const int t = tid + u * Team::kSize, d = t % HD;
    acc[u] = 0.f;
    int j = j0 + t / HD;
    // kInFlight keys' values loaded before any is summed: a value is 2 or 4 bytes a thread, and
    // a chunk of 1500 keys (batched mode's) is ~190 a thread, whose loads the plain loop kept
    // few at a time (benchmarks/h100-session33/); the sum's order is the plain loop's
    for (; j + (kInFlight - 1) * groups < j1; j += kInFlight * groups) {
      float v[kInFlight];
#pragma unroll
      for (int k = 0; k < kInFlight; ++k) v[k] = ld(value(j + k * groups) + d);
#pragma unroll
      for (int k = 0; k < kInFlight; ++k) acc[u] += p[j + k * groups - j0] * v[k];
    }
    for (; j < j1; j += groups) acc[u] += p[j - j0] * ld(value(j) + d);
    part[t] = acc[u];
  }
  team.sync();
  if (tid < HD) {
    for (int r = 1; r < groups; ++r) acc[0] += part[r * HD + tid];
    out[2 + tid] = acc[0];
  }
  // (kNarrow: the other chunks may still read this one's statistics, written above)
  if (!kNarrow<T> && tid == 0) out[0] = m, out[1] = l[0];
  team.sync();  // p, part and red are reused by the team's next partial
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
      group_sync_rows(Block{}, counter, cstride, NR, target);
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
// its outputs go nowhere but its own padding rows.) Where the outputs outnumber the threads,
// a thread takes U = 2 at a turn, their loads in flight together; each sums as alone.
template <typename T, int B, int NB, int H, int HD>
__device__ void merge_heads(const float* att, int C, float* xs, int g0) {
  constexpr int N = NB * H * HD, U = N > kThreads ? 2 : 1;
  auto at = [&](int i, int c) {
    const int b = g0 + i / (H * HD), h = i / HD % H;
    return att + (size_t(h * C + c) * B + b) * (HD + 2);
  };
  for (int i0 = threadIdx.x; i0 < N; i0 += U * blockDim.x) {
    int i[U];
#pragma unroll
    for (int u = 0; u < U; ++u) i[u] = min(i0 + u * int(blockDim.x), N - 1);  // past the end: N - 1's again, unwritten
    float acc[U];
    if constexpr (kNarrow<T>) {  // the chunks' accs are already weighted by the head's softmax
#pragma unroll
      for (int u = 0; u < U; ++u) acc[u] = 0.f;
#pragma unroll 8
      for (int c = 0; c < C; ++c)
#pragma unroll
        for (int u = 0; u < U; ++u) acc[u] += ld(at(i[u], c) + 2 + i[u] % HD);
    } else {
      float m[U], l[U];
#pragma unroll
      for (int u = 0; u < U; ++u) m[u] = -kInf, l[u] = 0.f, acc[u] = 0.f;
#pragma unroll 8
      for (int c = 0; c < C; ++c) {  // unrolled: the chunks' loads in flight together
#pragma unroll
        for (int u = 0; u < U; ++u) {
          const float* a = at(i[u], c);
          const float mc = ld(a), mm = fmaxf(m[u], mc), f = expf(m[u] - mm), g = expf(mc - mm);  // exp(-inf) = 0
          l[u] = l[u] * f + ld(a + 1) * g;
          acc[u] = acc[u] * f + ld(a + 2 + i[u] % HD) * g;
          m[u] = mm;
        }
      }
#pragma unroll
      for (int u = 0; u < U; ++u) acc[u] /= l[u];
    }
#pragma unroll
    for (int u = 0; u < U; ++u)
      if (u == 0 || i0 + u * int(blockDim.x) < N) xs[i[u]] = round_to<T>(acc[u]);
  }
}
