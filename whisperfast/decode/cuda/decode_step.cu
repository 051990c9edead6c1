// The decode step (after beam_update.cuh, the last of launch.py's parts): grid barriers,
// rows in groups, the weights' offsets, and the step itself. The whole source: common.cuh first.

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

// The blocks of one (row, head)'s attention chunks meet here (attend_part, attend_rows, kNarrow):
// `counter` (the scratch's, for that row and head) counts the launch's arrivals, one per chunk
// and phase, and every block of the grid keeps the same running target (`met`, advanced by
// the phase's chunks); the launch's last block resets the counters. A block (or each half of
// one, with its own barrier: `team`) takes its items in increasing order and a group's chunks
// are consecutive items, so it waits only on items of its own round or one before it: no wait
// goes round in a circle.
// For several rows at once (attend_rows), `rows` counters `cstride` apart: arrive at every one,
// then wait for every one; attend_part's one row is rows = 1.
template <typename Team>
__device__ void group_sync_rows(const Team& team, unsigned* counter, int cstride, int rows, unsigned target) {
  team.sync();
  if (team.tid() == 0) {
    for (int r = 0; r < rows; ++r)
      asm volatile("red.release.gpu.global.add.u32 [%0], %1;" ::"l"(counter + r * cstride), "r"(1u) : "memory");
    const unsigned long long t0 = clock_ns();
    for (int r = 0; r < rows; ++r)
      for (int spin = 1; load_acquire(counter + r * cstride) < target; ++spin)
        if (spin % 1024 == 0 && clock_ns() - t0 > 2000000000ull) __trap();
  }
  team.sync();
}

// ---- rows in groups --------------------------------------------------------------------
// The attention phases take each row as items of their own (row, head, chunk), spread over the
// grid. The matrix phases take a launch's B rows in groups of RB rows (group_rows): a group's
// dot products stay in registers, and each group reads the phase's weight rows once. B <= RB
// is one group, the whole batch: g0 is 0.
// f(g0, gw, gws) runs rows [g0, g0 + RB) on the grid's warps that take that group: warp gw of
// gws. Where the grid has a block for each group and SPREAD, the groups run side by side, each
// on its own slice of the blocks: a phase then waits once on its loads, merges and norms,
// where groups one after another waited on each group's in turn, with most warps idle in a
// D-row phase (D rows against the grid's ~2,000 warps). Else every block takes every group,
// one after another (groups after the first read the weights mostly from L2): so with PICK,
// whose last phase merges every block's picks of every row, and whose other phases were not
// measured side by side (its groups of 3 rows: large-v3-turbo's kernel batches). Each row's
// sums are the same either way (rows_dot: they do not depend on the warp).
// Where RB does not divide B, the last group's rows past B are padding: x and h have rows
// for them in the scratch (zeros, or whatever the padding wrote), nothing is read for them
// outside it, and they write nothing else (no cache, logits, attention partial or pick):
// every row's math is its own, so they change no real row.
// (One group size, not a smaller last group, the loop not unrolled and g0 opaque to the
// compiler: else it keeps pointers and addresses of every group live through the layer loop,
// 128-138 registers a thread at B = 5.)
__device__ __forceinline__ int opaque(int v) {
  asm volatile("" : "+r"(v));
  return v;
}

template <int B, int RB, bool SPREAD, typename F>
__device__ __forceinline__ void for_groups(F&& f) {
  // (the grid's warps read here each time, opaque: else the compiler keeps them and the
  // slice's in registers through the layer loop, and the kernel spills more)
  constexpr int kWarps = kThreads / 32;
  const int G = opaque(gridDim.x), block = opaque(blockIdx.x), warp = threadIdx.x >> 5;
  if constexpr (B <= RB) {
    f(0, block * kWarps + warp, G * kWarps);
  } else {
    constexpr int NG = (B + RB - 1) / RB;
    int g0 = 0, stride = RB, first = 0, last = G;
    if (SPREAD && G >= NG) {  // group g: blocks [ceil(g G / NG), ceil((g + 1) G / NG))
      const int g = block * NG / G;
      g0 = g * RB, stride = B, first = (g * G + NG - 1) / NG, last = ((g + 1) * G + NG - 1) / NG;
    }
#pragma unroll 1
    for (g0 = opaque(g0); g0 < B; g0 += stride) f(opaque(g0), (block - first) * kWarps + warp, (last - first) * kWarps);
  }
}

// The group size. With PICK, at most 3 rows: the filters' picks of every row of the group stay
// in registers (4 rows take over 128 a thread at kThreads). Without (the forward pass of beams,
// samples and wide greedy batches), at most 8, 5 for packed weights (their dequantizing takes
// registers too), the logits' rows_dot taking fewer weight rows a turn (logit_rows).
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
// group_sync_rows counter per (row, head).
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
// meta[2], meta[3]: the filters' sample_begin and max_init; meta[4 + b]: row b's must_reach
// (filters.cuh's History).
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
  constexpr int HD = D / H, CH = (S + CC - 1) / CC, XR = SHARE ? item_rows<PA, RB, CH, (S > CTX ? S : CTX)>() : 1;
  // cross-attention items of a row, two a block (phase 3): the halves' scores side by side in
  // p, the second's part after them
  constexpr bool kHalves = XR == 1 && 2 * CH + kThreads <= (S > CTX ? S : CTX);
  constexpr size_t KV = size_t(B) * H * CTX * HD, XS = 2 * NL * D;
  __shared__ __align__(16) float xs[RB * sizeof(T) * D];  // read 16 bytes at a time (read_xs)
  constexpr int QR = kHalves && RB < 2 ? 2 : RB;  // q's rows: a group's, or two halves'
  __shared__ float q[QR * HD], p[S > CTX ? S : CTX], part[kThreads], red[kHalves ? 64 : 32];
  __shared__ Pick sh[32 * kPicks];
  __shared__ unsigned arrived, met;  // met: group_sync_rows' running target, the same in every block
  constexpr int kWarps = kThreads / 32;
  const int G = gridDim.x, warp = threadIdx.x >> 5;
  if (blockDim.x != kThreads || size_t(scratch_size) < Sc::size(G)) __trap();
  float* scratch = const_cast<float*>(scratch_in);  // persistent across launches, like the caches
  unsigned* count = reinterpret_cast<unsigned*>(scratch);
  unsigned long long* stamps = reinterpret_cast<unsigned long long*>(scratch + Sc::stamps);
  T *x = reinterpret_cast<T*>(scratch + Sc::x), *h = reinterpret_cast<T*>(scratch + Sc::h);
  T *kc = const_cast<T*>(kc_in), *vc = const_cast<T*>(vc_in);
  float *att = scratch + Sc::att, *picks = scratch + Sc::picks(G);
  unsigned* heads = reinterpret_cast<unsigned*>(scratch + Sc::counters(G));  // group_sync_rows', per (row, head)
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
  // qd <- head hd's query row of wq against the row xr, scaled, by warps [wp, wp + warps)
  auto head_q1 = [&](auto wq, const T* bq, int hd, const float* xr, float* qd, int wp, int warps) {
    rows_dot<T, 1, D>(wq, xr, hd * HD, (hd + 1) * HD, wp, warps, bias(bq),
                      [&](int n, int, float a, float2 e) {
                        const float v = round_to<T>(a + e.x);
                        qd[n - hd * HD] = kNarrow<T> ? round_to<T>(v * qs) : scale * v;
                      });
  };
  // att's partial for (item, b): qd over keys [j0, j1) (key(j), value(j): rows of HD);
  // item = head hd's chunk c of C (kNarrow: the C meet at met + C, on the counter of row b
  // and head hd); by `team` with its shared memory (pd, partd, redd)
  auto partial = [&](int item, int b, int j0, int j1, auto key, auto value, int C, const auto& team, const float* qd,
                     float* pd, float* partd, float* redd) {
    const int hd = item / C;
    attend_part<T, HD>(qd, j0, j1, key, value, pd, partd, redd, att + (size_t(item) * B + b) * (HD + 2),
                       att + (size_t(hd) * C * B + b) * (HD + 2), size_t(B) * (HD + 2), C, heads + b * H + hd,
                       met + C, team);
  };
  // after each attention phase, in every block (the grid_sync after it orders the write)
  auto met_all = [&](int C) {
    if (kNarrow<T> && C > 1 && threadIdx.x == 0) met += C;
  };

  // self-attention's keys (or values) of row b and head hd, position j: in the cache's row b
  // where this launch wrote it (j >= t0), else in row b + path's offset. Without PICK rows may
  // trade histories (beam search: beams.py's beam_update writes path, (2, B, CTX), the table
  // for L tokens at path[L % 2]; zeros where every row's history is its own); with PICK, or
  // one row an audio (PA = 1: beams trade only within an audio; batched mode's rows), every
  // row's history is its own, and the table is not read.
  const int* hist = path + size_t(L % 2) * B * CTX;
  auto self_row = [&](T* cache, int b, int hd) {
    return [=](int j) {
      const int r = PICK || PA == 1 || j >= t0 ? b : b + hist[b * CTX + j];
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
  auto logits_pass = [&](int r, int g0, int gw, int gws, auto&& emit) {
    load<T, RB * D>(x + g0 * D, xs);
    layer_norm<T, RB, D>(xs, lnf, lnf + D, red);
    // kNarrow, from 5 rows: the normed rows are values of T, so they are read as T (a copy
    // beside the floats, in xs' room for it), half the shared-memory bytes a weight load (at
    // one row the conversions cost more: benchmarks/h200-session15/)
    auto* xr = [&]() {
      if constexpr (kNarrow<T> && RB >= 5) {
        T* xt = reinterpret_cast<T*>(xs + RB * D);
        for (int i = threadIdx.x; i < RB * D; i += blockDim.x) xt[i] = static_cast<T>(xs[i]);
        __syncthreads();
        return xt;
      } else {
        return xs;
      }
    }();
    // the embedding (40 MB for tiny, 53 MB for base) would push the layers' weights and the
    // cross K/V out of the H100's 50 MB L2 at every step
    rows_dot<T, RB, D, logit_rows<RB, QB>(), true, !PICK>(embedding(), xr, 0, NV, gw, gws, [&](int n, int) { return make_float2(suppress[n], 0.f); },
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
        head_q1(mat(l, W::qkv, Q::qkv, Q::s_qkv, 3 * D, D), w + W::bqkv, hd, xs, q, warp, kWarps);
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
        partial(hd * cs + c, b, j0, j1, self_row(kl, b, hd), self_row(vl, b, hd), cs, Block{}, q, p, part, red);
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
      for_groups<B, RB, !PICK>([&](int g0, int gw, int gws) {
        if (g0 > 0) __syncthreads();
        merge_heads<T, B, RB, H, HD>(att, cs, xs, g0);
        __syncthreads();
        rows_dot<T, RB, D, 1>(mat(l, W::out, Q::out, Q::s_out, D, D), xs, 0, D, gw, gws, bias_x(w + W::bout, g0),
                              residual(g0));
      });
      grid_sync(count, target, stamp++);
      // 3. Per item (XR rows of one audio from b0, head hd, chunk c of the window): LN, the
      //    head's cross q, cross-attention over the chunk (the rows' keys and values read once).
      //    Where items of a row outnumber the blocks, a block takes two at a time, a half each
      //    (kHalves): one round of the grid where two would run, each partial as a block's
      // one row's item (row b, head hd, chunk c) by `team`, with its room in xs, q, p, part and
      // red and its warps [wp, wp + warps)
      auto cross_item = [&](int item, const auto& team, float* xt, float* qt, float* pt, float* partt, float* redt,
                            int wp, int warps) {
        const int b = item / (H * CC), hd = item / CC % H, c = item % CC;
        team.sync();  // the last item's xs, q are still read
        for (int i = team.tid(); i < D; i += team.kSize) xt[i] = ld(x + b * D + i);
        layer_norm<T, 1, D>(xt, w + W::ln2, w + W::ln2 + D, redt, team);
        head_q1(mat(l, W::cq, Q::cq, Q::s_cq, D, D), w + W::bcq, hd, xt, qt, wp, warps);
        team.sync();
        const T *kb = cross_rows(b, l, 0, hd), *vb = cross_rows(b, l, 1, hd);
        partial(hd * CC + c, b, first(c), first(c + 1), [&](int j) { return kb + j * XS; },
                [&](int j) { return vb + j * XS; }, CC, team, qt, pt, partt, redt);
      };
      if (kHalves && B * H * CC > G) {
        const Half team{int(threadIdx.x) / Half::kSize};
        for (int item = 2 * blockIdx.x + team.id; item < B * H * CC; item += 2 * G)
          cross_item(item, team, xs + team.id * D, q + team.id * HD, p + team.id * CH, team.id ? p + 2 * CH : part,
                     red + 32 * team.id, warp % (kWarps / 2), kWarps / 2);
        __syncthreads();  // (met_all: no half may still read met for its target)
      } else if constexpr (XR == 1) {
        for (int item = blockIdx.x; item < B * H * CC; item += G)
          cross_item(item, Block{}, xs, q, p, part, red, warp, kWarps);
      } else {
        for (int item = blockIdx.x; item < B / XR * H * CC; item += G) {
          const int b0 = item / (H * CC) * XR, hd = item / CC % H, c = item % CC;
          __syncthreads();
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
                                 att + (size_t(hd * CC + c) * B + b0) * (HD + 2),
                                 att + (size_t(hd) * CC * B + b0) * (HD + 2), size_t(B) * (HD + 2), CC,
                                 heads + b0 * H + hd, H, met + CC);
        }
      }
      met_all(CC);
      grid_sync(count, target, stamp++);
      // 4. x += cross_out(attention) + bias
      for_groups<B, RB, !PICK>([&](int g0, int gw, int gws) {
        if (g0 > 0) __syncthreads();
        merge_heads<T, B, RB, H, HD>(att, CC, xs, g0);
        __syncthreads();
        rows_dot<T, RB, D, 1>(mat(l, W::co, Q::co, Q::s_co, D, D), xs, 0, D, gw, gws, bias_x(w + W::bco, g0),
                              residual(g0));
      });
      grid_sync(count, target, stamp++);
      // 5. h = GELU(mlp1(LN(x)) + bias), GELU in erf form (nn.gelu); kNarrow: as MLX compiles
      //    nn.gelu, x * (1 + erf(x / sqrt(2))) / 2 with each op in T (__hdiv as MLX's Divide)
      for_groups<B, RB, !PICK>([&](int g0, int gw, int gws) {
        if (g0 > 0) __syncthreads();
        load<T, RB * D>(x + g0 * D, xs);
        layer_norm<T, RB, D>(xs, w + W::ln3, w + W::ln3 + D, red);
        rows_dot<T, RB, D, 1>(mat(l, W::fc1, Q::fc1, Q::s_fc1, 4 * D, D), xs, 0, 4 * D, gw, gws, bias(w + W::bfc1),
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
      for_groups<B, RB, !PICK>([&](int g0, int gw, int gws) {
        if (g0 > 0) __syncthreads();
        T* hs = reinterpret_cast<T*>(xs);  // h's rows as they are: T takes half a float's room, or all of it
        load<T, RB * 4 * D>(h + g0 * 4 * D, hs);
        __syncthreads();
        rows_dot<T, RB, 4 * D, 1>(mat(l, W::fc2, Q::fc2, Q::s_fc2, D, 4 * D), hs, 0, D, gw, gws,
                                  bias_x(w + W::bfc2, g0), residual(g0));
      });
      grid_sync(count, target, stamp++);
    }
    if (t == sot && R == 2) {  // the next position's embedding overwrites x: wait for every block
      for_groups<B, RB, !PICK>([&](int g0, int gw, int gws) {
        if (g0 > 0) __syncthreads();
        logits_pass(0, g0, gw, gws, [](int, int, float, float) {});
      });
      grid_sync(count, target, stamp);
    }
  }
  // the last position's logits through the filters as they come out: each block merges its
  // picks, the last block to arrive the grid's. Without PICK (the forward pass of beams,
  // samples and wide greedy batches, whose updates take the logits) the logits only.
  for_groups<B, RB, !PICK>([&](int g0, int gw, int gws) {
    if (g0 > 0) __syncthreads();
    if constexpr (!PICK) {
      logits_pass(R - 1, g0, gw, gws, [](int, int, float, float) {});
      return;
    }
    History r[RB];
    Pick f[RB][kPicks];
    for (int b = 0; b < RB; ++b) {
      r[b] = timestamp_history<TS>(tokens + real(g0 + b) * L, L, meta[2], meta[3], meta[4 + real(g0 + b)]);
      for (int k = 0; k < kPicks; ++k) f[b][k] = no_pick();
    }
    logits_pass(R - 1, g0, gw, gws, [&](int n, int b, float z, float sup) {
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

// MLX writes each kernel's signature after this source (cuda_cache.build_source, as its JIT
// does). A launch is kThreads threads a block, one block an SM, so a kernel must take at most
// 128 registers a thread: this bound tells ptxas, which otherwise kept loop invariants of the
// phases in registers until it needed 138-144 (the half-block cross-attention items), and a
// launch would fail. Capped, it keeps a few bytes of them in local memory instead
// (tests/test_cuda_cache.py), and the step measured faster (benchmarks/h200-session15/).
#undef __global__
#define __global__ __attribute__((global)) __launch_bounds__(wf::kThreads, 1)
