/* test_awq_int8_model.c - --cpu-int8-activations on whole models: the
 * golden AWQ checkpoints (tiny-awq: DeepSeek-V3 shape, group 32;
 * qwen2-awq: group 32; llama-awq: group 64) run with int8 activations
 * against the reference's F32 logits (tests/data/golden, transformers on
 * the dequantised weights), the reference's greedy tokens fed back:
 *   - every AWQ linear was repacked (the path really ran);
 *   - the logits rows within a relative L2 bound (measured 2-3x below it;
 *     one row in 50 may miss it, see below) and the teacher-forced argmax
 *     agreeing on most rows;
 *   - dsa-generate's greedy text with the option shares a long prefix with
 *     the default's, and the option refuses a value naming itself. */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "tests/support.h"
#include "worker/model.h"

enum { BLOCK = 16, N_SEQ_MAX = 8 };

/* Relative L2 bound per logits row.  Measured worst rows, 2026-12-07:
 * qwen2-awq 0.012, llama-awq 0.014; tiny-awq below it but for one row. */
#define INT8_TOL 0.03

typedef struct ref {
    int n_seq;
    int *prompt[N_SEQ_MAX], n_prompt[N_SEQ_MAX], *greedy[N_SEQ_MAX], n_greedy[N_SEQ_MAX];
    long long off[N_SEQ_MAX];
    int64_t vocab;
    float *logits;
} ref;

static int *ints(const cJSON *a, int *n)
{
    *n = cJSON_GetArraySize(a);
    int *v = malloc((size_t)(*n > 0 ? *n : 1) * sizeof *v);
    for (int i = 0; i < *n; i++)
        v[i] = cJSON_GetArrayItem(a, i)->valueint;
    return v;
}

static void ref_load(const char *dir, ref *r)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/golden.json", dir);
    char *text = dsa_test_read_file(path, NULL);
    cr_assert_not_null(text, "%s", path);
    cJSON *j = cJSON_Parse(text);
    free(text);
    r->vocab = (int64_t)cJSON_GetObjectItem(j, "vocab_size")->valuedouble;
    const cJSON *seqs = cJSON_GetObjectItem(j, "sequences");
    r->n_seq = cJSON_GetArraySize(seqs);
    cr_assert(r->n_seq >= 1 && r->n_seq <= N_SEQ_MAX);
    for (int s = 0; s < r->n_seq; s++) {
        const cJSON *q = cJSON_GetArrayItem(seqs, s);
        r->prompt[s] = ints(cJSON_GetObjectItem(q, "prompt"), &r->n_prompt[s]);
        r->greedy[s] = ints(cJSON_GetObjectItem(q, "greedy"), &r->n_greedy[s]);
        r->off[s] = (long long)cJSON_GetObjectItem(q, "logits_offset")->valuedouble;
    }
    cJSON_Delete(j);
    snprintf(path, sizeof path, "%s/logits.bin", dir);
    r->logits = (float *)dsa_test_read_file(path, NULL);
    cr_assert_not_null(r->logits, "%s", path);
}

static void ref_free(ref *r)
{
    for (int s = 0; s < r->n_seq; s++) {
        free(r->prompt[s]);
        free(r->greedy[s]);
    }
    free(r->logits);
}

static int argmax(const float *x, int64_t n)
{
    int b = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[b])
            b = (int)i;
    return b;
}

/* Runs the checkpoint with int8 activations, prompts prefilled in one
 * batch then the reference's greedy tokens fed back one step at a time;
 * returns the worst relative L2 and counts argmax agreement. */
static double run_int8(const char *name, int *agree, int *rows, int *over)
{
    char full[256];
    snprintf(full, sizeof full, "golden/%s", name);
    char *dir = dsa_test_data_path(full);
    ref r;
    ref_load(dir, &r);
    dsa_backend *be = NULL;
    dsa_weights *w = NULL;
    dsa_model *m = NULL;
    cr_assert_eq(dsa_backend_cpu_create(2, &be), DSA_OK);
    dsa_backend_cpu_set_int8_activations(be, 1);
    cr_assert_eq(dsa_weights_load(dir, NULL, &w), DSA_OK, "%s", dsa_errmsg());
    cr_assert_eq(dsa_weights_prepare(w, be), DSA_OK, "%s", dsa_errmsg());
    /* every AWQ linear of the layers has its repack */
    int n_awq = 0, n_rep = 0;
    for (int l = 0; l < w->shard.layer_end - w->shard.layer_begin; l++) {
        const dsa_layer_weights *lw = &w->layers[l];
        const dsa_weight *ws[] = {&lw->q_proj, &lw->q_a, &lw->q_b, &lw->kv_a, &lw->kv_b, &lw->o,
                                  &lw->k_proj, &lw->v_proj, &lw->gate, &lw->up, &lw->down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
            if (ws[i]->data && ws[i]->dtype == DSA_DTYPE_I32) {
                n_awq++;
                n_rep += ws[i]->awq8 != NULL;
            }
    }
    cr_assert(n_awq > 0, "%s: no AWQ linear", name);
    cr_assert_eq(n_rep, n_awq, "%s: %d of %d AWQ linears repacked", name, n_rep, n_awq);
    int64_t V = r.vocab, max_len = 0, T = 0;
    for (int s = 0; s < r.n_seq; s++) {
        if (r.n_prompt[s] + r.n_greedy[s] > max_len)
            max_len = r.n_prompt[s] + r.n_greedy[s];
        T += r.n_prompt[s];
    }
    int64_t mb = (max_len + BLOCK - 1) / BLOCK;
    int32_t *bt = malloc((size_t)(mb * r.n_seq) * sizeof *bt);
    for (int64_t i = 0; i < mb * r.n_seq; i++)
        bt[i] = (int32_t)i;
    dsa_model_params mp = {.n_blocks = mb * r.n_seq, .block_size = BLOCK, .max_blocks_per_seq = mb};
    cr_assert_eq(dsa_model_create(be, w, &mp, &m), DSA_OK, "%s", dsa_errmsg());
    int32_t *tok = malloc((size_t)T * 4), *pos = malloc((size_t)T * 4);
    int32_t *sq = malloc((size_t)T * 4), *lr = malloc((size_t)T * 4);
    float *logits = malloc((size_t)(T * V) * sizeof(float));
    int64_t t = 0;
    for (int s = 0; s < r.n_seq; s++)
        for (int i = 0; i < r.n_prompt[s]; i++, t++)
            tok[t] = r.prompt[s][i], pos[t] = i, sq[t] = s, lr[t] = (int32_t)t;
    dsa_batch b = {.n_tokens = T, .tokens = tok, .pos = pos, .seq = sq, .n_seqs = r.n_seq,
                   .block_tables = bt, .n_logits = T, .logit_rows = lr};
    cr_assert_eq(dsa_model_forward(m, &b, logits), DSA_OK, "%s", dsa_errmsg());
    double worst = 0;
    *agree = *rows = *over = 0;
    t = 0;
    for (int s = 0; s < r.n_seq; s++)
        for (int i = 0; i < r.n_prompt[s]; i++, t++) {
            const float *want = r.logits + r.off[s] + (int64_t)i * V;
            double e = dsa_test_rel_l2(logits + t * V, want, V);
            *over += e >= INT8_TOL;
            worst = e > worst ? e : worst;
            *agree += argmax(logits + t * V, V) == argmax(want, V);
            ++*rows;
        }
    for (int j = 0; j + 1 < r.n_greedy[0]; j++) {
        for (int s = 0; s < r.n_seq; s++)
            tok[s] = r.greedy[s][j], pos[s] = r.n_prompt[s] + j, sq[s] = s, lr[s] = s;
        b = (dsa_batch){.n_tokens = r.n_seq, .tokens = tok, .pos = pos, .seq = sq,
                        .n_seqs = r.n_seq, .block_tables = bt, .n_logits = r.n_seq,
                        .logit_rows = lr};
        cr_assert_eq(dsa_model_forward(m, &b, logits), DSA_OK, "%s", dsa_errmsg());
        for (int s = 0; s < r.n_seq; s++) {
            const float *want = r.logits + r.off[s] + (int64_t)(r.n_prompt[s] + j) * V;
            double e = dsa_test_rel_l2(logits + s * V, want, V);
            *over += e >= INT8_TOL;
            worst = e > worst ? e : worst;
            *agree += argmax(logits + s * V, V) == r.greedy[s][j + 1];
            ++*rows;
        }
    }
    free(tok);
    free(pos);
    free(sq);
    free(lr);
    free(logits);
    free(bt);
    dsa_model_destroy(m);
    dsa_weights_release(w, be);
    dsa_weights_free(w);
    dsa_backend_destroy(be);
    ref_free(&r);
    free(dir);
    return worst;
}

Test(awq_int8_model, logits_near_reference, .timeout = 300)
{
    static const char *names[] = {"tiny-awq", "qwen2-awq", "llama-awq"};
    for (int i = 0; i < 3; i++) {
        int agree, rows, over;
        double worst = run_int8(names[i], &agree, &rows, &over);
        fprintf(stderr, "%s with int8 activations: worst logits rel L2 %.3g, %d rows of %d "
                "above %g, argmax agrees on %d\n", names[i], worst, over, rows, INT8_TOL, agree);
        /* one row in 50 may exceed it: tiny-awq is MoE, and a perturbation
         * that moves a near-tied router choice (its golden data's
         * router_min_margin) changes that row's experts (measured: 1 row of
         * 129, decode step 23 of prompt 0, rel L2 0.59) */
        cr_expect(over * 50 <= rows, "%s: %d rows of %d above rel L2 %g", names[i], over, rows,
                  INT8_TOL);
        cr_expect(worst > 1e-4, "%s: rel L2 %g is the F32 path's: the int8 path did not run",
                  names[i], worst);
        cr_expect(agree * 10 >= rows * 9, "%s: argmax agrees on %d of %d rows", names[i],
                  agree, rows);
    }
}

static int run(const char *cmd, char **out)
{
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "%s", cmd);
    size_t cap = 1 << 16, n = 0, got;
    char *buf = malloc(cap);
    while ((got = fread(buf + n, 1, cap - n - 1, p)) > 0)
        n += got;
    buf[n] = '\0';
    int st = pclose(p);
    *out = buf;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *generate(const char *model, const char *args, int *rc)
{
    char *exe = dsa_test_build_path("tools/dsa-generate"), cmd[4096], *out;
    snprintf(cmd, sizeof cmd, "%s --model %s --quiet --threads 2 %s 2>&1", exe, model, args);
    *rc = run(cmd, &out);
    free(exe);
    return out;
}

/* Greedy text, option on against off: the common prefix of 32 tokens.
 * Measured 2026-12-07 over the 9 golden prompts: 32 tokens on 6, 24, 19
 * and 14 on the others (the tiny random models have near-tied logits). */
Test(awq_int8_model, greedy_text_close_to_default, .timeout = 300)
{
    static const char *names[] = {"golden/tiny-awq", "golden/qwen2-awq", "golden/llama-awq"};
    int full = 0, total = 0;
    for (int i = 0; i < 3; i++) {
        char *dir = dsa_test_data_path(names[i]);
        ref r;
        ref_load(dir, &r);
        for (int s = 0; s < r.n_seq; s++) {
            char args[2048] = "--max-tokens 32 --ignore-eos --prompt-ids ";
            for (int k = 0; k < r.n_prompt[s]; k++)
                snprintf(args + strlen(args), sizeof args - strlen(args), "%s%d", k ? "," : "",
                         r.prompt[s][k]);
            int rc0, rc1;
            char *a = generate(dir, args, &rc0);
            strcat(args, " --cpu-int8-activations");
            char *b = generate(dir, args, &rc1);
            cr_assert_eq(rc0, 0, "%s", a);
            cr_assert_eq(rc1, 0, "%s", b);
            int same = 0, ca = 0;
            for (size_t k = 0; a[k] && a[k] == b[k]; k++)
                if (a[k] == ',' || a[k] == '\n')
                    same = ++ca;
            fprintf(stderr, "%s prompt %d: int8 greedy shares %d of 32 tokens with the default\n",
                    names[i], s, same);
            cr_expect(same >= 8, "%s prompt %d: %d tokens in common\n%s%s", names[i], s, same, a, b);
            full += same == 32;
            total++;
            free(a);
            free(b);
        }
        ref_free(&r);
        free(dir);
    }
    fprintf(stderr, "int8 greedy equal to the default on %d of %d prompts\n", full, total);
    cr_expect(full * 2 >= total, "only %d of %d prompts equal", full, total);
}

Test(awq_int8_model, option_takes_no_value)
{
    char *dir = dsa_test_data_path("golden/llama-awq");
    int rc;
    char *out = generate(dir, "--prompt-ids 1,2 --cpu-int8-activations=on", &rc);
    cr_expect_neq(rc, 0);
    cr_expect(strstr(out, "--cpu-int8-activations") != NULL, "%s", out);
    free(out);
    free(dir);
}
