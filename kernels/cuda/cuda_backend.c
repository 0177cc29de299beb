/* cuda_backend.c - the CUDA backend's vtable and everything that is not a
 * kernel: error conversion, device memory, host<->device transfers through
 * pinned staging, weight preparation (FP8 stays FP8), scratch buffers,
 * cached device copies of host arrays, and graph capture/replay.
 *
 * Ordering: every op and copy is queued on be->stream; upload, download and
 * act_to_f32 return after their copy completed (the host buffer is free to
 * reuse), ops return once queued.  sync waits for the stream. */
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_internal.h"

/* ---- Errors --------------------------------------------------------------- */

dsa_err dsa_cuda_err(cudaError_t e, const char *call, const char *file, int line)
{
    if (e == cudaSuccess)
        return DSA_OK;
    DSA_ERROR("CUDA: %s failed at %s:%d: %s (%s)", call, file, line, cudaGetErrorString(e),
              cudaGetErrorName(e));
    return dsa_fail(DSA_DEVICE, "CUDA: %s at %s:%d: %s", call, file, line, cudaGetErrorString(e));
}

dsa_err dsa_cublas_err(cublasStatus_t s, const char *call, const char *file, int line)
{
    if (s == CUBLAS_STATUS_SUCCESS)
        return DSA_OK;
    DSA_ERROR("cuBLASLt: %s failed at %s:%d: status %d", call, file, line, (int)s);
    return dsa_fail(s == CUBLAS_STATUS_NOT_SUPPORTED ? DSA_UNSUPPORTED : DSA_DEVICE,
                    "cuBLASLt: %s at %s:%d: status %d", call, file, line, (int)s);
}

static dsa_err not_while_capturing(dsa_cuda_backend *be, const char *what)
{
    if (!be->capturing)
        return DSA_OK;
    return dsa_fail(DSA_INVAL, "cuda backend: %s during graph capture", what);
}

int dsa_cuda_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}

/* ---- Memory --------------------------------------------------------------- */

static dsa_err cu_alloc(dsa_backend *be_, size_t bytes, void **out)
{
    dsa_cuda_backend *be = dsa_cuda_be(be_);
    *out = NULL;
    dsa_err err = not_while_capturing(be, "alloc");
    if (err)
        return err;
    size_t n = (bytes + 255) & ~(size_t)255;
    if (n == 0)
        n = 256;
    void *p = NULL;
    if ((err = DSA_CUDA_CHECK(cudaMalloc(&p, n))))
        return err;
    if ((err = DSA_CUDA_CHECK(cudaMemsetAsync(p, 0, n, be->stream))) ||
        (err = DSA_CUDA_CHECK(cudaStreamSynchronize(be->stream)))) {
        cudaFree(p);
        return err;
    }
    *out = p;
    return DSA_OK;
}

static void cu_free(dsa_backend *be_, void *p)
{
    dsa_cuda_backend *be = dsa_cuda_be(be_);
    if (!p)
        return;
    /* Work queued on the stream may still read p. */
    (void)DSA_CUDA_CHECK(cudaStreamSynchronize(be->stream));
    (void)DSA_CUDA_CHECK(cudaFree(p));
}

dsa_err dsa_cuda_pinned(dsa_cuda_backend *be, size_t bytes, void **out)
{
    if (bytes <= be->pinned_cap) {
        *out = be->pinned;
        return DSA_OK;
    }
    dsa_err err = not_while_capturing(be, "growing pinned staging");
    if (err)
        return err;
    size_t cap = be->pinned_cap * 2 > bytes ? be->pinned_cap * 2 : bytes;
    void *p = NULL;
    if ((err = DSA_CUDA_CHECK(cudaStreamSynchronize(be->stream))) ||
        (err = DSA_CUDA_CHECK(cudaMallocHost(&p, cap))))
        return err;
    if (be->pinned)
        (void)DSA_CUDA_CHECK(cudaFreeHost(be->pinned));
    be->pinned = p;
    be->pinned_cap = cap;
    *out = p;
    return DSA_OK;
}

dsa_err dsa_cuda_scratch(dsa_cuda_backend *be, int slot, size_t bytes, void **out)
{
    if (bytes <= be->scr_cap[slot] && be->scr[slot]) {
        if (be->capturing)
            be->scr_in_graph |= 1u << slot;
        *out = be->scr[slot];
        return DSA_OK;
    }
    dsa_err err = not_while_capturing(be, "growing scratch (run the step once before capturing)");
    if (err)
        return err;
    size_t cap = be->scr_cap[slot] * 2 > bytes ? be->scr_cap[slot] * 2 : bytes;
    cap = (cap + 255) & ~(size_t)255;
    void *p = NULL;
    if ((err = DSA_CUDA_CHECK(cudaStreamSynchronize(be->stream))) ||
        (err = DSA_CUDA_CHECK(cudaMalloc(&p, cap))))
        return err;
    if (be->scr[slot])
        (void)DSA_CUDA_CHECK(cudaFree(be->scr[slot]));
    /* Captured graphs may name the freed buffer: drop them all, so a replay
     * finds no graph (DSA_NOTFOUND) and the caller captures again.  Slots
     * no capture ever used (the sampling ops') leave the graphs alone. */
    if (be->scr_in_graph & (1u << slot)) {
        for (int i = 0; i < be->n_graphs; i++)
            (void)DSA_CUDA_CHECK(cudaGraphExecDestroy(be->graphs[i].exec));
        if (be->n_graphs)
            DSA_DEBUG("cuda backend: scratch slot %d grew to %zu bytes; %d graphs dropped",
                      slot, cap, be->n_graphs);
        be->n_graphs = 0;
        be->scr_in_graph = 0;
    }
    be->scr[slot] = p;
    be->scr_cap[slot] = cap;
    *out = p;
    return DSA_OK;
}

/* Large transfers go straight from/to pageable memory (the driver stages
 * them); small ones through pinned staging, so they stay asynchronous to
 * the device and cheap. */
#define DSA_CUDA_STAGE_MAX (4u << 20)

static dsa_err cu_upload(dsa_backend *be_, void *dst, const void *src, size_t bytes)
{
    dsa_cuda_backend *be = dsa_cuda_be(be_);
    dsa_err err = not_while_capturing(be, "upload");
    if (err || bytes == 0)
        return err;
    if (bytes > DSA_CUDA_STAGE_MAX) {
        if ((err = DSA_CUDA_CHECK(cudaStreamSynchronize(be->stream))))
            return err;
        return DSA_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
    }
    void *st;
    /* The staging buffer is reused: wait for the previous copy out of it. */
    if ((err = DSA_CUDA_CHECK(cudaStreamSynchronize(be->stream))) ||
        (err = dsa_cuda_pinned(be, bytes, &st)))
        return err;
    memcpy(st, src, bytes);
    return DSA_CUDA_CHECK(cudaMemcpyAsync(dst, st, bytes, cudaMemcpyHostToDevice, be->stream));
}

static dsa_err cu_download(dsa_backend *be_, void *dst, const void *src, size_t bytes)
{
    dsa_cuda_backend *be = dsa_cuda_be(be_);
    dsa_err err = not_while_capturing(be, "download");
    if (err || bytes == 0)
        return err;
    if (bytes > DSA_CUDA_STAGE_MAX) {
        if ((err = DSA_CUDA_CHECK(cudaStreamSynchronize(be->stream))))
            return err;
        return DSA_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
    }
    void *st;
    if ((err = dsa_cuda_pinned(be, bytes, &st)) ||
        (err = DSA_CUDA_CHECK(cudaMemcpyAsync(st, src, bytes, cudaMemcpyDeviceToHost,
                                              be->stream))) ||
        (err = DSA_CUDA_CHECK(cudaStreamSynchronize(be->stream))))
        return err;
    memcpy(dst, st, bytes);
    return DSA_OK;
}

static dsa_err cu_copy(dsa_backend *be_, void *dst, const void *src, size_t bytes)
{
    dsa_cuda_backend *be = dsa_cuda_be(be_);
    if (bytes == 0)
        return DSA_OK;
    return DSA_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, be->stream));
}

static dsa_err cu_sync(dsa_backend *be_)
{
    dsa_cuda_backend *be = dsa_cuda_be(be_);
    dsa_err err = not_while_capturing(be, "sync");
    if (err)
        return err;
    return DSA_CUDA_CHECK(cudaStreamSynchronize(be->stream));
}

/* ---- Host arrays kept on the device ---------------------------------------- */

struct dsa_cuda_ptr_cache {
    const void *host;
    size_t bytes;
    void *copy;         /* host copy of the contents when cached */
    void *dev;
    dsa_cuda_ptr_cache *next;
};

dsa_err dsa_cuda_host_array_keyed(dsa_cuda_backend *be, const void *key, const void *p,
                                  size_t bytes, const void **out)
{
    *out = NULL;
    for (dsa_cuda_ptr_cache *c = be->ptrs; c; c = c->next)
        if (c->host == key && c->bytes == bytes && memcmp(c->copy, p, bytes) == 0) {
            *out = c->dev;
            return DSA_OK;
        }
    dsa_err err = not_while_capturing(be, "first use of a host array (router bias, experts)");
    if (err)
        return err;
    dsa_cuda_ptr_cache *c = calloc(1, sizeof *c);
    if (!c || !(c->copy = malloc(bytes ? bytes : 1))) {
        free(c);
        return dsa_fail(DSA_NOMEM, "cuda backend: host array cache");
    }
    memcpy(c->copy, p, bytes);
    if ((err = DSA_CUDA_CHECK(cudaMalloc(&c->dev, bytes ? bytes : 1))) ||
        (err = DSA_CUDA_CHECK(cudaMemcpy(c->dev, p, bytes, cudaMemcpyHostToDevice)))) {
        if (c->dev)
            cudaFree(c->dev);
        free(c->copy);
        free(c);
        return err;
    }
    c->host = key;
    c->bytes = bytes;
    c->next = be->ptrs;
    be->ptrs = c;
    *out = c->dev;
    return DSA_OK;
}

dsa_err dsa_cuda_host_array(dsa_cuda_backend *be, const void *p, size_t bytes, const void **out)
{
    *out = NULL;
    if (!p)
        return DSA_OK;
    struct cudaPointerAttributes a;
    if (cudaPointerGetAttributes(&a, p) == cudaSuccess &&
        (a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged)) {
        *out = p;
        return DSA_OK;
    }
    (void)cudaGetLastError();
    return dsa_cuda_host_array_keyed(be, p, p, bytes, out);
}

void dsa_cuda_ptr_cache_free(dsa_cuda_backend *be)
{
    while (be->ptrs) {
        dsa_cuda_ptr_cache *c = be->ptrs;
        be->ptrs = c->next;
        cudaFree(c->dev);
        free(c->copy);
        free(c);
    }
}

/* ---- Weights -------------------------------------------------------------- */

/* Copies the slice's rows compactly (row stride cols rounded up to 16
 * elements, so cuBLASLt's 16-byte rule holds) and, for FP8, the scale
 * blocks the slice touches, repacked as [row blocks][scale_ld] with
 * scale_ld a multiple of 4 and the origin reduced into the first block. */
static dsa_err cu_weight_prepare_plain(dsa_backend *be_, dsa_weight *w)
{
    dsa_cuda_backend *be = dsa_cuda_be(be_);
    dsa_err err = not_while_capturing(be, "weight_prepare");
    if (err)
        return err;
    size_t es = dsa_dtype_size(w->dtype);
    if (w->dtype != DSA_DTYPE_F32 && w->dtype != DSA_DTYPE_F16 && w->dtype != DSA_DTYPE_BF16 &&
        w->dtype != DSA_DTYPE_F8_E4M3)
        return dsa_fail(DSA_DTYPE, "cuda backend: weight dtype %s", dsa_dtype_name(w->dtype));
    if (w->dtype == DSA_DTYPE_F8_E4M3 && (!w->scale || w->block_rows <= 0 || w->block_cols <= 0))
        return dsa_fail(DSA_INVAL, "cuda backend: FP8 weight without block scales");
    if (w->rows < 1 || w->cols < 1)
        return dsa_fail(DSA_SHAPE, "cuda backend: empty weight %lldx%lld", (long long)w->rows,
                        (long long)w->cols);
    int64_t ld = (w->cols + 15) & ~(int64_t)15;
    void *data = NULL;
    float *scale = NULL, *hs = NULL;
    if ((err = DSA_CUDA_CHECK(cudaMalloc(&data, (size_t)(w->rows * ld) * es))))
        return err;
    if (ld != w->cols &&
        (err = DSA_CUDA_CHECK(cudaMemset(data, 0, (size_t)(w->rows * ld) * es))))
        goto fail;
    if ((err = DSA_CUDA_CHECK(cudaMemcpy2D(data, (size_t)ld * es, w->data, (size_t)w->ld * es,
                                           (size_t)w->cols * es, (size_t)w->rows,
                                           cudaMemcpyHostToDevice))))
        goto fail;
    int64_t row0 = 0, col0 = 0, scale_ld = 0;
    if (w->dtype == DSA_DTYPE_F8_E4M3) {
        int64_t br = w->block_rows, bc = w->block_cols;
        int64_t rb0 = w->row0 / br, rb1 = (w->row0 + w->rows - 1) / br;
        int64_t cb0 = w->col0 / bc, cb1 = (w->col0 + w->cols - 1) / bc;
        int64_t nr = rb1 - rb0 + 1, nc = cb1 - cb0 + 1;
        scale_ld = (nc + 3) & ~(int64_t)3;
        hs = calloc((size_t)(nr * scale_ld), sizeof *hs);
        if (!hs) {
            err = dsa_fail(DSA_NOMEM, "cuda backend: scale staging");
            goto fail;
        }
        for (int64_t r = 0; r < nr; r++)
            for (int64_t c = 0; c < nc; c++)
                hs[r * scale_ld + c] = w->scale[(rb0 + r) * w->scale_ld + cb0 + c];
        if ((err = DSA_CUDA_CHECK(cudaMalloc((void **)&scale, (size_t)(nr * scale_ld) * sizeof *hs))) ||
            (err = DSA_CUDA_CHECK(cudaMemcpy(scale, hs, (size_t)(nr * scale_ld) * sizeof *hs,
                                             cudaMemcpyHostToDevice))))
            goto fail;
        free(hs);
        hs = NULL;
        row0 = w->row0 - rb0 * br;
        col0 = w->col0 - cb0 * bc;
    }
    w->data = data;
    w->scale = scale;
    w->ld = ld;
    w->scale_ld = scale_ld;
    w->row0 = row0;
    w->col0 = col0;
    return DSA_OK;
fail:
    free(hs);
    if (scale)
        cudaFree(scale);
    cudaFree(data);
    return err;
}

/* AWQ int4 weights (dtype I32) are dequantised to BF16 on the host and
 * uploaded as BF16, so the linears run through the BF16 path (cuBLASLt);
 * the memory is BF16's, not int4's: an int4 GEMM on the device is a later
 * issue.  Compiled, not yet run on a GPU. */
static dsa_err cu_weight_prepare(dsa_backend *be_, dsa_weight *w)
{
    if (w->dtype != DSA_DTYPE_I32 || !w->awq_scales)
        return cu_weight_prepare_plain(be_, w);
    uint16_t *deq = malloc((size_t)(w->rows * w->cols) * sizeof *deq);
    if (!deq)
        return dsa_fail(DSA_NOMEM, "cuda backend: AWQ dequantisation of %lldx%lld",
                        (long long)w->rows, (long long)w->cols);
    for (int64_t i = 0; i < w->rows; i++)
        for (int64_t j = 0; j < w->cols; j++)
            deq[i * w->cols + j] = dsa_f32_to_bf16(dsa_weight_get(w, i, j));
    dsa_weight b = {.dtype = DSA_DTYPE_BF16, .rows = w->rows, .cols = w->cols, .ld = w->cols,
                    .data = deq};
    dsa_err err = cu_weight_prepare_plain(be_, &b);
    free(deq);
    if (!err)
        *w = b;
    return err;
}

static void cu_weight_release(dsa_backend *be_, dsa_weight *w)
{
    dsa_cuda_backend *be = dsa_cuda_be(be_);
    (void)DSA_CUDA_CHECK(cudaStreamSynchronize(be->stream));
    if (w->data)
        (void)DSA_CUDA_CHECK(cudaFree((void *)w->data));
    if (w->scale)
        (void)DSA_CUDA_CHECK(cudaFree((void *)w->scale));
    w->data = NULL;
    w->scale = NULL;
}

/* ---- Graphs --------------------------------------------------------------- */

static dsa_err cu_graph_begin(dsa_backend *be_)
{
    dsa_cuda_backend *be = dsa_cuda_be(be_);
    if (be->capturing)
        return dsa_fail(DSA_INVAL, "cuda backend: graph capture already running");
    dsa_err err = DSA_CUDA_CHECK(cudaStreamBeginCapture(be->stream,
                                                        cudaStreamCaptureModeThreadLocal));
    if (!err)
        be->capturing = 1;
    return err;
}

static dsa_err cu_graph_end(dsa_backend *be_, int64_t key)
{
    dsa_cuda_backend *be = dsa_cuda_be(be_);
    if (!be->capturing)
        return dsa_fail(DSA_INVAL, "cuda backend: graph_end without graph_begin");
    be->capturing = 0;
    cudaGraph_t g = NULL;
    cudaGraphExec_t exec = NULL;
    dsa_err err = DSA_CUDA_CHECK(cudaStreamEndCapture(be->stream, &g));
    if (err)
        return err;
    err = DSA_CUDA_CHECK(cudaGraphInstantiate(&exec, g, 0));
    (void)DSA_CUDA_CHECK(cudaGraphDestroy(g));
    if (err)
        return err;
    for (int i = 0; i < be->n_graphs; i++)
        if (be->graphs[i].key == key) {
            (void)DSA_CUDA_CHECK(cudaGraphExecDestroy(be->graphs[i].exec));
            be->graphs[i].exec = exec;
            return DSA_OK;
        }
    if (be->n_graphs == be->cap_graphs) {
        int cap = be->cap_graphs ? 2 * be->cap_graphs : 16;
        dsa_cuda_graph *ng = realloc(be->graphs, (size_t)cap * sizeof *ng);
        if (!ng) {
            (void)DSA_CUDA_CHECK(cudaGraphExecDestroy(exec));
            return dsa_fail(DSA_NOMEM, "cuda backend: graph table");
        }
        be->graphs = ng;
        be->cap_graphs = cap;
    }
    be->graphs[be->n_graphs].key = key;
    be->graphs[be->n_graphs].exec = exec;
    be->n_graphs++;
    return DSA_OK;
}

static dsa_err cu_graph_replay(dsa_backend *be_, int64_t key)
{
    dsa_cuda_backend *be = dsa_cuda_be(be_);
    for (int i = 0; i < be->n_graphs; i++)
        if (be->graphs[i].key == key)
            return DSA_CUDA_CHECK(cudaGraphLaunch(be->graphs[i].exec, be->stream));
    return dsa_fail(DSA_NOTFOUND, "cuda backend: no graph %lld", (long long)key);
}

/* ---- Creation ------------------------------------------------------------- */

static void cu_destroy(dsa_backend *be_)
{
    dsa_cuda_backend *be = dsa_cuda_be(be_);
    if (be->stream) {
        if (be->capturing) {
            cudaGraph_t g = NULL;
            (void)cudaStreamEndCapture(be->stream, &g);
            if (g)
                cudaGraphDestroy(g);
        }
        (void)DSA_CUDA_CHECK(cudaStreamSynchronize(be->stream));
    }
    for (int i = 0; i < be->n_graphs; i++)
        cudaGraphExecDestroy(be->graphs[i].exec);
    free(be->graphs);
    dsa_cuda_plans_free(be);
    dsa_cuda_ptr_cache_free(be);
    for (int s = 0; s < DSA_CUDA_SCR_COUNT; s++)
        if (be->scr[s])
            cudaFree(be->scr[s]);
    if (be->pinned)
        cudaFreeHost(be->pinned);
    if (be->lt_ws)
        cudaFree(be->lt_ws);
    if (be->lt)
        cublasLtDestroy(be->lt);
    if (be->stream)
        cudaStreamDestroy(be->stream);
    free(be);
}

static const dsa_backend_ops cuda_ops = {
    .name = "cuda",
    .destroy = cu_destroy,
    .alloc = cu_alloc,
    .free = cu_free,
    .upload = cu_upload,
    .download = cu_download,
    .copy = cu_copy,
    .act_from_f32 = dsa_cuda_act_from_f32,
    .act_to_f32 = dsa_cuda_act_to_f32,
    .weight_prepare = cu_weight_prepare,
    .weight_release = cu_weight_release,
    .embed = dsa_cuda_embed,
    .rmsnorm = dsa_cuda_rmsnorm,
    .linear = dsa_cuda_linear,
    .rope = dsa_cuda_rope,
    .kv_store = dsa_cuda_kv_store,
    .mla_attn = dsa_cuda_mla_attn,
    .mla_absorb_q = dsa_cuda_mla_absorb_q,
    .mla_absorb_o = dsa_cuda_mla_absorb_o,
    .silu_mul = dsa_cuda_silu_mul,
    .add = dsa_cuda_add,
    .router = dsa_cuda_router,
    .moe = dsa_cuda_moe,
    .sample = dsa_cuda_sample,
    .logit_ctl = dsa_cuda_logit_ctl,
    .mask = dsa_cuda_mask,
    .count_add = dsa_cuda_count_add,
    .penalties = dsa_cuda_penalties,
    .logprobs = dsa_cuda_logprobs,
    .gqa_attn = dsa_cuda_gqa_attn,
    .bias_add = dsa_cuda_bias_add,
    .vocab_gather = dsa_cuda_vocab_gather,
    .mha_prefill = dsa_cuda_mha_prefill,
    .sync = cu_sync,
    .graph_begin = cu_graph_begin,
    .graph_end = cu_graph_end,
    .graph_replay = cu_graph_replay,
};

#define DSA_CUDA_LT_WORKSPACE (32u << 20)

dsa_err dsa_backend_cuda_create(int device, double mem_fraction, dsa_backend **out)
{
    *out = NULL;
    int n = dsa_cuda_device_count();
    if (device < 0 || device >= n)
        return dsa_fail(DSA_NOTFOUND, "cuda backend: device %d of %d", device, n);
    if (!(mem_fraction > 0.0 && mem_fraction <= 1.0))
        return dsa_fail(DSA_RANGE, "cuda backend: memory fraction %g outside (0, 1]", mem_fraction);
    dsa_cuda_backend *be = calloc(1, sizeof *be);
    if (!be)
        return dsa_fail(DSA_NOMEM, "cuda backend");
    be->base.ops = &cuda_ops;
    be->base.act_dtype = DSA_DTYPE_BF16;
    be->base.act_size = 2;
    be->base.mha_prefill_on = 1; /* FA3 for prompt chunks >= DSA_MHA_PREFILL_MIN */
    be->device = device;
    be->mem_fraction = mem_fraction;
    be->last_path = "none";
    be->last_attn_path = "none";
    const char *nolt = getenv("DSA_CUDA_NO_LT");
    be->lt_disabled = nolt && *nolt && strcmp(nolt, "0") != 0;
    const char *mla = getenv("DSA_CUDA_MLA");
    be->mla_portable = mla && strcmp(mla, "portable") == 0;
    dsa_err err;
    size_t free_b = 0;
    if ((err = DSA_CUDA_CHECK(cudaSetDevice(device))) ||
        (err = DSA_CUDA_CHECK(cudaDeviceGetAttribute(&be->n_sm, cudaDevAttrMultiProcessorCount,
                                                     device))) ||
        (err = DSA_CUDA_CHECK(cudaMemGetInfo(&free_b, &be->mem_total))) ||
        (err = DSA_CUDA_CHECK(cudaStreamCreateWithFlags(&be->stream, cudaStreamNonBlocking))) ||
        (err = DSA_CUBLAS_CHECK(cublasLtCreate(&be->lt))) ||
        (err = DSA_CUDA_CHECK(cudaMalloc(&be->lt_ws, DSA_CUDA_LT_WORKSPACE))))
        goto fail;
    be->lt_ws_bytes = DSA_CUDA_LT_WORKSPACE;
    dsa_cuda_lt_selftest(be);
    /* The norms quantise for the FP8 linears only where a GEMM reads their
     * codes: cuBLASLt's path in the layout its self-test settled (CUTLASS
     * too when that layout is K-major).  With the FP8 path off the linears
     * take the dequantising kernel, which reads x, so the norm's extra
     * writes would be wasted. */
    be->base.norm_quant = be->lt_fp8;
    DSA_INFO("cuda backend: device %d, %d SMs, %.1f GiB, cuBLASLt FP8 block-scaled: %s", device,
             be->n_sm, (double)be->mem_total / (1u << 30),
             be->lt_fp8 ? "on" : (be->lt_disabled ? "off (DSA_CUDA_NO_LT)" : "off (self-test)"));
    *out = &be->base;
    return DSA_OK;
fail:
    cu_destroy(&be->base);
    return err;
}

size_t dsa_cuda_kv_bytes(dsa_backend *be_, size_t reserve_bytes)
{
    dsa_cuda_backend *be = dsa_cuda_be(be_);
    size_t free_b = 0, total = 0;
    if (DSA_CUDA_CHECK(cudaMemGetInfo(&free_b, &total)))
        return 0;
    double cap = be->mem_fraction * (double)total;
    double used = (double)(total - free_b);
    double left = cap - used - (double)reserve_bytes;
    if (left > (double)free_b - (double)reserve_bytes)
        left = (double)free_b - (double)reserve_bytes;
    return left > 0 ? (size_t)left : 0;
}

const char *dsa_cuda_last_linear_path(dsa_backend *be)
{
    return dsa_cuda_be(be)->last_path;
}

const char *dsa_cuda_last_attn_path(dsa_backend *be)
{
    return dsa_cuda_be(be)->last_attn_path;
}

int dsa_cuda_lt_fp8_enabled(dsa_backend *be)
{
    return dsa_cuda_be(be)->lt_fp8;
}

void *dsa_cuda_stream(dsa_backend *be)
{
    return (void *)dsa_cuda_be(be)->stream;
}
