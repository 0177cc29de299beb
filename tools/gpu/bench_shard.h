/* bench_shard.h - the headline benchmark of bench_gpu.c (included there):
 * one rank's shard of DeepSeek-V3 under TP=8 PP=2 — stage 0's 31 layers
 * (3 dense + 28 MoE) at 1/8 width, 16 heads, experts' intermediate 256,
 * vocab slice 16160 — with random FP8 weights generated on the device,
 * driven through the backend ops in the order worker/model.c uses them
 * (no all-reduce: one rank's compute and memory traffic).
 *
 * Routing: the router op runs (its cost is timed) but writes into buffers
 * of its own; the experts read a fixed routing drawn like balanced real
 * traffic, top_k distinct experts per token uniformly at random (random
 * weights through the router gave saturated sigmoids and sent batch 256 to
 * ~54 of 256 experts, which understated the weight bytes a step reads).
 * Each batch reports the experts its routing touches.
 *
 * The per-op breakdown brackets every op of one eager step with CUDA
 * events (no host sync between ops) and sums the times per kind. */

enum { SH_D = 7168, SH_L = 31, SH_DENSE = 3, SH_H = 16, SH_QL = 1536, SH_R = 512, SH_P = 64,
       SH_NOPE = 128, SH_V = 128, SH_E = 256, SH_K = 8, SH_I = 256, SH_DI = 2304,
       SH_VOCAB = 16160, SH_BS = 64, SH_CTX = 1024, SH_TMAX = 4096 };

typedef struct sh_layer {
    dsa_weight an, fn, qa, qan, qb, kva, kvan, kvb, o, gate, up, down, router;
    dsa_expert *experts, shared;
    float *bias;
    dsa_kv_layer kv;
} sh_layer;

typedef struct sh_model {
    sh_layer l[SH_L];
    dsa_weight embed;
    float *inv_freq;
    void *h, *xn, *y, *qa, *q, *kva, *ckv, *qlat, *obar, *o, *g, *u, *rl;
    int32_t *ids, *tok, *pos, *seq, *slots, *bt;
    float *rw;
    int32_t *rids;  /* the router op's own outputs (not read by the experts) */
    float *rrw;
    int64_t touched; /* distinct experts the current routing uses */
    int64_t n_blocks, mb;
    double weight_bytes, expert_bytes, dense_bytes;
} sh_model;

static double wbytes(const dsa_weight *w)
{
    double b = (double)(w->rows * w->cols) * (w->dtype == DSA_DTYPE_F8_E4M3 ? 1 : 2);
    return b + (w->scale ? (double)(((w->rows + 127) / 128) * w->scale_ld) * 4 : 0);
}

static void sh_build(sh_model *m, int64_t n_blocks, int64_t mb)
{
    uint64_t seed = 100;
    m->n_blocks = n_blocks;
    m->mb = mb;
    m->embed = dweight(DSA_DTYPE_BF16, SH_VOCAB, SH_D, seed++);
    for (int li = 0; li < SH_L; li++) {
        sh_layer *L = &m->l[li];
        L->an = dweight(DSA_DTYPE_BF16, 1, SH_D, seed++);
        L->fn = dweight(DSA_DTYPE_BF16, 1, SH_D, seed++);
        L->qa = dweight(DSA_DTYPE_F8_E4M3, SH_QL, SH_D, seed++);
        L->qan = dweight(DSA_DTYPE_BF16, 1, SH_QL, seed++);
        L->qb = dweight(DSA_DTYPE_F8_E4M3, SH_H * (SH_NOPE + SH_P), SH_QL, seed++);
        L->kva = dweight(DSA_DTYPE_F8_E4M3, SH_R + SH_P, SH_D, seed++);
        L->kvan = dweight(DSA_DTYPE_BF16, 1, SH_R, seed++);
        L->kvb = dweight(DSA_DTYPE_F8_E4M3, SH_H * (SH_NOPE + SH_V), SH_R, seed++);
        L->o = dweight(DSA_DTYPE_F8_E4M3, SH_D, SH_H * SH_V, seed++);
        double b = wbytes(&L->qa) + wbytes(&L->qb) + wbytes(&L->kva) + wbytes(&L->kvb) +
                   wbytes(&L->o);
        if (li < SH_DENSE) {
            L->gate = dweight(DSA_DTYPE_F8_E4M3, SH_DI, SH_D, seed++);
            L->up = dweight(DSA_DTYPE_F8_E4M3, SH_DI, SH_D, seed++);
            L->down = dweight(DSA_DTYPE_F8_E4M3, SH_D, SH_DI, seed++);
            b += wbytes(&L->gate) + wbytes(&L->up) + wbytes(&L->down);
        } else {
            L->router = dweight(DSA_DTYPE_BF16, SH_E, SH_D, seed++);
            L->bias = dalloc(SH_E * 4);
            L->experts = calloc(SH_E, sizeof *L->experts);
            for (int e = 0; e < SH_E; e++) {
                L->experts[e].gate = dweight(DSA_DTYPE_F8_E4M3, SH_I, SH_D, seed++);
                L->experts[e].up = dweight(DSA_DTYPE_F8_E4M3, SH_I, SH_D, seed++);
                L->experts[e].down = dweight(DSA_DTYPE_F8_E4M3, SH_D, SH_I, seed++);
            }
            m->expert_bytes = wbytes(&L->experts[0].gate) * 3;
            L->shared.gate = dweight(DSA_DTYPE_F8_E4M3, SH_I, SH_D, seed++);
            L->shared.up = dweight(DSA_DTYPE_F8_E4M3, SH_I, SH_D, seed++);
            L->shared.down = dweight(DSA_DTYPE_F8_E4M3, SH_D, SH_I, seed++);
            b += wbytes(&L->router) + 3 * wbytes(&L->shared.gate);
            m->weight_bytes += SH_E * m->expert_bytes;
        }
        m->dense_bytes += b;
        m->weight_bytes += b;
        L->kv = (dsa_kv_layer){.data = dalloc((size_t)(n_blocks * SH_BS * (SH_R + SH_P)) * 2),
                               .n_blocks = n_blocks, .block_size = SH_BS, .width = SH_R + SH_P};
    }
    float f[SH_P / 2];
    for (int i = 0; i < SH_P / 2; i++)
        f[i] = powf(10000.0f, -2.0f * i / SH_P);
    m->inv_freq = dalloc(sizeof f);
    CK(be->ops->upload(be, m->inv_freq, f, sizeof f));
    size_t T = SH_TMAX;
    m->h = dalloc(T * SH_D * 2), m->xn = dalloc(T * SH_D * 2), m->y = dalloc(T * SH_D * 2);
    m->qa = dalloc(T * SH_QL * 2), m->q = dalloc(T * SH_H * (SH_NOPE + SH_P) * 2);
    m->kva = dalloc(T * (SH_R + SH_P) * 2), m->ckv = dalloc(T * SH_R * 2);
    m->qlat = dalloc(T * SH_H * SH_R * 2), m->obar = dalloc(T * SH_H * SH_R * 2);
    m->o = dalloc(T * SH_H * SH_V * 2), m->g = dalloc(T * SH_DI * 2), m->u = dalloc(T * SH_DI * 2);
    m->rl = dalloc(T * SH_E * 4), m->ids = dalloc(T * SH_K * 4), m->rw = dalloc(T * SH_K * 4);
    m->rids = dalloc(T * SH_K * 4), m->rrw = dalloc(T * SH_K * 4);
    m->tok = dalloc(T * 4), m->pos = dalloc(T * 4), m->seq = dalloc(T * 4), m->slots = dalloc(T * 4);
    m->bt = dalloc((size_t)(n_blocks + mb) * 4);
}

#define LIN(o_, ldo_, x_, ldx_, w_, t_, acc_)                                              \
    do {                                                                                   \
        dsa_linear_params lp_ = {.out = (o_), .x = (x_), .w = (w_), .m = (t_),            \
                                 .ld_x = (ldx_), .ld_out = (ldo_), .accumulate = (acc_)};  \
        if ((err = be->ops->linear(be, &lp_)))                                             \
            return err;                                                                    \
    } while (0)

/* Per-op timing of one step: SH_MARK(kind) before each op records an event
 * on the backend's stream while sh_prof.on. */
enum { SHP_EMBED, SHP_NORM, SHP_ATTN_LIN, SHP_ROPE_KV, SHP_ABSORB, SHP_MLA, SHP_ROUTER_LIN,
       SHP_ROUTER, SHP_MOE, SHP_MLP_LIN, SHP_SILU, SHP_N, SHP_MAXEV = 2048 };
static const char *const shp_names[SHP_N] = {
    "embed", "rmsnorm", "attn linears (q_a q_b kv_a o)", "rope + kv_store", "mla absorb q/o",
    "mla attention", "router linear", "router top-k", "routed experts (moe)",
    "mlp linears (dense + shared)", "silu*mul"};
static struct {
    int on, n;
    int kind[SHP_MAXEV];
    cudaEvent_t ev[SHP_MAXEV + 1];
} sh_prof;
#define SH_MARK(k)                                                                        \
    do {                                                                                  \
        if (sh_prof.on && sh_prof.n < SHP_MAXEV) {                                        \
            cudaEventRecord(sh_prof.ev[sh_prof.n], (cudaStream_t)dsa_cuda_stream(be));    \
            sh_prof.kind[sh_prof.n++] = (k);                                              \
        }                                                                                 \
    } while (0)

static dsa_err sh_norm(void *out, const void *x, void *res, const dsa_weight *w, int64_t T,
                       int64_t d, int64_t ldx)
{
    dsa_rmsnorm_params p = {.out = out, .x = x, .residual = res, .weight = w, .n_rows = T,
                            .dim = d, .ld_x = ldx, .ld_out = d, .eps = 1e-6f};
    return be->ops->rmsnorm(be, &p);
}

/* One forward step of T tokens (ids, positions, slots already on the device). */
static dsa_err sh_step(sh_model *m, int64_t T, int64_t n_seqs)
{
    dsa_err err;
    const int64_t qk = SH_NOPE + SH_P;
    dsa_embed_params ep = {.out = m->h, .table = &m->embed, .ids = m->tok, .n_tokens = T};
    SH_MARK(SHP_EMBED);
    if ((err = be->ops->embed(be, &ep)))
        return err;
    for (int li = 0; li < SH_L; li++) {
        sh_layer *L = &m->l[li];
        SH_MARK(SHP_NORM);
        if ((err = sh_norm(m->xn, li ? m->y : m->h, li ? m->h : NULL, &L->an, T, SH_D, SH_D)))
            return err;
        SH_MARK(SHP_ATTN_LIN);
        LIN(m->qa, SH_QL, m->xn, SH_D, &L->qa, T, 0);
        SH_MARK(SHP_NORM);
        if ((err = sh_norm(m->qa, m->qa, NULL, &L->qan, T, SH_QL, SH_QL)))
            return err;
        SH_MARK(SHP_ATTN_LIN);
        LIN(m->q, SH_H * qk, m->qa, SH_QL, &L->qb, T, 0);
        LIN(m->kva, SH_R + SH_P, m->xn, SH_D, &L->kva, T, 0);
        SH_MARK(SHP_NORM);
        if ((err = sh_norm(m->ckv, m->kva, NULL, &L->kvan, T, SH_R, SH_R + SH_P)))
            return err;
        dsa_rope_params rq = {.x = (char *)m->q + SH_NOPE * 2, .positions = m->pos,
                              .inv_freq = m->inv_freq, .n_tokens = T, .n_heads = SH_H,
                              .rot_dim = SH_P, .ld_token = SH_H * qk, .ld_head = qk};
        dsa_rope_params rk = {.x = (char *)m->kva + SH_R * 2, .positions = m->pos,
                              .inv_freq = m->inv_freq, .n_tokens = T, .n_heads = 1,
                              .rot_dim = SH_P, .ld_token = SH_R + SH_P, .ld_head = SH_P};
        dsa_kv_store_params st = {.cache = &L->kv, .c_kv = m->ckv,
                                  .k_pe = (char *)m->kva + SH_R * 2, .slots = m->slots,
                                  .n_tokens = T, .kv_rank = SH_R, .rope_dim = SH_P, .ld_c = SH_R,
                                  .ld_k = SH_R + SH_P};
        dsa_mla_absorb_params aq = {.out = m->qlat, .in = m->q, .ld_in_token = SH_H * qk,
                                    .ld_in_head = qk, .w_kvb = &L->kvb, .n_tokens = T,
                                    .n_heads = SH_H, .nope_dim = SH_NOPE, .v_dim = SH_V,
                                    .kv_rank = SH_R};
        dsa_mla_attn_params at = {.out = m->obar, .q_lat = m->qlat,
                                  .q_pe = (char *)m->q + SH_NOPE * 2, .ld_qpe_token = SH_H * qk,
                                  .ld_qpe_head = qk, .cache = &L->kv, .seq = m->seq,
                                  .pos = m->pos, .block_tables = m->bt,
                                  .ld_block_table = m->mb, .n_tokens = T, .n_heads = SH_H,
                                  .kv_rank = SH_R, .rope_dim = SH_P, .scale = 0.135f};
        dsa_mla_absorb_params ao = {.out = m->o, .in = m->obar, .ld_in_token = SH_H * SH_R,
                                    .ld_in_head = SH_R, .w_kvb = &L->kvb, .n_tokens = T,
                                    .n_heads = SH_H, .nope_dim = SH_NOPE, .v_dim = SH_V,
                                    .kv_rank = SH_R};
        SH_MARK(SHP_ROPE_KV);
        if ((err = be->ops->rope(be, &rq)) || (err = be->ops->rope(be, &rk)) ||
            (err = be->ops->kv_store(be, &st)))
            return err;
        SH_MARK(SHP_ABSORB);
        if ((err = be->ops->mla_absorb_q(be, &aq)))
            return err;
        SH_MARK(SHP_MLA);
        if ((err = be->ops->mla_attn(be, &at)))
            return err;
        SH_MARK(SHP_ABSORB);
        if ((err = be->ops->mla_absorb_o(be, &ao)))
            return err;
        SH_MARK(SHP_ATTN_LIN);
        LIN(m->y, SH_D, m->o, SH_H * SH_V, &L->o, T, 0);
        SH_MARK(SHP_NORM);
        if ((err = sh_norm(m->xn, m->y, m->h, &L->fn, T, SH_D, SH_D)))
            return err;
        const dsa_expert *mlp = li < SH_DENSE ? &(dsa_expert){L->gate, L->up, L->down}
                                              : &L->shared;
        int64_t width = li < SH_DENSE ? SH_DI : SH_I;
        if (li >= SH_DENSE) {
            SH_MARK(SHP_ROUTER_LIN);
            dsa_linear_params rl = {.out = m->rl, .x = m->xn, .w = &L->router, .m = T,
                                    .ld_x = SH_D, .ld_out = SH_E, .out_f32 = 1};
            if ((err = be->ops->linear(be, &rl)))
                return err;
            dsa_router_params rp = {.ids = m->rids, .weights = m->rrw, .logits = m->rl,
                                    .bias = L->bias, .n_tokens = T, .n_experts = SH_E,
                                    .top_k = SH_K, .n_group = 8, .topk_group = 4, .sigmoid = 1,
                                    .grouped = 1, .norm_topk_prob = 1,
                                    .routed_scaling_factor = 2.5f, .logits_f32 = 1};
            dsa_moe_params mp = {.out = m->y, .x = m->xn, .ids = m->ids, .weights = m->rw,
                                 .experts = L->experts, .n_tokens = T, .dim = SH_D,
                                 .inter = SH_I, .n_experts = SH_E, .top_k = SH_K};
            SH_MARK(SHP_ROUTER);
            if ((err = be->ops->router(be, &rp)))
                return err;
            SH_MARK(SHP_MOE);
            if ((err = be->ops->moe(be, &mp)))
                return err;
        }
        SH_MARK(SHP_MLP_LIN);
        LIN(m->g, width, m->xn, SH_D, &mlp->gate, T, 0);
        LIN(m->u, width, m->xn, SH_D, &mlp->up, T, 0);
        dsa_silu_mul_params sm = {.out = m->g, .gate = m->g, .up = m->u, .n_rows = T,
                                  .dim = width, .ld = width};
        SH_MARK(SHP_SILU);
        if ((err = be->ops->silu_mul(be, &sm)))
            return err;
        SH_MARK(SHP_MLP_LIN);
        LIN(m->y, SH_D, m->g, width, &mlp->down, T, li >= SH_DENSE);
    }
    if (sh_prof.on && sh_prof.n <= SHP_MAXEV)
        cudaEventRecord(sh_prof.ev[sh_prof.n], (cudaStream_t)dsa_cuda_stream(be));
    (void)n_seqs;
    return DSA_OK;
}

typedef struct sh_run { sh_model *m; int64_t T, n_seqs; int graph; } sh_run;
static dsa_err sh_run_fn(void *c_)
{
    sh_run *c = c_;
    if (c->graph)
        return be->ops->graph_replay(be, c->T);
    return sh_step(c->m, c->T, c->n_seqs);
}

/* Batch of B sequences at context SH_CTX (decode) or one of T tokens (prefill). */
static void sh_inputs(sh_model *m, int64_t T, int64_t B, int decode)
{
    int32_t *tok = malloc((size_t)T * 4), *pos = malloc((size_t)T * 4), *seq = malloc((size_t)T * 4),
            *slot = malloc((size_t)T * 4), *bt = malloc((size_t)(B * m->mb) * 4);
    for (int64_t s = 0; s < B; s++)
        for (int64_t j = 0; j < m->mb; j++)
            bt[s * m->mb + j] = (int32_t)((s * m->mb + j) % m->n_blocks);
    for (int64_t t = 0; t < T; t++) {
        int64_t s = decode ? t : 0, p = decode ? SH_CTX : t;
        tok[t] = (int32_t)((t * 7919) % SH_VOCAB), pos[t] = (int32_t)p, seq[t] = (int32_t)s;
        slot[t] = bt[s * m->mb + p / SH_BS] * SH_BS + (int32_t)(p % SH_BS);
    }
    CK(be->ops->upload(be, m->tok, tok, (size_t)T * 4));
    CK(be->ops->upload(be, m->pos, pos, (size_t)T * 4));
    CK(be->ops->upload(be, m->seq, seq, (size_t)T * 4));
    CK(be->ops->upload(be, m->slots, slot, (size_t)T * 4));
    CK(be->ops->upload(be, m->bt, bt, (size_t)(B * m->mb) * 4));
    free(tok), free(pos), free(seq), free(slot), free(bt);
    /* balanced routing: top_k distinct experts per token, uniform */
    int32_t *ids = malloc((size_t)T * SH_K * 4);
    float *rw = malloc((size_t)T * SH_K * 4);
    uint8_t used[SH_E] = {0};
    uint64_t r = 0x9E3779B97F4A7C15ull ^ (uint64_t)T;
    m->touched = 0;
    for (int64_t t = 0; t < T; t++) {
        uint8_t mine[SH_E] = {0};
        for (int k = 0; k < SH_K; k++) {
            int32_t e;
            do {
                r = r * 6364136223846793005ull + 1442695040888963407ull;
                e = (int32_t)((r >> 33) % SH_E);
            } while (mine[e]);
            mine[e] = 1;
            m->touched += !used[e];
            used[e] = 1;
            ids[t * SH_K + k] = e;
            rw[t * SH_K + k] = 2.5f / SH_K;
        }
    }
    CK(be->ops->upload(be, m->ids, ids, (size_t)T * SH_K * 4));
    CK(be->ops->upload(be, m->rw, rw, (size_t)T * SH_K * 4));
    free(ids), free(rw);
}

/* One eager step of T tokens timed per op kind (ms), printed as a table. */
static void sh_breakdown(sh_model *m, int64_t T, int64_t n_seqs)
{
    double ms[SHP_N] = {0}, total = 0;
    int count[SHP_N] = {0};
    for (int i = 0; i <= SHP_MAXEV; i++)
        if (!sh_prof.ev[i] && cudaEventCreate(&sh_prof.ev[i]) != cudaSuccess) {
            printf("per-op breakdown: cudaEventCreate failed\n");
            return;
        }
    CK(sh_step(m, T, n_seqs)); /* warm */
    CK(be->ops->sync(be));
    sh_prof.on = 1, sh_prof.n = 0;
    dsa_err err = sh_step(m, T, n_seqs);
    sh_prof.on = 0;
    CK(err);
    CK(be->ops->sync(be));
    for (int i = 0; i < sh_prof.n; i++) {
        float t = 0;
        cudaEventElapsedTime(&t, sh_prof.ev[i], sh_prof.ev[i + 1]);
        ms[sh_prof.kind[i]] += t;
        count[sh_prof.kind[i]]++;
        total += t;
    }
    printf("per-op breakdown, eager step of batch %lld (%d ops, %.3f ms):\n", (long long)T,
           sh_prof.n, total);
    for (int k = 0; k < SHP_N; k++) {
        printf("  %-32s %5d launches %9.3f ms %5.1f%%\n", shp_names[k], count[k], ms[k],
               total > 0 ? 100.0 * ms[k] / total : 0.0);
        jrow("\"bench\": \"shard_op\", \"batch\": %lld, \"op\": \"%s\", \"count\": %d, "
             "\"ms\": %.4f", (long long)T, shp_names[k], count[k], ms[k]);
    }
}

static void bench_shard(void)
{
    static sh_model m;
    int64_t mb = SH_TMAX / SH_BS + 1, n_blocks = 256 * ((SH_CTX + 1 + SH_BS - 1) / SH_BS);
    sh_build(&m, n_blocks, mb);
    CK(be->ops->sync(be));
    printf("\n== shard TP=8 PP=2 stage 0: %d layers, %.1f GB of weights (%.2f GB non-expert) ==\n",
           SH_L, m.weight_bytes / 1e9, m.dense_bytes / 1e9);
    printf("%-8s %10s %10s %10s %10s %12s %8s\n", "batch", "step ms", "eager ms", "floor ms",
           "of floor", "tokens/s", "experts");
    static const int64_t Bs[] = {1, 8, 32, 128, 256};
    for (int i = 0; i < 5; i++) {
        int64_t B = Bs[i];
        sh_inputs(&m, B, B, 1);
        sh_run c = {&m, B, B, 0};
        double eager = time_ms(sh_run_fn, &c, 5);
        CK(be->ops->graph_begin(be));
        CK(sh_step(&m, B, B));
        CK(be->ops->graph_end(be, B));
        c.graph = 1;
        double ms = time_ms(sh_run_fn, &c, 10);
        double touched = (double)m.touched;
        double bytes = m.dense_bytes + (SH_L - SH_DENSE) * touched * m.expert_bytes +
                       (double)SH_L * B * (SH_CTX + 1) * (SH_R + SH_P) * 2;
        double floor_ms = bytes / (copy_gbs * 1e9) * 1e3;
        printf("%-8lld %10.3f %10.3f %10.3f %9.0f%% %12.0f %8lld\n", (long long)B, ms, eager,
               floor_ms, 100.0 * floor_ms / ms, B / (ms * 1e-3), (long long)m.touched);
        jrow("\"bench\": \"shard_decode\", \"batch\": %lld, \"ctx\": %d, \"step_ms\": %.4f, "
             "\"eager_ms\": %.4f, \"floor_ms\": %.4f, \"bytes\": %.0f, \"experts_touched\": %lld",
             (long long)B, SH_CTX, ms, eager, floor_ms, bytes, (long long)m.touched);
    }
    sh_inputs(&m, 1, 1, 1);
    sh_breakdown(&m, 1, 1);
    sh_inputs(&m, 256, 256, 1);
    sh_breakdown(&m, 256, 256);
    int64_t T = SH_TMAX;
    sh_inputs(&m, T, 1, 0);
    sh_run c = {&m, T, 1, 0};
    double ms = time_ms(sh_run_fn, &c, 3);
    double per_tok = 0;
    for (int li = 0; li < SH_L; li++) {
        double lin = (double)SH_QL * SH_D + (double)SH_H * (SH_NOPE + SH_P) * SH_QL +
                     (double)(SH_R + SH_P) * SH_D + (double)SH_D * SH_H * SH_V +
                     2.0 * SH_H * SH_NOPE * SH_R;
        lin += li < SH_DENSE ? 3.0 * SH_DI * SH_D : (SH_K + 1) * 3.0 * SH_I * SH_D + SH_E * SH_D;
        per_tok += 2.0 * lin + 2.0 * SH_H * (T / 2.0) * (SH_R + SH_P + SH_R);
    }
    double tf = per_tok * T / (ms * 1e-3) / 1e12;
    printf("prefill %lld tokens: %.1f ms, %.0f tokens/s, %.1f TFLOP/s = %.0f%% of FP8 peak %.0f\n",
           (long long)T, ms, T / (ms * 1e-3), tf, 100.0 * tf / fp8_tf, fp8_tf);
    jrow("\"bench\": \"shard_prefill\", \"tokens\": %lld, \"ms\": %.3f, \"tokens_per_s\": %.0f, "
         "\"tflops\": %.2f, \"fp8_peak_tflops\": %.1f", (long long)T, ms, T / (ms * 1e-3), tf,
         fp8_tf);
}
