/* Rows times a weight (float32), each output summed in the order the BLAS that MLX calls sums
   it (OpenBLAS 0.3.30's x86 kernels, read from its sources), so that the library's products
   are MLX's own: the large-matrix kernels' fma chains over blocks of k (panels of packed
   weights), the AVX-512 small-matrix TN kernel's 16 lanes (tn16), the small NN kernel's chains
   (an attention's weighted values). Whether the BLAS at hand sums so is never assumed:
   kernels/cpu_simd.py and decode/cpu_step.py check each weight against MLX's product before
   one of these stands in for it. Built into cpu_simd's library, with its flags (no
   contraction, no fast math). */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "cpu_decoder.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")

/* ---- rows times a weight, each output one fma chain ---- */

/* out[m, j] = sum over k of x[m, k] * w[j, k], each sum one fma chain in k order from 0 for
   each block of k (k_block), added in turn to 0 or bias[j]: how OpenBLAS's large-matrix sgemm
   kernels sum x @ w.T (the CPU's decode logits, at 51864 outputs). Whether the BLAS at hand
   sums so is not assumed: kernels/cpu_simd.py compares this with MLX's own matmul on the
   weight it is for before using it.

   The weight is read from a copy laid out once (wf_pack): panels of 64 outputs, each panel
   k rows of its 64 outputs' values, so that one step of k is eight vectors of eight outputs
   read in order; in float16 where every value of w is a float16 exactly (the checkpoints'
   weights are), which halves the bytes a step reads and changes no value: each is widened
   back to the same float32 before it is multiplied. */
#define PANEL 64
#define PREFETCH_AHEAD (PANEL * 32) /* values: 4 KB of float16 panels, 8 KB of float32 */

/* w (n, k) float32 -> panels of float16 (half) or float32, the last panel's missing outputs
   zero. Returns how many values float16 did not hold exactly (then the copy is not to be
   used); 0 for float32. */
long wf_pack_part(const float* w, void* out, long n, long k, int half, long p0, long p1) {
    long inexact = 0;
    for (long p = p0; p < p1; p++)
        for (long kk = 0; kk < k; kk++)
            for (long i0 = 0; i0 < PANEL; i0 += 8) {
                float v[8];
                for (int i = 0; i < 8; i++) {
                    long j = p * PANEL + i0 + i;
                    v[i] = j < n ? w[j * k + kk] : 0.0f;
                }
                long at = (p * k + kk) * PANEL + i0;
                if (half) {
                    __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(v), _MM_FROUND_TO_NEAREST_INT);
                    _mm_storeu_si128((__m128i*)((uint16_t*)out + at), h);
                    float back[8];
                    _mm256_storeu_ps(back, _mm256_cvtph_ps(h));
                    inexact += memcmp(back, v, sizeof v) != 0;
                } else {
                    memcpy((float*)out + at, v, sizeof v);
                }
            }
    return inexact;
}

/* The panel's values PREFETCH_AHEAD ahead of `at` (float16 or float32 panels) asked into L1:
   the loops below compute while those lines come (the hardware's own prefetch left a step of
   a few rows at ~9 GB/s a core, a third under what a plain read of the same bytes gets). No
   value changes. */
static inline __attribute__((always_inline)) void prefetch_ahead(const void* panel, long at, int half) {
    /* an address, not a pointer into the panel: it may lie past the weight's end (a prefetch does not fault) */
    const char* ahead = (const char*)((uintptr_t)panel + (uintptr_t)(at + PREFETCH_AHEAD) * (half ? 2 : 4));
    _mm_prefetch(ahead, _MM_HINT_T0);
    _mm_prefetch(ahead + 64, _MM_HINT_T0);
    if (!half) {
        _mm_prefetch(ahead + 128, _MM_HINT_T0);
        _mm_prefetch(ahead + 192, _MM_HINT_T0);
    }
}

static inline __m256 panel_load(const void* panel, long at, int half) {
    return half ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)((const uint16_t*)panel + at)))
                : _mm256_loadu_ps((const float*)panel + at);
}

/* Panels of an affine 8-bit weight (PANELS_Q8), where the layer came quantized: MLX's
   dequantized value of output j at input kk is scale * q + bias, scale and bias those of j's
   group of `group` inputs. The packed copy is a header of Q8_HEADER bytes (the group size),
   then each panel's k x 64 values q (bytes, laid out as the float panels are), its
   (k / group) x 64 scales and as many biases (float32); the last panel's missing outputs are
   0 * 0 + 0. A value is widened in registers with the same product and sum as
   mx.dequantize (this file is built without contraction), so each fma chain reads the very
   float32 the dequantized weight holds, from a quarter of its bytes: wf_pack_q8 compares
   every value with that weight before the copy is used. */
#define Q8_HEADER 64

static inline long q8_panel_bytes(long k, long group) { return k * PANEL + 2 * (k / group) * PANEL * (long)sizeof(float); }

/* panel p of a packed copy of any form */
static inline const void* panel_at(const void* packed, int form, long p, long k) {
    if (form == PANELS_Q8)
        return (const uint8_t*)packed + Q8_HEADER + p * q8_panel_bytes(k, *(const long*)packed);
    return form == PANELS_F16 ? (const void*)((const uint16_t*)packed + p * k * PANEL)
                              : (const void*)((const float*)packed + p * k * PANEL);
}

typedef struct {
    const uint8_t* q;
    const float *scales, *biases;
    long group;
} Q8Panel;

static inline Q8Panel q8_panel(const void* panel, const void* packed, long k) {
    const long group = *(const long*)packed;
    const float* scales = (const float*)((const uint8_t*)panel + k * PANEL);
    return (Q8Panel){panel, scales, scales + (k / group) * PANEL, group};
}

/* The widening, mx.dequantize's scale * q + bias: eight values at q (q8_widen), and one, to
   check a copy against the dequantized weight (q8_differs). The AVX2 code's 8-bit loads go
   through these, and the AVX-512 loop's q8_load_512 makes the same product and sum sixteen
   wide, so the copies and their checks cannot drift apart. */
static inline __m256 q8_widen(const uint8_t* q, __m256 scale, __m256 bias) {
    const __m256 v = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)q)));
    return _mm256_add_ps(_mm256_mul_ps(scale, v), bias);
}

static inline int q8_differs(float scale, uint8_t q, float bias, const float* w) {
    const float v = scale * (float)q + bias;
    return memcmp(&v, w, sizeof v) != 0;
}

/* the values of outputs i .. i + 7 of a q8 panel at input kk */
static inline __m256 q8_load(const Q8Panel* w, long kk, long i) {
    const long g = (kk / w->group) * PANEL + i;
    return q8_widen(w->q + kk * PANEL + i, _mm256_loadu_ps(w->scales + g), _mm256_loadu_ps(w->biases + g));
}

/* w (n, k) of an affine 8-bit layer: q (n, k) bytes, scales and biases (n, k / group) ->
   panels p0 .. p1 of `packed` (above; the header is the caller's). Returns how many values
   scale * q + bias gave otherwise than w, the dequantized weight (then the copy is not to be
   used). */
long wf_pack_q8_part(const unsigned char* q, const float* scales, const float* biases, const float* w, void* packed, long n,
                     long k, long group, long p0, long p1) {
    long inexact = 0, groups = k / group;
    for (long p = p0; p < p1; p++) {
        uint8_t* out = (uint8_t*)panel_at(packed, PANELS_Q8, p, k);
        float *sc = (float*)(out + k * PANEL), *bi = sc + groups * PANEL;
        for (long i = 0; i < PANEL; i++) {
            const long j = p * PANEL + i;
            for (long g = 0; g < groups; g++) {
                sc[g * PANEL + i] = j < n ? scales[j * groups + g] : 0.0f;
                bi[g * PANEL + i] = j < n ? biases[j * groups + g] : 0.0f;
            }
            for (long kk = 0; kk < k; kk++) {
                out[kk * PANEL + i] = j < n ? q[j * k + kk] : 0;
                if (j < n) {
                    const long g = (kk / group) * PANEL + i;
                    inexact += q8_differs(sc[g], out[kk * PANEL + i], bi[g], &w[j * k + kk]);
                }
            }
        }
    }
    return inexact;
}

long wf_q8_packed_bytes(long n, long k, long group) {
    if (group < 1 || k % group) return -1;
    return Q8_HEADER + (n + PANEL - 1) / PANEL * q8_panel_bytes(k, group);
}

/* OpenBLAS's level-3 driver takes k in blocks (driver/level3.c): GEMM_Q at a time while
   twice that is left, then what is left in two halves rounded up to GEMM_UNROLL_M (when more
   than GEMM_Q), each block's sums made from zero and added to the output in turn (which
   starts as 0, or the bias for addmm). 448 and 16 are scipy's OpenBLAS 0.3.30's float32 values
   on AVX-512 (SkylakeX kernels): tiny.en's fc2 (k = 1536) sums in blocks of 448, 448, 320 and
   320 from two rows on (384, first taken here, gave the same blocks for every k up to 512);
   whether the BLAS at hand sums so for a weight is checked (kernels/cpu_simd.py), not assumed. */
#define GEMM_Q 448
#define GEMM_UNROLL_M 16

static long k_block(long rest) {
    if (rest >= 2 * GEMM_Q) return GEMM_Q;
    if (rest > GEMM_Q) return ((rest / 2 + GEMM_UNROLL_M - 1) / GEMM_UNROLL_M) * GEMM_UNROLL_M;
    return rest;
}

static void panel_rows_avx2(const float* x, const void* packed, int half, const float* bias, float* out, long m,
                            long p0, long p1, long n, long k) {
    for (long p = p0; p < p1; p++) {
        const void* panel = panel_at(packed, half, p, k);
        const Q8Panel q8 = half == PANELS_Q8 ? q8_panel(panel, packed, k) : (Q8Panel){0};
        long j0 = p * PANEL, count = n - j0 < PANEL ? n - j0 : PANEL;
        for (long r = 0; r < m; r++) { /* the panel is re-read from L2 for each row */
            const float* xr = x + r * k;
            float y[PANEL], acc[PANEL];
            for (long i = 0; i < PANEL; i++) y[i] = bias && i < count ? bias[j0 + i] : 0.0f;
            for (long k0 = 0, kb; k0 < k; k0 += kb) {
                kb = k_block(k - k0);
                __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
                if (half == PANELS_Q8) {
                    for (long kk = k0; kk < k0 + kb; kk++) {
                        __m256 xv = _mm256_set1_ps(xr[kk]);
                        a0 = _mm256_fmadd_ps(q8_load(&q8, kk, 0), xv, a0);
                        a1 = _mm256_fmadd_ps(q8_load(&q8, kk, 8), xv, a1);
                        a2 = _mm256_fmadd_ps(q8_load(&q8, kk, 16), xv, a2);
                        a3 = _mm256_fmadd_ps(q8_load(&q8, kk, 24), xv, a3);
                        a4 = _mm256_fmadd_ps(q8_load(&q8, kk, 32), xv, a4);
                        a5 = _mm256_fmadd_ps(q8_load(&q8, kk, 40), xv, a5);
                        a6 = _mm256_fmadd_ps(q8_load(&q8, kk, 48), xv, a6);
                        a7 = _mm256_fmadd_ps(q8_load(&q8, kk, 56), xv, a7);
                    }
                } else {
                    for (long kk = k0; kk < k0 + kb; kk++) {
                        __m256 xv = _mm256_set1_ps(xr[kk]);
                        long at = kk * PANEL;
                        prefetch_ahead(panel, at, half);
                        a0 = _mm256_fmadd_ps(panel_load(panel, at, half), xv, a0);
                        a1 = _mm256_fmadd_ps(panel_load(panel, at + 8, half), xv, a1);
                        a2 = _mm256_fmadd_ps(panel_load(panel, at + 16, half), xv, a2);
                        a3 = _mm256_fmadd_ps(panel_load(panel, at + 24, half), xv, a3);
                        a4 = _mm256_fmadd_ps(panel_load(panel, at + 32, half), xv, a4);
                        a5 = _mm256_fmadd_ps(panel_load(panel, at + 40, half), xv, a5);
                        a6 = _mm256_fmadd_ps(panel_load(panel, at + 48, half), xv, a6);
                        a7 = _mm256_fmadd_ps(panel_load(panel, at + 56, half), xv, a7);
                    }
                }
                _mm256_storeu_ps(acc, a0); _mm256_storeu_ps(acc + 8, a1); _mm256_storeu_ps(acc + 16, a2);
                _mm256_storeu_ps(acc + 24, a3); _mm256_storeu_ps(acc + 32, a4); _mm256_storeu_ps(acc + 40, a5);
                _mm256_storeu_ps(acc + 48, a6); _mm256_storeu_ps(acc + 56, a7);
                for (long i = 0; i < PANEL; i++) y[i] = y[i] + acc[i];
            }
            for (long i = 0; i < count; i++) out[r * n + j0 + i] = y[i];
        }
    }
}

#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma,f16c")

/* The same sums for R rows at once (R <= 4) on AVX-512's 32 registers: each step of k widens
   the panel's 64 values once (four 16-wide vectors) for all R rows, where the AVX2 loop above
   widens them again for every row (the float16 conversions, not the fmas, bound that loop).
   Each lane is the same fma chain as there, in the same order: the same bits. */
/* the values of outputs i .. i + 15 of a q8 panel at input kk (q8_widen's product and sum,
   sixteen wide) */
static inline __m512 q8_load_512(const Q8Panel* w, long kk, long i) {
    const long g = (kk / w->group) * PANEL + i;
    const __m512 q = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)(w->q + kk * PANEL + i))));
    return _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(w->scales + g), q), _mm512_loadu_ps(w->biases + g));
}

static inline __attribute__((always_inline)) void panel_group_512(const float* x, const void* panel, const int half,
                                                                  const Q8Panel* q8, const float* bias, float* out,
                                                                  const int R, long j0, long count, long n, long k) {
    float y[4][PANEL];
    for (int r = 0; r < R; r++)
        for (long i = 0; i < PANEL; i++) y[r][i] = bias && i < count ? bias[j0 + i] : 0.0f;
    for (long k0 = 0, kb; k0 < k; k0 += kb) {
        kb = k_block(k - k0);
        __m512 acc[4][4];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) acc[r][c] = _mm512_setzero_ps();
        for (long kk = k0; kk < k0 + kb; kk++) {
            const long at = kk * PANEL;
            if (half != PANELS_Q8) prefetch_ahead(panel, at, half);
            __m512 w[4];
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++)
                w[c] = half == PANELS_Q8 ? q8_load_512(q8, kk, 16 * c)
                       : half ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)((const uint16_t*)panel + at + 16 * c)))
                              : _mm512_loadu_ps((const float*)panel + at + 16 * c);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                const __m512 xv = _mm512_set1_ps(x[r * k + kk]);
#pragma GCC unroll 4
                for (int c = 0; c < 4; c++) acc[r][c] = _mm512_fmadd_ps(w[c], xv, acc[r][c]);
            }
        }
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            float a[PANEL];
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) _mm512_storeu_ps(a + 16 * c, acc[r][c]);
            for (long i = 0; i < PANEL; i++) y[r][i] = y[r][i] + a[i];
        }
    }
    for (int r = 0; r < R; r++)
        for (long i = 0; i < count; i++) out[r * n + j0 + i] = y[r][i];
}

/* R rows of panel p, the form a constant in each call so that panel_group_512's loads are chosen once */
#define PANEL_GROUPS(FORM)                                                                                           \
    do {                                                                                                             \
        long r = 0;                                                                                                  \
        for (; r + 4 <= m; r += 4) panel_group_512(x + r * k, panel, FORM, &q8, bias, out + r * n, 4, j0, count, n, k); \
        if (m - r == 3) panel_group_512(x + r * k, panel, FORM, &q8, bias, out + r * n, 3, j0, count, n, k);        \
        else if (m - r == 2) panel_group_512(x + r * k, panel, FORM, &q8, bias, out + r * n, 2, j0, count, n, k);   \
        else if (m - r == 1) panel_group_512(x + r * k, panel, FORM, &q8, bias, out + r * n, 1, j0, count, n, k);   \
    } while (0)

static void panel_rows_512(const float* x, const void* packed, int half, const float* bias, float* out, long m,
                           long p0, long p1, long n, long k) {
    for (long p = p0; p < p1; p++) {
        const void* panel = panel_at(packed, half, p, k);
        const Q8Panel q8 = half == PANELS_Q8 ? q8_panel(panel, packed, k) : (Q8Panel){0};
        const long j0 = p * PANEL, count = n - j0 < PANEL ? n - j0 : PANEL;
        if (half == PANELS_Q8) PANEL_GROUPS(PANELS_Q8);
        else if (half == PANELS_F16) PANEL_GROUPS(PANELS_F16);
        else PANEL_GROUPS(PANELS_F32);
    }
}

#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")

/* out (m, n) = x (m, k) @ w.T [+ bias] on panels p0 .. p1 (above): several rows at once on
   AVX-512 where the CPU has it, else a row at a time (one row: the AVX2 loop either way) */
void wf_panel_rows(const float* x, const void* packed, int half, const float* bias, float* out, long m, long p0,
                   long p1, long n, long k) {
    /* libgcc's flags, read at load (XCR0 checked too); 8-bit panels take the sixteen-wide loop at one
       row too, where widening their values, not reading them, bounds the loop */
    if ((m > 1 || half == PANELS_Q8) && __builtin_cpu_supports("avx512f"))
        panel_rows_512(x, packed, half, bias, out, m, p0, p1, n, k);
    else panel_rows_avx2(x, packed, half, bias, out, m, p0, p1, n, k);
}

/* ---- rows times a weight, sixteen lanes a sum ---- */

/* y[j] = sum over k of x[k] * w[j, k] (+ bias[j]), as OpenBLAS's small-matrix TN kernel for
   AVX-512 (sgemm_small_kernel_tn_skylakex.c) sums a one-row product: lane l of a 16-wide
   accumulator takes k = l, l + 16, ... in order (one fma each), the lanes then add as
   ((l0 + l1) + (l2 + l3)) within each block of four and the blocks as (b0 + b1) + (b2 + b3),
   and the bias adds last. MLX's one-row Linear goes there on such a BLAS (checked per
   weight by kernels/cpu_simd.py before use). w is float16 where that holds the float32 weight
   exactly (half the bytes), else float32; k a multiple of 16 (cpu_simd.py pads both with
   zeros, as the kernel's masked loads do). */
static inline float tn16_reduce(__m256 lo, __m256 hi) {
    float a[16];
    _mm256_storeu_ps(a, lo);
    _mm256_storeu_ps(a + 8, hi);
    float u[4];
    for (int b = 0; b < 4; b++) u[b] = (a[4 * b] + a[4 * b + 1]) + (a[4 * b + 2] + a[4 * b + 3]);
    return (u[0] + u[1]) + (u[2] + u[3]);
}

static inline __m256 row8(const void* row, long kk, int half) {
    return half ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)((const uint16_t*)row + kk)))
                : _mm256_loadu_ps((const float*)row + kk);
}

static inline const void* row_at(const void* w, long j, long k, int half) {
    return half ? (const void*)((const uint16_t*)w + j * k) : (const void*)((const float*)w + j * k);
}

static inline __attribute__((always_inline)) void tn16_rows_as(const void* w, int half, const float* x,
                                                               const float* bias, float* y, long j0, long j1,
                                                               long k) {
    long j = j0;
    for (; j + 4 <= j1; j += 4) {
        const void *r0 = row_at(w, j, k, half), *r1 = row_at(w, j + 1, k, half), *r2 = row_at(w, j + 2, k, half),
                   *r3 = row_at(w, j + 3, k, half);
        __m256 l0 = _mm256_setzero_ps(), h0 = l0, l1 = l0, h1 = l0, l2 = l0, h2 = l0, l3 = l0, h3 = l0;
        for (long kk = 0; kk < k; kk += 16) {
            __m256 xl = _mm256_loadu_ps(x + kk), xh = _mm256_loadu_ps(x + kk + 8);
#define TN16_STEP(r, l, h)                                       \
            l = _mm256_fmadd_ps(row8(r, kk, half), xl, l);       \
            h = _mm256_fmadd_ps(row8(r, kk + 8, half), xh, h);
            TN16_STEP(r0, l0, h0) TN16_STEP(r1, l1, h1) TN16_STEP(r2, l2, h2) TN16_STEP(r3, l3, h3)
        }
        y[j] = tn16_reduce(l0, h0);
        y[j + 1] = tn16_reduce(l1, h1);
        y[j + 2] = tn16_reduce(l2, h2);
        y[j + 3] = tn16_reduce(l3, h3);
    }
    for (; j < j1; j++) {
        const void* r0 = row_at(w, j, k, half);
        __m256 l0 = _mm256_setzero_ps(), h0 = l0;
        for (long kk = 0; kk < k; kk += 16) {
            __m256 xl = _mm256_loadu_ps(x + kk), xh = _mm256_loadu_ps(x + kk + 8);
            TN16_STEP(r0, l0, h0)
        }
        y[j] = tn16_reduce(l0, h0);
    }
#undef TN16_STEP
    if (bias)
        for (j = j0; j < j1; j++) y[j] = y[j] + bias[j];
}

/* tn16's rows of an affine 8-bit layer (PANELS_Q8): a header of Q8_HEADER bytes (the group
   size, then n), the values q (n, k) a byte each, then the groups' scales (n, k / group) and
   biases (float32); k a multiple of 16 and of the group, the group of 16 or more, so that
   each load of 8 values lies in one group. Each value widens to scale * q + bias as
   mx.dequantize makes it (wf_tn16_q8 checks every value against the dequantized weight),
   then the sums are tn16_rows_as's. */
typedef struct {
    const uint8_t* q;
    const float *scales, *biases;
    long group, groups;
} Q8Rows;

static inline Q8Rows q8_rows(const void* w, long k) {
    const long group = ((const long*)w)[0], n = ((const long*)w)[1];
    const uint8_t* q = (const uint8_t*)w + Q8_HEADER;
    const float* scales = (const float*)(q + n * k);
    return (Q8Rows){q, scales, scales + n * (k / group), group, k / group};
}

static inline __m256 q8_row8(const Q8Rows* w, long j, long kk, long k) {
    const long g = j * w->groups + kk / w->group;
    return q8_widen(w->q + j * k + kk, _mm256_set1_ps(w->scales[g]), _mm256_set1_ps(w->biases[g]));
}

static void tn16_rows_q8(const void* packed, const float* x, const float* bias, float* y, long j0, long j1, long k) {
    const Q8Rows w = q8_rows(packed, k);
    long j = j0;
#define TN16_Q8_STEP(r, l, h)                                     \
    l = _mm256_fmadd_ps(q8_row8(&w, j + r, kk, k), xl, l);        \
    h = _mm256_fmadd_ps(q8_row8(&w, j + r, kk + 8, k), xh, h);
    for (; j + 4 <= j1; j += 4) {
        __m256 l0 = _mm256_setzero_ps(), h0 = l0, l1 = l0, h1 = l0, l2 = l0, h2 = l0, l3 = l0, h3 = l0;
        for (long kk = 0; kk < k; kk += 16) {
            __m256 xl = _mm256_loadu_ps(x + kk), xh = _mm256_loadu_ps(x + kk + 8);
            TN16_Q8_STEP(0, l0, h0) TN16_Q8_STEP(1, l1, h1) TN16_Q8_STEP(2, l2, h2) TN16_Q8_STEP(3, l3, h3)
        }
        y[j] = tn16_reduce(l0, h0);
        y[j + 1] = tn16_reduce(l1, h1);
        y[j + 2] = tn16_reduce(l2, h2);
        y[j + 3] = tn16_reduce(l3, h3);
    }
    for (; j < j1; j++) {
        __m256 l0 = _mm256_setzero_ps(), h0 = l0;
        for (long kk = 0; kk < k; kk += 16) {
            __m256 xl = _mm256_loadu_ps(x + kk), xh = _mm256_loadu_ps(x + kk + 8);
            TN16_Q8_STEP(0, l0, h0)
        }
        y[j] = tn16_reduce(l0, h0);
    }
#undef TN16_Q8_STEP
    if (bias)
        for (j = j0; j < j1; j++) y[j] = y[j] + bias[j];
}

/* w's 8-bit values, scales and biases (as wf_pack_q8 takes them) -> `out` (wf_tn16_q8_bytes),
   laid out for tn16_rows_q8. Returns how many values widen otherwise than the dequantized
   weight w (n, k) (the copy is usable only at 0), or -1 where the shape does not fit. */
long wf_tn16_q8(const uint8_t* q, const float* scales, const float* biases, const float* w, void* out, long n, long k,
                long group) {
    if (group < 16 || group % 16 || k % group) return -1;
    ((long*)out)[0] = group;
    ((long*)out)[1] = n;
    const Q8Rows r = q8_rows(out, k);
    uint8_t* values = (uint8_t*)r.q;
    float *sc = (float*)r.scales, *bi = (float*)r.biases;
    memcpy(values, q, (size_t)(n * k));
    memcpy(sc, scales, (size_t)(n * r.groups) * sizeof(float));
    memcpy(bi, biases, (size_t)(n * r.groups) * sizeof(float));
    long inexact = 0;
    for (long j = 0; j < n; j++)
        for (long kk = 0; kk < k; kk++) {
            const long g = j * r.groups + kk / group;
            inexact += q8_differs(sc[g], values[j * k + kk], bi[g], &w[j * k + kk]);
        }
    return inexact;
}

long wf_tn16_q8_bytes(long n, long k, long group) {
    if (group < 16 || group % 16 || k % group) return -1;
    return Q8_HEADER + n * k + 2 * n * (k / group) * (long)sizeof(float);
}

/* w float16 (half: PANELS_F16), float32 rows of k, or 8-bit ones (PANELS_Q8), k a multiple of 16 */
static void tn16_rows(const void* w, int half, const float* x, const float* bias, float* y, long j0, long j1, long k) {
    if (half == PANELS_Q8) tn16_rows_q8(w, x, bias, y, j0, j1, k);
    else if (half) tn16_rows_as(w, 1, x, bias, y, j0, j1, k);
    else tn16_rows_as(w, 0, x, bias, y, j0, j1, k);
}

/* out (n) = p (k) @ v (k, n), n a multiple of 8: each output one fma chain in k order from 0,
   as OpenBLAS's small NN kernel sums an attention's weights times its values. v float32, or
   float16 (half) widened to its float32 values before they are multiplied: the same sums. (Asking
   for rows ahead, as the panel loops do, made no difference here or was slower.) */
static inline __attribute__((always_inline)) void chain_vt_as(const float* p, const void* v, const int half,
                                                              float* out, long k, long n) {
    for (long j0 = 0; j0 < n; j0 += 64) {
        long w = n - j0 < 64 ? n - j0 : 64;
        __m256 acc[8];
        for (int i = 0; i < 8; i++) acc[i] = _mm256_setzero_ps();
        for (long kk = 0; kk < k; kk++) {
            __m256 pv = _mm256_set1_ps(p[kk]);
            const long at = kk * n + j0;
            for (int i = 0; i < w / 8; i++) acc[i] = _mm256_fmadd_ps(panel_load(v, at + 8 * i, half), pv, acc[i]);
        }
        for (int i = 0; i < w / 8; i++) _mm256_storeu_ps(out + j0 + 8 * i, acc[i]);
    }
}

static void chain_vt(const float* p, const float* v, float* out, long k, long n) { chain_vt_as(p, v, 0, out, k, n); }
static void chain_vt_half(const float* p, const void* v, float* out, long k, long n) {
    chain_vt_as(p, v, 1, out, k, n);
}

/* Eight values v rounded to float16 (to nearest even) into h, widened back into b; returns how
   many finite values float16 could not hold (rounded to infinity) */
static inline long half8(const float* v, __m128i* h, __m256* b) {
    const __m256 x = _mm256_loadu_ps(v), sign = _mm256_set1_ps(-0.0f), inf = _mm256_set1_ps(__builtin_inff());
    *h = _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT);
    *b = _mm256_cvtph_ps(*h);
    const __m256 lost = _mm256_and_ps(_mm256_cmp_ps(_mm256_andnot_ps(sign, *b), inf, _CMP_EQ_OQ),
                                      _mm256_cmp_ps(_mm256_andnot_ps(sign, x), inf, _CMP_LT_OQ));
    return __builtin_popcount(_mm256_movemask_ps(lost));
}

/* x[i0 .. i1) rounded to float16 (to nearest even): each written to half[i] where half is
   given, and widened back to float32 into back[i] where back is given (back may be x).
   Returns how many finite values float16 could not hold (rounded to infinity). The last
   values short of eight go through the same eight lanes, zeros beside them. */
long wf_half_part(const float* x, uint16_t* half, float* back, long i0, long i1) {
    long overflow = 0, i = i0;
    __m128i h;
    __m256 b;
    for (; i + 8 <= i1; i += 8) {
        overflow += half8(x + i, &h, &b);
        if (half) _mm_storeu_si128((__m128i*)(half + i), h);
        if (back) _mm256_storeu_ps(back + i, b);
    }
    if (i < i1) {
        const long r = i1 - i;
        float v[8] = {0}, b8[8];
        uint16_t h8[8];
        memcpy(v, x + i, r * sizeof(float));
        overflow += half8(v, &h, &b);
        _mm_storeu_si128((__m128i*)h8, h);
        _mm256_storeu_ps(b8, b);
        if (half) memcpy(half + i, h8, r * sizeof(uint16_t));
        if (back) memcpy(back + i, b8, r * sizeof(float));
    }
    return overflow;
}

#pragma GCC pop_options

long wf_panel_size(void) { return PANEL; }

/* The products for a step's own threads (kernels/cpu_decoder.c): outputs j0 .. j1 (panels
   p0 .. p1 for packed weights) of one row. */
void wf_tn16_part(const void* w, int half, const float* x, const float* bias, float* y, long j0, long j1, long k) {
    tn16_rows(w, half, x, bias, y, j0, j1, k);
}
void wf_panels_part(const float* x, const void* packed, int half, const float* bias, float* out, long n, long k,
                    long p0, long p1) {
    wf_panel_rows(x, packed, half, bias, out, 1, p0, p1, n, k);
}
void wf_chain_vt(const float* p, const float* v, float* out, long k, long n) { chain_vt(p, v, out, k, n); }
void wf_chain_vt_half(const float* p, const void* v, float* out, long k, long n) { chain_vt_half(p, v, out, k, n); }

/* y (n) = x (k) @ w (n, k).T [+ bias], w float16 (half) or float32 (n, k), k a multiple of
   16: see tn16_rows */
void wf_tn16(const void* w, int half, const float* x, const float* bias, float* y, long n, long k) {
    tn16_rows(w, half, x, bias, y, 0, n, k);
}
