/* cutlass_gemm.cu - dense FP8 linear through CUTLASS (cuda_internal.h
 * dsa_cutlass_gemm_run), the second implementation beside cuBLASLt's
 * block-scaled matmul; cuda_linear_tune.c picks one per shape by timing
 * both.  out[M, N] = (x_q * sx) (W * sw)^T (+ out with accumulate), e4m3
 * operands, F32 accumulation with the scales applied per 128 of K, BF16
 * out.  One kernel instantiation: CUTLASS's Hopper warp-specialised
 * ping-pong blockwise-scaled GEMM, tile 64x128x128 (a decode batch is a few
 * rows: the 64-row tile wastes half what a 128-row one would), cluster
 * 1x1x1.  Scales: the activations' 1x128 K-major (sx[i * K/128 + kb],
 * cuda_quant.cu's kmajor layout), the weight's 128x128 K-major with its own
 * row stride (dsa_cuda_w scale_ld).  Built with -DNDEBUG (meson.build). */
#include "kernels/cuda/cuda_internal.h"

#include <cute/tensor.hpp>
#include <cutlass/cutlass.h>
#include <cutlass/epilogue/collective/collective_builder.hpp>
#include <cutlass/epilogue/dispatch_policy.hpp>
#include <cutlass/gemm/collective/collective_builder.hpp>
#include <cutlass/gemm/device/gemm_universal_adapter.h>
#include <cutlass/gemm/dispatch_policy.hpp>
#include <cutlass/gemm/kernel/gemm_universal.hpp>

/* A named namespace: nvcc's host stubs cannot name a kernel inside an
 * anonymous one while cute has its own. */
namespace dsa_cutlass_dense {

using namespace cute;

using ElementA = cutlass::float_e4m3_t;
using ElementB = cutlass::float_e4m3_t;
using ElementD = cutlass::bfloat16_t;
using LayoutA = cutlass::layout::RowMajor;
using LayoutB = cutlass::layout::ColumnMajor;
using LayoutD = cutlass::layout::RowMajor;
constexpr int kAlignAB = 16, kAlignD = 8;

using TileShape = Shape<_64, _128, _128>;
using ClusterShape = Shape<_1, _1, _1>;
using ScaleConfig = cutlass::detail::Sm90BlockwiseScaleConfig<1, 128, 128, cute::GMMA::Major::K,
                                                              cute::GMMA::Major::K>;
using LayoutSFA = decltype(ScaleConfig::deduce_layoutSFA());
using LayoutSFB = decltype(ScaleConfig::deduce_layoutSFB());

using Epilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
    cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, TileShape, ClusterShape,
    cutlass::epilogue::collective::EpilogueTileAuto, float, float, ElementD, LayoutD, kAlignD,
    ElementD, LayoutD, kAlignD, cutlass::epilogue::TmaWarpSpecialized,
    cutlass::epilogue::fusion::LinearCombination<ElementD, float, ElementD>>::CollectiveOp;

using Mainloop = typename cutlass::gemm::collective::CollectiveBuilder<
    cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, ElementA,
    cute::tuple<LayoutA, LayoutSFA>, kAlignAB, ElementB, cute::tuple<LayoutB, LayoutSFB>,
    kAlignAB, float, TileShape, ClusterShape,
    cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(
        sizeof(typename Epilogue::SharedStorage))>,
    cutlass::gemm::KernelTmaWarpSpecializedPingpongFP8Blockwise>::CollectiveOp;

using Kernel = cutlass::gemm::kernel::GemmUniversal<Shape<int, int, int, int>, Mainloop, Epilogue>;
using Gemm = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;
using StrideA = typename Kernel::StrideA;
using StrideB = typename Kernel::StrideB;
using StrideD = typename Kernel::StrideD;

static typename Gemm::Arguments make_args(const dsa_cutlass_gemm *g, int device, int n_sm)
{
    int M = (int)g->m, N = (int)g->w.rows, K = (int)g->w.cols;
    StrideA sa{};
    get<0>(sa) = g->w.cols;                     /* x_q rows are compact: stride K */
    StrideB sb{};
    get<0>(sb) = g->w.ld;
    StrideD sd{};
    get<0>(sd) = g->ld_out;
    /* K-major scale layouts: (M, K) -> sx[m * ceil(K/128) + k / 128] and
     * (N, K) -> sw[(n / 128) * scale_ld + k / 128]. */
    int n_kb = (K + 127) / 128, n_nb = (N + 127) / 128;
    LayoutSFA lsa = make_layout(make_shape(make_shape(_1{}, M), make_shape(_128{}, n_kb), 1),
                                make_stride(make_stride(_0{}, n_kb), make_stride(_0{}, _1{}),
                                            M * n_kb));
    LayoutSFB lsb = make_layout(make_shape(make_shape(_128{}, n_nb), make_shape(_128{}, n_kb), 1),
                                make_stride(make_stride(_0{}, (int)g->w.scale_ld),
                                            make_stride(_0{}, _1{}),
                                            (int)(n_nb * g->w.scale_ld)));
    cutlass::KernelHardwareInfo hw;
    hw.device_id = device;
    hw.sm_count = n_sm;
    typename Gemm::Arguments args{
        cutlass::gemm::GemmUniversalMode::kGemm,
        {M, N, K, 1},
        {(const ElementA *)g->xq, sa, (const ElementB *)g->w.data, sb, g->xs, lsa, g->w.scale,
         lsb},
        {{}, (const ElementD *)g->out, sd, (ElementD *)g->out, sd},
        hw};
    args.epilogue.thread.alpha = 1.0f;
    args.epilogue.thread.beta = g->accumulate ? 1.0f : 0.0f;
    return args;
}

} // namespace dsa_cutlass_dense

using namespace dsa_cutlass_dense;

extern "C" dsa_err dsa_cutlass_gemm_run(dsa_cuda_backend *be, const dsa_cutlass_gemm *g, int *done)
{
    *done = 0;
    if (g->m <= 0)
        return DSA_OK;
    Gemm gemm;
    typename Gemm::Arguments args = make_args(g, be->device, be->n_sm);
    if (gemm.can_implement(args) != cutlass::Status::kSuccess ||
        Gemm::get_workspace_size(args) != 0)
        return DSA_OK;
    cutlass::Status st;
    if ((st = gemm.initialize(args, nullptr, be->stream)) != cutlass::Status::kSuccess ||
        (st = gemm.run(be->stream)) != cutlass::Status::kSuccess) {
        (void)cudaGetLastError();
        return dsa_fail(DSA_DEVICE, "cutlass gemm: %s", cutlassGetStatusString(st));
    }
    dsa_err err = DSA_CUDA_LAUNCHED();
    if (!err)
        *done = 1;
    return err;
}
