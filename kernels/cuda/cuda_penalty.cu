/* cuda_penalty.cu - the penalties' token counts on the device and the
 * penalties themselves (backend.h dsa_count_add_params,
 * dsa_penalty_params); the CPU reference is cpu_penalty.c.
 *
 * count_add: one thread per id; the 16-bit counts are bumped through a
 * compare-and-swap on their 32-bit word (saturating at 65535), prompt bits
 * through atomicOr.  Slots being reset are cleared first by memsets.
 * penalties: one block per row, a thread per vocabulary stride; the row's
 * draft ids (<= DSA_SPEC_TOKENS_MAX) are counted by a scan each thread
 * makes, so no per-row count copy is built.  Arithmetic and its order are
 * the reference's (IEEE division, two subtractions), so the rows match the
 * CPU's bit for bit.  Host arrays go up in one copy through pinned staging:
 *   count_add: [n] slots, [n] ids;
 *   penalties: [n_rows][6] int32 headers (slot, n_extra, offset of the
 *   extras, repetition, presence, frequency as float bits), the extras. */
#include <string.h>

#include "kernels/cuda/cuda_common.cuh"

#define PN_THREADS 256
#define PN_HDR 6

static __device__ void count_bump(uint16_t *c)
{
    uintptr_t a = (uintptr_t)c;
    unsigned *w = (unsigned *)(a & ~(uintptr_t)3);
    int shift = (a & 2) ? 16 : 0;
    unsigned old = *w, assumed;
    do {
        assumed = old;
        if (((assumed >> shift) & 0xffffu) == 0xffffu)
            return;
        old = atomicCAS(w, assumed, assumed + (1u << shift));
    } while (old != assumed);
}

static __global__ void count_add_kernel(uint16_t *out, uint32_t *prompt, int64_t vocab,
                                        int64_t prompt_ld, const int32_t *slots,
                                        const int32_t *ids, int64_t n, int is_prompt)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    int64_t s = slots[i], v = ids[i];
    if (is_prompt)
        atomicOr(&prompt[s * prompt_ld + (v >> 5)], 1u << (v & 31));
    else
        count_bump(&out[s * vocab + v]);
}

extern "C" dsa_err dsa_cuda_count_add(dsa_backend *be_, const dsa_count_add_params *p)
{
    dsa_cuda_backend *be = dsa_cuda_be(be_);
    const dsa_token_counts *c = p->counts;
    dsa_err err;
    if (p->n <= 0)
        return DSA_OK;
    if (p->n > 0x3fffffff)
        return dsa_fail(DSA_RANGE, "count_add: %lld ids", (long long)p->n);
    for (int64_t i = 0; i < p->n; i++)
        if (p->slots[i] < 0 || p->slots[i] >= c->n_slots ||
            (p->ids && (p->ids[i] < 0 || p->ids[i] >= c->vocab)))
            return dsa_fail(DSA_RANGE, "count_add: slot %d id %d", p->slots[i],
                            p->ids ? p->ids[i] : 0);
    if (p->reset)
        for (int64_t i = 0; i < p->n; i++)
            if ((err = DSA_CUDA_CHECK(cudaMemsetAsync(c->out + (int64_t)p->slots[i] * c->vocab, 0,
                                                      (size_t)c->vocab * 2, be->stream))) ||
                (err = DSA_CUDA_CHECK(cudaMemsetAsync(
                     c->prompt + (int64_t)p->slots[i] * c->prompt_ld, 0,
                     (size_t)c->prompt_ld * 4, be->stream))))
                return err;
    if (!p->ids)
        return DSA_OK;
    size_t bytes = (size_t)p->n * 8;
    void *dev, *host;
    if ((err = dsa_cuda_scratch(be, DSA_CUDA_SCR_PENALTY, bytes, &dev)) ||
        (err = DSA_CUDA_CHECK(cudaStreamSynchronize(be->stream))) ||
        (err = dsa_cuda_pinned(be, bytes, &host)))
        return err;
    memcpy(host, p->slots, (size_t)p->n * 4);
    memcpy((char *)host + p->n * 4, p->ids, (size_t)p->n * 4);
    if ((err = DSA_CUDA_CHECK(cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice,
                                              be->stream))))
        return err;
    const int32_t *ds = (const int32_t *)dev, *di = ds + p->n;
    count_add_kernel<<<dsa_cuda_blocks(p->n, 256), 256, 0, be->stream>>>(
        c->out, c->prompt, c->vocab, c->prompt_ld, ds, di, p->n, p->prompt);
    return DSA_CUDA_LAUNCHED();
}

static __global__ void __launch_bounds__(PN_THREADS)
penalty_kernel(float *logits, const int32_t *hdr, const int32_t *extra, const uint16_t *out,
               const uint32_t *prompt, int64_t vocab, int64_t prompt_ld)
{
    const int32_t *h = hdr + (int64_t)blockIdx.x * PN_HDR;
    int32_t slot = h[0], n_extra = h[1];
    if (slot < 0)
        return;
    const int32_t *ex = extra + h[2];
    float rp = __int_as_float(h[3]), pres = __int_as_float(h[4]), freq = __int_as_float(h[5]);
    rp = rp > 0 ? rp : 1.0f;
    float *l = logits + (int64_t)blockIdx.x * vocab;
    const uint16_t *o = out + (int64_t)slot * vocab;
    const uint32_t *pb = prompt + (int64_t)slot * prompt_ld;
    for (int64_t v = threadIdx.x; v < vocab; v += blockDim.x) {
        unsigned n = o[v];
        for (int32_t j = 0; j < n_extra; j++)
            n += ex[j] == v;
        if (!n && !((pb[v >> 5] >> (v & 31)) & 1u))
            continue;
        float x = l[v];
        if (rp != 1.0f)
            x = x > 0 ? __fdiv_rn(x, rp) : __fmul_rn(x, rp);
        if (n) {
            x = __fsub_rn(x, __fmul_rn(freq, (float)n));
            x = __fsub_rn(x, pres);
        }
        l[v] = x;
    }
}

extern "C" dsa_err dsa_cuda_penalties(dsa_backend *be_, const dsa_penalty_params *p)
{
    dsa_cuda_backend *be = dsa_cuda_be(be_);
    const dsa_token_counts *c = p->counts;
    if (p->n_rows <= 0)
        return DSA_OK;
    if (p->vocab != c->vocab || p->n_rows > 0x7fffffff)
        return dsa_fail(DSA_INVAL, "penalties: %lld rows of %lld (counts of %lld)",
                        (long long)p->n_rows, (long long)p->vocab, (long long)c->vocab);
    int64_t n_extra = 0, active = 0;
    for (int64_t r = 0; r < p->n_rows; r++) {
        if (p->rows[r].slot >= c->n_slots)
            return dsa_fail(DSA_RANGE, "penalties: slot %d of %lld", p->rows[r].slot,
                            (long long)c->n_slots);
        active += p->rows[r].slot >= 0;
        n_extra += p->rows[r].slot >= 0 ? p->rows[r].n_extra : 0;
    }
    if (!active)
        return DSA_OK;
    size_t hb = (size_t)(p->n_rows * PN_HDR) * 4, bytes = hb + (size_t)n_extra * 4 + 4;
    void *dev, *host;
    dsa_err err;
    if ((err = dsa_cuda_scratch(be, DSA_CUDA_SCR_PENALTY, bytes, &dev)) ||
        (err = DSA_CUDA_CHECK(cudaStreamSynchronize(be->stream))) ||
        (err = dsa_cuda_pinned(be, bytes, &host)))
        return err;
    int32_t *hdr = (int32_t *)host, *ex = (int32_t *)((char *)host + hb);
    int32_t off = 0;
    for (int64_t r = 0; r < p->n_rows; r++) {
        const dsa_penalty_row *pr = &p->rows[r];
        int32_t *h = hdr + r * PN_HDR;
        int32_t ne = pr->slot >= 0 ? pr->n_extra : 0;
        h[0] = pr->slot;
        h[1] = ne;
        h[2] = off;
        memcpy(&h[3], &pr->repetition, 4);
        memcpy(&h[4], &pr->presence, 4);
        memcpy(&h[5], &pr->frequency, 4);
        if (ne)
            memcpy(ex + off, pr->extra, (size_t)ne * 4);
        off += ne;
    }
    if ((err = DSA_CUDA_CHECK(cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice,
                                              be->stream))))
        return err;
    penalty_kernel<<<(unsigned)p->n_rows, PN_THREADS, 0, be->stream>>>(
        p->logits, (const int32_t *)dev, (const int32_t *)((char *)dev + hb), c->out, c->prompt,
        c->vocab, c->prompt_ld);
    return DSA_CUDA_LAUNCHED();
}
