/* launch.c - `dsa-launch`: builds the mpirun command line of a TP x PP job
 * (rank 0 the head, ranks 1..TP*PP the workers; docs/distributed.md) and
 * prints it (--dry-run) or runs it.
 *
 *   dsa-launch --model DIR --tp 8 --pp 2 --hostfile hosts -- --port 8000
 *
 * Everything after "--" goes to dsa-head; a --speculative-config among
 * those goes to every worker as well (the last stage drafts with the MTP
 * module and must know k).  The network environment
 * (NCCL_SOCKET_IFNAME, NCCL_IB_HCA, FI_PROVIDER, ...) is forwarded to every
 * rank with -x when set here; --ifname sets the TCP interface for MPI and
 * NCCL's socket transport at once. */
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/options.h"

typedef struct opts {
    const char *model, *hostfile, *pp_layers, *mpirun, *head, *worker, *ifname;
    long long tp, pp, threads;
    int dry_run;
} opts;

#define O(f) offsetof(opts, f)
static const dsa_option options[] = {
    {"model", DSA_OPT_STRING, O(model), 0, 0, NULL, "DIR", "checkpoint directory (on every node)", 1},
    {"tp", DSA_OPT_INT, O(tp), 1, 1024, "1", "N", "tensor-parallel ranks per stage", 0},
    {"pp", DSA_OPT_INT, O(pp), 1, 1024, "1", "N", "pipeline stages", 0},
    {"pp-layers", DSA_OPT_STRING, O(pp_layers), 0, 0, NULL, "LIST",
     "layers per stage, e.g. 31,30", 0},
    {"hostfile", DSA_OPT_STRING, O(hostfile), 0, 0, NULL, "FILE",
     "Open MPI hostfile (first host: the head and stage 0)", 0},
    {"ifname", DSA_OPT_STRING, O(ifname), 0, 0, NULL, "IF",
     "network interface for MPI TCP and NCCL sockets (e.g. eth0)", 0},
    {"threads", DSA_OPT_INT, O(threads), 0, 4096, "0", "N", "CPU threads per worker", 0},
    {"mpirun", DSA_OPT_STRING, O(mpirun), 0, 0, "mpirun", "PATH", "the mpirun to use", 0},
    {"head", DSA_OPT_STRING, O(head), 0, 0, NULL, "PATH",
     "dsa-head (default: next to this program, else PATH)", 0},
    {"worker", DSA_OPT_STRING, O(worker), 0, 0, NULL, "PATH",
     "dsa-worker (default: next to this program, else PATH)", 0},
    {"dry-run", DSA_OPT_FLAG, O(dry_run), 0, 0, NULL, NULL, "print the command, do not run it",
     0},
};
#undef O
#define N_OPTIONS (int)(sizeof options / sizeof options[0])

/* Variables every rank needs when they are set here. */
static const char *const forwarded[] = {
    "NCCL_SOCKET_IFNAME", "NCCL_IB_HCA", "NCCL_IB_GID_INDEX", "NCCL_NET_GDR_LEVEL",
    "NCCL_DEBUG", "NCCL_P2P_LEVEL", "NCCL_CROSS_NIC", "FI_PROVIDER",
    "FI_EFA_USE_DEVICE_RDMA", "FI_EFA_FORK_SAFE", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES",
    "DSA_LOG",
};

/* The program `name` from the build tree (../head, ../worker beside this
 * one) or the install directory (beside this one), else the bare name. */
static char *find_prog(const char *name, const char *subdir, char *buf, size_t n)
{
    char self[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len > 0) {
        self[len] = 0;
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = 0;
            snprintf(buf, n, "%s/../%s/%s", self, subdir, name);
            if (access(buf, X_OK) == 0)
                return buf;
            snprintf(buf, n, "%s/%s", self, name);
            if (access(buf, X_OK) == 0)
                return buf;
        }
    }
    snprintf(buf, n, "%s", name);
    return buf;
}

typedef struct argv_b {
    char **v;
    int n, cap;
} argv_b;

static int push(argv_b *a, const char *s)
{
    if (a->n + 2 > a->cap) {
        int cap = a->cap ? a->cap * 2 : 64;
        char **v = realloc(a->v, (size_t)cap * sizeof *v);
        if (!v)
            return -1;
        a->v = v;
        a->cap = cap;
    }
    if (!(a->v[a->n] = strdup(s)))
        return -1;
    a->v[++a->n] = NULL;
    return 0;
}

static void print_quoted(const char *s)
{
    if (*s && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                        "-_./=:,@+%") == strlen(s)) {
        fputs(s, stdout);
        return;
    }
    putchar('\'');
    for (; *s; s++)
        if (*s == '\'')
            fputs("'\\''", stdout);
        else
            putchar(*s);
    putchar('\'');
}

int main(int argc, char **argv)
{
    /* Split at "--": ours before, the head's after. */
    int split = argc;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--")) {
            split = i;
            break;
        }
    opts o = {0};
    int help = 0, rc = 2;
    if (dsa_options_parse(options, N_OPTIONS, &o, split, argv, &help)) {
        fprintf(stderr, "dsa-launch: %s\n", dsa_errmsg());
        return 2;
    }
    if (help) {
        dsa_options_usage(stdout, "dsa-launch [options] [-- head options]",
                          "Builds and runs the mpirun command of a TP x PP job: rank 0 "
                          "dsa-head, ranks 1..TP*PP dsa-worker.",
                          options, N_OPTIONS);
        return 0;
    }
    char head[PATH_MAX + 64], worker[PATH_MAX + 64], num[32];
    const char *head_p = o.head ? o.head : find_prog("dsa-head", "head", head, sizeof head);
    const char *worker_p =
        o.worker ? o.worker : find_prog("dsa-worker", "worker", worker, sizeof worker);
    argv_b a = {0};
    int bad = push(&a, o.mpirun);
    if (geteuid() == 0)
        bad |= push(&a, "--allow-run-as-root");
    if (o.hostfile)
        bad |= push(&a, "--hostfile") | push(&a, o.hostfile);
    /* ranks in order over the hosts: the head and stage 0 on the first */
    bad |= push(&a, "--map-by") | push(&a, "slot") | push(&a, "--bind-to") | push(&a, "none");
    if (o.ifname) {
        char kv[256];
        bad |= push(&a, "--mca") | push(&a, "btl_tcp_if_include") | push(&a, o.ifname);
        bad |= push(&a, "--mca") | push(&a, "oob_tcp_if_include") | push(&a, o.ifname);
        snprintf(kv, sizeof kv, "NCCL_SOCKET_IFNAME=%s", o.ifname);
        bad |= push(&a, "-x") | push(&a, kv);
    }
    for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
        if (getenv(forwarded[i]) && !(o.ifname && !strcmp(forwarded[i], "NCCL_SOCKET_IFNAME")))
            bad |= push(&a, "-x") | push(&a, forwarded[i]);
    bad |= push(&a, "-np") | push(&a, "1") | push(&a, head_p) | push(&a, "--model") |
           push(&a, o.model);
    for (int i = split + 1; i < argc; i++)
        bad |= push(&a, argv[i]);
    snprintf(num, sizeof num, "%lld", o.tp * o.pp);
    bad |= push(&a, ":") | push(&a, "-np") | push(&a, num) | push(&a, worker_p) |
           push(&a, "--model") | push(&a, o.model);
    snprintf(num, sizeof num, "%lld", o.tp);
    bad |= push(&a, "--tp") | push(&a, num);
    if (o.pp_layers)
        bad |= push(&a, "--pp-layers") | push(&a, o.pp_layers);
    if (o.threads) {
        snprintf(num, sizeof num, "%lld", o.threads);
        bad |= push(&a, "--threads") | push(&a, num);
    }
    static const char spec_opt[] = "--speculative-config";
    for (int i = split + 1; i < argc; i++) {
        size_t n = sizeof spec_opt - 1;
        if (!strcmp(argv[i], spec_opt) && i + 1 < argc)
            bad |= push(&a, spec_opt) | push(&a, argv[++i]);
        else if (!strncmp(argv[i], spec_opt, n) && argv[i][n] == '=')
            bad |= push(&a, argv[i]);
    }
    if (bad) {
        fprintf(stderr, "dsa-launch: out of memory\n");
        goto done;
    }
    if (o.dry_run) {
        for (int i = 0; i < a.n; i++) {
            if (i)
                putchar(' ');
            print_quoted(a.v[i]);
        }
        putchar('\n');
        rc = 0;
        goto done;
    }
    fflush(stdout);
    execvp(a.v[0], a.v);
    fprintf(stderr, "dsa-launch: cannot run %s: ", a.v[0]);
    perror(NULL);
    rc = 127;
done:
    for (int i = 0; i < a.n; i++)
        free(a.v[i]);
    free(a.v);
    dsa_options_free(options, N_OPTIONS, &o);
    return rc;
}
