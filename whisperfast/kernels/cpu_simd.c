/* MLX 0.32's CPU float32 exp, softmax and GELU (erf form), vectorized for x86 (AVX2, FMA).

   MLX's CPU backend has no x86 vectors: its math runs one element at a time, each step a call
   (fmaf, floor), so its exp costs ~17 ns an element (benchmarks/cpu/profile.md). These are the
   same IEEE operations in the same order as MLX's one-lane code (mlx/backend/cpu/simd/math.h,
   softmax.cpp), eight lanes at once, so every result is MLX's, bit for bit: each operation is
   correctly rounded (fma included), and none is fused or reordered that MLX does not fuse or
   reorder (built without -ffast-math, with -ffp-contract=off). The one-lane versions below are
   MLX's code as written; the vectors are checked against them (wf_check) and both against MLX
   itself (kernels/cpu_simd.py, at build time, and the tests). NaN inputs give NaN, whose sign
   and payload are not promised. */
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "cpu_decoder.h" /* cpu_products.c's products, MAX_RANGES */

#define MAX_ROWS 8

int wf_supported(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")

/* ---- one lane: MLX's code as written ---- */

static float exp1(float x_init) {
    float x = x_init * 1.442695f;
    float ipart = (float)floor((double)x + 0.5); /* MLX's `x + 0.5` is a double sum */
    float fpart = x - ipart;
    float p = WF_EXP2_POLY[0];
    for (int c = 1; c < 7; c++) p = fmaf(p, fpart, WF_EXP2_POLY[c]);
    /* |ipart| >= 200 only for inputs the selects below replace (NaN, beyond +-88); the guard
       keeps the conversion defined in C */
    int32_t i = fabsf(ipart) < 200.0f ? (int32_t)ipart : 0;
    int32_t e = (int32_t)((uint32_t)(i + 127) << 23);
    float two;
    memcpy(&two, &e, 4);
    float r = isnan(x_init) ? x_init : two * p;
    r = x_init > 88.0f ? INFINITY : r;
    return x_init < -88.0f ? 0.0f : r;
}

static float erf1(float v) {
    float t = 1.0f / fmaf(0.3275911f, fabsf(v), 1.0f);
    float r = fmaf(1.061405429f, t, -1.453152027f);
    r = fmaf(r, t, 1.421413741f);
    r = fmaf(r, t, -0.284496736f);
    r = fmaf(r, t, 0.254829592f);
    float e = -exp1(-v * v);
    float result = fmaf(e * t, r, 1.0f);
    return v > 0 ? result : -result;
}

/* x * (1 + erf(x / sqrt(2))) / 2, mlx.nn.gelu's formula, sqrt(2) rounded to float32 */
static float gelu1(float x) { return x * (1.0f + erf1(x / 1.41421356237309515f)) / 2.0f; }

/* ---- eight lanes ---- */

static inline __m256 exp8(__m256 x_init) {
    __m256 x = _mm256_mul_ps(x_init, _mm256_set1_ps(1.442695f));
    __m256d half = _mm256_set1_pd(0.5);
    __m256d lo = _mm256_floor_pd(_mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(x)), half));
    __m256d hi = _mm256_floor_pd(_mm256_add_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)), half));
    __m256 ipart = _mm256_set_m128(_mm256_cvtpd_ps(hi), _mm256_cvtpd_ps(lo));
    __m256 fpart = _mm256_sub_ps(x, ipart);
    __m256 p = _mm256_set1_ps(WF_EXP2_POLY[0]);
    for (int c = 1; c < 7; c++) p = _mm256_fmadd_ps(p, fpart, _mm256_set1_ps(WF_EXP2_POLY[c]));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(ipart), _mm256_set1_epi32(127)), 23);
    __m256 r = _mm256_mul_ps(_mm256_castsi256_ps(e), p);
    r = _mm256_blendv_ps(r, x_init, _mm256_cmp_ps(x_init, x_init, _CMP_UNORD_Q));
    r = _mm256_blendv_ps(r, _mm256_set1_ps(INFINITY), _mm256_cmp_ps(x_init, _mm256_set1_ps(88.0f), _CMP_GT_OQ));
    return _mm256_blendv_ps(r, _mm256_setzero_ps(), _mm256_cmp_ps(x_init, _mm256_set1_ps(-88.0f), _CMP_LT_OQ));
}

static inline __m256 gelu8(__m256 x) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 v = _mm256_div_ps(x, _mm256_set1_ps(1.41421356237309515f));
    __m256 t = _mm256_div_ps(_mm256_set1_ps(1.0f),
                             _mm256_fmadd_ps(_mm256_set1_ps(0.3275911f), _mm256_andnot_ps(sign, v), _mm256_set1_ps(1.0f)));
    __m256 r = _mm256_fmadd_ps(_mm256_set1_ps(1.061405429f), t, _mm256_set1_ps(-1.453152027f));
    r = _mm256_fmadd_ps(r, t, _mm256_set1_ps(1.421413741f));
    r = _mm256_fmadd_ps(r, t, _mm256_set1_ps(-0.284496736f));
    r = _mm256_fmadd_ps(r, t, _mm256_set1_ps(0.254829592f));
    __m256 e = _mm256_xor_ps(sign, exp8(_mm256_mul_ps(_mm256_xor_ps(sign, v), v)));
    __m256 result = _mm256_fmadd_ps(_mm256_mul_ps(e, t), r, _mm256_set1_ps(1.0f));
    __m256 erf = _mm256_blendv_ps(_mm256_xor_ps(sign, result), result, _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_GT_OQ));
    return _mm256_div_ps(_mm256_mul_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), erf)), _mm256_set1_ps(2.0f));
}

/* ---- softmax over rows of m ---- */

/* A row's maximum as MLX's one-lane scan takes it: the first NaN sticks. */
static float max1(const float* in, long m) {
    float maximum = -INFINITY;
    for (long j = 0; j < m; j++) maximum = isnan(in[j]) ? in[j] : (in[j] > maximum ? in[j] : maximum);
    return maximum;
}

/* One row as MLX's softmax<float, float> computes it: the maximum, exp(x - max) written out
   while the normalizer sums them in order from 0, then out *= 1 / normalizer. */
static void softmax_row1(const float* in, float* out, long m) {
    float maximum = max1(in, m);
    float normalizer = 0.0f;
    for (long j = 0; j < m; j++) {
        float e = exp1(in[j] - maximum);
        out[j] = e;
        normalizer = normalizer + e;
    }
    normalizer = 1 / normalizer;
    for (long j = 0; j < m; j++) out[j] = out[j] * normalizer;
}

/* A row's maximum, in vectors; 0 where the row holds a NaN. Any order gives the same maximum
   but for the sign of a zero maximum, which changes nothing after it: x - (+0) and x - (-0)
   differ only at x = -0, and exp gives 1 for either zero. */
static int row_max(const float* in, long m, float* result) {
    __m256 vmax = _mm256_set1_ps(-INFINITY), nan = _mm256_setzero_ps();
    long j = 0;
    for (; j + 8 <= m; j += 8) {
        __m256 a = _mm256_loadu_ps(in + j);
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
        vmax = _mm256_max_ps(a, vmax);
    }
    if (_mm256_movemask_ps(nan)) return 0;
    float lanes[8], maximum = -INFINITY;
    _mm256_storeu_ps(lanes, vmax);
    for (int k = 0; k < 8; k++) maximum = lanes[k] > maximum ? lanes[k] : maximum;
    for (; j < m; j++) {
        if (isnan(in[j])) return 0;
        maximum = in[j] > maximum ? in[j] : maximum;
    }
    *result = maximum;
    return 1;
}

#define GROUP 8

/* Rows in groups of eight: each row's exps in vectors, then the eight normalizers summed side by
   side, each in its own row's order (the one step MLX takes strictly one element at a time, and
   the one that must not be reordered). A row holding a NaN is left to the one-lane code. */
static void softmax_rows(const float* in, float* out, long rows, long m) {
    for (long r0 = 0; r0 < rows; r0 += GROUP) {
        int g = rows - r0 < GROUP ? (int)(rows - r0) : GROUP;
        int vector[GROUP];
        float sum[GROUP];
        for (int k = 0; k < g; k++) {
            const float* x = in + (r0 + k) * m;
            float* y = out + (r0 + k) * m;
            float maximum;
            sum[k] = 0.0f;
            vector[k] = row_max(x, m, &maximum);
            if (!vector[k]) {
                softmax_row1(x, y, m);
                continue;
            }
            __m256 vm = _mm256_set1_ps(maximum);
            long j = 0;
            for (; j + 8 <= m; j += 8) _mm256_storeu_ps(y + j, exp8(_mm256_sub_ps(_mm256_loadu_ps(x + j), vm)));
            for (; j < m; j++) y[j] = exp1(x[j] - maximum);
        }
        const float* y = out + r0 * m;
        if (g == GROUP) {
            float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
            for (long j = 0; j < m; j++) {
                s0 += y[j]; s1 += y[m + j]; s2 += y[2 * m + j]; s3 += y[3 * m + j];
                s4 += y[4 * m + j]; s5 += y[5 * m + j]; s6 += y[6 * m + j]; s7 += y[7 * m + j];
            }
            sum[0] = s0; sum[1] = s1; sum[2] = s2; sum[3] = s3; sum[4] = s4; sum[5] = s5; sum[6] = s6; sum[7] = s7;
        } else {
            for (int k = 0; k < g; k++)
                for (long j = 0; j < m; j++) sum[k] = sum[k] + y[k * m + j];
        }
        for (int k = 0; k < g; k++) {
            if (!vector[k]) continue;
            float* o = out + (r0 + k) * m;
            float normalizer = 1 / sum[k];
            __m256 vn = _mm256_set1_ps(normalizer);
            long j = 0;
            for (; j + 8 <= m; j += 8) _mm256_storeu_ps(o + j, _mm256_mul_ps(_mm256_loadu_ps(o + j), vn));
            for (; j < m; j++) o[j] = o[j] * normalizer;
        }
    }
}

/* A row's logsumexp as MLX's logsumexp<float, float> computes it: the maximum, the exps of
   x - max summed in order from 0, then max where it is infinite, else logf(sum) + max (the
   C library's logf, which MLX calls too). The exps are made in vectors, a block at a time,
   and summed one by one. */
static float logsumexp_row(const float* in, long m) {
    float maximum, normalizer = 0.0f, e[256];
    if (!row_max(in, m, &maximum)) {
        maximum = max1(in, m);
        for (long j = 0; j < m; j++) normalizer = normalizer + exp1(in[j] - maximum);
    } else {
        __m256 vm = _mm256_set1_ps(maximum);
        for (long j0 = 0; j0 < m; j0 += 256) {
            long b = m - j0 < 256 ? m - j0 : 256, j = 0;
            for (; j + 8 <= b; j += 8) _mm256_storeu_ps(e + j, exp8(_mm256_sub_ps(_mm256_loadu_ps(in + j0 + j), vm)));
            for (; j < b; j++) e[j] = exp1(in[j0 + j] - maximum);
            for (j = 0; j < b; j++) normalizer = normalizer + e[j];
        }
    }
    return isinf(maximum) ? maximum : logf(normalizer) + maximum;
}

/* The greedy pick over one row of logits (n), as mlx-whisper's logit filters and greedy update
   compute it in MLX's ops, the same float32 operations in the same order:
   - x = logits + masks[0] + masks[1] + ... (additive masks of 0 and -inf, in their order);
   - where split >= 0, the split rule (mlx-whisper's last timestamp rule): logprobs
     lp = x - logsumexp(x); the low part [0, split) is banned where logsumexp(lp[split:]) >
     max(lp[:split]); then x = x + rule, rule being -inf on the banned part and on the
     half-open `ranges` (pairs), else 0;
   - the pick is the first index of x's maximum, and *logprob = x[pick] - logsumexp(x).
   `work` holds n floats. Returns the pick. pick_slow does each of these as written; wf_pick
   takes shortcuts that give the same bits, and leaves to pick_slow the rows they do not cover. */
static long pick_slow(float* x, float* work, long n, const long* ranges, int n_ranges, long split, float* logprob) {
    if (split >= 0) {
        float lse = logsumexp_row(x, n);
        for (long i = 0; i < n; i++) work[i] = x[i] - lse;
        float timestamps = logsumexp_row(work + split, n - split);
        float text = max1(work, split);
        int ban_low = timestamps > text;
        for (long i = 0; i < n; i++) work[i] = (ban_low && i < split) ? -INFINITY : 0.0f;
        for (int r = 0; r < n_ranges; r++)
            for (long i = ranges[2 * r] < 0 ? 0 : ranges[2 * r]; i < ranges[2 * r + 1] && i < n; i++) work[i] = -INFINITY;
        for (long i = 0; i < n; i++) x[i] = x[i] + work[i];
    }
    long best = 0;
    for (long i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    *logprob = x[best] - logsumexp_row(x, n);
    return best;
}

/* The first index of in's maximum (±0 equal, as `>` compares), its value in *top; -1 where in
   holds a NaN. */
static long first_max(const float* in, long m, float* top) {
    if (!row_max(in, m, top)) return -1;
    __m256 vt = _mm256_set1_ps(*top);
    long j = 0;
    for (; j + 8 <= m; j += 8) {
        int hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(in + j), vt, _CMP_EQ_OQ));
        if (hit) return j + __builtin_ctz(hit);
    }
    for (; j < m; j++)
        if (in[j] == *top) return j;
    return m ? -1 : 0;
}

/* Whether MLX's exp gives 0 for -inf, in vectors and one lane: a banned logit then adds
   exactly nothing to a normalizer (which starts at +0 and only grows), so a sum may skip it. */
static int exp_of_minus_inf_is_zero(void) {
    float lanes[8];
    _mm256_storeu_ps(lanes, exp8(_mm256_set1_ps(-INFINITY)));
    return exp1(-INFINITY) == 0.0f && lanes[0] == 0.0f && lanes[7] == 0.0f;
}

static int in_ranges(long i, const long* lo, const long* hi, int r) {
    for (int k = 0; k < r; k++)
        if (i >= lo[k] && i < hi[k]) return 1;
    return 0;
}

/* The shortcuts (each the same bits as pick_slow's steps):
   - one pass of exps, exp(x - max), serves two normalizers summed side by side in order: all of
     x (the first logsumexp) and x without the `ranges` (the last one, where its maximum is x's:
     a banned exp adds 0, and x + 0 differs from x only in a zero's sign, which exp ignores);
   - max(x[:split] - lse) is max(x[:split]) - lse: subtracting a constant rounds monotonically;
   - where the low part is banned, the last logsumexp's prefix adds only zeros to +0: it sums
     from `split` on; the timestamps' logprobs are made only there.
   A NaN, an infinite or wholly banned maximum, a banned first maximum, or more than MAX_RANGES ranges
   go to pick_slow. */
long wf_pick(const float* logits, float* x, float* work, long n, const float* const* masks, int n_masks,
             const long* ranges, int n_ranges, long split, float* logprob) {
    const int zero_exp = exp_of_minus_inf_is_zero(); /* two exps: asked each call, as rows pick on two threads */
    memcpy(x, logits, n * sizeof(float));
    for (int m = 0; m < n_masks; m++)
        for (long i = 0; i < n; i++) x[i] = x[i] + masks[m][i];
    float top;
    long first = first_max(x, n, &top);
    if (first < 0 || !isfinite(top) || !zero_exp || n_ranges > MAX_RANGES || split > n)
        return pick_slow(x, work, n, ranges, n_ranges, split, logprob);
    if (split < 0) {
        *logprob = x[first] - logsumexp_row(x, n);
        return first;
    }
    /* the ranges clipped to [0, n), sorted, overlaps merged */
    long lo[MAX_RANGES], hi[MAX_RANGES];
    int r = 0;
    for (int k = 0; k < n_ranges; k++) {
        long a = ranges[2 * k] < 0 ? 0 : ranges[2 * k], b = ranges[2 * k + 1] < n ? ranges[2 * k + 1] : n;
        if (a >= b) continue;
        int at = r++;
        while (at > 0 && lo[at - 1] > a) { lo[at] = lo[at - 1]; hi[at] = hi[at - 1]; at--; }
        lo[at] = a; hi[at] = b;
    }
    int merged = 0;
    for (int k = 0; k < r; k++) {
        if (merged && lo[k] <= hi[merged - 1]) { if (hi[k] > hi[merged - 1]) hi[merged - 1] = hi[k]; continue; }
        lo[merged] = lo[k]; hi[merged] = hi[k]; merged++;
    }
    r = merged;
    __m256 vt = _mm256_set1_ps(top);
    long j = 0;
    for (; j + 8 <= n; j += 8) _mm256_storeu_ps(work + j, exp8(_mm256_sub_ps(_mm256_loadu_ps(x + j), vt)));
    for (; j < n; j++) work[j] = exp1(x[j] - top);
    float all = 0.0f, kept = 0.0f;
    long pos = 0;
    for (int k = 0; k <= r; k++) {
        long a = k < r ? lo[k] : n, b = k < r ? hi[k] : n;
        for (; pos < a; pos++) { all = all + work[pos]; kept = kept + work[pos]; }
        for (; pos < b; pos++) all = all + work[pos];
    }
    float lse = logf(all) + top;
    float text_top;
    row_max(x, split, &text_top);
    float text = text_top - lse;
    for (long i = split; i < n; i++) work[i] = x[i] - lse;
    float timestamps = logsumexp_row(work + split, n - split);
    if (!(timestamps > text)) {  /* the low part stays */
        if (in_ranges(first, lo, hi, r)) return pick_slow(x, work, n, ranges, n_ranges, split, logprob);
        *logprob = (x[first] + 0.0f) - (logf(kept) + top);
        return first;
    }
    for (long i = split; i < n; i++) work[i] = in_ranges(i, lo, hi, r) ? -INFINITY : x[i] + 0.0f;
    float high;
    long best = first_max(work + split, n - split, &high);
    if (best < 0 || !isfinite(high)) return pick_slow(x, work, n, ranges, n_ranges, split, logprob);
    *logprob = work[split + best] - logsumexp_row(work + split, n - split);
    return split + best;
}

static void exp_n(const float* in, float* out, long n) {
    long i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, exp8(_mm256_loadu_ps(in + i)));
    for (; i < n; i++) out[i] = exp1(in[i]);
}

static void gelu_n(const float* in, float* out, long n) {
    long i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, gelu8(_mm256_loadu_ps(in + i)));
    for (; i < n; i++) out[i] = gelu1(in[i]);
}

#pragma GCC pop_options

/* ---- layer norm: MLX 0.32's CPU fallback of mx.fast.layer_norm (float32), row by row ----

   mean(x) is the sum in order from element 0 times (float)(1.0 / n); the centred values'
   mean of squares the same way; then 1 / sqrtf(v + eps) (MLX's rsqrt), times the weight, plus
   the bias, each rounded. Eight rows go side by side, each its own chain of sums in its own
   order (independent chains, so the adds overlap instead of waiting on each other). */
#define LN_ROWS 8

void wf_layer_norm_rows(const float* x, const float* w, const float* b, float eps, float* y, long rows, long n) {
    const float inv_n = (float)(1.0 / (double)n);
    for (long r0 = 0; r0 < rows; r0 += LN_ROWS) {
        const int k = rows - r0 < LN_ROWS ? (int)(rows - r0) : LN_ROWS;
        const float* xr = x + r0 * n;
        float* yr = y + r0 * n;
        float sum[LN_ROWS] = {0}, sq[LN_ROWS] = {0}, mu[LN_ROWS], rs[LN_ROWS];
        for (long i = 0; i < n; i++)
            for (int j = 0; j < k; j++) sum[j] = sum[j] + xr[j * n + i];
        for (int j = 0; j < k; j++) mu[j] = sum[j] * inv_n;
        for (long i = 0; i < n; i++)
            for (int j = 0; j < k; j++) {
                float c = xr[j * n + i] - mu[j];
                yr[j * n + i] = c;
                sq[j] = sq[j] + c * c;
            }
        for (int j = 0; j < k; j++) rs[j] = 1.0f / sqrtf(sq[j] * inv_n + eps);
        for (int j = 0; j < k; j++)
            for (long i = 0; i < n; i++) {
                float v = yr[j * n + i] * rs[j];
                v = v * w[i];
                yr[j * n + i] = v + b[i];
            }
    }
}

/* ---- entry points: rows (or elements) shared out over `threads`, the caller's one of them;
   each element's arithmetic does not depend on the share it falls in ---- */

enum { EXP, GELU, SOFTMAX, CHAIN, LOGSUMEXP, PACK, LAYER_NORM, PACK_Q8, GELU16 };

typedef struct {
    int op;
    const float* in;
    float* out;
    long first, count, m; /* rows of m (softmax), else elements (m = 1); CHAIN, PACK: panels */
    const float* bias;    /* CHAIN: m = the rows of in, n the outputs; LAYER_NORM: rows of m, the bias */
    const float* weight;  /* LAYER_NORM */
    float eps;            /* LAYER_NORM */
    void* packed;         /* CHAIN: read; PACK: written from `in` (n, k) */
    int half;
    long n, k;
    long result;          /* PACK: values float16 did not hold; PACK_Q8: values not the dequantized weight's */
    const unsigned char* q; /* PACK_Q8: the 8-bit values (n, k), their groups' scales and biases (n, k / group) */
    const float *scales, *biases;
    long group;
} Share;

static void run_share(Share* s) {
    if (s->op == CHAIN) {
        wf_panel_rows(s->in, s->packed, s->half, s->bias, s->out, s->m, s->first, s->first + s->count, s->n, s->k);
        return;
    }
    if (s->op == PACK) {
        s->result = wf_pack_part(s->in, s->packed, s->n, s->k, s->half, s->first, s->first + s->count);
        return;
    }
    if (s->op == PACK_Q8) {
        s->result = wf_pack_q8_part(s->q, s->scales, s->biases, s->in, s->packed, s->n, s->k, s->group, s->first,
                                    s->first + s->count);
        return;
    }
    const float* in = s->in + s->first * s->m;
    float* out = s->out + s->first * s->m;
    if (s->op == LAYER_NORM) {
        wf_layer_norm_rows(in, s->weight, s->bias, s->eps, out, s->count, s->m);
        return;
    }
    if (s->op == LOGSUMEXP) {
        for (long r = 0; r < s->count; r++) s->out[s->first + r] = logsumexp_row(in + r * s->m, s->m);
        return;
    }
    if (s->op == SOFTMAX) softmax_rows(in, out, s->count, s->m);
    else if (s->op == GELU) gelu_n(in, out, s->count);
    else if (s->op == GELU16) wf_gelu16(in, out, s->count);
    else exp_n(in, out, s->count);
}

static void* run_thread(void* arg) {
    run_share((Share*)arg);
    return NULL;
}

#define MAX_THREADS 16

/* Shares `rows` (rows, elements or panels) out over the threads, each share of the template
   `s`; returns 0, or -1 where a thread could not be started (nothing was then left undone:
   the caller's thread ran that share itself). `result` sums the shares' results. */
static int run_shares(Share s, long rows, int threads, long* result) {
    if (threads < 1) threads = 1;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    /* shares in whole groups (softmax rows) or vectors (elements) */
    long align = s.op == SOFTMAX ? GROUP : s.op == LAYER_NORM ? LN_ROWS : (s.op == LOGSUMEXP || s.op == CHAIN || s.op == PACK || s.op == PACK_Q8) ? 1 : 8;
    if (rows < threads * align) threads = 1;
    Share shares[MAX_THREADS];
    pthread_t ids[MAX_THREADS];
    int started[MAX_THREADS] = {0}, status = 0;
    long first = 0;
    for (int t = 0; t < threads; t++) {
        long end = t == threads - 1 ? rows : (rows * (t + 1) / threads) / align * align;
        shares[t] = s;
        shares[t].first = first;
        shares[t].count = end - first;
        first = end;
    }
    for (int t = 1; t < threads; t++) started[t] = pthread_create(&ids[t], NULL, run_thread, &shares[t]) == 0;
    run_share(&shares[0]);
    for (int t = 1; t < threads; t++) {
        if (started[t]) pthread_join(ids[t], NULL);
        else {
            run_share(&shares[t]);
            status = -1;
        }
    }
    if (result) {
        *result = 0;
        for (int t = 0; t < threads; t++) *result += shares[t].result;
    }
    return status;
}

static int run(int op, const float* in, float* out, long rows, long m, int threads) {
    return run_shares((Share){.op = op, .in = in, .out = out, .m = m}, rows, threads, NULL);
}

/* w (n, k) -> `packed`, ceil(n / 64) panels of k * 64 values, float16 (half) or float32.
   Returns how many values float16 did not hold exactly (0 for float32): the copy is usable
   only at 0. */
long wf_pack(const float* w, void* packed, long n, long k, int half, int threads) {
    long inexact = 0;
    run_shares((Share){.op = PACK, .in = w, .packed = packed, .half = half, .n = n, .k = k},
               (n + wf_panel_size() - 1) / wf_panel_size(), threads, &inexact);
    return inexact;
}

/* An affine 8-bit layer's weight -> `packed` (wf_q8_packed_bytes of them): q (n, k) its
   values, scales and biases (n, k / group) float32, w (n, k) the float32 weight mx.dequantize
   made of them. Returns how many values the panels' widening gives otherwise than w (the copy
   is usable only at 0), or -1 where k is not whole groups. */
long wf_pack_q8(const unsigned char* q, const float* scales, const float* biases, const float* w, void* packed, long n,
                long k, long group, int threads) {
    if (group < 1 || k % group) return -1;
    *(long*)packed = group;
    long inexact = 0;
    run_shares((Share){.op = PACK_Q8, .in = w, .packed = packed, .n = n, .k = k, .q = q, .scales = scales,
                       .biases = biases, .group = group},
               (n + wf_panel_size() - 1) / wf_panel_size(), threads, &inexact);
    return inexact;
}

/* out (m, n) = x (m, k) @ w (n, k).T [+ bias (n)], w as wf_pack laid it out, m <= 8 (else -2):
   see cpu_products.c: wf_panel_rows */
int wf_chain_matmul(const float* x, const void* packed, int half, const float* bias, float* out, long m, long n,
                    long k, int threads) {
    if (m < 1 || m > MAX_ROWS) return -2;
    return run_shares((Share){.op = CHAIN, .in = x, .out = out, .m = m, .bias = bias, .packed = (void*)packed,
                              .half = half, .n = n, .k = k},
                      (n + wf_panel_size() - 1) / wf_panel_size(), threads, NULL);
}

int wf_softmax(const float* in, float* out, long rows, long m, int threads) { return run(SOFTMAX, in, out, rows, m, threads); }
/* out (rows) = logsumexp of each row of m */
int wf_logsumexp(const float* in, float* out, long rows, long m, int threads) { return run(LOGSUMEXP, in, out, rows, m, threads); }
int wf_gelu(const float* in, float* out, long n, int threads) { return run(GELU, in, out, n, 1, threads); }
/* cpu_amx.c's GELU for bfloat16 products (AVX-512: only where wf_amx_ready() said 1) */
int wf_gelu_fast(const float* in, float* out, long n, int threads) { return run(GELU16, in, out, n, 1, threads); }
/* out (rows, m) = the layer norm of each row of in (wf_layer_norm_rows) */
int wf_layer_norm(const float* in, const float* w, const float* b, float eps, float* out, long rows, long m,
                  int threads) {
    return run_shares((Share){.op = LAYER_NORM, .in = in, .out = out, .m = m, .weight = w, .bias = b, .eps = eps},
                      rows, threads, NULL);
}
int wf_exp(const float* in, float* out, long n, int threads) { return run(EXP, in, out, n, 1, threads); }

/* The float32 bit patterns first, first + step, ... (count of them) through the vector and the
   one-lane exp and GELU: how many results differ (two NaNs count as equal). */
__attribute__((target("avx2,fma"))) long wf_check(uint64_t first, uint64_t step, uint64_t count) {
    long bad = 0;
    for (uint64_t i = 0; i < count; i += 8) {
        uint32_t bits[8];
        float x[8], ev[8], gv[8];
        for (int k = 0; k < 8; k++) bits[k] = (uint32_t)(first + (i + k) * step);
        memcpy(x, bits, sizeof x);
        __m256 v = _mm256_loadu_ps(x);
        _mm256_storeu_ps(ev, exp8(v));
        _mm256_storeu_ps(gv, gelu8(v));
        for (int k = 0; k < 8 && i + k < count; k++) {
            float es = exp1(x[k]), gs = gelu1(x[k]);
            bad += !(isnan(es) ? isnan(ev[k]) : memcmp(&es, &ev[k], 4) == 0);
            bad += !(isnan(gs) ? isnan(gv[k]) : memcmp(&gs, &gv[k], 4) == 0);
        }
    }
    return bad;
}
