/* Many rows through residual blocks (cpu_decoder.h's tables), as MLX's CPU ops compute
   mlx-whisper's graph for them, in one call, on two threads: a decoder's prompt (its previous
   text, up to 224 tokens: the logits of some rows, every layer's keys and values), an
   encoder's blocks (1500 rows, no cross-attention, no mask), and a decoder's cross-attention
   keys and values for a batch's audio (its products cut as MLX's CPU streams cut them).

   In MLX that is ~150 primitives a prompt on one BLAS thread, and each attention copies its
   heads' operands and joins its streams' pieces. Here every product is the very cblas_sgemm
   call MLX makes for it, with MLX's shapes, transposes, alpha and beta (mlx/backend/cpu/
   matmul.cpp copies an operand whose rows are not contiguous, so the heads' queries, the
   self-attention's scaled k^T and its values are laid out (L, hd), (hd, L) and (L, hd) first),
   and the elementwise ops are cpu_simd.c's (MLX's bits). The second thread takes:
   - half of each Linear's output features, where each half is a large product (split_min:
     M * N * K of a half): OpenBLAS sums a large product's outputs alike whatever their
     columns, where its small-matrix kernels (a few rows) sum otherwise at other widths;
     smaller Linears run whole, one to a thread;
   - half the heads of each attention (MLX's batched matmul is one call a head);
   - half the rows of each layer norm, half the GELU, half the vocabulary's panels.
   The caller checks a first prompt against MLX's own before using it (decode/cpu_step.py);
   the encoder's blocks make the calls the fast engine's MLX encoder makes (decode/encoder.py,
   whose column splits at 1500 rows tests/test_streams.py checks), and the tests check them. */
#include <math.h>
#include <string.h>

#include "cpu_decoder.h"

/* x (m, k) times up to three weights (n, k), transposed: MLX's addmm (bias copied in, beta 1) */
typedef struct {
    Sgemm sgemm;
    const float* x;
    long m, k, split_min;
    Output out[3];
    int count;
} Linears;

static void linears_part(void* ctx, int part, int parts) {
    const Linears* l = ctx;
    for (int i = 0; i < l->count; i++) {
        const Output* o = &l->out[i];
        const int mode = (int)(o->how & 15), half = (int)(o->how >> FORM_SHIFT & 3);
        long lo = 0, hi = o->n;
        if (mode == BY_TN16) {
            wf_share(o->n, 4, part, parts, &lo, &hi);
            for (long r = 0; r < l->m; r++) wf_tn16_part(o->copy, half, l->x + r * l->k, o->b, o->y + r * o->n, lo, hi, l->k);
            continue;
        }
        if (mode == BY_CHAIN) {
            const long panel = wf_panel_size();
            wf_share((o->n + panel - 1) / panel, 1, part, parts, &lo, &hi);
            wf_panel_rows(l->x, o->copy, half, o->b, o->y, l->m, lo, hi, o->n, l->k);
            continue;
        }
        if (parts > 1 && l->m * (o->n / parts) * l->k >= l->split_min)
            wf_share(o->n, 16, part, parts, &lo, &hi);
        else if (i % parts != part)
            continue;
        if (hi <= lo) continue;
        if (o->b)
            for (long r = 0; r < l->m; r++) memcpy(o->y + r * o->n + lo, o->b + lo, (hi - lo) * sizeof(float));
        l->sgemm(ROW_MAJOR, NO_TRANS, TRANS, (int)l->m, (int)(hi - lo), (int)l->k, 1.0f, l->x, (int)l->k, o->w + lo * l->k,
                 (int)l->k, o->b ? 1.0f : 0.0f, o->y + lo, (int)o->n);
    }
}

void wf_linears(Team* t, Sgemm sgemm, const float* x, long m, long k, long split_min, int count, const Output* out) {
    Linears l = {sgemm, x, m, k, split_min, {{0}}, count};
    for (int i = 0; i < count; i++) l.out[i] = out[i];
    wf_team_run(t, linears_part, &l);
}

/* Attention of L queries, the heads shared by the parts. Self: over the prompt's own keys,
   causal; cross: over the encoder's S keys (already scaled), none masked. */
typedef struct {
    Sgemm sgemm;
    const float *q, *k, *v; /* self: (L, D) rows, unscaled k; cross: (H, S, hd) */
    float scale;
    long L, S, H, hd;
    int cross, causal;
    float* scratch; /* per part: scratch_part floats */
    long scratch_part;
    float* o; /* (L, D) */
} Attention;

static void attention_part(void* ctx, int part, int parts) {
    const Attention* a = ctx;
    const long L = a->L, S = a->S, hd = a->hd, D = a->H * hd;
    long lo, hi;
    wf_share(a->H, 1, part, parts, &lo, &hi);
    float *qs = a->scratch + part * a->scratch_part, *kt = qs + L * hd, *vs = kt + hd * L, *oh = vs + L * hd;
    float* scores = oh + L * hd;
    for (long e = lo; e < hi; e++) {
        for (long i = 0; i < L; i++)
            for (long c = 0; c < hd; c++) qs[i * hd + c] = a->q[i * D + e * hd + c] * a->scale;
        if (a->cross) {
            /* q @ swapaxes(k): the keys, heads-first and contiguous, are a transposed operand */
            const float *ke = a->k + e * S * hd, *ve = a->v + e * S * hd;
            a->sgemm(ROW_MAJOR, NO_TRANS, TRANS, (int)L, (int)S, (int)hd, 1.0f, qs, (int)hd, ke, (int)hd, 0.0f, scores,
                     (int)S);
            wf_softmax(scores, scores, L, S, 1);
            a->sgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, (int)L, (int)hd, (int)S, 1.0f, scores, (int)S, ve, (int)hd, 0.0f, oh,
                     (int)hd);
        } else {
            for (long j = 0; j < L; j++)
                for (long c = 0; c < hd; c++) {
                    kt[c * L + j] = a->k[j * D + e * hd + c] * a->scale;
                    vs[j * hd + c] = a->v[j * D + e * hd + c];
                }
            /* in bfloat16 (batched mode's encoder), 32 queries at a time, their scores kept in cache */
            if (a->sgemm == wf_sgemm_bf16 && !a->causal && wf_attend_bf16(qs, kt, vs, L, L, hd, oh)) {
                for (long i = 0; i < L; i++) memcpy(a->o + i * D + e * hd, oh + i * hd, hd * sizeof(float));
                continue;
            }
            a->sgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, (int)L, (int)L, (int)hd, 1.0f, qs, (int)hd, kt, (int)L, 0.0f, scores,
                     (int)L);
            if (a->causal)
                for (long i = 0; i < L; i++)
                    for (long j = i + 1; j < L; j++) scores[i * L + j] = -INFINITY;
            wf_softmax(scores, scores, L, L, 1);
            a->sgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, (int)L, (int)hd, (int)L, 1.0f, scores, (int)L, vs, (int)hd, 0.0f, oh,
                     (int)hd);
        }
        for (long i = 0; i < L; i++) memcpy(a->o + i * D + e * hd, oh + i * hd, hd * sizeof(float));
    }
}

typedef struct {
    const float *x, *w, *b;
    float eps;
    float* y;
    long rows, n;
} Norm;

static void norm_part(void* ctx, int part, int parts) {
    const Norm* m = ctx;
    long lo, hi;
    wf_share(m->rows, 1, part, parts, &lo, &hi);
    if (hi > lo) wf_layer_norm_rows(m->x + lo * m->n, m->w, m->b, m->eps, m->y + lo * m->n, hi - lo, m->n);
}

void wf_norm(Team* t, const float* x, const float* w, const float* b, float eps, float* y, long rows, long n) {
    Norm m = {x, w, b, eps, y, rows, n};
    wf_team_run(t, norm_part, &m);
}

/* Floats of a block's work space for L rows (over S audio rows) */
static long block_scratch(const long* d, long L, long S) {
    long D = d[N_STATE], hd = D / d[N_HEAD], F = d[N_MLP];
    return 6 * L * D + L * F + 2 * (4 * L * hd + L * (L > S ? L : S));
}

/* One residual block (layer table `a`) over the rows x (L, D), in place: self-attention, causal
   where `causal`, its keys and values also written to the layer's caches where it has them;
   cross-attention over S audio rows where it has cross keys; the GELU MLP. */
static void block(Team* team, Sgemm sgemm, const float* const* a, const long* d, long L, long S, float scale,
                  float eps, long split_min, int causal, float* x, float* work) {
    const long D = d[N_STATE], H = d[N_HEAD], hd = D / H, C = d[N_CTX], F = d[N_MLP];
    float *h = work, *q = h + L * D, *k = q + L * D, *v = k + L * D, *o = v + L * D, *y = o + L * D;
    float *f = y + L * D, *attn = f + L * F;
    const long attn_part = 4 * L * hd + L * (L > S ? L : S);

    wf_norm(team, x, a[LN1_W], a[LN1_B], eps, h, L, D);
    wf_linears(team, sgemm, h, L, D, split_min, 3,
            (Output[]){{a[WQ], a[BQ], q, D}, {a[WK], NULL, k, D}, {a[WV], a[BV], v, D}});
    if (a[KEYS])
        for (long e = 0; e < H; e++)
            for (long j = 0; j < L; j++) {
                memcpy((float*)a[KEYS] + (e * C + j) * hd, k + j * D + e * hd, hd * sizeof(float));
                memcpy((float*)a[VALUES] + (e * C + j) * hd, v + j * D + e * hd, hd * sizeof(float));
            }
    Attention self = {sgemm, q, k, v, scale, L, L, H, hd, 0, causal, attn, attn_part, o};
    wf_team_run(team, attention_part, &self);
    wf_linears(team, sgemm, o, L, D, split_min, 1, (Output[]){{a[WO], a[BO], y, D}});
    for (long i = 0; i < L * D; i++) x[i] = x[i] + y[i];

    if (a[CKEYS]) {
        wf_norm(team, x, a[LN2_W], a[LN2_B], eps, h, L, D);
        wf_linears(team, sgemm, h, L, D, split_min, 1, (Output[]){{a[WCQ], a[BCQ], q, D}});
        Attention cross = {sgemm, q, a[CKEYS], a[CVALUES], scale, L, S, H, hd, 1, 0, attn, attn_part, o};
        wf_team_run(team, attention_part, &cross);
        wf_linears(team, sgemm, o, L, D, split_min, 1, (Output[]){{a[WCO], a[BCO], y, D}});
        for (long i = 0; i < L * D; i++) x[i] = x[i] + y[i];
    }

    wf_norm(team, x, a[LN3_W], a[LN3_B], eps, h, L, D);
    wf_linears(team, sgemm, h, L, D, split_min, 1, (Output[]){{a[W1], a[B1], f, F}});
    if (sgemm == wf_sgemm_bf16) /* its products' operand next: GELU in 16 lanes, not MLX's bits */
        wf_team_gelu16(team, f, L * F);
    else
        wf_team_gelu(team, f, L * F);
    wf_linears(team, sgemm, f, L, F, split_min, 1, (Output[]){{a[W2], a[B2], y, D}});
    for (long i = 0; i < L * D; i++) x[i] = x[i] + y[i];
}

/* Floats of scratch wf_decoder_prompt needs for L rows. */
long wf_prompt_scratch(const long* d, long L) { return L * d[N_STATE] + block_scratch(d, L, d[N_AUDIO]); }

/* The logits (n_rows, n_vocab) of rows[] of the prompt tokens[0 .. L) at positions 0 .. L - 1,
   and every layer's self keys and values at those positions. Returns 0, or -1 where it cannot
   (no packed logits, L beyond n_ctx, more rows than L or one out of range). */
int wf_decoder_prompt(Sgemm sgemm, const float* const* model, const float* const* layers, const long* d, float scale,
                      float eps, const long* tokens, long L, const long* rows, long n_rows, long split_min,
                      float* scratch, float* logits) {
    const long D = d[N_STATE];
    if (!model[LOGITS_PACKED] || L < 1 || L > d[N_CTX] || n_rows > L) return -1;
    for (long r = 0; r < n_rows; r++)
        if (rows[r] < 0 || rows[r] >= L) return -1;
    float *x = scratch, *h = x + L * D;
    Team* team = wf_team_start((int)d[THREADS]);
    for (long i = 0; i < L; i++)
        for (long c = 0; c < D; c++) x[i * D + c] = model[TOKENS][tokens[i] * D + c] + model[POSITIONS][i * D + c];
    for (long l = 0; l < d[N_LAYER]; l++)
        block(team, sgemm, layers + l * LAYER_ARRAYS, d, L, d[N_AUDIO], scale, eps, split_min, 1, x, h);
    for (long r = 0; r < n_rows; r++) wf_layer_norm_rows(x + rows[r] * D, model[LN_W], model[LN_B], eps, h + r * D, 1, D);
    wf_team_panels(team, h, n_rows, model[LOGITS_PACKED], (int)d[LOGITS_HALF], NULL, logits, d[N_VOCAB], D);
    wf_team_stop(team);
    return 0;
}

/* Floats of scratch wf_encoder_blocks needs for n_audio audios of L rows: one audio's work
   space, or one a thread where two audios run at once. */
long wf_encoder_scratch(const long* d, long L, long n_audio) {
    return block_scratch(d, L, 0) * (n_audio > 1 && d[THREADS] > 1 ? 2 : 1);
}

/* Two audios' blocks at once, one a thread: each audio's calls are those a team-less call makes
   (every Linear whole, every head in turn), which sum as the team's halves do (the products
   are large: the file's comment). On two cores that is ~7 % sooner than each audio on both
   threads, which meet at every op (benchmarks/cpu/session32/). */
typedef struct {
    Sgemm sgemm;
    const float* const* layers;
    const long* d;
    float scale, eps;
    float* x; /* the pair's rows, (2, L, D) */
    long L, split_min;
    float* scratch; /* a thread's work space each */
} Pair;

static void pair_part(void* ctx, int part, int parts) {
    const Pair* p = ctx;
    const long D = p->d[N_STATE], size = block_scratch(p->d, p->L, 0);
    for (long a = part; a < 2; a += parts)
        for (long l = 0; l < p->d[N_LAYER]; l++)
            block(NULL, p->sgemm, p->layers + l * LAYER_ARRAYS, p->d, p->L, 0, p->scale, p->eps, p->split_min, 0,
                  p->x + a * p->L * D, p->scratch + part * size);
}

/* An encoder's residual blocks (tables of cpu_decoder.h's layout, with no cross-attention or
   caches) over the rows x (n_audio, L, D) of each audio, in place: two audios at a time one a
   thread (Pair), an odd last one on the team. Returns 0. */
int wf_encoder_blocks(Sgemm sgemm, const float* const* layers, const long* d, float scale, float eps, float* x,
                      long n_audio, long L, long split_min, float* scratch) {
    const long D = d[N_STATE];
    Team* team = wf_team_start((int)d[THREADS]);
    long a = 0;
    for (; team != NULL && a + 1 < n_audio; a += 2) {
        Pair p = {sgemm, layers, d, scale, eps, x + a * L * D, L, split_min, scratch};
        wf_team_run(team, pair_part, &p);
    }
    for (; a < n_audio; a++)
        for (long l = 0; l < d[N_LAYER]; l++)
            block(team, sgemm, layers + l * LAYER_ARRAYS, d, L, 0, scale, eps, split_min, 0, x + a * L * D, scratch);
    wf_team_stop(team);
    return 0;
}

/* Each of `heads` matrices (n, k) float32, one after the other at w, packed as wf_pack packs a
   weight in float32, one after the other at out (ceil(n / 64) * 64 * k floats each): the
   cross-attention's keys of every row and head, once a window. The heads shared over the team. */
typedef struct {
    const float* w;
    float* out;
    long heads, n, k;
} Heads;

static void heads_part(void* ctx, int part, int parts) {
    const Heads* a = ctx;
    const long panels = (a->n + wf_panel_size() - 1) / wf_panel_size(), size = panels * wf_panel_size() * a->k;
    long lo, hi;
    wf_share(a->heads, 1, part, parts, &lo, &hi);
    for (long h = lo; h < hi; h++) wf_pack_part(a->w + h * a->n * a->k, a->out + h * size, a->n, a->k, 0, 0, panels);
}

void wf_pack_heads(const float* w, float* out, long heads, long n, long k, int threads) {
    Heads a = {w, out, heads, n, k};
    Team* team = heads > 1 ? wf_team_start(threads) : NULL;
    wf_team_run(team, heads_part, &a);
    wf_team_stop(team);
}

/* wf_half_part over n values, shared over the team (cut at multiples of 64): the total of
   values float16 could not hold */
typedef struct {
    const float* x;
    unsigned short* half;
    float* back;
    long n;
    long overflow[2];
} Halves;

static void halves_part(void* ctx, int part, int parts) {
    Halves* a = ctx;
    long lo, hi;
    wf_share(a->n, 64, part, parts, &lo, &hi);
    a->overflow[part] = wf_half_part(a->x, a->half, a->back, lo, hi);
}

long wf_half(const float* x, unsigned short* half, float* back, long n, int threads) {
    Halves a = {x, half, back, n, {0, 0}};
    Team* team = n >= 65536 ? wf_team_start(threads < 2 ? threads : 2) : NULL;
    wf_team_run(team, halves_part, &a);
    wf_team_stop(team);
    return a.overflow[0] + a.overflow[1];
}

/* Every layer's cross-attention keys and values (WhisperAttention.cross_kv: the keys scaled by
   `scale`) for n_audio audios of S rows each, x (n_audio * S, D), into keys[l] and values[l]
   (n_audio, H, S, hd): each piece [bounds[i], bounds[i + 1]) of the output features the very
   cblas_sgemm call MLX makes for it on its CPU stream (one product over every audio's rows, as
   MLX folds the batch into them; the values' bias copied in, beta 1), the pieces shared by the
   team; then MLX's scale and heads-first layout. Where packed[l] is given, the layer's keys are
   also laid out there as wf_pack_heads lays them out, while they are in cache. scratch:
   2 * n_audio * S * D floats. */
typedef struct {
    Sgemm sgemm;
    const float *x, *wk, *wv, *bv;
    float *k, *v;
    long m, D;
    const long* bounds;
    long pieces;
} CrossProducts;

static void cross_products_part(void* ctx, int part, int parts) {
    const CrossProducts* c = ctx;
    const long D = c->D;
    for (long i = part; i < c->pieces; i += parts) {
        const long a = c->bounds[i], w = c->bounds[i + 1] - a;
        if (w <= 0) continue;
        c->sgemm(ROW_MAJOR, NO_TRANS, TRANS, (int)c->m, (int)w, (int)D, 1.0f, c->x, (int)D, c->wk + a * D, (int)D, 0.0f,
                 c->k + a, (int)D);
        for (long r = 0; r < c->m; r++) memcpy(c->v + r * D + a, c->bv + a, w * sizeof(float));
        c->sgemm(ROW_MAJOR, NO_TRANS, TRANS, (int)c->m, (int)w, (int)D, 1.0f, c->x, (int)D, c->wv + a * D, (int)D, 1.0f,
                 c->v + a, (int)D);
    }
}

typedef struct {
    const float *k, *v; /* (n_audio * S, D): the products */
    float *keys, *values, *packed;
    float scale;
    long n_audio, S, H, hd;
} Cross;

static void cross_part(void* ctx, int part, int parts) {
    const Cross* c = ctx;
    const long S = c->S, hd = c->hd, D = c->H * hd, panels = (S + wf_panel_size() - 1) / wf_panel_size();
    long lo, hi;
    wf_share(c->n_audio * c->H, 1, part, parts, &lo, &hi);
    for (long u = lo; u < hi; u++) { /* u: audio a = u / H, head e = u % H */
        const long a = u / c->H, e = u % c->H;
        float *ko = c->keys + u * S * hd, *vo = c->values + u * S * hd;
        for (long s = 0; s < S; s++) {
            const float *kr = c->k + (a * S + s) * D + e * hd, *vr = c->v + (a * S + s) * D + e * hd;
            for (long j = 0; j < hd; j++) ko[s * hd + j] = kr[j] * c->scale;
            memcpy(vo + s * hd, vr, hd * sizeof(float));
        }
        if (c->packed) wf_pack_part(ko, c->packed + u * panels * wf_panel_size() * hd, S, hd, 0, 0, panels);
    }
}

int wf_cross_kv(Sgemm sgemm, const float* const* layers, const long* d, float scale, const float* x, long n_audio,
                long S, const long* bounds, long pieces, float* scratch, float* const* keys, float* const* values,
                float* const* packed) {
    const long D = d[N_STATE], H = d[N_HEAD], m = n_audio * S;
    if (pieces < 1 || bounds[0] != 0 || bounds[pieces] != D) return -1;
    float *k = scratch, *v = k + m * D;
    Team* team = wf_team_start((int)d[THREADS]);
    for (long l = 0; l < d[N_LAYER]; l++) {
        const float* const* a = layers + l * LAYER_ARRAYS;
        CrossProducts p = {sgemm, x, a[WK], a[WV], a[BV], k, v, m, D, bounds, pieces};
        wf_team_run(team, cross_products_part, &p);
        Cross c = {k, v, keys[l], values[l], packed ? packed[l] : NULL, scale, n_audio, S, H, D / H};
        wf_team_run(team, cross_part, &c);
    }
    wf_team_stop(team);
    return 0;
}
