/* cblas_sgemm's interface on Intel's AMX tiles, in bfloat16: C = alpha A op(B) + beta C, with
   A's and B's values rounded to bfloat16 (to nearest, ties to even) and every product summed in
   float32 by the tiles. Batched mode's encoder on the CPU calls it where cblas_sgemm went
   (decode/cpu_encoder.py): its products are most of a window's time, and a tile instruction
   makes 16 x 16 x 32 of them, where AVX-512 makes 16 a lane.

   Not cblas_sgemm's bits: a product of float32 values rounded to bfloat16 is exact in float32,
   but each value keeps 8 of its 24 bits, and the tiles sum in their own order. Only batched
   mode, which does not keep stock's bits anyway, takes it; tests/test_cpu_amx.py bounds its
   error against float64 and batched mode's WER against float32's.

   Beside it, for the same calls: one head's self-attention 32 queries at a time on the tiles
   (wf_attend_bf16, which cpu_rows.c's attention takes when handed this sgemm), and a 16-lane
   GELU (wf_gelu16) for the products' next operand. A greedy batch's cross keys and values are
   made with it too (cpu_rows.c's wf_cross_kv).

   Row-major only, A as it is (the encoder's calls: cpu_rows.c); B as it is or transposed.
   Each call packs both operands into bfloat16 in the tiles' layouts, in memory kept per thread:
   A by rows (16 rows of 32 values a tile), B in column panels of 16, each pair of B's rows
   interleaved (the tiles' "VNNI" layout: a tile row holds one pair of k for 16 columns).
   M, N and K are padded with zeros to whole blocks of 32. */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_decoder.h"

#if defined(__x86_64__) && defined(__linux__) && \
    ((defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 11))
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

/* Whether this CPU and the kernel let this process use the tiles: the CPU says it has them
   (AMX-TILE, AMX-BF16, and AVX-512's F, BW, DQ and BF16 for the packing, softmax and GELU),
   and the kernel grants their state (Linux >= 5.16 asks a process to request it first). */
int wf_amx_ready(void) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
        !__builtin_cpu_supports("avx512dq"))
        return 0;
    unsigned a, b, c, d;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(0));
    const int tile = (d >> 24) & 1, bf16 = (d >> 22) & 1;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(1));
    const int avx512_bf16 = (a >> 5) & 1;
    if (!tile || !bf16 || !avx512_bf16) return 0;
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((packed)) TileConfig;

enum { BLK = 32 };

/* This thread's packing memory, grown as needed and kept for its next call */
static __thread char* kept;
static __thread size_t kept_bytes;

static void* scratch(size_t bytes) {
    bytes = (bytes + 63) / 64 * 64;
    if (bytes > kept_bytes) {
        free(kept);
        kept = aligned_alloc(64, bytes);
        kept_bytes = kept ? bytes : 0;
    }
    return kept;
}

static long up(long v) { return (v + BLK - 1) / BLK * BLK; }

/* The first n of 16 lanes (none for n <= 0, all for n >= 16): a tail's mask */
static inline __mmask16 lanes(long n) { return n >= 16 ? 0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1u); }

static inline uint16_t bf16(float f) {  /* to nearest, ties to even (NaN is not met here) */
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* ap (mp, kp) <- A (m, k) in bfloat16, zeros past m and k */
__attribute__((target("avx512f,avx512bw,avx512bf16")))
static void pack_a(const float* a, long lda, long m, long k, uint16_t* ap, long mp, long kp) {
    for (long i = 0; i < mp; ++i) {
        uint16_t* row = ap + i * kp;
        long j = 0;
        if (i < m) {
            const float* src = a + i * lda;
            for (; j + 32 <= k; j += 32) {
                const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + j + 16), _mm512_loadu_ps(src + j));
                _mm512_storeu_si512(row + j, (__m512i)v);
            }
            for (; j < k; ++j) row[j] = bf16(src[j]);
        }
        memset(row + j, 0, (size_t)(kp - j) * 2);
    }
}

/* bp <- B (k, n) (or its transpose held as (n, k)) in panels of 16 columns: panel p, k-block
   q (32 values of k), pair row r (k = 32q + 2r and 2r + 1), column c, its two values side by
   side at ((p * (kp / 32) + q) * 16 + r) * 32 + 2c + {0, 1}; zeros past n and k. As 32-bit
   words: a pair is one word, at ((p * (kp / 32) + q) * 16 + r) * 16 + c. */
__attribute__((target("avx512f,avx512bw,avx512bf16")))
static void pack_b(const float* b, long ldb, int trans, long k, long n, uint16_t* bp, long kp, long np) {
    const long kb = kp / BLK;
    uint32_t* words = (uint32_t*)bp;
    if (k != kp || n != np) memset(bp, 0, (size_t)kp * np * 2);  /* padding read by the tiles */
    if (trans) {  /* column `col` is a row of b: 32 values of k, converted, are one k-block's 16 pairs */
        const __m512i rows = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                                _mm512_set1_epi32(16));
        for (long col = 0; col < n; ++col) {
            const float* src = b + col * ldb;
            uint32_t* panel = words + (col / 16) * kb * 256 + col % 16;
            for (long q = 0; q * BLK < k; ++q) {
                const long left = k - q * BLK;
                const __mmask16 lo = lanes(left), hi = lanes(left - 16);
                const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, src + q * BLK + 16),
                                                       _mm512_maskz_loadu_ps(lo, src + q * BLK));
                _mm512_i32scatter_epi32(panel + q * 256, rows, (__m512i)v, 4);
            }
        }
    } else {  /* rows k and k + 1 of b, 16 columns, interleaved value by value */
        const __m512i zip = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22,
                                             6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
        for (long col = 0; col < n; col += 16) {
            const __mmask16 cols = lanes(n - col);
            uint32_t* panel = words + (col / 16) * kb * 256;
            for (long kk = 0; kk < k; kk += 2) {
                const __m512 r0 = _mm512_maskz_loadu_ps(cols, b + kk * ldb + col);
                const __m512 r1 = kk + 1 < k ? _mm512_maskz_loadu_ps(cols, b + (kk + 1) * ldb + col) : _mm512_setzero_ps();
                const __m512i v = _mm512_permutexvar_epi16(zip, (__m512i)_mm512_cvtne2ps_pbh(r1, r0));
                _mm512_storeu_si512(panel + (kk / BLK) * 256 + ((kk % BLK) / 2) * 16, v);
            }
        }
    }
}

/* C's (32, 32) block at (i, j) from the tiles' sums: alpha * sum + beta * C, within m and n */
__attribute__((target("avx512f")))
static void put(const float* sums, float* c, long ldc, long i, long j, long m, long n, float alpha, float beta) {
    const long rows = m - i < BLK ? m - i : BLK, cols = n - j < BLK ? n - j : BLK;
    const __mmask16 m0 = lanes(cols), m1 = lanes(cols - 16);
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    for (long r = 0; r < rows; ++r) {
        float* out = c + (i + r) * ldc + j;
        for (int h = 0; h < 2; ++h) {
            const __mmask16 mk = h ? m1 : m0;
            __m512 v = _mm512_mul_ps(va, _mm512_loadu_ps(sums + r * BLK + 16 * h));
            if (beta != 0.0f) v = _mm512_add_ps(v, _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(mk, out + 16 * h)));
            _mm512_mask_storeu_ps(out + 16 * h, mk, v);
        }
    }
}

__attribute__((target("amx-tile,amx-bf16,avx512f")))
static void products(const uint16_t* ap, const uint16_t* bp, long mp, long kp, long np, float* c, long ldc, long m,
                     long n, float alpha, float beta) {
    TileConfig cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; ++t) cfg.rows[t] = 16, cfg.colsb[t] = 64;
    _tile_loadconfig(&cfg);
    const long kb = kp / BLK;
    const int plain = alpha == 1.0f && beta == 0.0f;  /* whole blocks then go straight into C */
    float sums[BLK * BLK] __attribute__((aligned(64)));
    for (long j = 0; j < np; j += BLK) {
        const uint16_t* b0 = bp + (j / 16) * kb * 512;
        const uint16_t* b1 = b0 + kb * 512;
        for (long i = 0; i < mp; i += BLK) {
            const uint16_t* a0 = ap + i * kp;
            const uint16_t* a1 = a0 + 16 * kp;
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            for (long q = 0; q < kb; ++q) {
                _tile_loadd(4, a0 + q * BLK, kp * 2);
                _tile_loadd(5, a1 + q * BLK, kp * 2);
                _tile_loadd(6, b0 + q * 512, 64);
                _tile_loadd(7, b1 + q * 512, 64);
                _tile_dpbf16ps(0, 4, 6);
                _tile_dpbf16ps(1, 4, 7);
                _tile_dpbf16ps(2, 5, 6);
                _tile_dpbf16ps(3, 5, 7);
            }
            if (plain && i + BLK <= m && j + BLK <= n) {
                float* out = c + i * ldc + j;
                _tile_stored(0, out, ldc * 4);
                _tile_stored(1, out + 16, ldc * 4);
                _tile_stored(2, out + 16 * ldc, ldc * 4);
                _tile_stored(3, out + 16 * ldc + 16, ldc * 4);
                continue;
            }
            _tile_stored(0, sums, BLK * 4);
            _tile_stored(1, sums + 16, BLK * 4);
            _tile_stored(2, sums + 16 * BLK, BLK * 4);
            _tile_stored(3, sums + 16 * BLK + 16, BLK * 4);
            put(sums, c, ldc, i, j, m, n, alpha, beta);
        }
    }
    _tile_release();
}

void wf_sgemm_bf16(int order, int trans_a, int trans_b, int m, int n, int k, float alpha, const float* a, int lda,
                   const float* b, int ldb, float beta, float* c, int ldc) {
    if (order != ROW_MAJOR || trans_a != NO_TRANS) abort();  /* no caller asks: never a silent wrong C */
    if (m <= 0 || n <= 0) return;
    const long mp = up(m), kp = up(k > 0 ? k : 1), np = up(n);
    uint16_t* ap = scratch(((size_t)mp * kp + (size_t)kp * np) * 2);
    if (!ap) abort();  /* as a BLAS would: there is no error to return */
    uint16_t* bp = ap + mp * kp;
    pack_a(a, lda, m, k, ap, mp, kp);
    pack_b(b, ldb, trans_b == TRANS, k, n, bp, kp, np);
    products(ap, bp, mp, kp, np, c, ldc, m, n, alpha, beta);
}

/* e^x in 16 lanes for x <= 0 (a score less its row's maximum): 2^(x log2 e), its fraction by
   the polynomial cpu_simd.c's exp8 takes from MLX, the power of two by scalef; below -88 it
   gives ~1e-38, not 0, which rounds to nothing beside the row's 1 */
__attribute__((target("avx512f")))
static inline __m512 exp16(__m512 x) {
    x = _mm512_mul_ps(_mm512_max_ps(x, _mm512_set1_ps(-88.0f)), _mm512_set1_ps(1.442695f));
    const __m512 ipart = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_sub_ps(x, ipart);
    __m512 p = _mm512_set1_ps(WF_EXP2_POLY[0]);
    for (int c = 1; c < 7; ++c) p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(WF_EXP2_POLY[c]));
    return _mm512_scalef_ps(p, ipart);
}

/* GELU, x (1 + erf(x / sqrt 2)) / 2, in 16 lanes for bfloat16 products (their next operand):
   erf by the formula MLX's takes (Abramowitz and Stegun 7.1.26, |error| < 1.5e-7), but with
   multiplies by reciprocals, 1 / (1 + p|v|) from rcp14 and one Newton step, and exp16. */
__attribute__((target("avx512f,avx512dq")))
void wf_gelu16(const float* in, float* out, long n) {
    const __m512 one = _mm512_set1_ps(1.0f), sign = _mm512_set1_ps(-0.0f);
    for (long i = 0; i < n; i += 16) {
        const __mmask16 m = lanes(n - i);
        const __m512 x = _mm512_maskz_loadu_ps(m, in + i);
        const __m512 v = _mm512_mul_ps(x, _mm512_set1_ps(0.70710678118654752f));
        const __m512 av = _mm512_andnot_ps(sign, v);
        const __m512 den = _mm512_fmadd_ps(_mm512_set1_ps(0.3275911f), av, one);
        __m512 t = _mm512_rcp14_ps(den);
        t = _mm512_mul_ps(t, _mm512_fnmadd_ps(den, t, _mm512_set1_ps(2.0f)));
        __m512 r = _mm512_fmadd_ps(_mm512_set1_ps(1.061405429f), t, _mm512_set1_ps(-1.453152027f));
        r = _mm512_fmadd_ps(r, t, _mm512_set1_ps(1.421413741f));
        r = _mm512_fmadd_ps(r, t, _mm512_set1_ps(-0.284496736f));
        r = _mm512_fmadd_ps(r, t, _mm512_set1_ps(0.254829592f));
        const __m512 e = exp16(_mm512_mul_ps(_mm512_xor_ps(sign, av), av));
        const __m512 erf = _mm512_fnmadd_ps(_mm512_mul_ps(e, t), r, one);  /* erf(|v|) */
        const __m512 signed_erf = _mm512_or_ps(erf, _mm512_and_ps(sign, v));
        _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(_mm512_mul_ps(x, _mm512_set1_ps(0.5f)),
                                                         _mm512_add_ps(one, signed_erf)));
    }
}

/* out (sp values, bfloat16) <- softmax of the row's n scores, zeros past n; the row is left
   holding the exponentials. In 16 lanes, summed in 16 running sums: not MLX's order (its
   weights are rounded to bfloat16 next anyway). */
__attribute__((target("avx512f,avx512bw,avx512bf16")))
static void softmax_bf16(float* row, long n, uint16_t* out, long sp) {
    __m512 top = _mm512_set1_ps(-INFINITY);
    long j = 0;
    for (; j + 16 <= n; j += 16) top = _mm512_max_ps(top, _mm512_loadu_ps(row + j));
    const __mmask16 tail = lanes(n - j);
    top = _mm512_mask_max_ps(top, tail, top, _mm512_maskz_loadu_ps(tail, row + j));
    const __m512 vm = _mm512_set1_ps(_mm512_reduce_max_ps(top));
    __m512 sum = _mm512_setzero_ps();
    for (j = 0; j + 16 <= n; j += 16) {
        const __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(row + j), vm));
        _mm512_storeu_ps(row + j, e);
        sum = _mm512_add_ps(sum, e);
    }
    if (tail) {
        const __m512 e = _mm512_maskz_mov_ps(tail, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, row + j), vm)));
        _mm512_mask_storeu_ps(row + j, tail, e);
        sum = _mm512_add_ps(sum, e);
    }
    const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
    for (j = 0; j < sp; j += 32) {
        const long left = n - j;
        const __mmask16 lo = lanes(left), hi = lanes(left - 16);
        const __m512 a = _mm512_mul_ps(_mm512_maskz_loadu_ps(lo, row + j), inv);
        const __m512 b = _mm512_mul_ps(_mm512_maskz_loadu_ps(hi, row + j + 16), inv);
        _mm512_storeu_si512(out + j, (__m512i)_mm512_cvtne2ps_pbh(b, a));
    }
}

/* One head's attention over all its keys, non-causal, as cpu_rows.c's attention_part makes it
   with the sgemm above (scores = q kt, softmax by rows, scores v), but 32 query rows at a time:
   their scores (32 x S) stay in this core's cache, where the whole (L x S) went to memory and
   back three times. qs (L, hd) and kt (hd, S) already scaled, vs (S, hd); oh (L, hd) out. The
   same roundings as the sgemm's: each product's operands in bfloat16 (the softmax's weights
   too), float32 sums; the softmax is softmax_bf16's. Returns 0 where it cannot get its memory
   (the caller then makes it the sgemm's way). */
int wf_attend_bf16(const float* qs, const float* kt, const float* vs, long L, long S, long hd, float* oh) {
    const long lp = up(L), hp = up(hd), sp = up(S);
    const size_t a_q = (size_t)lp * hp, b_k = (size_t)hp * sp, b_v = (size_t)sp * hp, a_p = (size_t)BLK * sp;
    char* mem = scratch((a_q + b_k + b_v + a_p) * 2 + (size_t)BLK * sp * 4 + 64);
    if (!mem) return 0;
    uint16_t *aq = (uint16_t*)mem, *bk = aq + a_q, *bv = bk + b_k, *ap = bv + b_v;
    float* scores = (float*)(((uintptr_t)(ap + a_p) + 63) & ~(uintptr_t)63);
    pack_a(qs, hd, L, hd, aq, lp, hp);
    pack_b(kt, S, 0, hd, S, bk, hp, sp);
    pack_b(vs, hd, 0, S, hd, bv, sp, hp);
    for (long i = 0; i < L; i += BLK) {
        const long rows = L - i < BLK ? L - i : BLK;
        products(aq + i * hp, bk, BLK, hp, sp, scores, sp, rows, S, 1.0f, 0.0f);
        for (long r = 0; r < rows; ++r) softmax_bf16(scores + r * sp, S, ap + r * sp, sp);
        if (rows < BLK) memset(ap + rows * sp, 0, (size_t)(BLK - rows) * sp * 2);
        products(ap, bv, BLK, sp, hp, oh + i * hd, hd, rows, hd, 1.0f, 0.0f);
    }
    return 1;
}

#else
void wf_gelu16(const float* in, float* out, long n) {
    (void)in, (void)out, (void)n;
    abort();  /* only where wf_amx_ready() said 1 */
}
int wf_attend_bf16(const float* qs, const float* kt, const float* vs, long L, long S, long hd, float* oh) {
    (void)qs, (void)kt, (void)vs, (void)L, (void)S, (void)hd, (void)oh;
    return 0;
}
int wf_amx_ready(void) { return 0; }
void wf_sgemm_bf16(int order, int trans_a, int trans_b, int m, int n, int k, float alpha, const float* a, int lda,
                   const float* b, int ldb, float beta, float* c, int ldc) {
    (void)order, (void)trans_a, (void)trans_b, (void)m, (void)n, (void)k, (void)alpha, (void)a, (void)lda, (void)b,
        (void)ldb, (void)beta, (void)c, (void)ldc;
    abort();  /* never handed out where wf_amx_ready() is 0 */
}
#endif
