/* One token for each of n rows of a batch, each row its own audio (batched mode's greedy
   decode), through the decoder in one call on two threads, as MLX's CPU ops compute the fast
   engine's step for those rows (decode/flat.py: FlatStep._mlx_step):
   - each Linear is MLX's addmm over the n rows, so the weights are read once a step for all
     rows: the very cblas_sgemm call, or a replica of its order of sums at n rows where the
     caller found one that gives its bits on that shape (`how`): tn16 a row (OpenBLAS's
     small-matrix kernel, which it takes for one to a few rows) or the packed chains (its
     large kernels, from a few rows on), which read the weight in place instead of packing it
     on every call;
   - each row's attention is the one-row step's (cpu_decoder.c), per head: the scores on the
     scaled keys laid out (hd, T) (kept from step to step), or on the cross keys (packed where
     the caller packed them, else the BLAS call q @ swapaxes(k)), the softmax, the weighted
     values' chain;
   - where CROSS_HALF, the rows' cross keys (packed) and values are read in float16: the caller
     rounded its float32 caches to those values, each widened back before it is multiplied, so
     the sums are those over the caches' values and half the bytes are read;
   - the layer norms, softmax and GELU are cpu_simd.c's (MLX's bits).
   The caller checks the first call against MLX's step (decode/cpu_batch.py). */
#include <math.h>
#include <string.h>

#include "cpu_decoder.h"

/* how[kind] for the kinds q, k, v, out, cross q, cross out, fc1, fc2: an Output's `how` */
enum { KQ, KK, KV, KO, KCQ, KCO, KFC1, KFC2, KINDS };

/* the layer's Linear at table entries (w, its tn16 rows, its panels, its bias) for x (m, k) */
static Output output(const float* const* a, const long* how, int kind, int w, int w16, int packed, int b, float* y,
                     long n) {
    const int mode = (int)(how[kind] & 15);
    const void* copy = mode == BY_TN16 ? (const void*)a[w16] : mode == BY_CHAIN ? (const void*)a[packed] : NULL;
    return (Output){a[w], b < 0 ? NULL : a[b], y, n, copy, copy ? how[kind] : BY_SGEMM};
}

/* The attention of n rows, one query each, over their own caches: items (row, head) shared by
   the parts. Self: the row's cache (H, C, hd) of batch row rows[i], T = pos + 1 keys, with kt
   (B, H, hd, C) its scaled keys transposed (positions below kt_from made already); cross: the
   row's (H, S, hd) keys (already scaled) and values. */
typedef struct {
    Sgemm sgemm;
    const float* q; /* (n, D), unscaled */
    float scale;
    const float *keys, *values; /* (B, H, C or S, hd) */
    const void* packed;         /* cross: each row's heads' keys as panels (float16 where half), or NULL */
    const void* values16;       /* cross where half: the values in float16 */
    int half;
    float* kt;
    long kt_from;
    const long* rows;
    long n, H, hd, C, T;
    int cross;
    float* scratch; /* per part: hd + T floats */
    long scratch_part;
    float* o; /* (n, D) */
} RowsAttention;

static void attention_part(void* ctx, int part, int parts) {
    const RowsAttention* a = ctx;
    const long H = a->H, hd = a->hd, D = H * hd, C = a->C, T = a->T;
    long lo, hi;
    wf_share(a->n * H, 1, part, parts, &lo, &hi);
    float *qs = a->scratch + part * a->scratch_part, *scores = qs + hd;
    for (long item = lo; item < hi; item++) {
        const long i = item / H, e = item % H, head = a->rows[i] * H + e;
        const float *keys = a->keys + head * C * hd, *values = a->values + head * C * hd;
        for (long c = 0; c < hd; c++) qs[c] = a->q[i * D + e * hd + c] * a->scale;
        if (a->cross && a->packed) {
            const long panel = wf_panel_size(), panels = (T + panel - 1) / panel, at = head * panels * panel * hd;
            const void* keys_at = a->half ? (const void*)((const unsigned short*)a->packed + at)
                                          : (const void*)((const float*)a->packed + at);
            wf_panels_part(qs, keys_at, a->half ? PANELS_F16 : PANELS_F32, NULL, scores, T, hd, 0, panels);
        } else if (a->cross) {
            a->sgemm(ROW_MAJOR, NO_TRANS, TRANS, 1, (int)T, (int)hd, 1.0f, qs, (int)hd, keys, (int)hd, 0.0f, scores,
                     (int)T);
        } else {
            float* kt = a->kt + head * hd * C;
            for (long j = a->kt_from; j < T; j++)
                for (long c = 0; c < hd; c++) kt[c * C + j] = keys[j * hd + c] * a->scale;
            a->sgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, 1, (int)T, (int)hd, 1.0f, qs, (int)hd, kt, (int)C, 0.0f, scores,
                     (int)T);
        }
        wf_softmax(scores, scores, 1, T, 1);
        if (a->half) wf_chain_vt_half(scores, (const unsigned short*)a->values16 + head * C * hd, a->o + i * D + e * hd, T, hd);
        else wf_chain_vt(scores, values, a->o + i * D + e * hd, T, hd);
    }
}

/* The vocabulary's product as FlatStep makes it off the chains: MLX's calls on the pieces
   [bounds[i], bounds[i + 1]) of the embedding's rows, n rows each, one piece to a part */
typedef struct {
    Sgemm sgemm;
    const float *x, *w;
    const long* bounds;
    long pieces, n, k, vocab;
    float* y;
} Pieces;

static void pieces_part(void* ctx, int part, int parts) {
    const Pieces* p = ctx;
    for (long i = part; i < p->pieces; i += parts) {
        long a = p->bounds[i], m = p->bounds[i + 1] - a;
        p->sgemm(ROW_MAJOR, NO_TRANS, TRANS, (int)p->n, (int)m, (int)p->k, 1.0f, p->x, (int)p->k, p->w + a * p->k,
                 (int)p->k, 0.0f, p->y + a, (int)p->vocab);
    }
}

static void add(float* x, const float* y, long n) {
    for (long i = 0; i < n; i++) x[i] = x[i] + y[i];
}

/* The greedy picks of n rows of logits (n, V), wf_pick a row, the rows shared over the parts */
typedef struct {
    const float* logits;
    const Picks* p;
    long V, rows;
} PickRows;

static void pick_rows_part(void* ctx, int part, int parts) {
    const PickRows* a = ctx;
    const Picks* p = a->p;
    long lo, hi;
    wf_share(a->rows, 1, part, parts, &lo, &hi);
    float *x = p->work + 2 * part * a->V, *work = x + a->V;
    for (long r = lo; r < hi; r++)
        p->best[r] = wf_pick(a->logits + r * a->V, x, work, a->V, p->masks, (int)p->n_masks,
                             p->ranges + 2 * MAX_RANGES * r, (int)p->n_ranges[r], p->splits[r], p->logprob + r);
}

/* wf_pick for each of `rows` rows of logits (rows, V) by `p`, on up to two threads */
void wf_pick_rows(const float* logits, long rows, long V, const Picks* p, int threads) {
    PickRows a = {logits, p, V, rows};
    Team* team = rows > 1 ? wf_team_start(threads) : NULL;
    wf_team_run(team, pick_rows_part, &a);
    wf_team_stop(team);
}

/* Floats of scratch wf_decoder_rows needs for n rows. */
long wf_rows_scratch(const long* d, long n) {
    long D = d[N_STATE], hd = D / d[N_HEAD], t = d[N_CTX] > d[N_AUDIO] ? d[N_CTX] : d[N_AUDIO];
    return 7 * n * D + n * d[N_MLP] + 2 * (hd + t);
}

/* logits (n, n_vocab) for tokens[i] of batch row rows[i] (i < n), all at position pos
   (0 <= pos < n_ctx), in a batch of B rows: the layers' self caches (B, n_head, n_ctx,
   head_dim) hold positions 0 .. pos - 1 and get pos, the cross K/V are (B, n_head, n_audio,
   head_dim). kt (n_layer, B, n_head, head_dim, n_ctx) keeps the scaled keys transposed: it
   holds positions 0 .. kt_from - 1 of these rows and gets kt_from .. pos. how: each kind of
   Linear's product at n rows (above); logits_chained: the vocabulary's (LOGITS_PACKED), else
   MLX's calls on its pieces. With `picks` (else NULL), each row's greedy pick too, on the
   same threads (wf_pick_rows). Returns 0, or -1 where a copy asked for is not in the tables. */
int wf_decoder_rows(Sgemm sgemm, const float* const* model, const float* const* layers, const long* d, float scale,
                    float eps, const long* tokens, const long* rows, long n, long B, long pos, float* kt, long kt_from,
                    long split_min, const long* how, int logits_chained, float* scratch, float* logits,
                    const Picks* picks) {
    const long NL = d[N_LAYER], D = d[N_STATE], H = d[N_HEAD], hd = D / H, C = d[N_CTX], S = d[N_AUDIO];
    const long F = d[N_MLP], V = d[N_VOCAB];
    static const int entries[KINDS][3] = {{WQ, WQ16, WQP}, {WK, WK16, WKP}, {WV, WV16, WVP}, {WO, WO16, WOP},
                                          {WCQ, WCQ16, WCQP}, {WCO, WCO16, WCOP}, {W1, -1, FC1_PACKED},
                                          {W2, W216, W2P}};
    const int cross_half = (int)d[CROSS_HALF];
    if (logits_chained && !model[LOGITS_PACKED]) return -1;
    for (long l = 0; l < NL && cross_half; l++)
        if (!layers[l * LAYER_ARRAYS + CKEYS_PACKED] || !layers[l * LAYER_ARRAYS + CVALUES16]) return -1;
    for (long l = 0; l < NL; l++)
        for (int kind = 0; kind < KINDS; kind++) {
            const int mode = (int)(how[kind] & 15), e = mode == BY_TN16 ? entries[kind][1] : entries[kind][2];
            if (mode != BY_SGEMM && (e < 0 || !layers[l * LAYER_ARRAYS + e])) return -1;
        }
    float *x = scratch, *h = x + n * D, *q = h + n * D, *k = q + n * D, *v = k + n * D, *o = v + n * D, *y = o + n * D;
    float *f = y + n * D, *attn = f + n * F;
    const long attn_part = hd + (C > S ? C : S);
    Team* team = wf_team_start((int)d[THREADS]);

    for (long i = 0; i < n; i++)
        for (long c = 0; c < D; c++) x[i * D + c] = model[TOKENS][tokens[i] * D + c] + model[POSITIONS][pos * D + c];
    for (long l = 0; l < NL; l++) {
        const float* const* a = layers + l * LAYER_ARRAYS;
        float *keys = (float*)a[KEYS], *values = (float*)a[VALUES];

        wf_norm(team, x, a[LN1_W], a[LN1_B], eps, h, n, D);
        wf_linears(team, sgemm, h, n, D, split_min, 3,
                (Output[]){output(a, how, KQ, WQ, WQ16, WQP, BQ, q, D), output(a, how, KK, WK, WK16, WKP, -1, k, D),
                               output(a, how, KV, WV, WV16, WVP, BV, v, D)});
        for (long i = 0; i < n; i++)
            for (long e = 0; e < H; e++) {
                const long at = ((rows[i] * H + e) * C + pos) * hd;
                memcpy(keys + at, k + i * D + e * hd, hd * sizeof(float));
                memcpy(values + at, v + i * D + e * hd, hd * sizeof(float));
            }
        RowsAttention self = {sgemm, q, scale, keys, values, NULL, NULL, 0, kt + l * B * H * hd * C, kt_from, rows, n,
                              H, hd, C, pos + 1, 0, attn, attn_part, o};
        wf_team_run(team, attention_part, &self);
        wf_linears(team, sgemm, o, n, D, split_min, 1, (Output[]){output(a, how, KO, WO, WO16, WOP, BO, y, D)});
        add(x, y, n * D);

        wf_norm(team, x, a[LN2_W], a[LN2_B], eps, h, n, D);
        wf_linears(team, sgemm, h, n, D, split_min, 1, (Output[]){output(a, how, KCQ, WCQ, WCQ16, WCQP, BCQ, q, D)});
        RowsAttention cross = {sgemm, q, scale, a[CKEYS], a[CVALUES], a[CKEYS_PACKED], a[CVALUES16], cross_half, NULL,
                               0, rows, n, H, hd, S, S, 1, attn, attn_part, o};
        wf_team_run(team, attention_part, &cross);
        wf_linears(team, sgemm, o, n, D, split_min, 1, (Output[]){output(a, how, KCO, WCO, WCO16, WCOP, BCO, y, D)});
        add(x, y, n * D);

        wf_norm(team, x, a[LN3_W], a[LN3_B], eps, h, n, D);
        wf_linears(team, sgemm, h, n, D, split_min, 1, (Output[]){output(a, how, KFC1, W1, -1, FC1_PACKED, B1, f, F)});
        wf_team_gelu(team, f, n * F);
        wf_linears(team, sgemm, f, n, F, split_min, 1, (Output[]){output(a, how, KFC2, W2, W216, W2P, B2, y, D)});
        add(x, y, n * D);
    }
    wf_norm(team, x, model[LN_W], model[LN_B], eps, h, n, D);
    if (logits_chained) {
        wf_team_panels(team, h, n, model[LOGITS_PACKED], (int)d[LOGITS_HALF], NULL, logits, V, D);
    } else {
        Pieces vocab = {sgemm, h, model[TOKENS], (const long*)model[LOGITS_BOUNDS], d[N_PIECES], n, D, V, logits};
        wf_team_run(team, pieces_part, &vocab);
    }
    if (picks) {
        PickRows rows_picks = {logits, picks, V, n};
        wf_team_run(team, pick_rows_part, &rows_picks);
    }
    wf_team_stop(team);
    return 0;
}
