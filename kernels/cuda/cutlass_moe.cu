/* cutlass_moe.cu - the routed experts' grouped FP8 GEMM (cuda_moe.h
 * dsa_cutlass_moe_run): CUTLASS's Hopper warp-specialised pointer-array
 * grouped GEMM with blockwise scaling, e4m3 x e4m3, F32 accumulation with
 * the scales applied per 128 of K, BF16 out.  One kernel instantiation
 * serves both phases (gate|up and down): tile 128x128x128, cluster 1x1x1
 * (an expert's rows are few and ragged; a multicast cluster would pair
 * tiles of different sizes), cooperative schedule, no C operand.
 *
 * A small kernel of ours writes each group's problem size, pointers and
 * strides on the device from the routing's row offsets, so nothing here
 * reads the host after routing and the launch can sit in a graph; the
 * problem sizes are given to CUTLASS as device-only (no host copy), and
 * groups of experts without rows are zero-size problems that the
 * persistent scheduler skips.  Built with -DNDEBUG (meson.build): CUTLASS's
 * device asserts would serialise the wgmma pipeline. */
#include "kernels/cuda/cuda_moe.h"

#include <cute/tensor.hpp>
#include <cutlass/cutlass.h>
#include <cutlass/epilogue/collective/collective_builder.hpp>
#include <cutlass/epilogue/dispatch_policy.hpp>
#include <cutlass/gemm/collective/collective_builder.hpp>
#include <cutlass/gemm/device/gemm_universal_adapter.h>
#include <cutlass/gemm/dispatch_policy.hpp>
#include <cutlass/gemm/group_array_problem_shape.hpp>
#include <cutlass/gemm/kernel/gemm_universal.hpp>

/* A named namespace: nvcc's host stubs cannot name a kernel inside an
 * anonymous one while cute has its own. */
namespace dsa_cutlass_moe {

using namespace cute;

using ProblemShape = cutlass::gemm::GroupProblemShape<Shape<int, int, int>>;
using ElementA = cutlass::float_e4m3_t;         /* activations, row-major [M, K] */
using ElementB = cutlass::float_e4m3_t;         /* weights [N, K]: K-contiguous */
using ElementD = cutlass::bfloat16_t;           /* row-major [M, N] */
using LayoutA = cutlass::layout::RowMajor;
using LayoutB = cutlass::layout::ColumnMajor;
using LayoutD = cutlass::layout::RowMajor;
constexpr int kAlignA = 16, kAlignB = 16, kAlignD = 8; /* elements of 16 bytes */

using TileShape = Shape<_128, _128, _128>;
using ClusterShape = Shape<_1, _1, _1>;
/* 1x128 activation scales (M-major), 128x128 weight scales (K-major: the
 * checkpoint's weight_scale_inv rows). */
using ScaleConfig = cutlass::detail::Sm90BlockwiseScaleConfig<1, 128, 128, cute::GMMA::Major::MN,
                                                              cute::GMMA::Major::K>;
using LayoutSFA = decltype(ScaleConfig::deduce_layoutSFA());
using LayoutSFB = decltype(ScaleConfig::deduce_layoutSFB());

using Epilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
    cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, TileShape, ClusterShape,
    cutlass::epilogue::collective::EpilogueTileAuto, float, float, void, LayoutD *, kAlignD,
    ElementD, LayoutD *, kAlignD, cutlass::epilogue::PtrArrayTmaWarpSpecializedCooperative,
    cutlass::epilogue::fusion::LinearCombination<ElementD, float, void>>::CollectiveOp;

using Mainloop = typename cutlass::gemm::collective::CollectiveBuilder<
    cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, ElementA,
    cute::tuple<LayoutA *, LayoutSFA *>, kAlignA, ElementB, cute::tuple<LayoutB *, LayoutSFB *>,
    kAlignB, float, TileShape, ClusterShape,
    cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(
        sizeof(typename Epilogue::SharedStorage))>,
    cutlass::gemm::KernelPtrArrayTmaWarpSpecializedCooperativeFP8Blockwise>::CollectiveOp;

using Kernel = cutlass::gemm::kernel::GemmUniversal<ProblemShape, Mainloop, Epilogue>;
using Gemm = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;
using StrideA = typename Kernel::InternalStrideA;
using StrideB = typename Kernel::InternalStrideB;
using StrideD = typename Kernel::InternalStrideD;
using Shape3 = ProblemShape::UnderlyingProblemShape;

/* The per-group arrays in the scratch, then the packed weight scales, then
 * CUTLASS's workspace; every piece 256-byte aligned. */
struct Groups {
    Shape3 *shape;
    const ElementA **a;
    const ElementB **b;
    const float **sfa, **sfb;
    ElementD **d;
    StrideA *sta;
    StrideB *stb;
    StrideD *std_;
    float *sfb_packed;
    void *workspace;
};

static size_t align256(size_t n)
{
    return (n + 255) & ~(size_t)255;
}

/* Carves the scratch for g_max groups; returns the bytes used. */
static size_t groups_carve(char *base, int64_t g_max, size_t n_packed, size_t ws_bytes,
                           Groups *g)
{
    size_t o = 0;
    size_t n = (size_t)g_max;
    auto take = [&](size_t bytes) {
        char *p = base ? base + o : nullptr;
        o = align256(o + bytes);
        return p;
    };
    Groups t;
    t.shape = (Shape3 *)take(n * sizeof(Shape3));
    t.a = (const ElementA **)take(n * sizeof(void *));
    t.b = (const ElementB **)take(n * sizeof(void *));
    t.sfa = (const float **)take(n * sizeof(void *));
    t.sfb = (const float **)take(n * sizeof(void *));
    t.d = (ElementD **)take(n * sizeof(void *));
    t.sta = (StrideA *)take(n * sizeof(StrideA));
    t.stb = (StrideB *)take(n * sizeof(StrideB));
    t.std_ = (StrideD *)take(n * sizeof(StrideD));
    t.sfb_packed = (float *)take(n_packed * sizeof(float));
    t.workspace = take(ws_bytes);
    if (g)
        *g = t;
    return o;
}

static typename Gemm::Arguments make_args(const Groups &g, int64_t n_groups, int device, int n_sm)
{
    cutlass::KernelHardwareInfo hw;
    hw.device_id = device;
    hw.sm_count = n_sm;
    typename Gemm::Arguments args{
        cutlass::gemm::GemmUniversalMode::kGrouped,
        {(int)n_groups, g.shape, nullptr},
        {g.a, g.sta, g.b, g.stb, g.sfa, nullptr, g.sfb, nullptr},
        {{}, nullptr, nullptr, g.d, g.std_},
        hw};
    auto &f = args.epilogue.thread;
    f.alpha = 1.0f;
    f.beta = 0.0f;
    return args;
}

static size_t workspace_bytes(int64_t g_max, int n_sm)
{
    Groups none = {};
    typename Gemm::Arguments args = make_args(none, g_max, 0, n_sm);
    return Gemm::get_workspace_size(args);
}

/* Group g of the phase: its expert, weight (0 gate, 1 up, 2 down) and the
 * column offset of its output within a row of d. */
struct Phase {
    const uint8_t *a;
    const float *sa;
    ElementD *d;
    const int32_t *off;
    const dsa_cuda_w *table;
    int64_t n, k, ld_d;
    int gate_up;
};

/* One block per group: thread 0 writes the descriptors; the block packs the
 * weight's scales to [ceil(n / 128)][k / 128] when its rows are padded and
 * the expert has rows. */
__global__ void groups_setup_kernel(Groups g, Phase p)
{
    int64_t grp = blockIdx.x;
    int64_t e = p.gate_up ? grp / 2 : grp;
    int which = p.gate_up ? (int)(grp % 2) : 2;
    const dsa_cuda_w &w = p.table[3 * e + which];
    int32_t r0 = p.off[e], rows = p.off[e + 1] - r0;
    int64_t n_kb = p.k / 128, n_nb = (p.n + 127) / 128;
    const float *sfb = w.scale;
    if (w.scale_ld != n_kb) {
        float *dst = g.sfb_packed + grp * n_nb * n_kb;
        if (rows > 0)
            for (int64_t i = threadIdx.x; i < n_nb * n_kb; i += blockDim.x)
                dst[i] = w.scale[(i / n_kb) * w.scale_ld + i % n_kb];
        sfb = dst;
    }
    if (threadIdx.x != 0)
        return;
    g.shape[grp] = Shape3(rows, (int)p.n, (int)p.k);
    g.a[grp] = (const ElementA *)(p.a + (int64_t)r0 * p.k);
    g.sfa[grp] = p.sa + (int64_t)r0 * n_kb;
    g.b[grp] = (const ElementB *)w.data;
    g.sfb[grp] = sfb;
    g.d[grp] = p.d + (int64_t)r0 * p.ld_d + (p.gate_up ? which * p.n : 0);
    StrideA sa{};
    get<0>(sa) = p.k;
    StrideB sb{};
    get<0>(sb) = w.ld;
    StrideD sd{};
    get<0>(sd) = p.ld_d;
    g.sta[grp] = sa;
    g.stb[grp] = sb;
    g.std_[grp] = sd;
}

static size_t packed_floats(int64_t n_experts, int64_t dim, int64_t inter)
{
    size_t up = (size_t)(2 * n_experts) * (size_t)((inter + 127) / 128) * (size_t)(dim / 128);
    size_t down = (size_t)n_experts * (size_t)((dim + 127) / 128) * (size_t)(inter / 128);
    return up > down ? up : down;
}

} // namespace dsa_cutlass_moe

using namespace dsa_cutlass_moe;

extern "C" size_t dsa_cutlass_moe_scratch_bytes(int64_t n_experts, int64_t dim, int64_t inter,
                                                int n_sm)
{
    return groups_carve(nullptr, 2 * n_experts, packed_floats(n_experts, dim, inter),
                        workspace_bytes(2 * n_experts, n_sm), nullptr);
}

extern "C" dsa_err dsa_cutlass_moe_run(dsa_cuda_backend *be, const dsa_cutlass_moe_params *p)
{
    int64_t E = p->perm->n_experts, G = p->phase == DSA_CUTLASS_MOE_GATE_UP ? 2 * E : E;
    int64_t dim = p->phase == DSA_CUTLASS_MOE_GATE_UP ? p->k : p->n;
    int64_t inter = p->phase == DSA_CUTLASS_MOE_GATE_UP ? p->n : p->k;
    Groups g;
    groups_carve((char *)p->scratch, 2 * E, packed_floats(E, dim, inter),
                 workspace_bytes(2 * E, be->n_sm), &g);
    Phase ph = {p->a, p->sa, (ElementD *)p->d, p->perm->off, p->table, p->n, p->k, p->ld_d,
                p->phase == DSA_CUTLASS_MOE_GATE_UP};
    groups_setup_kernel<<<(unsigned)G, 128, 0, be->stream>>>(g, ph);
    dsa_err err = DSA_CUDA_LAUNCHED();
    if (err)
        return err;
    Gemm gemm;
    typename Gemm::Arguments args = make_args(g, G, be->device, be->n_sm);
    cutlass::Status st = gemm.can_implement(args);
    if (st != cutlass::Status::kSuccess)
        return dsa_fail(DSA_UNSUPPORTED, "cutlass moe: %s (n %lld, k %lld)",
                        cutlassGetStatusString(st), (long long)p->n, (long long)p->k);
    if ((st = gemm.initialize(args, g.workspace, be->stream)) != cutlass::Status::kSuccess ||
        (st = gemm.run(be->stream)) != cutlass::Status::kSuccess) {
        (void)cudaGetLastError();
        return dsa_fail(DSA_DEVICE, "cutlass moe: %s", cutlassGetStatusString(st));
    }
    return DSA_CUDA_LAUNCHED();
}
