/* dist.c - the distributed worker's start-up and plan loop (see dist.h). */
#include "worker/dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/config.h"
#include "common/log.h"
#include "common/options.h"
#include "proto/control.h"
#include "worker/comm.h"
#include "worker/model.h"
#include "worker/step.h"

dsa_err dsa_dist_layers(int n_layers, int n_stages, const char *spec, int *counts)
{
    if (n_stages < 1 || n_stages > n_layers)
        return dsa_fail(DSA_INVAL, "%d pipeline stages for %d layers", n_stages, n_layers);
    if (!spec || !*spec) {
        for (int s = 0; s < n_stages; s++)
            counts[s] = n_layers / n_stages + (s < n_layers % n_stages);
        return DSA_OK;
    }
    int *v = NULL, n = 0, sum = 0;
    dsa_err err = dsa_parse_int_list(spec, "--pp-layers", &v, &n);
    if (err)
        return err;
    if (n != n_stages)
        err = dsa_fail(DSA_INVAL, "--pp-layers %s names %d stages, the job has %d", spec, n,
                       n_stages);
    for (int s = 0; !err && s < n; s++) {
        if (v[s] < 1)
            err = dsa_fail(DSA_INVAL, "--pp-layers %s: stage %d has %d layers", spec, s, v[s]);
        counts[s] = v[s];
        sum += v[s];
    }
    if (!err && sum != n_layers)
        err = dsa_fail(DSA_INVAL, "--pp-layers %s sums to %d, the model has %d layers", spec,
                       sum, n_layers);
    free(v);
    return err;
}

/* Resident set size from /proc/self/statm (pages), 0 when unknown. */
static int64_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long long size = 0, res = 0;
    if (!f)
        return 0;
    if (fscanf(f, "%lld %lld", &size, &res) != 2)
        res = 0;
    fclose(f);
    return res * sysconf(_SC_PAGESIZE);
}

/* Where the time of the steps went, printed at shutdown. */
typedef struct step_times {
    uint64_t n;
    double compute_s, comm_s, control_s, idle_s;
    uint64_t n_late_masks;      /* StepMasks frames taken (masks_later) */
    double mask_wait_s;         /* spent waiting for them inside steps */
} step_times;

/* A plan with masks_later on a rank of the last stage: its StepMasks frame
 * is taken when the step first needs a mask (dsa_step_plan.mask_wait,
 * after the forward pass), or after the step when it sampled nothing. */
typedef struct late_masks {
    dsa_step_plan *plan;
    double timeout_s;
    int got, failed;
    char msg[256];              /* why, when failed */
    step_times *st;
} late_masks;

static dsa_err late_masks_recv(void *user)
{
    late_masks *lm = user;
    if (lm->got || lm->failed)
        return lm->got ? DSA_OK : DSA_TIMEOUT;
    uint8_t *buf = NULL;
    size_t len = 0;
    double t0 = dsa_time_now();
    dsa_err err = dsa_mpi_recv_frame(MPI_COMM_WORLD, 0, DSA_MPI_TAG_MASKS, lm->timeout_s, &buf,
                                     &len, NULL);
    if (!err)
        err = dsa_step_masks_decode(buf, len, lm->plan);
    free(buf);
    lm->st->mask_wait_s += dsa_time_now() - t0;
    if (err) {
        lm->failed = 1;
        snprintf(lm->msg, sizeof lm->msg, "the grammar masks of step %llu from the head: %s",
                 (unsigned long long)lm->plan->step_id, dsa_errmsg());
        return dsa_fail(err == DSA_NOMEM ? err : DSA_TIMEOUT, "%s", lm->msg);
    }
    lm->got = 1;
    lm->st->n_late_masks++;
    return DSA_OK;
}

static double comm_total(const dsa_comm *c)
{
    return c ? c->stats.allreduce_s + c->stats.allgather_s + c->stats.p2p_s : 0;
}

/* Called by dsa_worker_step_create once the backend and the weights are
 * ready: the KV block agreement, then the communicator on the backend. */
typedef struct dist_setup {
    const dsa_mpi_env *env;
    const dsa_dist_params *p;
    MPI_Comm tp_comm;
    int stage, n_stages, on_cuda;
    int64_t n_blocks;           /* agreed */
    dsa_comm *comm;             /* made here, owned by dsa_dist_worker_main */
} dist_setup;

static dsa_err dist_setup_run(void *user, void *stream, int64_t *n_blocks, dsa_comm **comm)
{
    dist_setup *d = user;
    /* The fewest blocks any worker can hold, so every block id of the
     * head's tables is valid on every rank.  Ranks finish loading at
     * different times: the wait is bounded by the load timeout. */
    long long mine = *n_blocks, fewest = 0;
    int n_workers = d->env->size - 1;
    MPI_Request req;
    if (MPI_Iallreduce(&mine, &fewest, 1, MPI_LONG_LONG, MPI_MIN, d->env->workers, &req) !=
        MPI_SUCCESS)
        return dsa_fail(DSA_IO, "MPI_Iallreduce of the KV block counts failed");
    dsa_err err = dsa_mpi_wait(&req, NULL, d->p->load_timeout_s,
                               "KV block agreement among workers", n_workers);
    if (err)
        return err;
    *n_blocks = d->n_blocks = fewest;
    if (d->on_cuda) {
#ifdef DSA_HAVE_CUDA
        err = dsa_comm_nccl_create(d->tp_comm, d->env->workers, d->stage, d->n_stages,
                                   d->p->timeout_s, stream, &d->comm);
#else
        err = dsa_fail(DSA_UNSUPPORTED, "NCCL collectives: built without CUDA");
#endif
    } else {
        err = dsa_comm_mpi_create(d->tp_comm, d->env->workers, d->stage, d->n_stages,
                                  d->p->timeout_s, &d->comm);
    }
    *comm = d->comm;
    return err;
}

int dsa_dist_worker_main(const dsa_mpi_env *env, const dsa_dist_params *p)
{
    int n_workers = env->size - 1, r = env->rank;
    if (p->tp < 1 || n_workers % p->tp)
        dsa_mpi_abort(env, 2, "--tp %d does not divide the %d workers of the job", p->tp,
                      n_workers);
    int tp = p->tp, pp = n_workers / tp, stage = (r - 1) / tp, tp_rank = (r - 1) % tp;

    /* Layer range of this stage. */
    dsa_config cfg;
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", p->model_dir);
    if (dsa_config_load(path, &cfg))
        dsa_mpi_abort(env, 2, "cannot load the model: %s", dsa_errmsg());
    int *counts = calloc((size_t)pp, sizeof *counts);
    if (!counts || dsa_dist_layers(cfg.n_layers, pp, p->pp_layers, counts))
        dsa_mpi_abort(env, 2, "%s", counts ? dsa_errmsg() : "out of memory");
    dsa_shard shard = {.tp_rank = tp_rank, .tp_size = tp};
    for (int s = 0; s < stage; s++)
        shard.layer_begin += counts[s];
    shard.layer_end = shard.layer_begin + counts[stage];
    free(counts);
    if (cfg.n_heads % tp || cfg.intermediate_size % tp || cfg.moe_intermediate_size % tp)
        dsa_mpi_abort(env, 2, "TP=%d does not divide heads %d, intermediate %lld, moe %lld", tp,
                      cfg.n_heads, (long long)cfg.intermediate_size,
                      (long long)cfg.moe_intermediate_size);

    /* Communicators: this stage's TP group, bounded by the watchdog (every
     * worker reaches it right after the pre-flight). */
    MPI_Comm tp_comm = MPI_COMM_NULL;
    dsa_mpi_watchdog(env, p->timeout_s, "splitting the TP groups");
    if (MPI_Comm_split(env->workers, stage, tp_rank, &tp_comm) != MPI_SUCCESS)
        dsa_mpi_abort(env, 2, "MPI_Comm_split of the TP groups failed");
    dsa_mpi_watchdog(env, 0, NULL);
    MPI_Comm_set_errhandler(tp_comm, MPI_ERRORS_RETURN);

    /* CUDA: one GPU per worker, by its index among the workers of its node
     * (CUDA_VISIBLE_DEVICES still applies). */
    int on_cuda = p->device && !strncmp(p->device, "cuda", 4);
    char device[32];
    snprintf(device, sizeof device, "%.31s", p->device && *p->device ? p->device : "cpu");
    if (on_cuda && !strcmp(p->device, "cuda")) {
        MPI_Comm node = MPI_COMM_NULL;
        int local = 0;
        dsa_mpi_watchdog(env, p->timeout_s, "grouping the workers by node");
        if (MPI_Comm_split_type(env->workers, MPI_COMM_TYPE_SHARED, tp_rank, MPI_INFO_NULL,
                                &node) != MPI_SUCCESS)
            dsa_mpi_abort(env, 2, "MPI_Comm_split_type of the workers failed");
        dsa_mpi_watchdog(env, 0, NULL);
        MPI_Comm_rank(node, &local);
        MPI_Comm_free(&node);
        snprintf(device, sizeof device, "cuda:%d", local);
    }

    /* The backend, weights and KV cache: dist_setup (called inside
     * dsa_worker_step_create) agrees on the blocks and makes the
     * communicator on the backend's stream. */
    int64_t bs = p->block_size > 0 ? p->block_size : 64;
    int64_t len = p->max_model_len > 0 ? p->max_model_len : cfg.max_position_embeddings;
    dist_setup ds = {.env = env, .p = p, .tp_comm = tp_comm, .stage = stage, .n_stages = pp,
                     .on_cuda = on_cuda};
    dsa_worker_step_params sp = {.model_dir = p->model_dir, .device = device,
                                 .gpu_memory_utilization = p->gpu_memory_utilization,
                                 .n_threads = p->n_threads, .block_size = bs,
                                 .max_model_len = len, .n_blocks = p->n_blocks,
                                 .kv_cache_bytes = p->kv_cache_bytes,
                                 .max_num_seqs = p->max_num_seqs, .shard = &shard,
                                 .spec_tokens = p->spec_tokens,
                                 .lm_head_quant = p->lm_head_quant,
                                 .cpu_int8_act = p->cpu_int8_act,
                                 .prepare = dist_setup_run, .prepare_user = &ds};
    dsa_worker_step *ws = NULL;
    double t_load = dsa_time_now();
    if (dsa_worker_step_create(&sp, &ws))
        dsa_mpi_abort(env, 2, "loading stage %d tp %d/%d (layers [%d, %d)) on %s from %s: %s",
                      stage, tp_rank, tp, shard.layer_begin, shard.layer_end, device,
                      p->model_dir, dsa_errmsg());
    dsa_comm *comm = ds.comm;
    long long fewest = ds.n_blocks;

    /* Hello: where this rank sits and what it holds. */
    dsa_ctl_msg hello = {.type = DSA_MSG_HELLO};
    dsa_hello *h = &hello.u.hello;
    *h = (dsa_hello){.rank = r, .stage = stage, .n_stages = pp, .tp_rank = tp_rank,
                     .tp_size = tp, .layer_begin = shard.layer_begin,
                     .layer_end = shard.layer_end, .rss_bytes = rss_bytes(),
                     .ready_s = dsa_time_now() - env->t_start};
    snprintf(h->host, sizeof h->host, "%.63s", env->host);
    snprintf(h->device, sizeof h->device, "%s", device);
    dsa_worker_step_info(ws, &h->info);
    h->weight_bytes = (int64_t)dsa_worker_step_weight_bytes(ws);
    DSA_INFO("rank %d (%s, %s): stage %d/%d tp %d/%d layers [%d, %d): weights %.1f MB, RSS %.1f MB, "
             "%lld KV blocks, loaded in %.2f s, ready %.2f s after start", r, env->host, device,
             stage,
             pp, tp_rank, tp, shard.layer_begin, shard.layer_end, h->weight_bytes / 1e6,
             h->rss_bytes / 1e6, fewest, dsa_time_now() - t_load, h->ready_s);
    uint8_t *buf = NULL;
    size_t blen = 0;
    dsa_ctl_msg m;
    if (dsa_ctl_encode(&hello, &buf, &blen) ||
        dsa_mpi_send_frame(MPI_COMM_WORLD, 0, DSA_MPI_TAG_REPLY, buf, blen, p->timeout_s))
        dsa_mpi_abort(env, 2, "hello to the head: %s", dsa_errmsg());
    free(buf);
    buf = NULL;
    if (dsa_mpi_recv_frame(MPI_COMM_WORLD, 0, DSA_MPI_TAG_CTRL, p->load_timeout_s, &buf, &blen,
                           NULL) ||
        dsa_ctl_decode(buf, blen, &m) || m.type != DSA_MSG_CONFIG)
        dsa_mpi_abort(env, 2, "waiting for Config from the head: %s", dsa_errmsg());
    free(buf);
    if (m.u.config.n_blocks > fewest)
        dsa_mpi_abort(env, 2, "the head asks for %lld KV blocks, this rank holds %lld",
                      (long long)m.u.config.n_blocks, fewest);

    FILE *dump = NULL;
    if (p->dump_logits && stage == pp - 1 && tp_rank == 0 &&
        !(dump = fopen(p->dump_logits, "wb")))
        dsa_mpi_abort(env, 2, "cannot write %s", p->dump_logits);

    /* The plan loop.  Waiting for the next frame is unbounded: an idle head
     * is not an error (it pings), and a dead head ends the job via mpirun. */
    step_times st = {0};
    int code = 0;
    for (;;) {
        double t0 = dsa_time_now();
        buf = NULL;
        if (dsa_mpi_recv_frame(MPI_COMM_WORLD, 0, DSA_MPI_TAG_CTRL, 0, &buf, &blen, NULL))
            dsa_mpi_abort(env, 2, "receiving from the head: %s", dsa_errmsg());
        double t1 = dsa_time_now();
        int type = 0;
        if (dsa_frame_peek(buf, blen, &type))
            dsa_mpi_abort(env, 2, "bad frame from the head: %s", dsa_errmsg());
        if (type == DSA_MSG_STEP_PLAN) {
            dsa_step_plan plan;
            dsa_step_result res;
            if (dsa_step_plan_decode(buf, blen, &plan))
                dsa_mpi_abort(env, 2, "bad plan from the head: %s", dsa_errmsg());
            free(buf);
            buf = NULL;
            late_masks lm = {.plan = &plan, .timeout_s = p->timeout_s, .st = &st};
            int masks_here = plan.masks_later && stage == pp - 1;
            if (masks_here) {
                plan.mask_wait = late_masks_recv;
                plan.mask_user = &lm;
            }
            double c0 = comm_total(comm), t2 = dsa_time_now();
            if (dsa_worker_step_run(ws, &plan, &res))
                dsa_mpi_abort(env, 2, "step %llu: %s", (unsigned long long)plan.step_id,
                              dsa_errmsg());
            /* a step that sampled nothing here leaves its masks on the wire;
             * masks that never came (or did not fit the plan) end the job as
             * a late peer does: the step failed with DSA_TIMEOUT */
            if (masks_here && !lm.got)
                late_masks_recv(&lm);
            if (lm.failed)
                dsa_mpi_abort(env, 3, "step %llu: %s", (unsigned long long)plan.step_id,
                              lm.msg);
            double t3 = dsa_time_now(), dc = comm_total(comm) - c0;
            /* A collective that failed leaves the peers out of step. */
            if (res.status == DSA_TIMEOUT || res.status == DSA_IO)
                dsa_mpi_abort(env, 3, "step %llu: %s", (unsigned long long)plan.step_id,
                              res.message);
            int64_t rows = 0;
            const float *lg = dsa_worker_step_logits(ws, &rows);
            if (dump && lg && rows > 0) {
                fwrite(lg, sizeof(float), (size_t)(rows * h->info.vocab_size), dump);
                fflush(dump);
            }
            if (stage == pp - 1 && tp_rank == 0) {
                if (dsa_step_result_encode(&res, &buf, &blen) ||
                    dsa_mpi_send_frame(MPI_COMM_WORLD, 0, DSA_MPI_TAG_REPLY, buf, blen,
                                       p->timeout_s))
                    dsa_mpi_abort(env, 2, "result to the head: %s", dsa_errmsg());
            }
            dsa_step_result_free(&res);
            dsa_step_plan_free(&plan);
            double t4 = dsa_time_now();
            st.n++;
            st.idle_s += t1 - t0;
            st.comm_s += dc;
            st.compute_s += (t3 - t2) - dc;
            st.control_s += (t2 - t1) + (t4 - t3);
        } else if (type == DSA_MSG_PING) {
            if (dsa_ctl_decode(buf, blen, &m))
                dsa_mpi_abort(env, 2, "bad ping: %s", dsa_errmsg());
            free(buf);
            buf = NULL;
            m.u.ping.rank = r;
            if (dsa_ctl_encode(&m, &buf, &blen) ||
                dsa_mpi_send_frame(MPI_COMM_WORLD, 0, DSA_MPI_TAG_REPLY, buf, blen,
                                   p->timeout_s))
                dsa_mpi_abort(env, 2, "ping answer: %s", dsa_errmsg());
        } else if (type == DSA_MSG_SHUTDOWN) {
            break;
        } else if (type == DSA_MSG_ABORT) {
            if (!dsa_ctl_decode(buf, blen, &m))
                DSA_ERROR("rank %d: the head aborts: %s", r, m.u.abort.message);
            code = 1;
            break;
        } else {
            dsa_mpi_abort(env, 2, "unexpected message type %d from the head", type);
        }
        free(buf);
        buf = NULL;
    }
    free(buf);
    if (dump)
        fclose(dump);
    if (st.n_late_masks)
        DSA_INFO("rank %d (%s): grammar masks of %llu steps came after their plan; "
                 "%.3f ms waited for them per such step", r, env->host,
                 (unsigned long long)st.n_late_masks, 1e3 * st.mask_wait_s / st.n_late_masks);
    if (st.n)
        DSA_INFO("rank %d (%s) stage %d tp %d: %llu steps; per step compute %.3f ms, "
                 "collectives %.3f ms (%llu all-reduce, %llu all-gather, %llu p2p, %.2f MB), "
                 "control %.3f ms, idle %.3f ms", r, env->host, stage, tp_rank,
                 (unsigned long long)st.n, 1e3 * st.compute_s / st.n, 1e3 * st.comm_s / st.n,
                 (unsigned long long)comm->stats.n_allreduce,
                 (unsigned long long)comm->stats.n_allgather,
                 (unsigned long long)comm->stats.n_p2p, comm->stats.bytes / 1e6,
                 1e3 * st.control_s / st.n, 1e3 * st.idle_s / st.n);
    dsa_worker_step_destroy(ws);
    dsa_comm_destroy(comm);
    MPI_Comm_free(&tp_comm);
    return code;
}
