/* worker_main.c - `dsa-worker`: one MPI rank of a TP x PP job (dist.h).
 * Launched next to the head: mpirun -np 1 dsa-head ... : -np N dsa-worker
 * --model DIR --tp T (docs/distributed.md; tools/launch.c builds the line). */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/options.h"
#include "common/spec_config.h"
#include "worker/dist.h"
#include "worker/lm_head.h"

typedef struct opts {
    const char *model, *pp_layers, *dump_logits, *device, *speculative_config, *lm_head_dtype;
    long long tp, threads, block_size, max_model_len, num_blocks, max_num_seqs;
    double kv_cache_gb, gpu_memory_utilization, timeout, preflight_timeout, load_timeout;
    int cpu_int8_act;
} opts;

#define O(f) offsetof(opts, f)
static const dsa_option options[] = {
    {"model", DSA_OPT_STRING, O(model), 0, 0, NULL, "DIR", "checkpoint directory", 1},
    {"tp", DSA_OPT_INT, O(tp), 1, 1024, "1", "N", "tensor-parallel ranks per stage; "
     "pipeline stages = workers / N", 0},
    {"pp-layers", DSA_OPT_STRING, O(pp_layers), 0, 0, NULL, "LIST",
     "layers per stage, e.g. 31,30 (default: even split, earlier stages first)", 0},
    {"device", DSA_OPT_STRING, O(device), 0, 0, "cpu", "DEV",
     "cpu (MPI collectives) or cuda (one GPU per worker by its index on the node, NCCL "
     "collectives)", 0},
    {"gpu-memory-utilization", DSA_OPT_DOUBLE, O(gpu_memory_utilization), 0.01, 1, "0.9", "F",
     "cuda: share of the GPU's memory for weights, KV cache and scratch", 0},
    {"threads", DSA_OPT_INT, O(threads), 0, 4096, "0", "N", "CPU threads, 0: one per core", 0},
    {"block-size", DSA_OPT_INT, O(block_size), 1, 4096, "64", "N", "tokens per KV block", 0},
    {"max-model-len", DSA_OPT_INT, O(max_model_len), 0, 1e9, "0", "N",
     "longest sequence, 0: max_position_embeddings", 0},
    {"num-blocks", DSA_OPT_INT, O(num_blocks), 0, 1e12, "0", "N",
     "KV blocks (0: what --kv-cache-gb holds)", 0},
    {"kv-cache-gb", DSA_OPT_DOUBLE, O(kv_cache_gb), 0, 1e6, "0", "GB",
     "KV cache budget per rank; 0: 1 GB on cpu, on cuda what the memory share leaves", 0},
    {"max-num-seqs", DSA_OPT_INT, O(max_num_seqs), 1, 1e6, "64", "N",
     "caps the blocks at what this many sequences need", 0},
    {"timeout", DSA_OPT_DOUBLE, O(timeout), 0.1, 86400, "60", "S",
     "bound on every collective and reply", 0},
    {"preflight-timeout", DSA_OPT_DOUBLE, O(preflight_timeout), 0.1, 3600, "30", "S",
     "bound on MPI start-up and the pre-flight self-test", 0},
    {"load-timeout", DSA_OPT_DOUBLE, O(load_timeout), 0.1, 86400, "1800", "S",
     "bound on waiting for the head's Config after Hello", 0},
    {"speculative-config", DSA_OPT_STRING, O(speculative_config), 0, 0, NULL, "JSON",
     "as dsa-head's (the same value): the last stage loads the MTP module and drafts", 0},
    {"lm-head-dtype", DSA_OPT_STRING, O(lm_head_dtype), 0, 0, "auto", "DTYPE",
     "lm_head as stored (auto), or as an FP8 e4m3 (fp8) or int8 (int8, CPU) copy made at load (its logit error is "
     "logged)", 0},
    {"cpu-int8-activations", DSA_OPT_FLAG, O(cpu_int8_act), 0, 0, NULL, NULL,
     "CPU backend: AWQ int4 linears quantise activations to int8 (blocks of 32) and run integer "
     "dot products; off: the F32 reference path", 0},
    {"dump-logits", DSA_OPT_STRING, O(dump_logits), 0, 0, NULL, "FILE",
     "the sampling rank appends each step's F32 logits (tests)", 0},
};
#undef O
#define N_OPTIONS (int)(sizeof options / sizeof options[0])

int main(int argc, char **argv)
{
    opts o = {0};
    int help = 0;
    if (dsa_options_parse(options, N_OPTIONS, &o, argc, argv, &help)) {
        fprintf(stderr, "dsa-worker: %s\n", dsa_errmsg());
        return 2;
    }
    if (help) {
        dsa_options_usage(stdout, "dsa-worker",
                          "One MPI rank (1..TP*PP) of a distributed DeepSeek-V3/R1 job.",
                          options, N_OPTIONS);
        dsa_options_free(options, N_OPTIONS, &o);
        return 0;
    }
    int spec_k = 0;
    if (dsa_spec_config_parse(o.speculative_config, DSA_SPEC_TOKENS_MAX, &spec_k)) {
        fprintf(stderr, "dsa-worker: %s\n", dsa_errmsg());
        dsa_options_free(options, N_OPTIONS, &o);
        return 2;
    }
    dsa_lm_head_dtype lm_head_dtype;
    if (dsa_lm_head_dtype_parse(o.lm_head_dtype, &lm_head_dtype)) {
        fprintf(stderr, "dsa-worker: %s\n", dsa_errmsg());
        dsa_options_free(options, N_OPTIONS, &o);
        return 2;
    }
    int on_cpu = !o.device || !strcmp(o.device, "cpu");
    if (!on_cpu && strcmp(o.device, "cuda")) {
        fprintf(stderr, "dsa-worker: --device %s: expected cpu or cuda\n", o.device);
        dsa_options_free(options, N_OPTIONS, &o);
        return 2;
    }
    if (on_cpu && o.kv_cache_gb == 0)
        o.kv_cache_gb = 1;
    dsa_mpi_env env;
    if (dsa_mpi_init(&argc, &argv, o.preflight_timeout, &env))
        dsa_mpi_abort(&env, 2, "start-up: %s", dsa_errmsg());
    if (env.rank == 0)
        dsa_mpi_abort(&env, 2, "dsa-worker runs on ranks 1..N; rank 0 is the head");
    dsa_dist_params p = {.model_dir = o.model, .tp = (int)o.tp, .pp_layers = o.pp_layers,
                         .device = o.device,
                         .gpu_memory_utilization = o.gpu_memory_utilization,
                         .n_threads = (int)o.threads, .block_size = o.block_size,
                         .max_model_len = o.max_model_len, .n_blocks = o.num_blocks,
                         .kv_cache_bytes = (int64_t)(o.kv_cache_gb * 1e9),
                         .max_num_seqs = o.max_num_seqs, .timeout_s = o.timeout,
                         .load_timeout_s = o.load_timeout, .dump_logits = o.dump_logits,
                         .spec_tokens = spec_k,
                         .lm_head_quant = (int)lm_head_dtype,
                         .cpu_int8_act = o.cpu_int8_act};
    int code = dsa_dist_worker_main(&env, &p);
    if (env.workers != MPI_COMM_NULL)
        MPI_Comm_free(&env.workers);
    MPI_Finalize();
    dsa_options_free(options, N_OPTIONS, &o);
    return code;
}
