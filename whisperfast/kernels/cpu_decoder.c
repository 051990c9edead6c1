/* One token through a pre-norm transformer decoder (self-attention over a cache, cross-
   attention over an encoder's keys and values, a GELU MLP; one row), as MLX's CPU ops
   compute it, in one call, on two threads.

   On the CPU a decode step is ~250 small MLX primitives, and at one row their dispatch, not
   their arithmetic, is the step (benchmarks/cpu/profile.md §11). Here each primitive is the
   same arithmetic MLX does, in MLX's order, so the step's results are MLX's own, bit for bit:
   - a product is either the very BLAS call MLX makes (the `sgemm` handed in is the
     cblas_sgemm MLX binds to; the same shapes, transposes, alpha and beta: a Linear is addmm,
     its bias in C and beta 1; the self-attention's scores multiply the scaled keys laid out
     (head_dim, T), as FlatStep lays them out), or cpu_products.c's replica of that call's
     order of sums (tn16 rows, packed panels, the weighted values' chains), each stood in only
     where the caller checked it on that weight;
   - the layer norm is MLX's CPU fallback (cpu_simd.c's wf_layer_norm_rows);
   - softmax and GELU are cpu_simd.c's (MLX's bits).
   Whether the whole step gives MLX's bits on this machine and BLAS is checked by the caller
   (decode/cpu_step.py) against MLX's own step before it is used. */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "cpu_decoder.h"

/* ---- the ops ---- */

static void layer_norm(const float* x, const float* w, const float* b, float eps, float* y, long n) {
    wf_layer_norm_rows(x, w, b, eps, y, 1, n);
}

/* One row times a weight: tn16 on the float16 copy (outputs shared by the parts), else MLX's
   own BLAS call, addmm (beta 1 over the bias) or matmul, on part 0. */
typedef struct {
    Sgemm sgemm;
    const float *x, *w, *b;
    const void* w16;
    int half;
    float* y;
    long n, k;
} Linear;

static void linear_part(const Linear* l, int part, int parts) {
    if (l->w16) {
        long lo, hi;
        wf_share(l->n, 4, part, parts, &lo, &hi);
        wf_tn16_part(l->w16, l->half, l->x, l->b, l->y, lo, hi, (l->k + 15) / 16 * 16);
        return;
    }
    if (part != 0) return;
    if (l->b) memcpy(l->y, l->b, l->n * sizeof(float));
    l->sgemm(ROW_MAJOR, NO_TRANS, TRANS, 1, (int)l->n, (int)l->k, 1.0f, l->x, (int)l->k, l->w, (int)l->k,
             l->b ? 1.0f : 0.0f, l->y, (int)l->n);
}

typedef struct {
    Linear l[3];
    int count;
} Linears;

static void linears_part(void* ctx, int part, int parts) {
    Linears* ls = ctx;
    int any16 = 0;
    for (int i = 0; i < ls->count; i++) any16 |= ls->l[i].w16 != NULL;
    for (int i = 0; i < ls->count; i++) {
        /* BLAS calls (not shared) go one to a part, round robin, where none is shared */
        if (!ls->l[i].w16 && !any16 && parts > 1) {
            if (i % parts == part) linear_part(&ls->l[i], 0, 1);
        } else {
            linear_part(&ls->l[i], part, parts);
        }
    }
}

static void run_linears(Team* t, Sgemm sgemm, int half, int count, const float* x, const float* const* a,
                        const int* w, const int* w16, const int* b, float* const* y, const long* n, long k) {
    Linears ls = {.count = count};
    for (int i = 0; i < count; i++)
        ls.l[i] = (Linear){sgemm, x, a[w[i]], b[i] < 0 ? NULL : a[b[i]], w16[i] < 0 ? NULL : (const void*)a[w16[i]],
                           half, y[i], n[i], k};
    wf_team_run(t, linears_part, &ls);
}

/* Attention of one query over its heads, the heads shared by the parts. */
typedef struct {
    Sgemm sgemm;
    const float* q;   /* (H * hd), unscaled */
    float scale;
    float *keys, *values;     /* self: (H, C, hd) caches; cross: (H, S, hd) */
    float* kt;                /* self: the scaled keys transposed, (H, hd, C), kept from step to step */
    long kt_from;             /* self: kt holds positions 0 .. kt_from - 1 already */
    const void* keys_packed;  /* cross: each head's keys as panels, or NULL */
    long H, hd, C, T, pos;    /* self: C = n_ctx, T = pos + 1 keys; cross: C = T = S */
    int cross;
    float* scratch;           /* per part: hd + T floats */
    long scratch_part;
    float* o;                 /* (H * hd) */
} Attention;

static void attention_part(void* ctx, int part, int parts) {
    Attention* a = ctx;
    long lo, hi, hd = a->hd, T = a->T;
    wf_share(a->H, 1, part, parts, &lo, &hi);
    float *qs = a->scratch + part * a->scratch_part, *scores = qs + hd;
    long panel = wf_panel_size(), panels = (T + panel - 1) / panel;
    for (long e = lo; e < hi; e++) {
        float *kc = a->keys + e * a->C * hd, *vc = a->values + e * a->C * hd;
        for (long j = 0; j < hd; j++) qs[j] = a->q[e * hd + j] * a->scale;
        if (a->cross) {
            /* MLX's SDPA fallback: q @ swapaxes(k), one fma chain a score */
            if (a->keys_packed)
                wf_panels_part(qs, (const float*)a->keys_packed + e * panels * panel * hd, 0, NULL, scores, T, hd, 0,
                               panels);
            else
                a->sgemm(ROW_MAJOR, NO_TRANS, TRANS, 1, (int)T, (int)hd, 1.0f, qs, (int)hd, kc, (int)hd, 0.0f,
                         scores, (int)T);
        } else {
            /* mlx-whisper's graph: (q * s) @ (k.swapaxes(-1, -2) * s), the keys laid out (hd, T); here
               the first T of C columns, each made once (the BLAS's sums do not depend on ldb) */
            float* kt = a->kt + e * hd * a->C;
            for (long j = a->kt_from; j < T; j++)
                for (long c = 0; c < hd; c++) kt[c * a->C + j] = kc[j * hd + c] * a->scale;
            a->sgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, 1, (int)T, (int)hd, 1.0f, qs, (int)hd, kt, (int)a->C, 0.0f, scores,
                     (int)T);
        }
        wf_softmax(scores, scores, 1, T, 1);
        wf_chain_vt(scores, vc, a->o + e * hd, T, hd);
    }
}

typedef struct {
    const float* x; /* (rows, k) */
    long rows;
    const void* packed;
    int half;
    const float* b;
    float* y; /* (rows, n) */
    long n, k;
} Panels;

static void panels_part(void* ctx, int part, int parts) {
    Panels* p = ctx;
    long panel = wf_panel_size(), lo, hi;
    wf_share((p->n + panel - 1) / panel, 1, part, parts, &lo, &hi);
    /* every row a panel at a time: the weight is read from memory once for all rows */
    wf_panel_rows(p->x, p->packed, p->half, p->b, p->y, p->rows, lo, hi, p->n, p->k);
}

void wf_team_panels(Team* t, const float* x, long rows, const void* packed, int half, const float* bias, float* y,
                    long n, long k) {
    Panels p = {x, rows, packed, half, bias, y, n, k};
    wf_team_run(t, panels_part, &p);
}

typedef struct {
    Sgemm sgemm;
    const float *x, *w;
    const long* bounds;
    long pieces;
    float* y;
    long k;
} Pieces;

static void pieces_part(void* ctx, int part, int parts) {
    Pieces* p = ctx;
    for (long i = part; i < p->pieces; i += parts) {
        long a = p->bounds[i], n = p->bounds[i + 1] - a;
        p->sgemm(ROW_MAJOR, NO_TRANS, TRANS, 1, (int)n, (int)p->k, 1.0f, p->x, (int)p->k, p->w + a * p->k, (int)p->k,
                 0.0f, p->y + a, (int)n);
    }
}

typedef struct {
    float* f;
    long n;
    int fast; /* wf_gelu16's, not MLX's */
} Gelu;

static void gelu_part(void* ctx, int part, int parts) {
    Gelu* g = ctx;
    long lo, hi;
    wf_share(g->n, g->fast ? 16 : 8, part, parts, &lo, &hi);
    if (g->fast)
        wf_gelu16(g->f + lo, g->f + lo, hi - lo);
    else
        wf_gelu(g->f + lo, g->f + lo, hi - lo, 1);
}

void wf_team_gelu(Team* t, float* f, long n) {
    Gelu g = {f, n, 0};
    wf_team_run(t, gelu_part, &g);
}

void wf_team_gelu16(Team* t, float* f, long n) {
    Gelu g = {f, n, 1};
    wf_team_run(t, gelu_part, &g);
}

/* Floats of scratch wf_decoder_step needs. */
long wf_decoder_scratch(const long* d) {
    long D = d[N_STATE], hd = D / d[N_HEAD];
    long t = d[N_CTX] > d[N_AUDIO] ? d[N_CTX] : d[N_AUDIO];
    long F = (d[N_MLP] > D ? d[N_MLP] : D) + 16;
    return 8 * (D + 16) + F + 2 * (hd + t);
}

/* logits (n_vocab) for `token` at position `pos` (0 <= pos < n_ctx); the layers' self caches
   hold positions 0 .. pos - 1 and get pos. kt (n_layer, n_head, head_dim, n_ctx) keeps each
   layer's scaled keys transposed from step to step: it holds positions 0 .. kt_from - 1 of
   these caches (kt_from <= pos), and gets kt_from .. pos. Returns 0. */
int wf_decoder_step(Sgemm sgemm, const float* const* model, const float* const* layers, const long* d, float scale,
                    float eps, long token, long pos, float* kt, long kt_from, float* scratch, float* logits) {
    const long L = d[N_LAYER], D = d[N_STATE], H = d[N_HEAD], hd = D / H, C = d[N_CTX], S = d[N_AUDIO];
    const long F = d[N_MLP], Dp = D + 16, Fp = (F > D ? F : D) + 16;
    /* row vectors padded with zeros to a multiple of 16 (tn16 reads whole blocks) */
    float *x = scratch, *h = x + Dp, *q = h + Dp, *k = q + Dp, *v = k + Dp, *o = v + Dp, *y = o + Dp;
    float *f = y + 2 * Dp, *attn = f + Fp;
    memset(scratch, 0, (8 * Dp + Fp) * sizeof(float));
    long attn_part = hd + (C > S ? C : S);
    const int half = (int)d[TN16_HALF];
    Team* team = wf_team_start((int)d[THREADS]);

    for (long i = 0; i < D; i++) x[i] = model[TOKENS][token * D + i] + model[POSITIONS][pos * D + i];
    for (long l = 0; l < L; l++) {
        const float* const* a = layers + l * LAYER_ARRAYS;
        float *keys = (float*)a[KEYS], *values = (float*)a[VALUES];

        layer_norm(x, a[LN1_W], a[LN1_B], eps, h, D);
        {
            float* outs[3] = {q, k, v};
            long ns[3] = {D, D, D};
            run_linears(team, sgemm, half, 3, h, a, (int[]){WQ, WK, WV}, (int[]){WQ16, WK16, WV16}, (int[]){BQ, -1, BV},
                        outs, ns, D);
        }
        for (long e = 0; e < H; e++) {
            memcpy(keys + (e * C + pos) * hd, k + e * hd, hd * sizeof(float));
            memcpy(values + (e * C + pos) * hd, v + e * hd, hd * sizeof(float));
        }
        Attention self = {sgemm, q, scale, keys, values, kt + l * H * hd * C, kt_from, NULL, H, hd, C, pos + 1, pos, 0,
                          attn, attn_part, o};
        wf_team_run(team, attention_part, &self);
        run_linears(team, sgemm, half, 1, o, a, (int[]){WO}, (int[]){WO16}, (int[]){BO}, (float*[]){y}, (long[]){D}, D);
        for (long i = 0; i < D; i++) x[i] = x[i] + y[i];

        layer_norm(x, a[LN2_W], a[LN2_B], eps, h, D);
        run_linears(team, sgemm, half, 1, h, a, (int[]){WCQ}, (int[]){WCQ16}, (int[]){BCQ}, (float*[]){q}, (long[]){D}, D);
        Attention cross = {sgemm, q, scale, (float*)a[CKEYS], (float*)a[CVALUES], NULL, 0, a[CKEYS_PACKED], H, hd, S,
                           S, 0, 1, attn, attn_part, o};
        wf_team_run(team, attention_part, &cross);
        run_linears(team, sgemm, half, 1, o, a, (int[]){WCO}, (int[]){WCO16}, (int[]){BCO}, (float*[]){y}, (long[]){D}, D);
        for (long i = 0; i < D; i++) x[i] = x[i] + y[i];

        layer_norm(x, a[LN3_W], a[LN3_B], eps, h, D);
        if (a[FC1_PACKED]) {
            wf_team_panels(team, h, 1, a[FC1_PACKED], (int)d[FC1_HALF], a[B1], f, F, D);
        } else {
            run_linears(team, sgemm, half, 1, h, a, (int[]){W1}, (int[]){-1}, (int[]){B1}, (float*[]){f},
                        (long[]){F}, D);
        }
        wf_team_gelu(team, f, F);
        if (a[W2P] && !a[W216])
            wf_team_panels(team, f, 1, a[W2P], (int)d[FC2_HALF], a[B2], y, D, F);
        else
            run_linears(team, sgemm, half, 1, f, a, (int[]){W2}, (int[]){W216}, (int[]){B2}, (float*[]){y}, (long[]){D},
                        F);
        for (long i = 0; i < D; i++) x[i] = x[i] + y[i];
    }
    layer_norm(x, model[LN_W], model[LN_B], eps, h, D);
    if (model[LOGITS_PACKED]) {
        wf_team_panels(team, h, 1, model[LOGITS_PACKED], (int)d[LOGITS_HALF], NULL, logits, d[N_VOCAB], D);
    } else {
        Pieces vocab = {sgemm, h, model[TOKENS], (const long*)model[LOGITS_BOUNDS], d[N_PIECES], logits, D};
        wf_team_run(team, pieces_part, &vocab);
    }
    wf_team_stop(team);
    return 0;
}
