/* generate.c - dsa-generate: runs one prompt (token ids) through a
 * checkpoint on the CPU backend and prints the generated ids.
 *
 *   dsa-generate --model DIR (--prompt-ids 1,2,3 | --prompt TEXT) --max-tokens N
 *                [--temperature T --top-p P --top-k K --min-p M --seed S]
 *
 * With --prompt-ids, prints the generated ids comma-separated on stdout;
 * with --prompt, encodes the text with the checkpoint's tokenizer (BOS
 * added as its tokenizer_config says) and prints the generated text.
 * Timings go to stderr. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/options.h"
#include "common/tokenizer.h"
#include "worker/model.h"

typedef struct gen_opts {
    const char *model;
    const char *prompt_ids, *prompt;
    long long max_tokens;
    double temperature, top_p, min_p;
    long long top_k, seed, threads, block_size;
    int ignore_eos, quiet, int8_act;
} gen_opts;

#define OPT(name, type, field, lo, hi, def, meta, help, req) \
    {name, type, offsetof(gen_opts, field), lo, hi, def, meta, help, req}
static const dsa_option gen_options[] = {
    OPT("model", DSA_OPT_STRING, model, 0, 0, NULL, "DIR", "checkpoint directory (Hugging Face layout)", 1),
    OPT("prompt-ids", DSA_OPT_STRING, prompt_ids, 0, 0, NULL, "IDS", "prompt token ids, comma-separated (prints ids)", 0),
    OPT("prompt", DSA_OPT_STRING, prompt, 0, 0, NULL, "TEXT", "prompt text, encoded with the checkpoint's tokenizer (prints text)", 0),
    OPT("max-tokens", DSA_OPT_INT, max_tokens, 1, 1 << 20, "16", "N", "tokens to generate", 0),
    OPT("temperature", DSA_OPT_DOUBLE, temperature, 0, 100, "0", "T", "sampling temperature; 0 is greedy", 0),
    OPT("top-p", DSA_OPT_DOUBLE, top_p, 0, 1, "1", "P", "nucleus sampling mass", 0),
    OPT("top-k", DSA_OPT_INT, top_k, -1, 1 << 30, "-1", "K", "keep the K most likely tokens; -1 keeps all", 0),
    OPT("min-p", DSA_OPT_DOUBLE, min_p, 0, 1, "0", "M", "drop tokens below M times the top probability", 0),
    OPT("seed", DSA_OPT_INT, seed, 0, 9007199254740991.0, "0", "S", "random seed", 0),
    OPT("threads", DSA_OPT_INT, threads, 0, 1024, "0", "N", "CPU threads; 0 uses every core", 0),
    OPT("block-size", DSA_OPT_INT, block_size, 1, 4096, "64", "N", "KV cache block size in tokens", 0),
    OPT("ignore-eos", DSA_OPT_FLAG, ignore_eos, 0, 0, NULL, NULL, "keep generating after the end-of-sequence token", 0),
    OPT("cpu-int8-activations", DSA_OPT_FLAG, int8_act, 0, 0, NULL, NULL, "AWQ int4 linears with int8 activations (kernels/cpu/cpu_awq_int8.c)", 0),
    OPT("quiet", DSA_OPT_FLAG, quiet, 0, 0, NULL, NULL, "log warnings and errors only", 0),
};
#undef OPT
#define N_OPTIONS ((int)(sizeof gen_options / sizeof gen_options[0]))

/* Samples one token from host logits [vocab] through the backend. */
static dsa_err sample_one(dsa_backend *be, float *dev_logits, const float *logits, int64_t vocab,
                          const dsa_sample_row *row, int32_t *id)
{
    dsa_err err = be->ops->upload(be, dev_logits, logits, (size_t)vocab * sizeof(float));
    if (err)
        return err;
    dsa_sample_params sp = {.out_ids = id, .logits = dev_logits, .rows = row, .n_rows = 1,
                            .vocab = vocab};
    return be->ops->sample(be, &sp);
}

int main(int argc, char **argv)
{
    gen_opts o = {0};
    int help = 0, rc = 1;
    dsa_backend *be = NULL;
    dsa_weights *w = NULL;
    int prepared = 0;
    dsa_model *m = NULL;
    int *prompt = NULL, n_prompt = 0;
    dsa_tok *tok = NULL;
    int32_t *tokens = NULL, *pos = NULL, *seq = NULL, *bt = NULL, *out = NULL;
    float *logits = NULL, *dev_logits = NULL;

    dsa_err err = dsa_options_parse(gen_options, N_OPTIONS, &o, argc, argv, &help);
    if (help) {
        dsa_options_usage(stdout, "dsa-generate",
                          "Generates tokens from a DeepSeek-V3/R1 checkpoint on the CPU.",
                          gen_options, N_OPTIONS);
        return 0;
    }
    if (err) {
        fprintf(stderr, "dsa-generate: %s\n", dsa_errmsg());
        return 2;
    }
    dsa_log_setup(o.quiet ? DSA_LOG_WARN : DSA_LOG_INFO, 0);
    if (!o.prompt_ids == !o.prompt) {
        fprintf(stderr, "dsa-generate: give exactly one of --prompt-ids and --prompt\n");
        return 2;
    }
    if (o.prompt_ids &&
        (err = dsa_parse_int_list(o.prompt_ids, "--prompt-ids", &prompt, &n_prompt))) {
        fprintf(stderr, "dsa-generate: %s\n", dsa_errmsg());
        return 2;
    }
    if (o.prompt) {
        int32_t *ids = NULL;
        size_t n = 0;
        if ((err = dsa_tok_load(o.model, &tok)) ||
            (err = dsa_tok_encode(tok, o.prompt, strlen(o.prompt), 1, &ids, &n)))
            goto fail;
        prompt = malloc((n ? n : 1) * sizeof *prompt);
        if (!prompt) {
            free(ids);
            err = dsa_fail(DSA_NOMEM, "prompt");
            goto fail;
        }
        for (size_t i = 0; i < n; i++)
            prompt[i] = ids[i];
        n_prompt = (int)n;
        free(ids);
        if (n_prompt == 0) {
            err = dsa_fail(DSA_INVAL, "--prompt: the text encodes to no tokens");
            goto fail;
        }
    }
    if ((err = dsa_backend_cpu_create((int)o.threads, &be)) ||
        (err = dsa_weights_load(o.model, NULL, &w)))
        goto fail;
    if (o.int8_act) {
        dsa_backend_cpu_set_int8_activations(be, 1);
        if ((err = dsa_weights_prepare(w, be)))
            goto fail;
        prepared = 1;
    }
    int64_t V = w->cfg.vocab_size, total = n_prompt + o.max_tokens;
    if (total > w->cfg.max_position_embeddings) {
        err = dsa_fail(DSA_RANGE, "prompt (%d) + max tokens (%lld) exceeds the model's %lld "
                       "positions", n_prompt, o.max_tokens,
                       (long long)w->cfg.max_position_embeddings);
        goto fail;
    }
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= V) {
            err = dsa_fail(DSA_RANGE, "--prompt-ids: id %d is outside the vocabulary (0..%lld)",
                           prompt[i], (long long)V - 1);
            goto fail;
        }
    int64_t n_blocks = (total + o.block_size - 1) / o.block_size;
    dsa_model_params mp = {.n_blocks = n_blocks, .block_size = o.block_size,
                           .max_blocks_per_seq = n_blocks};
    if ((err = dsa_model_create(be, w, &mp, &m)))
        goto fail;
    tokens = malloc((size_t)total * sizeof *tokens);
    pos = malloc((size_t)total * sizeof *pos);
    seq = calloc((size_t)total, sizeof *seq);
    bt = malloc((size_t)n_blocks * sizeof *bt);
    out = malloc((size_t)o.max_tokens * sizeof *out);
    logits = malloc((size_t)V * sizeof *logits);
    if (!tokens || !pos || !seq || !bt || !out || !logits) {
        err = dsa_fail(DSA_NOMEM, "generation buffers");
        goto fail;
    }
    if ((err = be->ops->alloc(be, (size_t)V * sizeof(float), (void **)&dev_logits)))
        goto fail;
    for (int64_t i = 0; i < n_blocks; i++)
        bt[i] = (int32_t)i;
    for (int i = 0; i < n_prompt; i++) {
        tokens[i] = prompt[i];
        pos[i] = i;
    }

    dsa_sample_row row = {.temperature = (float)o.temperature, .top_p = (float)o.top_p,
                          .min_p = (float)o.min_p, .top_k = (int32_t)o.top_k,
                          .seed = (uint64_t)o.seed};
    double t0 = dsa_time_now(), t_first = 0;
    int64_t n_out = 0, cur = n_prompt;
    /* prefill: the whole prompt, logits of its last token */
    int32_t last = n_prompt - 1;
    dsa_batch b = {.n_tokens = n_prompt, .tokens = tokens, .pos = pos, .seq = seq, .n_seqs = 1,
                   .block_tables = bt, .n_logits = 1, .logit_rows = &last};
    while (n_out < o.max_tokens) {
        if ((err = dsa_model_forward(m, &b, logits)))
            goto fail;
        row.step = (uint64_t)n_out;
        int32_t id;
        if ((err = sample_one(be, dev_logits, logits, V, &row, &id)))
            goto fail;
        if (n_out == 0)
            t_first = dsa_time_now();
        out[n_out++] = id;
        if (id == w->cfg.eos_token_id && !o.ignore_eos)
            break;
        /* decode: one token at the next position */
        tokens[cur] = id;
        pos[cur] = (int32_t)cur;
        b = (dsa_batch){.n_tokens = 1, .tokens = &tokens[cur], .pos = &pos[cur], .seq = seq,
                        .n_seqs = 1, .block_tables = bt, .n_logits = 1, .logit_rows = seq};
        cur++;
    }
    double t1 = dsa_time_now();
    if (tok) {
        char *text = NULL;
        size_t len = 0;
        if ((err = dsa_tok_decode(tok, out, (size_t)n_out, 1, &text, &len)))
            goto fail;
        fwrite(text, 1, len, stdout);
        printf("\n");
        free(text);
    } else {
        for (int64_t i = 0; i < n_out; i++)
            printf("%s%d", i ? "," : "", out[i]);
        printf("\n");
    }
    DSA_INFO("prefill %d tokens in %.3fs (%.1f tok/s); decode %lld tokens in %.3fs (%.1f tok/s)",
             n_prompt, t_first - t0, n_prompt / (t_first - t0), (long long)(n_out - 1),
             t1 - t_first, n_out > 1 ? (double)(n_out - 1) / (t1 - t_first) : 0.0);
    rc = 0;
fail:
    if (rc)
        fprintf(stderr, "dsa-generate: %s: %s\n", dsa_strerror(err), dsa_errmsg());
    if (dev_logits)
        be->ops->free(be, dev_logits);
    dsa_model_destroy(m);
    if (prepared)
        dsa_weights_release(w, be);
    dsa_weights_free(w);
    dsa_backend_destroy(be);
    dsa_tok_destroy(tok);
    free(prompt);
    free(tokens);
    free(pos);
    free(seq);
    free(bt);
    free(out);
    free(logits);
    dsa_options_free(gen_options, N_OPTIONS, &o);
    return rc;
}
