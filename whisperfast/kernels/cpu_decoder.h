/* What cpu_decoder.c (one row) and cpu_rows.c (many rows) share: the BLAS call they
   are handed, the library's ops they call, the tables decode/cpu_step.py builds, and
   cpu_team.c's two threads. */
#ifndef WF_CPU_DECODER_H
#define WF_CPU_DECODER_H

typedef void (*Sgemm)(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*,
                      int);
enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };

/* MLX's polynomial for 2^f, f in [-1/2, 1/2], highest power first (its exp's: cpu_simd.c's
   exp1 and exp8 in MLX's bits, cpu_amx.c's exp16) */
static const float WF_EXP2_POLY[7] = {1.535336188319500e-4f, 1.339887440266574e-3f, 9.618437357674640e-3f,
                                      5.550332471162809e-2f, 2.402264791363012e-1f, 6.931472028550421e-1f, 1.0f};

/* cpu_simd.c, cpu_products.c */
int wf_softmax(const float* in, float* out, long rows, long m, int threads);
int wf_gelu(const float* in, float* out, long n, int threads);
void wf_layer_norm_rows(const float* x, const float* w, const float* b, float eps, float* y, long rows, long n);
void wf_tn16_part(const void* w, int half, const float* x, const float* bias, float* y, long j0, long j1, long k);
void wf_panels_part(const float* x, const void* packed, int half, const float* bias, float* out, long n, long k,
                    long p0, long p1);
void wf_panel_rows(const float* x, const void* packed, int half, const float* bias, float* out, long m, long p0,
                   long p1, long n, long k);
void wf_chain_vt(const float* p, const float* v, float* out, long k, long n);
void wf_chain_vt_half(const float* p, const void* v, float* out, long k, long n); /* v float16 */
long wf_half_part(const float* x, unsigned short* half, float* back, long i0, long i1);
/* cpu_amx.c: cblas_sgemm's interface in bfloat16 on AMX tiles, and one head's attention on them */
void wf_sgemm_bf16(int order, int trans_a, int trans_b, int m, int n, int k, float alpha, const float* a, int lda,
                   const float* b, int ldb, float beta, float* c, int ldc);
int wf_attend_bf16(const float* qs, const float* kt, const float* vs, long L, long S, long hd, float* oh);
void wf_gelu16(const float* in, float* out, long n); /* GELU for bfloat16 products, not MLX's bits */
long wf_pick(const float* logits, float* x, float* work, long n, const float* const* masks, int n_masks,
             const long* ranges, int n_ranges, long split, float* logprob);
#define MAX_RANGES 8 /* banned ranges a row for wf_pick_rows (cpu_batch.c) */
/* What wf_pick needs for each of several rows (cpu_simd.Picks): the masks every row's; row r's
   ranges the first n_ranges[r] pairs at ranges + 2 * MAX_RANGES * r, its split splits[r]; its
   pick and log probability written to best[r], logprob[r]; work: 4 * V floats. */
typedef struct {
    const float* const* masks;
    long n_masks;
    const long *ranges, *n_ranges, *splits;
    long* best;
    float* logprob;
    float* work;
} Picks;
long wf_panel_size(void);
long wf_pack_part(const float* w, void* out, long n, long k, int half, long p0, long p1);
/* A packed weight's form, the `half` of the panel functions: float32, float16, or affine 8-bit
   values with their groups' scales and biases (cpu_products.c: PANELS_Q8) */
enum { PANELS_F32 = 0, PANELS_F16 = 1, PANELS_Q8 = 2 };
long wf_pack_q8_part(const unsigned char* q, const float* scales, const float* biases, const float* w, void* packed,
                     long n, long k, long group, long p0, long p1);

/* A layer's arrays, in this order (decode/cpu_step.py builds the table). A *16 entry is the
   weight laid out for tn16 (where checked; rows padded to a multiple of 16, in float16 where
   TN16_HALF, else float32), or NULL: MLX's BLAS call. */
enum {
    LN1_W, LN1_B, WQ, BQ, WK, WV, BV, WO, BO,  /* self-attention */
    LN2_W, LN2_B, WCQ, BCQ, WCO, BCO,          /* cross-attention */
    LN3_W, LN3_B, W1, B1, W2, B2,              /* MLP */
    KEYS, VALUES,                              /* self cache (n_head, n_ctx, head_dim), written at pos */
    CKEYS, CVALUES,                            /* cross (n_head, n_audio, head_dim), keys already scaled */
    FC1_PACKED,                                /* W1 as wf_pack laid it out, or NULL */
    WQ16, WK16, WV16, WO16, WCQ16, WCO16, W216,
    CKEYS_PACKED,                              /* each head's cross keys as wf_pack laid them out (float32; float16
                                                  where CROSS_HALF), or NULL */
    WQP, WKP, WVP, WOP, WCQP, WCOP,            /* cpu_batch.c: the weight as wf_pack laid it out, or NULL */
    W2P,                                       /* the same, for cpu_decoder.c's one row too (FC2_HALF wide) */
    CVALUES16,                                 /* cpu_batch.c where CROSS_HALF: CVALUES in float16 */
    LAYER_ARRAYS
};
/* The model's arrays. Without packed logits, the vocabulary's product is MLX's BLAS calls on
   the pieces [bounds[i], bounds[i + 1]) of the token embedding's rows (LOGITS_BOUNDS: N_PIECES
   + 1 longs), as the fast engine cuts it across its CPU streams. */
enum { TOKENS, POSITIONS, LN_W, LN_B, LOGITS_PACKED, LOGITS_BOUNDS, MODEL_ARRAYS };
/* The sizes; FC1_HALF, LOGITS_HALF and FC2_HALF hold their panels' form (PANELS_*). CROSS_HALF
   (cpu_batch.c): the cross keys and values hold float16 values, CKEYS_PACKED's panels are
   float16 and the values are read from CVALUES16 */
enum { N_LAYER, N_STATE, N_HEAD, N_CTX, N_AUDIO, N_VOCAB, N_MLP, FC1_HALF, LOGITS_HALF, THREADS, N_PIECES, TN16_HALF,
       FC2_HALF, CROSS_HALF, SIZES };

/* cpu_team.c: a piece of work in `parts` parts, fn(ctx, part, parts), run by the caller and one
   thread beside it */
typedef void (*Part)(void* ctx, int part, int parts);
typedef struct Team Team;
Team* wf_team_start(int threads); /* NULL (one thread: the caller's) where threads < 2 or none starts */
void wf_team_run(Team* t, Part fn, void* ctx);
void wf_team_stop(Team* t);
/* [lo, hi) of n for this part, cut at multiples of `align` */
void wf_share(long n, long align, int part, int parts, long* lo, long* hi);

/* cpu_decoder.c: ops shared out over a team. y (rows, n) = x (rows, k) times a weight packed
   as panels (wf_pack) [+ bias], the panels shared; the GELU of f (n) in place. */
void wf_team_panels(Team* t, const float* x, long rows, const void* packed, int half, const float* bias, float* y,
                    long n, long k);
void wf_team_gelu(Team* t, float* f, long n);
void wf_team_gelu16(Team* t, float* f, long n); /* wf_gelu16 */

/* cpu_rows.c: ops over many rows, shared out over a team. y (m, n) = x (m, k) times up to three
   weights (n, k) transposed [+ bias]: each MLX's addmm (or matmul), by `how`: the very
   cblas_sgemm call, its output features shared where each part is at least split_min
   multiply-adds; or a replica of that call's order of sums at m rows on `copy`, the output
   features shared (cpu_batch.c chooses): tn16 a row, or the packed chains; the copy's form
   (PANELS_*) shifted left by FORM_SHIFT. And the layer norm of x (rows, n), the rows shared. */
enum { BY_SGEMM = 0, BY_TN16 = 1, BY_CHAIN = 2, FORM_SHIFT = 4 };
typedef struct {
    const float* w;
    const float* b; /* or NULL: a matmul (beta 0) */
    float* y;
    long n;
    const void* copy; /* tn16's rows or the chains' panels, where `how` is not BY_SGEMM */
    long how;
} Output;
void wf_linears(Team* t, Sgemm sgemm, const float* x, long m, long k, long split_min, int count, const Output* out);
void wf_norm(Team* t, const float* x, const float* w, const float* b, float eps, float* y, long rows, long n);

#endif
