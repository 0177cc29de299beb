/* cuda_allreduce.cu - the one-shot all-reduce (cuda_allreduce.h).
 *
 * Each rank's shared area: flags [MAX_BLOCKS][MAX_RANKS] u32, then two
 * staging buffers of BYTES_MAX (used by odd and even epochs).  A call runs
 * G blocks on every rank, G a function of the size alone, block b owning
 * the same 16-byte vectors everywhere.  Block b of call e (its own epoch
 * counter, device memory, so a replayed graph advances it):
 *   1. copies its vectors of buf into this rank's staging[e & 1];
 *   2. thread r stores e into rank r's flags[b][me] (release, system scope);
 *   3. thread r waits for flags[b][r] >= e in this rank's area (acquire);
 *   4. sums its vectors over staging[e & 1] of ranks 0..n-1, in that order,
 *      in F32, into buf.
 * Reuse is safe: rank p cannot signal epoch e + 1 for block b before its
 * call e has ended (stream order), so when this rank writes staging[e & 1]
 * again at e + 2 every peer has finished reading it at e.  Peer data is
 * read with L1-bypassing loads (__ldcg): an L1 line from two epochs ago
 * must not be reused. */
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_allreduce.h"
#include "kernels/cuda/cuda_common.cuh"

#define AR_FLAGS_BYTES 4096     /* MAX_BLOCKS * MAX_RANKS * 4 = 2048, page-rounded */
#define AR_THREADS 512

struct dsa_cuda_ar {
    int rank, n_ranks;
    double timeout_s;
    char *area;                 /* this rank's shared area (exported) */
    char *peer[DSA_CUDA_AR_MAX_RANKS]; /* every rank's area, mapped here */
    uint32_t *epoch;            /* [MAX_BLOCKS] this rank's call counts (not shared) */
    int local;                  /* peers linked in-process: nothing to close */
};

typedef struct ar_args {
    char *area[DSA_CUDA_AR_MAX_RANKS];
    uint4 *buf;
    uint32_t *epoch;
    int64_t n_vec;              /* 16-byte vectors in buf */
    int rank, n_ranks;
    unsigned long long timeout_ns;
} ar_args;

static __device__ __forceinline__ void st_release_sys(uint32_t *p, uint32_t v)
{
    asm volatile("st.release.sys.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

static __device__ __forceinline__ uint32_t ld_acquire_sys(const uint32_t *p)
{
    uint32_t v;
    asm volatile("ld.acquire.sys.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}

static __device__ __forceinline__ unsigned long long global_ns(void)
{
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

/* F32 sums of the 16-byte vector v as 4 floats or 8 BF16 values. */
template <typename T> struct vec_sum;

template <> struct vec_sum<float> {
    float s[4] = {0, 0, 0, 0};
    __device__ void add(uint4 v)
    {
        s[0] += __uint_as_float(v.x);
        s[1] += __uint_as_float(v.y);
        s[2] += __uint_as_float(v.z);
        s[3] += __uint_as_float(v.w);
    }
    __device__ uint4 get() const
    {
        return make_uint4(__float_as_uint(s[0]), __float_as_uint(s[1]), __float_as_uint(s[2]),
                          __float_as_uint(s[3]));
    }
};

template <> struct vec_sum<bf16> {
    float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    __device__ void add(uint4 v)
    {
        const bf16 *h = (const bf16 *)&v;
        for (int i = 0; i < 8; i++)
            s[i] += __bfloat162float(h[i]);
    }
    __device__ uint4 get() const
    {
        uint4 v;
        bf16 *h = (bf16 *)&v;
        for (int i = 0; i < 8; i++)
            h[i] = __float2bfloat16(s[i]);
        return v;
    }
};

template <typename T> static __global__ void oneshot_kernel(ar_args a)
{
    int b = blockIdx.x, tid = threadIdx.x;
    uint32_t e = a.epoch[b] + 1;
    int64_t per = (a.n_vec + gridDim.x - 1) / gridDim.x;
    int64_t v0 = (int64_t)b * per, v1 = v0 + per < a.n_vec ? v0 + per : a.n_vec;
    size_t stage_off = AR_FLAGS_BYTES + (size_t)(e & 1) * DSA_CUDA_AR_BYTES_MAX;

    /* 1. my vectors into my staging buffer */
    uint4 *mine = (uint4 *)(a.area[a.rank] + stage_off);
    for (int64_t v = v0 + tid; v < v1; v += blockDim.x)
        mine[v] = a.buf[v];
    __syncthreads();
    /* 2-3. signal every rank, wait for every rank (bounded) */
    if (tid < a.n_ranks) {
        uint32_t *to = (uint32_t *)a.area[tid] + b * DSA_CUDA_AR_MAX_RANKS + a.rank;
        st_release_sys(to, e);
        const uint32_t *from = (const uint32_t *)a.area[a.rank] + b * DSA_CUDA_AR_MAX_RANKS + tid;
        unsigned long long t0 = global_ns();
        while ((int32_t)(ld_acquire_sys(from) - e) < 0)
            if (global_ns() - t0 > a.timeout_ns)
                __trap(); /* a peer never came: fail the stream, never hang */
    }
    __syncthreads();
    /* 4. sum in rank order */
    for (int64_t v = v0 + tid; v < v1; v += blockDim.x) {
        vec_sum<T> acc;
        for (int r = 0; r < a.n_ranks; r++)
            acc.add(__ldcg((const uint4 *)(a.area[r] + stage_off) + v));
        a.buf[v] = acc.get();
    }
    if (tid == 0)
        a.epoch[b] = e;
}

extern "C" dsa_err dsa_cuda_ar_create(int rank, int n_ranks, double timeout_s, dsa_cuda_ar **out,
                                      unsigned char *handle)
{
    *out = NULL;
    if (n_ranks < 2 || n_ranks > DSA_CUDA_AR_MAX_RANKS || rank < 0 || rank >= n_ranks)
        return dsa_fail(DSA_INVAL, "one-shot all-reduce: rank %d of %d (2..%d ranks)", rank,
                        n_ranks, DSA_CUDA_AR_MAX_RANKS);
    dsa_cuda_ar *ar = (dsa_cuda_ar *)calloc(1, sizeof *ar);
    if (!ar)
        return dsa_fail(DSA_NOMEM, "one-shot all-reduce");
    ar->rank = rank;
    ar->n_ranks = n_ranks;
    ar->timeout_s = timeout_s;
    size_t bytes = AR_FLAGS_BYTES + 2 * (size_t)DSA_CUDA_AR_BYTES_MAX;
    cudaIpcMemHandle_t h;
    dsa_err err;
    if ((err = DSA_CUDA_CHECK(cudaMalloc((void **)&ar->area, bytes))) ||
        (err = DSA_CUDA_CHECK(cudaMemset(ar->area, 0, bytes))) ||
        (err = DSA_CUDA_CHECK(cudaMalloc((void **)&ar->epoch,
                                         DSA_CUDA_AR_MAX_BLOCKS * sizeof(uint32_t)))) ||
        (err = DSA_CUDA_CHECK(cudaMemset(ar->epoch, 0, DSA_CUDA_AR_MAX_BLOCKS * sizeof(uint32_t)))) ||
        (err = DSA_CUDA_CHECK(cudaIpcGetMemHandle(&h, ar->area))) ||
        (err = DSA_CUDA_CHECK(cudaDeviceSynchronize())))
        goto fail;
    static_assert(sizeof h == DSA_CUDA_AR_HANDLE_BYTES, "IPC handle size");
    memcpy(handle, &h, sizeof h);
    ar->peer[rank] = ar->area;
    *out = ar;
    return DSA_OK;
fail:
    dsa_cuda_ar_destroy(ar);
    return err;
}

extern "C" dsa_err dsa_cuda_ar_open(dsa_cuda_ar *ar, int rank, const unsigned char *handle)
{
    if (rank < 0 || rank >= ar->n_ranks || rank == ar->rank || ar->peer[rank])
        return dsa_fail(DSA_INVAL, "one-shot all-reduce: cannot open rank %d", rank);
    cudaIpcMemHandle_t h;
    memcpy(&h, handle, sizeof h);
    void *p = NULL;
    dsa_err err = DSA_CUDA_CHECK(cudaIpcOpenMemHandle(&p, h, cudaIpcMemLazyEnablePeerAccess));
    if (!err)
        ar->peer[rank] = (char *)p;
    return err;
}

extern "C" void dsa_cuda_ar_destroy(dsa_cuda_ar *ar)
{
    if (!ar)
        return;
    for (int r = 0; r < ar->n_ranks && !ar->local; r++)
        if (ar->peer[r] && r != ar->rank)
            (void)cudaIpcCloseMemHandle(ar->peer[r]);
    if (ar->area)
        (void)cudaFree(ar->area);
    if (ar->epoch)
        (void)cudaFree(ar->epoch);
    free(ar);
}

extern "C" dsa_err dsa_cuda_ar_create_local(int n_ranks, double timeout_s, dsa_cuda_ar **ars)
{
    unsigned char handle[DSA_CUDA_AR_HANDLE_BYTES];
    dsa_err err = DSA_OK;
    for (int r = 0; r < n_ranks; r++)
        ars[r] = NULL;
    for (int r = 0; r < n_ranks && !err; r++)
        if (!(err = dsa_cuda_ar_create(r, n_ranks, timeout_s, &ars[r], handle)))
            ars[r]->local = 1;
    if (err) {
        for (int r = 0; r < n_ranks; r++)
            dsa_cuda_ar_destroy(ars[r]);
        return err;
    }
    for (int r = 0; r < n_ranks; r++)
        for (int p = 0; p < n_ranks; p++)
            ars[r]->peer[p] = ars[p]->area;
    return DSA_OK;
}

extern "C" dsa_err dsa_cuda_ar_sum(dsa_cuda_ar *ar, void *buf, int64_t n, dsa_dtype dt,
                                   void *stream)
{
    size_t es = dsa_dtype_size(dt);
    int64_t bytes = n * (int64_t)es;
    if ((dt != DSA_DTYPE_BF16 && dt != DSA_DTYPE_F32) || bytes <= 0 ||
        bytes > DSA_CUDA_AR_BYTES_MAX || bytes % 16)
        return dsa_fail(DSA_INVAL, "one-shot all-reduce of %lld %s values", (long long)n,
                        dsa_dtype_name(dt));
    for (int r = 0; r < ar->n_ranks; r++)
        if (!ar->peer[r])
            return dsa_fail(DSA_INVAL, "one-shot all-reduce: rank %d not opened", r);
    ar_args a;
    memset(&a, 0, sizeof a);
    for (int r = 0; r < ar->n_ranks; r++)
        a.area[r] = ar->peer[r];
    a.buf = (uint4 *)buf;
    a.epoch = ar->epoch;
    a.n_vec = bytes / 16;
    a.rank = ar->rank;
    a.n_ranks = ar->n_ranks;
    double t = ar->timeout_s > 0 ? ar->timeout_s : 600.0;
    a.timeout_ns = (unsigned long long)(t * 1e9);
    /* G depends on the size alone (every rank the same): ~2 KiB per block */
    int64_t g = (bytes + 2047) / 2048;
    unsigned grid = (unsigned)(g < 1 ? 1 : g > DSA_CUDA_AR_MAX_BLOCKS ? DSA_CUDA_AR_MAX_BLOCKS : g);
    cudaStream_t s = (cudaStream_t)stream;
    if (dt == DSA_DTYPE_BF16)
        oneshot_kernel<bf16><<<grid, AR_THREADS, 0, s>>>(a);
    else
        oneshot_kernel<float><<<grid, AR_THREADS, 0, s>>>(a);
    return DSA_CUDA_LAUNCHED();
}
