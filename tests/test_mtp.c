/* test_mtp.c - the MTP module (worker/mtp.c) against the training tool's
 * PyTorch module (tools/golden/mtp_golden.py).
 *
 * tests/data/golden/<name>/mtp.json holds tokens (a prompt and the main
 * model's greedy continuation) and mtp_logits.bin the reference's float32
 * MTP logits at every position i < T-1 (input t[i+1] and h_i).  Two
 * checkpoints: tiny-mtp (dsa-mkmodel --mtp 1, random FP8 weights) and
 * dsa-tiny-r1-mtp (the trained models/dsa-tiny-r1).  The engine's order is
 * mirrored: a prefill chunk through the main model then its MTP rows, then
 * one position per step, on a paged cache with scattered blocks and a
 * block size that does not divide the lengths.  Tolerance: relative L2 per
 * row < 1e-4, as the main model's golden test.  With last_only the chunk's
 * MTP pass asks for its last row's logits alone, as a step does: the other
 * rows then only write their cache entries (dsa_mtp_hidden_row), which
 * every later position reads. */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support.h"
#include "worker/model.h"
#include "worker/mtp.h"

#define MTP_TOL 1e-4
#define BLOCK 8
#define CHUNK 11

static void run_mtp_golden(const char *name, int last_only)
{
    char rel[128], path[3000], model[1400];
    snprintf(rel, sizeof rel, "golden/%s", name);
    char *dir = dsa_test_data_path(rel);
    snprintf(path, sizeof path, "%s/mtp.json", dir);
    char *text = dsa_test_read_file(path, NULL);
    cr_assert_not_null(text, "cannot read %s", path);
    cJSON *j = cJSON_Parse(text);
    free(text);
    cr_assert_not_null(j, "%s: malformed JSON", path);
    snprintf(model, sizeof model, "%s/%s", dir, cJSON_GetObjectItem(j, "model_dir")->valuestring);
    const cJSON *ta = cJSON_GetObjectItem(j, "tokens");
    int T = cJSON_GetArraySize(ta);
    int64_t V = (int64_t)cJSON_GetObjectItem(j, "vocab_size")->valuedouble;
    cr_assert_eq(cJSON_GetObjectItem(j, "n_rows")->valueint, T - 1);
    int32_t *ids = malloc((size_t)T * sizeof *ids);
    for (int i = 0; i < T; i++)
        ids[i] = cJSON_GetArrayItem(ta, i)->valueint;
    cJSON_Delete(j);
    snprintf(path, sizeof path, "%s/mtp_logits.bin", dir);
    size_t len = 0;
    float *ref = (float *)dsa_test_read_file(path, &len);
    cr_assert_not_null(ref);
    cr_assert_eq(len, (size_t)(T - 1) * (size_t)V * sizeof(float), "%s: %zu bytes", path, len);

    dsa_backend *be = NULL;
    dsa_weights *w = NULL;
    dsa_model *m = NULL;
    dsa_mtp *mtp = NULL;
    cr_assert_eq(dsa_backend_cpu_create(2, &be), DSA_OK, "%s", dsa_errmsg());
    dsa_config c;
    snprintf(path, sizeof path, "%s/config.json", model);
    cr_assert_eq(dsa_config_load(path, &c), DSA_OK, "%s", dsa_errmsg());
    dsa_shard sh = {.tp_rank = 0, .tp_size = 1, .layer_begin = 0, .layer_end = c.n_layers,
                    .with_mtp = 1};
    cr_assert_eq(dsa_weights_load(model, &sh, &w), DSA_OK, "%s: %s", model, dsa_errmsg());
    cr_assert(w->has_mtp);
    cr_assert_eq(w->cfg.vocab_size, V);
    int64_t mb = (T + BLOCK - 1) / BLOCK, n_blocks = 2 * mb;
    int32_t *bt = malloc((size_t)mb * sizeof *bt);
    for (int64_t b = 0; b < mb; b++)
        bt[b] = (int32_t)(n_blocks - 1 - 2 * b); /* reversed, every other block */
    dsa_model_params mp = {.n_blocks = n_blocks, .block_size = BLOCK, .max_blocks_per_seq = mb};
    cr_assert_eq(dsa_model_create(be, w, &mp, &m), DSA_OK, "%s", dsa_errmsg());
    cr_assert_eq(dsa_mtp_create(be, w, &mp, &mtp), DSA_OK, "%s", dsa_errmsg());

    int32_t *pos = malloc((size_t)T * sizeof *pos), *sq = calloc((size_t)T, sizeof *sq);
    int32_t *rows = malloc((size_t)T * sizeof *rows), *next = malloc((size_t)T * sizeof *next);
    float *logits = malloc((size_t)T * (size_t)V * sizeof *logits);
    double worst = 0;
    /* main chunk [p0, p1), then its MTP positions [p0, min(p1, T-1)) */
    for (int p0 = 0, p1; p0 < T - 1; p0 = p1) {
        p1 = p0 == 0 ? CHUNK : p0 + 1;
        if (p1 > T)
            p1 = T;
        int n = p1 - p0;
        for (int i = 0; i < n; i++) {
            pos[i] = p0 + i;
            rows[i] = i;
        }
        dsa_batch b = {.n_tokens = n, .tokens = ids + p0, .pos = pos, .seq = sq, .n_seqs = 1,
                       .block_tables = bt, .n_logits = 0, .logit_rows = rows};
        cr_assert_eq(dsa_model_forward(m, &b, logits), DSA_OK, "%s", dsa_errmsg());
        int nm = p1 < T ? n : n - 1; /* position T-1 has no next token */
        for (int i = 0; i < nm; i++)
            next[i] = ids[p0 + i + 1];
        int first = last_only ? nm - 1 : 0; /* the first row with logits */
        dsa_mtp_batch mb_ = {.n_tokens = nm, .tokens = next, .pos = pos, .seq = sq, .n_seqs = 1,
                             .block_tables = bt, .h = dsa_model_hidden(m), .h_is_main = 1,
                             .h_rows = rows, .n_logits = nm - first, .logit_rows = rows + first};
        cr_assert_eq(dsa_mtp_forward(mtp, &mb_, logits), DSA_OK, "%s", dsa_errmsg());
        if (first > 0)
            cr_assert_eq(dsa_mtp_hidden_row(mtp, first), 0, "%s: the layer ran on every row",
                         name);
        for (int i = first; i < nm; i++) {
            double e = dsa_test_rel_l2(logits + (size_t)(i - first) * (size_t)V,
                                       ref + (size_t)(p0 + i) * (size_t)V, V);
            cr_expect(e < MTP_TOL, "%s position %d: rel L2 %.3g", name, p0 + i, e);
            worst = e > worst ? e : worst;
        }
    }
    cr_log_info("%s%s: %d MTP rows, worst rel L2 %.3g", name, last_only ? " (last rows)" : "",
                T - 1, worst);
    free(pos);
    free(sq);
    free(rows);
    free(next);
    free(logits);
    free(bt);
    free(ids);
    free(ref);
    free(dir);
    dsa_mtp_destroy(mtp);
    dsa_model_destroy(m);
    dsa_weights_free(w);
    dsa_backend_destroy(be);
}

Test(mtp, random_checkpoint_matches_pytorch, .timeout = 300)
{
    run_mtp_golden("tiny-mtp", 0);
}

Test(mtp, trained_checkpoint_matches_pytorch, .timeout = 300)
{
    run_mtp_golden("dsa-tiny-r1-mtp", 0);
}

/* The prompt chunk's rows before its last only store their cache entries;
 * the positions after it, which attend to them, still match. */
Test(mtp, cache_only_rows_match_pytorch, .timeout = 300)
{
    run_mtp_golden("tiny-mtp", 1);
    run_mtp_golden("dsa-tiny-r1-mtp", 1);
}

/* A checkpoint without the module: asking for it is a clear error. */
Test(mtp, missing_module_is_an_error)
{
    char *dir = dsa_test_data_path("golden/tiny-fp8");
    dsa_config c;
    char path[1200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    cr_assert_eq(dsa_config_load(path, &c), DSA_OK);
    dsa_shard sh = {.tp_rank = 0, .tp_size = 1, .layer_begin = 0, .layer_end = c.n_layers,
                    .with_mtp = 1};
    dsa_weights *w = NULL;
    cr_assert_neq(dsa_weights_load(dir, &sh, &w), DSA_OK);
    cr_assert_null(w);
    cr_assert(strstr(dsa_errmsg(), "num_nextn_predict_layers"), "message: %s", dsa_errmsg());
    free(dir);
}
