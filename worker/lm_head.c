/* lm_head.c - the optional FP8 or int8 copy of lm_head (--lm-head-dtype
 * fp8 / int8); see lm_head.h.
 *
 * The copy uses the checkpoint's own FP8 format (e4m3 with one F32 scale
 * per 128 x 128 block, W = e4m3 * scale, as DeepSeek-V3 stores its
 * linears), so every backend's FP8 linear runs it unchanged.  Each block's
 * scale is its largest |w| / 448 (e4m3's largest finite value), so no
 * element saturates.  The error check runs in the same pass: a few fixed
 * pseudo-random hidden states (uniform in [-1, 1] times the final norm's
 * weight, the scale real hidden states reach lm_head with) are multiplied
 * by both heads, and the largest logit difference and the argmax agreement
 * go to the log. */
#include "worker/lm_head.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

enum {
    LMH_BLOCK = 128,
    LMH_CHECK_ROWS = 4,         /* hidden states of the error check */
};

#define LMH_E4M3_MAX 448.0f

dsa_err dsa_lm_head_dtype_parse(const char *s, dsa_lm_head_dtype *out)
{
    if (!s || strcmp(s, "auto") == 0) {
        *out = DSA_LM_HEAD_AUTO;
        return DSA_OK;
    }
    if (strcmp(s, "fp8") == 0) {
        *out = DSA_LM_HEAD_FP8;
        return DSA_OK;
    }
    if (strcmp(s, "int8") == 0) {
        *out = DSA_LM_HEAD_INT8;
        return DSA_OK;
    }
    return dsa_fail(DSA_INVAL, "--lm-head-dtype: unknown value '%s' (auto, fp8 or int8)", s);
}

/* The check's hidden states h[t][c], deterministic. */
static void lmh_hidden(const dsa_weights *w, int64_t D, float *h)
{
    uint32_t st = 0x9e3779b9u;
    for (int64_t i = 0; i < LMH_CHECK_ROWS * D; i++) {
        st = st * 1664525u + 1013904223u;
        float u = (float)(st >> 8) / 8388608.0f - 1.0f;
        float g = w->final_norm.data ? dsa_weight_get(&w->final_norm, 0, i % D) : 1.0f;
        h[i] = u * g;
    }
}

/* dst[c] = W[i, c], exactly (F16 / BF16 / F32 rows read directly). */
static void lmh_row(const dsa_weight *w, int64_t i, float *dst)
{
    const char *row = (const char *)w->data + (size_t)(i * w->ld) * dsa_dtype_size(w->dtype);
    for (int64_t c = 0; c < w->cols; c++)
        switch (w->dtype) {
        case DSA_DTYPE_F16: dst[c] = dsa_f16_to_f32(((const uint16_t *)row)[c]); break;
        case DSA_DTYPE_BF16: dst[c] = dsa_bf16_to_f32(((const uint16_t *)row)[c]); break;
        case DSA_DTYPE_F32: dst[c] = ((const float *)row)[c]; break;
        default: dst[c] = dsa_weight_get(w, i, c); break;
        }
}

typedef struct lmh_check {
    float best_ref[LMH_CHECK_ROWS], best_q[LMH_CHECK_ROWS];
    int64_t arg_ref[LMH_CHECK_ROWS], arg_q[LMH_CHECK_ROWS];
    float max_diff, max_abs;
} lmh_check;

static void lmh_check_rows(const float *src, const float *deq, int64_t r0, int64_t nr, int64_t D,
                           const float *h, lmh_check *ck);

/* Quantises rows [r0, r0 + nr) (src: their values, [nr][D]) into q/scale
 * and adds them to the check. */
static void lmh_block_rows(const float *src, int64_t r0, int64_t nr, int64_t D, uint8_t *q,
                           float *scale, int64_t scale_ld, const float *h, float *deq,
                           lmh_check *ck)
{
    for (int64_t c0 = 0; c0 < D; c0 += LMH_BLOCK) {
        int64_t nc = D - c0 < LMH_BLOCK ? D - c0 : LMH_BLOCK;
        float amax = 0.0f;
        for (int64_t r = 0; r < nr; r++)
            for (int64_t c = 0; c < nc; c++)
                amax = fmaxf(amax, fabsf(src[r * D + c0 + c]));
        float s = amax > 0.0f ? amax / LMH_E4M3_MAX : 1.0f;
        scale[(r0 / LMH_BLOCK) * scale_ld + c0 / LMH_BLOCK] = s;
        for (int64_t r = 0; r < nr; r++)
            for (int64_t c = 0; c < nc; c++) {
                float v = src[r * D + c0 + c] / s;
                if (v > LMH_E4M3_MAX)   /* rounding of amax / s */
                    v = LMH_E4M3_MAX;
                if (v < -LMH_E4M3_MAX)
                    v = -LMH_E4M3_MAX;
                uint8_t b = dsa_f32_to_e4m3(v);
                q[(r0 + r) * D + c0 + c] = b;
                deq[r * D + c0 + c] = dsa_e4m3_to_f32(b) * s;
            }
    }
    lmh_check_rows(src, deq, r0, nr, D, h, ck);
}

/* Adds rows [r0, r0 + nr) (stored src, copy deq, [nr][D]) to the check. */
static void lmh_check_rows(const float *src, const float *deq, int64_t r0, int64_t nr, int64_t D,
                           const float *h, lmh_check *ck)
{
    for (int64_t r = 0; r < nr; r++) {
        /* all the check's sums of a row at once: independent chains */
        double a[LMH_CHECK_ROWS] = {0}, b[LMH_CHECK_ROWS] = {0};
        for (int64_t c = 0; c < D; c++) {
            double x = src[r * D + c], y = deq[r * D + c];
            for (int t = 0; t < LMH_CHECK_ROWS; t++) {
                a[t] += (double)h[t * D + c] * x;
                b[t] += (double)h[t * D + c] * y;
            }
        }
        for (int t = 0; t < LMH_CHECK_ROWS; t++) {
            float fa = (float)a[t], fb = (float)b[t];
            ck->max_diff = fmaxf(ck->max_diff, fabsf(fa - fb));
            ck->max_abs = fmaxf(ck->max_abs, fabsf(fa));
            if (r0 + r == 0 || fa > ck->best_ref[t]) {
                ck->best_ref[t] = fa;
                ck->arg_ref[t] = r0 + r;
            }
            if (r0 + r == 0 || fb > ck->best_q[t]) {
                ck->best_q[t] = fb;
                ck->arg_q[t] = r0 + r;
            }
        }
    }
}

/* What both copies need while they are made: a block of source rows and
 * its dequantised copy, the check's hidden states and its running result. */
typedef struct lmh_work {
    float *src, *deq, *h;
    lmh_check ck;
    double t0;
} lmh_work;

static void lmh_work_free(lmh_work *wk)
{
    free(wk->src);
    free(wk->deq);
    free(wk->h);
}

static dsa_err lmh_work_init(lmh_work *wk, dsa_weights *w, const char *opt, int64_t V, int64_t D)
{
    *wk = (lmh_work){.src = malloc((size_t)(LMH_BLOCK * D) * sizeof(float)),
                     .deq = malloc((size_t)(LMH_BLOCK * D) * sizeof(float)),
                     .h = malloc((size_t)(LMH_CHECK_ROWS * D) * sizeof(float))};
    if (!wk->src || !wk->deq || !wk->h) {
        lmh_work_free(wk);
        return dsa_fail(DSA_NOMEM, "--lm-head-dtype %s: %lld x %lld copy", opt, (long long)V,
                        (long long)D);
    }
    lmh_hidden(w, D, wk->h);
    wk->t0 = dsa_time_now();
    return DSA_OK;
}

/* Logs the copy's size and its error against the stored head, then frees. */
static void lmh_work_done(lmh_work *wk, const dsa_weights *w, const dsa_weight *head,
                          const char *copy, double mb_per_token)
{
    int agree = 0;
    for (int t = 0; t < LMH_CHECK_ROWS; t++)
        agree += wk->ck.arg_ref[t] == wk->ck.arg_q[t];
    int64_t V = head->rows, D = head->cols;
    DSA_INFO("lm_head: %s of the %s head, vocab rows [%lld, %lld): %.1f MB read per token "
             "instead of %.1f MB; against %s over %d test hidden states: max |logit diff| "
             "%.4g (largest |logit| %.4g), argmax agrees %d/%d (%.1fs)",
             copy, dsa_dtype_name(head->dtype), (long long)w->vocab_begin,
             (long long)(w->vocab_begin + V), mb_per_token,
             (double)(V * D) * (double)dsa_dtype_size(head->dtype) / 1e6,
             dsa_dtype_name(head->dtype), LMH_CHECK_ROWS, wk->ck.max_diff, wk->ck.max_abs, agree,
             LMH_CHECK_ROWS, dsa_time_now() - wk->t0);
    lmh_work_free(wk);
}

dsa_err dsa_weights_lm_head_fp8(dsa_weights *w)
{
    dsa_weight *head = &w->lm_head;
    if (!w->has_head || !head->data)
        return DSA_OK;
    if (head->dtype == DSA_DTYPE_F8_E4M3) {
        DSA_INFO("lm_head: already FP8 e4m3 in the checkpoint; --lm-head-dtype fp8 changes nothing");
        return DSA_OK;
    }
    if (head->dtype == DSA_DTYPE_I32)
        return dsa_fail(DSA_UNSUPPORTED, "--lm-head-dtype fp8: lm_head is AWQ int4 here");
    int64_t V = head->rows, D = head->cols;
    int64_t sr = (V + LMH_BLOCK - 1) / LMH_BLOCK, sc = (D + LMH_BLOCK - 1) / LMH_BLOCK;
    uint8_t *q = malloc((size_t)(V * D));
    float *scale = malloc((size_t)(sr * sc) * sizeof(float));
    lmh_work wk;
    dsa_err err = q && scale ? lmh_work_init(&wk, w, "fp8", V, D)
                             : dsa_fail(DSA_NOMEM, "--lm-head-dtype fp8: %lld x %lld copy",
                                        (long long)V, (long long)D);
    if (err) {
        free(q);
        free(scale);
        return err;
    }
    for (int64_t r0 = 0; r0 < V; r0 += LMH_BLOCK) {
        int64_t nr = V - r0 < LMH_BLOCK ? V - r0 : LMH_BLOCK;
        for (int64_t r = 0; r < nr; r++)
            lmh_row(head, r0 + r, wk.src + r * D);
        lmh_block_rows(wk.src, r0, nr, D, q, scale, sc, wk.h, wk.deq, &wk.ck);
    }
    lmh_work_done(&wk, w, head, "FP8 e4m3 copy (128x128 block scales)", (double)(V * D) / 1e6);
    w->bytes -= (uint64_t)(V * D) * (dsa_dtype_size(head->dtype) - 1);
    free(w->lm_head_q);
    free(w->lm_head_scale);
    w->lm_head_q = q;
    w->lm_head_scale = scale;
    *head = (dsa_weight){.dtype = DSA_DTYPE_F8_E4M3, .rows = V, .cols = D, .ld = D, .data = q,
                         .scale = scale, .scale_ld = sc, .block_rows = LMH_BLOCK,
                         .block_cols = LMH_BLOCK};
    return DSA_OK;
}

/* The int8 copy: one F32 scale per vocab row (its largest |w| / 127),
 * q = round(w / scale); rows padded with zeros to a multiple of 32 inputs
 * (the CPU kernel's blocks).  The check compares the dequantised copy
 * against the stored head in double precision, as for FP8. */
dsa_err dsa_weights_lm_head_int8(dsa_weights *w)
{
    dsa_weight *head = &w->lm_head;
    if (!w->has_head || !head->data)
        return DSA_OK;
    if (head->dtype == DSA_DTYPE_I32 || head->dtype == DSA_DTYPE_F8_E4M3)
        return dsa_fail(DSA_UNSUPPORTED, "--lm-head-dtype int8: lm_head is %s here",
                        head->dtype == DSA_DTYPE_I32 ? "AWQ int4" : "FP8");
    int64_t V = head->rows, D = head->cols, ld = (D + 31) / 32 * 32;
    int8_t *q = calloc((size_t)(V * ld), 1);
    float *scale = malloc((size_t)V * sizeof(float));
    lmh_work wk;
    dsa_err err = q && scale ? lmh_work_init(&wk, w, "int8", V, D)
                             : dsa_fail(DSA_NOMEM, "--lm-head-dtype int8: %lld x %lld copy",
                                        (long long)V, (long long)D);
    if (err) {
        free(q);
        free(scale);
        return err;
    }
    float *src = wk.src, *deq = wk.deq;
    for (int64_t r0 = 0; r0 < V; r0 += LMH_BLOCK) {
        int64_t nr = V - r0 < LMH_BLOCK ? V - r0 : LMH_BLOCK;
        for (int64_t r = 0; r < nr; r++) {
            float *row = src + r * D, amax = 0.0f;
            lmh_row(head, r0 + r, row);
            for (int64_t c = 0; c < D; c++)
                amax = fmaxf(amax, fabsf(row[c]));
            float sc = amax > 0.0f ? amax / 127.0f : 1.0f, inv = amax > 0.0f ? 127.0f / amax : 0.0f;
            scale[r0 + r] = sc;
            for (int64_t c = 0; c < D; c++) {
                long v = lrintf(row[c] * inv);
                v = v > 127 ? 127 : v < -127 ? -127 : v;
                q[(r0 + r) * ld + c] = (int8_t)v;
                deq[r * D + c] = (float)v * sc;
            }
        }
        lmh_check_rows(src, deq, r0, nr, D, wk.h, &wk.ck);
    }
    lmh_work_done(&wk, w, head, "int8 copy (one scale per row)", (double)(V * (ld + 4)) / 1e6);
    w->bytes -= (uint64_t)(V * D) * dsa_dtype_size(head->dtype);
    w->bytes += (uint64_t)(V * (ld + 4));
    free(w->lm_head_q);
    free(w->lm_head_scale);
    w->lm_head_q = q;
    w->lm_head_scale = scale;
    *head = (dsa_weight){.dtype = DSA_DTYPE_I8, .rows = V, .cols = D, .ld = ld, .data = q,
                         .scale = scale, .scale_ld = 1, .block_rows = 1, .block_cols = ld};
    return DSA_OK;
}

dsa_err dsa_weights_lm_head_apply(dsa_weights *w, int dtype)
{
    switch ((dsa_lm_head_dtype)dtype) {
    case DSA_LM_HEAD_FP8: return dsa_weights_lm_head_fp8(w);
    case DSA_LM_HEAD_INT8: return dsa_weights_lm_head_int8(w);
    default: return DSA_OK;
    }
}
