// The decode kernels' beam search (after filters.cuh): openai's beam update, one launch.

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
// max_init (the filters'), max_candidates, the store's slot length (>= L + 1), then each row's
// must_reach (filters.cuh's History); sum_in (>= B);
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
    const History r = timestamp_history<TS>(tokens + size_t(b) * L, L, meta[0], meta[1], meta[4 + b]);
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

