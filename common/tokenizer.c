/* tokenizer.c - loading tokenizer.json and tokenizer_config.json into a
 * dsa_tok, and the small accessors.  Encoding lives in tok_encode.c,
 * decoding and streaming in tok_decode.c.
 *
 * Every failure names the file and the JSON field, e.g.
 * "tokenizer.json: field 'model.merges[12]': token 'Ġx' not in vocab". */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/tok_internal.h"




/* GPT-2's ByteLevel alphabet: the printable bytes map to themselves, the
 * rest to U+0100 upwards in byte order. */
static void bytelevel_table(uint32_t byte_to_cp[256])
{
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
        byte_to_cp[b] = keep ? (uint32_t)b : (uint32_t)(256 + n++);
    }
}

/* Decodes one UTF-8 character from well-formed input; returns its length. */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned c = s[0];
    if (c < 0x80 || n < 2) { *cp = c; return 1; }
    if (c < 0xE0) { *cp = ((c & 0x1F) << 6) | (s[1] & 0x3F); return 2; }
    if (c < 0xF0 || n < 4) {
        if (n < 3) { *cp = c; return 1; }
        *cp = ((c & 0x0F) << 12) | ((s[1] & 0x3F) << 6) | (s[2] & 0x3F);
        return 3;
    }
    *cp = ((c & 0x07) << 18) | ((s[1] & 0x3F) << 12) | ((s[2] & 0x3F) << 6) | (s[3] & 0x3F);
    return 4;
}

/* ---- arena and maps ---------------------------------------------------- */

dsa_err tok_arena_put(dsa_tok *t, const void *p, size_t n, tok_span *out)
{
    if (t->arena_len + n + 1 > t->arena_cap) {
        size_t cap = t->arena_cap ? t->arena_cap : 1 << 20;
        while (cap < t->arena_len + n + 1)
            cap *= 2;
        char *a = realloc(t->arena, cap);
        if (!a)
            return dsa_fail(DSA_NOMEM, "tokenizer: arena of %zu bytes", cap);
        t->arena = a;
        t->arena_cap = cap;
    }
    memcpy(t->arena + t->arena_len, p, n);
    t->arena[t->arena_len + n] = 0;
    out->off = (uint32_t)t->arena_len;
    out->len = (uint32_t)n;
    t->arena_len += n + 1;
    return DSA_OK;
}

uint64_t tok_hash(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xFF51AFD7ED558CCDull);
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, s, 8);
        h = (h ^ v) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 29;
        s += 8;
        n -= 8;
    }
    uint64_t v = 0;
    memcpy(&v, s, n);
    h = (h ^ v) * 0x94D049BB133111EBull;
    h ^= h >> 31;
    h *= 0xBF58476D1CE4E5B9ull;
    return h ^ (h >> 32);
}

dsa_err tok_strmap_init(tok_strmap *m, size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    m->slots = calloc(cap, sizeof *m->slots);
    m->mask = (uint32_t)(cap - 1);
    if (!m->slots)
        return dsa_fail(DSA_NOMEM, "tokenizer: map of %zu slots", cap);
    return DSA_OK;
}

/* The arena may move while loading, so lookups take it each time. */
static int32_t strmap_find(const tok_strmap *m, const char *arena, const tok_span *spans,
                           const char *s, size_t n, uint32_t *slot)
{
    uint32_t i = (uint32_t)tok_hash(s, n) & m->mask;
    for (;; i = (i + 1) & m->mask) {
        uint32_t v = m->slots[i];
        if (!v) {
            *slot = i;
            return -1;
        }
        const tok_span *sp = &spans[v - 1];
        if (sp->len == n && memcmp(arena + sp->off, s, n) == 0) {
            *slot = i;
            return (int32_t)(v - 1);
        }
    }
}

int32_t tok_strmap_get(const tok_strmap *m, const char *s, size_t n)
{
    uint32_t slot;
    return m->slots ? strmap_find(m, m->arena, m->spans, s, n, &slot) : -1;
}

/* Inserts id under spans[id]; returns the id already there, or -1. */
int32_t tok_strmap_put(tok_strmap *m, const char *arena, const tok_span *spans, int32_t id)
{
    uint32_t slot;
    const tok_span *sp = &spans[id];
    int32_t old = strmap_find(m, arena, spans, arena + sp->off, sp->len, &slot);
    if (old < 0)
        m->slots[slot] = (uint32_t)id + 1;
    return old;
}

static dsa_err mergemap_init(tok_mergemap *m, size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    m->slots = calloc(cap, sizeof *m->slots);
    m->mask = cap - 1;
    if (!m->slots)
        return dsa_fail(DSA_NOMEM, "tokenizer: merge map of %zu slots", cap);
    return DSA_OK;
}

/* Later merges of the same pair replace earlier ones, as a Rust HashMap
 * collected from the list does. */
static void mergemap_put(tok_mergemap *m, int32_t a, int32_t b, uint32_t rank, int32_t id)
{
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    uint64_t i = (key * 0x9E3779B97F4A7C15ull >> 20) & m->mask;
    while (m->slots[i].key && m->slots[i].key != key)
        i = (i + 1) & m->mask;
    m->slots[i].key = key;
    m->slots[i].rank = rank;
    m->slots[i].id = id;
}

/* ---- JSON helpers ------------------------------------------------------ */

dsa_err tok_bad(const char *file, const char *path, const char *what)
{
    return dsa_fail(DSA_FORMAT, "%s: field '%s': %s", file, path, what);
}

dsa_err tok_unsupported(const char *file, const char *path, const char *what)
{
    return dsa_fail(DSA_UNSUPPORTED, "%s: field '%s': %s", file, path, what);
}

/* Optional boolean: absent or null keeps *out. */
dsa_err tok_get_bool(const cJSON *o, const char *key, const char *file,
                        const char *path, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v))
        return DSA_OK;
    if (!cJSON_IsBool(v)) {
        char p[256];
        snprintf(p, sizeof p, "%s%s%s", path, *path ? "." : "", key);
        return tok_bad(file, p, "expected a boolean");
    }
    *out = cJSON_IsTrue(v);
    return DSA_OK;
}

int tok_json_id(const cJSON *v, int32_t *id)
{
    if (!cJSON_IsNumber(v))
        return 0;
    double d = v->valuedouble;
    if (!(d >= 0 && d < 2147483647.0) || d != (double)(int32_t)d)
        return 0;
    *id = (int32_t)d;
    return 1;
}

const char *tok_type_of(const cJSON *o)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "type");
    return cJSON_IsString(t) ? t->valuestring : NULL;
}

/* Looks a token string up among added tokens, then the model vocab. */
int32_t tok_lookup_any(const dsa_tok *t, const char *s, size_t n)
{
    uint32_t slot;
    int32_t id = -1;
    if (t->added_map.slots) {
        id = strmap_find(&t->added_map, t->arena, t->token, s, n, &slot);
        if (id >= 0)
            return id;
    }
    return t->vocab.slots ? strmap_find(&t->vocab, t->arena, t->model_token, s, n, &slot) : -1;
}

/* ---- model ------------------------------------------------------------- */

static dsa_err load_vocab(dsa_tok *t, const cJSON *vocab, size_t n_ids_min)
{
    size_t n = 0;
    int32_t max_id = -1;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        int32_t id;
        if (!tok_json_id(e, &id)) {
            char p[300];
            snprintf(p, sizeof p, "model.vocab.%.200s", e->string ? e->string : "?");
            return tok_bad(TOK_JSON, p, "expected a non-negative integer id");
        }
        if (id > max_id)
            max_id = id;
        n++;
    }
    t->n_ids = (size_t)(max_id + 1) > n_ids_min ? (size_t)(max_id + 1) : n_ids_min;
    t->token = calloc(t->n_ids, sizeof *t->token);
    t->present = calloc(t->n_ids, 1);
    t->is_special = calloc(t->n_ids, 1);
    t->is_added = calloc(t->n_ids, 1);
    t->decoded = calloc(t->n_ids, sizeof *t->decoded);
    t->model_token = calloc(t->n_ids, sizeof *t->model_token);
    t->in_model = calloc(t->n_ids, 1);
    if (!t->token || !t->present || !t->is_special || !t->is_added || !t->decoded ||
        !t->model_token || !t->in_model)
        return dsa_fail(DSA_NOMEM, "tokenizer: tables for %zu ids", t->n_ids);
    dsa_err err = tok_strmap_init(&t->vocab, n);
    if (err)
        return err;
    cJSON_ArrayForEach(e, vocab) {
        int32_t id = (int32_t)e->valuedouble;
        if (t->in_model[id]) {
            char p[300];
            snprintf(p, sizeof p, "model.vocab.%.200s", e->string);
            return tok_bad(TOK_JSON, p, "duplicate id");
        }
        if ((err = tok_arena_put(t, e->string, strlen(e->string), &t->model_token[id])))
            return err;
        t->in_model[id] = 1;
    }
    /* Insert after the arena stops moving for this batch. */
    for (size_t id = 0; id < t->n_ids; id++) {
        if (!t->in_model[id])
            continue;
        if (tok_strmap_put(&t->vocab, t->arena, t->model_token, (int32_t)id) >= 0) {
            char p[300];
            snprintf(p, sizeof p, "model.vocab.%.200s", t->arena + t->model_token[id].off);
            return tok_bad(TOK_JSON, p, "duplicate token");
        }
    }
    return DSA_OK;
}

static int32_t model_lookup(const dsa_tok *t, const char *s, size_t n)
{
    uint32_t slot;
    return strmap_find(&t->vocab, t->arena, t->model_token, s, n, &slot);
}

static dsa_err merge_fail(size_t i, const char *what, const char *tokstr)
{
    return dsa_fail(DSA_FORMAT, "%s: field 'model.merges[%zu]': %s%.200s%s", TOK_JSON, i,
                    what, tokstr ? tokstr : "", tokstr ? "'" : "");
}

static dsa_err load_merges(dsa_tok *t, const cJSON *merges)
{
    size_t n = (size_t)cJSON_GetArraySize(merges);
    dsa_err err = mergemap_init(&t->merges, n);
    if (err)
        return err;
    char *buf = NULL;
    size_t cap = 0, i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, merges) {
        const char *a, *b;
        size_t na, nb;
        if (cJSON_IsString(e)) {
            const char *sp = strchr(e->valuestring, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                err = merge_fail(i, "expected \"left right\" with one space", NULL);
                goto out;
            }
            a = e->valuestring;
            na = (size_t)(sp - a);
            b = sp + 1;
            nb = strlen(b);
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 &&
                   cJSON_IsString(e->child) && cJSON_IsString(e->child->next)) {
            a = e->child->valuestring;
            na = strlen(a);
            b = e->child->next->valuestring;
            nb = strlen(b);
        } else {
            err = merge_fail(i, "expected a string or a pair of strings", NULL);
            goto out;
        }
        int32_t ia = model_lookup(t, a, na), ib = model_lookup(t, b, nb);
        if (ia < 0 || ib < 0) {
            err = merge_fail(i, "token not in vocab: '", ia < 0 ? a : b);
            goto out;
        }
        if (na + nb > cap) {
            cap = 2 * (na + nb) + 64;
            char *nbuf = realloc(buf, cap);
            if (!nbuf) {
                err = dsa_fail(DSA_NOMEM, "tokenizer: merge buffer");
                goto out;
            }
            buf = nbuf;
        }
        /* With a continuing_subword_prefix, "a ##b" merges into "a" + "b". */
        size_t np = t->cont_prefix.len;
        if (np && nb >= np && memcmp(b, t->arena + t->cont_prefix.off, np) == 0) {
            b += np;
            nb -= np;
        }
        memcpy(buf, a, na);
        memcpy(buf + na, b, nb);
        int32_t id = model_lookup(t, buf, na + nb);
        if (id < 0) {
            buf[na + nb] = 0;
            err = merge_fail(i, "merged token not in vocab: '", buf);
            goto out;
        }
        mergemap_put(&t->merges, ia, ib, (uint32_t)i, id);
        i++;
    }
out:
    free(buf);
    return err;
}

/* For byte-level models: raw bytes of every vocab token, the raw-bytes map
 * and the id of each single byte. */
static dsa_err build_raw(dsa_tok *t)
{
    uint32_t b2c[256];
    int16_t c2b[512];
    bytelevel_table(b2c);
    memset(c2b, 0xFF, sizeof c2b);
    for (int b = 0; b < 256; b++)
        c2b[b2c[b]] = (int16_t)b;
    t->raw = calloc(t->n_ids, sizeof *t->raw);
    if (!t->raw)
        return dsa_fail(DSA_NOMEM, "tokenizer: raw table");
    dsa_err err = tok_strmap_init(&t->raw_vocab, t->n_ids);
    if (err)
        return err;
    unsigned char tmp[1024];
    for (size_t id = 0; id < t->n_ids; id++) {
        t->raw[id].len = UINT32_MAX;
        if (!t->in_model[id])
            continue;
        const unsigned char *s = (const unsigned char *)t->arena + t->model_token[id].off;
        size_t n = t->model_token[id].len, k = 0, ok = 1;
        for (size_t i = 0; i < n && ok;) {
            uint32_t cp;
            i += utf8_next(s + i, n - i, &cp);
            if (cp >= 512 || c2b[cp] < 0 || k >= sizeof tmp)
                ok = 0;
            else
                tmp[k++] = (unsigned char)c2b[cp];
        }
        if (!ok)
            continue;
        if ((err = tok_arena_put(t, tmp, k, &t->raw[id])))
            return err;
    }
    for (size_t id = 0; id < t->n_ids; id++)
        if (t->raw[id].len != UINT32_MAX)
            tok_strmap_put(&t->raw_vocab, t->arena, t->raw, (int32_t)id);
    return DSA_OK;
}

static dsa_err load_model(dsa_tok *t, const cJSON *root, size_t n_ids_min)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(m))
        return tok_bad(TOK_JSON, "model", m ? "expected an object" : "missing");
    const char *type = tok_type_of(m);
    if (type && strcmp(type, "BPE") != 0)
        return tok_unsupported(TOK_JSON, "model.type", "only BPE models are supported");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(m, "vocab");
    if (!cJSON_IsObject(vocab))
        return tok_bad(TOK_JSON, "model.vocab", vocab ? "expected an object" : "missing");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(m, "merges");
    if (!cJSON_IsArray(merges))
        return tok_bad(TOK_JSON, "model.merges", merges ? "expected an array" : "missing");
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(m, "dropout");
    if (dropout && !cJSON_IsNull(dropout) &&
        !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0))
        return tok_unsupported(TOK_JSON, "model.dropout", "BPE dropout is not supported");
    int byte_fallback = 0;
    dsa_err err = tok_get_bool(m, "byte_fallback", TOK_JSON, "model", &byte_fallback);
    if (err)
        return err;
    if (byte_fallback)
        return tok_unsupported(TOK_JSON, "model.byte_fallback", "byte fallback is not supported");
    if ((err = tok_get_bool(m, "fuse_unk", TOK_JSON, "model", &t->fuse_unk)) ||
        (err = tok_get_bool(m, "ignore_merges", TOK_JSON, "model", &t->ignore_merges)))
        return err;
    if ((err = load_vocab(t, vocab, n_ids_min)))
        return err;
    const char *keys[3] = {"unk_token", "continuing_subword_prefix", "end_of_word_suffix"};
    for (int k = 0; k < 3; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, keys[k]);
        char p[64];
        snprintf(p, sizeof p, "model.%s", keys[k]);
        if (!v || cJSON_IsNull(v))
            continue;
        if (!cJSON_IsString(v))
            return tok_bad(TOK_JSON, p, "expected a string or null");
        size_t n = strlen(v->valuestring);
        if (k == 0) {
            t->unk_id = model_lookup(t, v->valuestring, n);
            if (t->unk_id < 0)
                return tok_bad(TOK_JSON, p, "unknown token not in vocab");
        } else if ((err = tok_arena_put(t, v->valuestring, n,
                                    k == 1 ? &t->cont_prefix : &t->word_suffix))) {
            return err;
        }
    }
    return load_merges(t, merges);
}

/* Per-id decoder output: ByteLevel maps each char of the token back to its
 * byte, or keeps the token's own bytes when some char is not in the
 * alphabet (added tokens such as "<｜User｜>"). */
static dsa_err build_decoded(dsa_tok *t)
{
    for (size_t id = 0; id < t->n_ids; id++) {
        if (!t->present[id] && t->in_model[id]) {
            t->token[id] = t->model_token[id];
            t->present[id] = 1;
        }
        if (!t->present[id])
            continue;
        t->decoded[id] = t->token[id];
        if (t->decoder != TOK_DEC_BYTELEVEL)
            continue;
        if (t->raw && !t->is_added[id] && t->raw[id].len != UINT32_MAX) {
            t->decoded[id] = t->raw[id];
            continue;
        }
        uint32_t b2c[256];
        int16_t c2b[512];
        bytelevel_table(b2c);
        memset(c2b, 0xFF, sizeof c2b);
        for (int b = 0; b < 256; b++)
            c2b[b2c[b]] = (int16_t)b;
        unsigned char tmp[4096];
        const unsigned char *s = (const unsigned char *)t->arena + t->token[id].off;
        size_t n = t->token[id].len, k = 0, ok = 1;
        for (size_t i = 0; i < n && ok;) {
            uint32_t cp;
            i += utf8_next(s + i, n - i, &cp);
            if (cp >= 512 || c2b[cp] < 0 || k >= sizeof tmp)
                ok = 0;
            else
                tmp[k++] = (unsigned char)c2b[cp];
        }
        if (ok) {
            dsa_err err = tok_arena_put(t, tmp, k, &t->decoded[id]);
            if (err)
                return err;
        }
    }
    return DSA_OK;
}

/* ---- entry points ------------------------------------------------------ */

dsa_err dsa_tok_load_mem(const char *json, size_t json_len, const char *config,
                         size_t config_len, dsa_tok **out)
{
    *out = NULL;
    dsa_tok *t = calloc(1, sizeof *t);
    if (!t)
        return dsa_fail(DSA_NOMEM, "tokenizer: context");
    t->unk_id = t->bos_id = t->eos_id = -1;
    tok_cache_init(t);
    dsa_err err;
    cJSON *root = cJSON_ParseWithLength(json, json_len);
    if (!root) {
        err = dsa_fail(DSA_FORMAT, "%s: not valid JSON", TOK_JSON);
        goto fail;
    }
    if (!cJSON_IsObject(root)) {
        err = dsa_fail(DSA_FORMAT, "%s: expected a JSON object", TOK_JSON);
        goto fail;
    }
    const cJSON *added;
    size_t n_ids_min;
    size_t step_cap = 0;
    if ((err = tok_scan_added(root, &added, &n_ids_min)) ||
        (err = load_model(t, root, n_ids_min)) ||
        (err = tok_check_normalizer(cJSON_GetObjectItemCaseSensitive(root, "normalizer"),
                                "normalizer")))
        goto fail;
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    if (pre && !cJSON_IsNull(pre) && (err = tok_add_step(t, pre, "pre_tokenizer", &step_cap)))
        goto fail;
    if (t->byte_level && (err = build_raw(t)))
        goto fail;
    {
        int rc;
        PCRE2_SIZE at;
        t->re_space = pcre2_compile((PCRE2_SPTR) "\\s", 2, PCRE2_UTF | PCRE2_UCP, &rc, &at, NULL);
        t->re_word = pcre2_compile((PCRE2_SPTR) "\\w", 2, PCRE2_UTF | PCRE2_UCP, &rc, &at, NULL);
        if (!t->re_space || !t->re_word) {
            err = dsa_fail(DSA_INTERNAL, "tokenizer: PCRE2 error %d compiling \\s/\\w", rc);
            goto fail;
        }
    }
    if ((err = tok_load_added(t, added)) ||
        (err = tok_load_decoder(t, cJSON_GetObjectItemCaseSensitive(root, "decoder"))) ||
        (err = tok_load_post(t, cJSON_GetObjectItemCaseSensitive(root, "post_processor"),
                         "post_processor")) ||
        (err = build_decoded(t)))
        goto fail;
    for (size_t i = 0; i < t->n_post_prefix + t->n_post_suffix; i++) {
        int32_t id = i < t->n_post_prefix ? t->post_prefix[i] : t->post_suffix[i - t->n_post_prefix];
        if ((size_t)id >= t->n_ids || !t->present[id]) {
            err = tok_bad(TOK_JSON, "post_processor", "special token id not in the vocabulary");
            goto fail;
        }
    }
    if (config && (err = tok_load_config(t, config, config_len)))
        goto fail;
    if (!config)
        t->add_bos = 0;
    /* The arena no longer moves: point the maps at it for lookups. */
    t->vocab.arena = t->raw_vocab.arena = t->added_map.arena = t->arena;
    t->vocab.spans = t->model_token;
    t->raw_vocab.spans = t->raw;
    t->added_map.spans = t->token;
    for (int b = 0; b < 256; b++) {
        unsigned char c = (unsigned char)b;
        t->byte_id[b] = t->byte_level ? tok_strmap_get(&t->raw_vocab, (const char *)&c, 1) : -1;
    }
    cJSON_Delete(root);
    *out = t;
    return DSA_OK;
fail:
    cJSON_Delete(root);
    dsa_tok_destroy(t);
    return err;
}

static dsa_err read_all(const char *path, char **buf, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return dsa_fail(DSA_IO, "%s: cannot open", path);
    char *b = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? 2 * cap : 1 << 16;
            char *nb = realloc(b, cap);
            if (!nb) {
                free(b);
                fclose(f);
                return dsa_fail(DSA_NOMEM, "%s: reading", path);
            }
            b = nb;
        }
        size_t r = fread(b + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
    }
    int bad_read = ferror(f);
    fclose(f);
    if (bad_read) {
        free(b);
        return dsa_fail(DSA_IO, "%s: read error", path);
    }
    *buf = b;
    *len = n;
    return DSA_OK;
}

dsa_err dsa_tok_load_files(const char *json_path, const char *config_path, dsa_tok **out)
{
    char *json = NULL, *cfg = NULL;
    size_t nj = 0, nc = 0;
    *out = NULL;
    dsa_err err = read_all(json_path, &json, &nj);
    if (!err && config_path)
        err = read_all(config_path, &cfg, &nc);
    if (!err)
        err = dsa_tok_load_mem(json, nj, cfg, nc, out);
    free(json);
    free(cfg);
    return err;
}

dsa_err dsa_tok_load(const char *dir, dsa_tok **out)
{
    size_t n = strlen(dir) + 64;
    char *pj = malloc(n), *pc = malloc(n), *pt = malloc(n);
    dsa_err err;
    *out = NULL;
    if (!pj || !pc || !pt) {
        err = dsa_fail(DSA_NOMEM, "tokenizer: paths");
        goto out;
    }
    snprintf(pj, n, "%s/tokenizer.json", dir);
    snprintf(pc, n, "%s/tokenizer_config.json", dir);
    snprintf(pt, n, "%s/chat_template.jinja", dir);
    FILE *f = fopen(pc, "rb");
    if (f)
        fclose(f);
    err = dsa_tok_load_files(pj, f ? pc : NULL, out);
    if (!err && !(*out)->chat_template && (f = fopen(pt, "rb"))) {
        fclose(f);
        char *tpl;
        size_t len;
        err = read_all(pt, &tpl, &len);
        if (!err) {
            char *s = realloc(tpl, len + 1);
            if (!s) {
                free(tpl);
                err = dsa_fail(DSA_NOMEM, "tokenizer: chat template");
            } else {
                s[len] = 0;
                (*out)->chat_template = s;
            }
        }
        if (err) {
            dsa_tok_destroy(*out);
            *out = NULL;
        }
    }
out:
    free(pj);
    free(pc);
    free(pt);
    return err;
}

void dsa_tok_destroy(dsa_tok *t)
{
    if (!t)
        return;
    tok_cache_deinit(t);
    for (size_t i = 0; i < t->n_steps; i++) {
        pcre2_code_free(t->steps[i].re);
        free(t->steps[i].literal);
    }
    free(t->steps);
    pcre2_code_free(t->re_space);
    pcre2_code_free(t->re_word);
    free(t->arena);
    free(t->token);
    free(t->model_token);
    free(t->in_model);
    free(t->present);
    free(t->is_special);
    free(t->is_added);
    free(t->decoded);
    free(t->raw);
    free(t->vocab.slots);
    free(t->raw_vocab.slots);
    free(t->added_map.slots);
    free(t->merges.slots);
    free(t->added);
    free(t->trie_raw.nodes);
    free(t->trie_norm.nodes);
    free(t->post_prefix);
    free(t->post_suffix);
    free(t->bos_token);
    free(t->eos_token);
    free(t->chat_template);
    free(t);
}

/* ---- accessors --------------------------------------------------------- */

int32_t dsa_tok_token_to_id(const dsa_tok *t, const char *s, size_t n)
{
    int32_t id = tok_strmap_get(&t->added_map, s, n);
    return id >= 0 ? id : tok_strmap_get(&t->vocab, s, n);
}

const char *dsa_tok_id_to_token(const dsa_tok *t, int32_t id, size_t *len)
{
    if (id < 0 || (size_t)id >= t->n_ids || !t->present[id])
        return NULL;
    if (len)
        *len = t->token[id].len;
    return t->arena + t->token[id].off;
}

const char *dsa_tok_token_bytes(const dsa_tok *t, int32_t id, size_t *len)
{
    if (id < 0 || (size_t)id >= t->n_ids || !t->present[id])
        return NULL;
    *len = t->decoded[id].len;
    return t->arena + t->decoded[id].off;
}

int dsa_tok_is_added(const dsa_tok *t, int32_t id)
{
    return id >= 0 && (size_t)id < t->n_ids && t->is_added[id];
}

int dsa_tok_is_special(const dsa_tok *t, int32_t id)
{
    return id >= 0 && (size_t)id < t->n_ids && t->is_special[id];
}

size_t dsa_tok_n_vocab(const dsa_tok *t) { return t->n_ids; }
int32_t dsa_tok_bos_id(const dsa_tok *t) { return t->bos_id; }
int32_t dsa_tok_eos_id(const dsa_tok *t) { return t->eos_id; }
const char *dsa_tok_bos_token(const dsa_tok *t) { return t->bos_token; }
const char *dsa_tok_eos_token(const dsa_tok *t) { return t->eos_token; }
int dsa_tok_add_bos(const dsa_tok *t) { return t->add_bos; }
const char *dsa_tok_chat_template(const dsa_tok *t) { return t->chat_template; }
