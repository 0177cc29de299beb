/* support.c - see support.h. */
#include "tests/support.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s/%s", a, b);
    return s;
}

char *dsa_test_data_path(const char *rel)
{
    const char *d = getenv("DSA_TEST_DATA");
    return join(d ? d : "tests/data", rel);
}

int dsa_test_in_ci(void)
{
    const char *ci = getenv("CI");
    return ci && strcmp(ci, "true") == 0;
}

char *dsa_test_build_path(const char *rel)
{
    const char *d = getenv("DSA_BUILD");
    return join(d ? d : "build", rel);
}

char *dsa_test_mkdtemp(void)
{
    const char *t = getenv("TMPDIR");
    char *p = join(t ? t : "/tmp", "dsa-test-XXXXXX");
    if (p && !mkdtemp(p)) {
        free(p);
        return NULL;
    }
    return p;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

void dsa_test_rmtree(const char *path)
{
    if (path)
        nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

char *dsa_test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = '\0';
        if (len)
            *len = (size_t)n;
    }
    return buf;
}

int dsa_test_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(data, 1, len, f);
    return (fclose(f) == 0 && w == len) ? 0 : -1;
}

char *dsa_test_golden_dir(const char *dtype)
{
    char *root = dsa_test_data_path("golden");
    DIR *d = root ? opendir(root) : NULL;
    char *found = NULL;
    struct dirent *e;
    while (d && !found && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char *dir = join(root, e->d_name);
        char *meta = dir ? join(dir, "golden.json") : NULL;
        char *text = meta ? dsa_test_read_file(meta, NULL) : NULL;
        cJSON *j = text ? cJSON_Parse(text) : NULL;
        const cJSON *dt = j ? cJSON_GetObjectItem(j, "dtype") : NULL;
        if (cJSON_IsString(dt) && strcmp(dt->valuestring, dtype) == 0) {
            found = dir;
            dir = NULL;
        }
        cJSON_Delete(j);
        free(text);
        free(meta);
        free(dir);
    }
    if (d)
        closedir(d);
    free(root);
    return found;
}

double dsa_test_rel_l2(const float *a, const float *b, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(a[i]))
            return INFINITY;
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * (double)b[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

double dsa_test_max_rel(const float *a, const float *b, int64_t n)
{
    double worst = 0, scale = 0;
    for (int64_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(b[i]));
    for (int64_t i = 0; i < n; i++)
        worst = fmax(worst, fabs((double)a[i] - b[i]) / (scale > 0 ? scale : 1));
    return worst;
}
