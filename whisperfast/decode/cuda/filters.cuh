// The decode kernels' logit filters (after attention.cuh): mlx-whisper's SuppressTokens, its
// timestamp rules and greedy update, as statistics merged over blocks.

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
// timestamp, and (`held`, batched mode's rules.HeldEnd) no EOT where the pair's first lies
// below the row's must_reach (0: never). sample_begin, max_init and must_reach change with
// the prompt and the rows, so they are launch arguments (meta), not template constants: one
// compiled kernel serves every prompt length.
struct History {
  bool first, last_ts, penult_ts, held;
  int max_init;
};

template <int TS, typename Tok>
__device__ __forceinline__ History timestamp_history(const Tok* row, int L, int sample_begin, int max_init,
                                                     int must_reach) {
  const bool last_ts = L > sample_begin && row[L - 1] >= TS, penult_ts = L - sample_begin < 2 || row[L - 2] >= TS;
  const bool held = L - sample_begin >= 2 && last_ts && penult_ts && static_cast<int>(row[L - 2]) - TS < must_reach;
  return {L == sample_begin, last_ts, penult_ts, held, max_init};
}

// Whether the timestamp rules ban token v outright (the ban on text that depends on the
// row's softmax aside)
template <int TS, int EOT, int NO_TS, bool RULES>
__device__ __forceinline__ bool rule_banned(int v, History r) {
  return RULES && (v == NO_TS || (r.first && (v < TS || v > TS + r.max_init)) ||
                   (r.last_ts && r.penult_ts && (v >= TS || (r.held && v == EOT))) ||
                   (r.last_ts && !r.penult_ts && v < EOT));
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

// The filters + update alone, a block a row (grid: B blocks), for the forward pass's logits
// (B, R, NV), row R-1 the last position's: a greedy batch of more rows than the step's own
// picks take (cuda/step.py's kernel_picks) gets its tokens here, a second launch a step, in
// place of tens of MLX ops a step (benchmarks/h100-session33/). tokens (B, L) -> (B, L+1);
// meta[2], meta[3]: sample_begin, max_init; meta[4 + b]: row b's must_reach (as
// decode_step's); done[b]: whether row b's new token is EOT. No row count in the template:
// one kernel serves every batch.
template <int NV, int TS, int EOT, int NO_TS, bool RULES, typename Tok>
__device__ void greedy(const float* logits, int R, const Tok* tokens, int L, const int* meta, const float* sum_in,
                       const float* suppress, Tok* tokens_out, float* sum_out, bool* done) {
  __shared__ Pick sh[32 * kPicks];
  const int b = blockIdx.x;
  const Tok* row = tokens + size_t(b) * L;
  const float* z = logits + (size_t(b) * R + R - 1) * NV;
  const History r = timestamp_history<TS>(row, L, meta[2], meta[3], meta[4 + b]);
  Pick f[kPicks];
  for (int k = 0; k < kPicks; ++k) f[k] = no_pick();
  for (int v = threadIdx.x; v < NV; v += blockDim.x) filter_add<TS, EOT, NO_TS, RULES>(f, v, z[v] + suppress[v], r);
  block_merge(f, sh);
  Tok* out = tokens_out + size_t(b) * (L + 1);
  for (int i = threadIdx.x; i < L; i += blockDim.x) out[i] = row[i];
  if (threadIdx.x == 0) done[b] = finish<TS, EOT, RULES>(f, row, L, sum_in[b], out, sum_out + b);
}

