#!/usr/bin/env python3
"""step_model.py - the modelled decode step of one DeepSeek-V3 rank (TP=8 x
PP=2) as this tree builds it, per op: bytes read/written in HBM, FLOPs,
launches, and the time each takes at H100 limits with the efficiency
assumed for its kernel class.  Prints the tables of docs/perf/gpu-model.md
(python3 tools/gpu/step_model.py).  Every number is a model, not a
measurement; the assumptions are the constants below.

What is modelled as built: q_a|kv_a one GEMM; gate|up one GEMM (shared
expert); the 1x128 activation quantisation inside the RMSNorm before an
FP8 linear (attention norm -> q_a|kv_a, q_a norm -> q_b, ffn norm ->
shared gate|up); the one-shot all-reduce up to DSA_CUDA_AR_BYTES_MAX
(256 KiB), NCCL above; the TP logits put in vocabulary order by one
kernel; MTP draft logits sampled greedily on the device.  The variant
"without the fusions" (--unfused) quantises in launches of its own and
sends every all-reduce through NCCL: the tree as it was before the CUDA
backend set norm_quant, run with DSA_CUDA_NO_ONESHOT=1 (norm_quant is not a
run-time option)."""
import sys

# H100 SXM limits
BW = 3.35e12            # HBM3 bytes/s
FP8_PEAK = 1979e12      # dense FP8 tensor FLOP/s
FP8_REACHED = 1300e12   # what the best published FP8 GEMMs reach
BF16_REACHED = 650e12   # ~2/3 of 989 dense BF16
NVLINK = 400e9          # bytes/s one GPU sends or receives, NVLink 4 (of 450)

# V3 shapes and one rank's shard
D, V, LAYERS_S1, LAYERS_S0 = 7168, 129280, 30, 31
TP, H = 8, 128 // 8     # 16 heads per rank
Q_LORA, KV_LORA, ROPE, NOPE, VD = 1536, 512, 64, 128, 128
E, TOPK, I_MOE = 256, 8, 2048 // 8       # every expert on every rank, 1/8 of its width
I_DENSE = 18432 // 8
CTX = 1024              # context per sequence (tokens in the latent cache)

# Efficiency per kernel class: fraction of HBM bandwidth reached when
# memory-bound, and the least time one kernel takes (launch, ramp, tail)
EFF = {
    'small': (0.60, 2.0e-6),      # norms, RoPE, quantise, route, combine: one short wave
    'gemm': (0.60, 3.0e-6),       # dense FP8 linear at decode (few N tiles; split-K from cuBLASLt)
    'gemm_big': (0.75, 3.0e-6),   # the same at M = 256 (enough tiles for every SM)
    'gemv': (0.75, 3.0e-6),       # fused FP8 GEMV over selected experts
    'grouped': (0.70, 4.0e-6),    # CUTLASS grouped FP8, gate|up (K = 7168)
    'grouped_k256': (0.60, 4.0e-6),  # CUTLASS grouped FP8, down (K = 256: 2 k-blocks a tile)
    'mla': (0.80, 6.0e-6),        # FlashInfer MLA paged decode (split-KV + merge inside)
    'sample': (0.70, 4.0e-6),     # FlashInfer sampling, two passes over the logits
}
GAP = 1.0e-6            # between dependent kernels in a CUDA graph (no PDL)
AR_LAT = 6.0e-6         # one-shot NVLink all-reduce: launch, one hop, flag barrier
AR_ONESHOT_MAX = 256 * 1024   # DSA_CUDA_AR_BYTES_MAX (cuda_allreduce.h): NCCL above
NCCL_LAT = 12.0e-6      # NCCL ring all-reduce base latency, 8 GPUs over NVLink (assumed)
PCIE = 50e9             # device to host, PCIe 5 x16 as reached


def op(name, cls, w_bytes, act_bytes, flops, launches=1, fp8=True):
    eff, t_min = EFF[cls]
    t_mem = (w_bytes + act_bytes) / (eff * BW)
    t_flop = flops / (FP8_REACHED if fp8 else BF16_REACHED)
    return dict(name=name, cls=cls, w=w_bytes, act=act_bytes, flops=flops, launches=launches,
                t=max(t_mem, t_flop, t_min * launches))


def allreduce(name, nbytes, oneshot=True):
    """One-shot (each rank reads the 7 peers' copies over NVLink, sums, one
    flag barrier) up to AR_ONESHOT_MAX; NCCL's ring above (2 x 7/8 of the
    bytes sent per rank)."""
    if oneshot and nbytes <= AR_ONESHOT_MAX:
        t = AR_LAT + (TP - 1) * nbytes / NVLINK
        name += ' one-shot'
    else:
        t = NCCL_LAT + 2 * (TP - 1) / TP * nbytes / NVLINK
        name += ' NCCL'
    return dict(name=name, cls='comm', w=0, act=0, flops=0, launches=1, t=t)


def touched(b):
    """Expected distinct experts hit by b tokens x 8 (balanced routing)."""
    return E * (1 - (1 - TOPK / E) ** b)


def gemm_cls(b):
    return 'gemm_big' if b > 16 else 'gemm'


def moe_layer(b, fused=True):
    """One MoE layer of b decode tokens.  fused: the norms write the FP8
    codes (b x dim bytes and b x dim/128 F32 scales more) that the next
    linear reads instead of quantising in a launch of its own."""
    a = b * TOPK
    qx = b * D + b * (D // 128) * 4           # codes + scales of a norm's output (dim D)
    qa = b * Q_LORA + b * (Q_LORA // 128) * 4
    ops = []
    if fused:
        ops.append(op('attn norm + residual + quantise', 'small', 0, b * D * 2 * 3 + qx, 0))
    else:
        ops.append(op('attn norm + residual', 'small', 0, b * D * 2 * 3, 0))
        ops.append(op('quantise x (1x128)', 'small', 0, b * D * 2 + qx, 0))
    ops.append(op('q_a + kv_a (2112 x 7168, one GEMM)', gemm_cls(b), 2112 * D,
                  qx + b * 2112 * 2, 2 * b * 2112 * D))
    if fused:
        ops.append(op('q_a norm + quantise, kv_a norm', 'small', 0,
                      b * 2112 * 2 * 2 + qa, 0, 2))
        ops.append(op('q_b (3072 x 1536) on the norm\'s codes', gemm_cls(b),
                      H * (NOPE + ROPE) * Q_LORA, qa + b * 3072 * 2, 2 * b * 3072 * Q_LORA))
    else:
        ops.append(op('q_a, kv_a norms', 'small', 0, b * 2112 * 2 * 2, 0, 2))
        ops.append(op('quantise + q_b (3072 x 1536)', gemm_cls(b),
                      H * (NOPE + ROPE) * Q_LORA, b * Q_LORA * 2 + 2 * qa + b * 3072 * 2,
                      2 * b * 3072 * Q_LORA, 2))
    ops.append(op('RoPE + latent store', 'small', 0, b * (H * ROPE + 576) * 2 * 2, 0, 2))
    ops.append(op('absorb q (W_UK, 16 heads)', 'gemm', H * NOPE * KV_LORA, b * H * 640 * 2,
                  2 * b * H * NOPE * KV_LORA))
    ops.append(op('MLA decode (FlashInfer)', 'mla', 0, b * CTX * 576 * 2,
                  2 * b * H * CTX * (576 + KV_LORA), 1, fp8=False))
    ops.append(op('absorb o (W_UV, 16 heads)', 'gemm', H * VD * KV_LORA, b * H * 640 * 2,
                  2 * b * H * VD * KV_LORA))
    ops.append(op('quantise + o_proj (7168 x 2048)', gemm_cls(b),
                  D * H * VD, b * (H * VD * 3 + D * 2), 2 * b * D * H * VD, 2))
    ops.append(allreduce('all-reduce (o_proj)', b * D * 2, fused))
    if fused:
        ops.append(op('ffn norm + residual + quantise', 'small', 0, b * D * 2 * 3 + qx, 0))
    else:
        ops.append(op('ffn norm + residual', 'small', 0, b * D * 2 * 3, 0))
    ops.append(op('router (BF16 256 x 7168, F32 out) + top-k', 'gemm', E * D * 2,
                  b * (D * 2 + E * 4), 2 * b * E * D, 2, fp8=False))
    # gate|up [512 x 7168] one GEMM -> SiLU*mul -> quantise h -> down [7168 x 256]
    sh_act = b * (2 * I_MOE * 2 * 2 + I_MOE * 2 * 2 + I_MOE + I_MOE + D * 2) + b * D
    if fused:
        ops.append(op('shared expert (gate+up on the norm\'s codes, SiLU, quantise + down)',
                      gemm_cls(b), 3 * I_MOE * D, sh_act, 2 * b * 3 * I_MOE * D, 4))
    else:
        ops.append(op('shared expert (quantise + gate+up, SiLU, quantise + down)', gemm_cls(b),
                      3 * I_MOE * D, sh_act + b * D * 2 + qx, 2 * b * 3 * I_MOE * D, 5))
    n = touched(b)
    w_up, w_down = n * 2 * I_MOE * D, n * D * I_MOE
    ops.append(op('route (count, scan, scatter: 1 block)', 'small', 0, a * 16, 0))
    if b <= 16:
        ops.append(op('experts gate+up + SiLU (FP8 GEMV)', 'gemv', w_up, a * D * 2 + a * I_MOE * 2,
                      2 * a * 2 * I_MOE * D))
        ops.append(op('experts down (FP8 GEMV)', 'gemv', w_down, a * I_MOE * 2 + a * D * 2,
                      2 * a * D * I_MOE))
    else:
        ops.append(op('gather + quantise x rows', 'small', 0, b * D * 2 + a * D, 0))
        ops.append(op('experts gate+up (CUTLASS grouped)', 'grouped', w_up,
                      a * D + a * 2 * I_MOE * 2, 2 * a * 2 * I_MOE * D, 2))
        ops.append(op('SiLU*mul + quantise h', 'small', 0, a * 2 * I_MOE * 2 + a * I_MOE, 0))
        ops.append(op('experts down (CUTLASS grouped)', 'grouped_k256', w_down,
                      a * I_MOE + a * D * 2, 2 * a * D * I_MOE, 2))
    ops.append(op('combine (weighted sum of 8 rows)', 'small', 0, a * D * 2 + b * D * 4, 0))
    ops.append(allreduce('all-reduce (MoE)', b * D * 2, fused))
    return ops


def head(b):
    vr = V // TP
    ops = [op('final norm', 'small', 0, b * D * 2 * 2, 0),
           op('lm_head (BF16 16160 x 7168, F32 out)', gemm_cls(b),
              vr * D * 2, b * (D * 2 + vr * 4), 2 * b * vr * D, 1, fp8=False)]
    t = AR_LAT + (TP - 1) / TP * b * V * 4 / NVLINK
    ops.append(dict(name='logits all-gather to the sampling rank (NCCL)', cls='comm', w=0,
                    act=0, flops=0, launches=1, t=t))
    ops.append(op('vocab gather (slices in vocabulary order, one kernel)', 'small', 0,
                  2 * b * V * 4, 0))
    ops.append(op('penalties, masks, sampling (FlashInfer)', 'sample', 0, b * V * 4 * 2, 0, 4))
    return ops


def mtp_draft_tail(b):
    """After the MTP module's lm_head and the vocab gather, per draft pass:
    (before) the F32 logits to the host and an argmax there; (as built) a
    greedy sample on the device and b ids back.  The host argmax's own time
    is left out of 'before', so before is a lower bound."""
    nbytes = b * V * 4
    before = nbytes / PCIE
    g = op('greedy sample (argmax) on the device', 'sample', 0, nbytes, 0, 1)
    after = g['t'] + b * 4 / PCIE
    return nbytes, before, after


def floor_s(ops):
    """The HBM floor: weights and cache read once, or FLOPs at the FP8 peak."""
    w = sum(o['w'] for o in ops)
    kv = sum(o['act'] for o in ops if o['cls'] == 'mla')
    fl = sum(o['flops'] for o in ops)
    return max((w + kv) / BW, fl / FP8_PEAK)


def step(b, layers, with_head, fused=True):
    lay = moe_layer(b, fused)
    tot = dict(w=0.0, act=0.0, flops=0.0, launches=0, t=0.0, comm=0.0)
    for o in lay:
        for k in ('w', 'act', 'flops', 'launches'):
            tot[k] += o[k] * layers
        tot['t'] += o['t'] * layers
        if o['cls'] == 'comm':
            tot['comm'] += o['t'] * layers
    fl = floor_s(lay) * layers
    if with_head:
        hd = head(b)
        for o in hd:
            for k in ('w', 'act', 'flops', 'launches'):
                tot[k] += o[k]
            tot['t'] += o['t']
            if o['cls'] == 'comm':
                tot['comm'] += o['t']
        fl += max(sum(o['w'] for o in hd) / BW, sum(o['flops'] for o in hd) / FP8_PEAK)
    tot['gaps'] = GAP * tot['launches']
    tot['t'] += tot['gaps']
    tot['floor'] = fl
    return lay, tot


def fmt_b(x):
    return f'{x / 1e6:,.2f} MB' if x else '-'


def fmt_f(x):
    return f'{x / 1e9:,.2f}' if x else '-'


def row(o):
    return (f"| {o['name']} | {o['launches']} | {fmt_b(o['w'])} | {fmt_b(o['act'])} | "
            f"{fmt_f(o['flops'])} | {o['t'] * 1e6:,.1f} us |")


def main():
    fused = '--unfused' not in sys.argv
    for b in (1, 256):
        ops, tot = step(b, LAYERS_S1, True, fused)
        kind = 'fused FP8 GEMV' if b <= 16 else 'CUTLASS grouped FP8'
        print(f'\n### Batch {b} (decode, {kind} for the experts)\n')
        print('| op | launches | weights read | activations/cache | GFLOP | modelled time |')
        print('| --- | ---: | ---: | ---: | ---: | ---: |')
        lt = sum(o['t'] for o in ops)
        for o in ops:
            print(row(o))
        nl = sum(o['launches'] for o in ops)
        print(f"| **layer** | {nl} | {fmt_b(sum(o['w'] for o in ops))} | "
              f"{fmt_b(sum(o['act'] for o in ops))} | {fmt_f(sum(o['flops'] for o in ops))} | "
              f"{lt * 1e6:,.1f} us + {nl} gaps = {(lt + nl * GAP) * 1e6:,.1f} us |")
    print('\n### The head (once per step), batch 1 and 256\n')
    print('| op | launches | weights read | activations | GFLOP | modelled time |')
    print('| --- | ---: | ---: | ---: | ---: | ---: |')
    for b in (1, 256):
        for o in head(b):
            o = dict(o, name=f"b={b}: {o['name']}")
            print(row(o))
    print('\n## The step against the floor (stage 1 rank)\n')
    res = {}
    for f in (False, True):
        for b in (1, 256):
            res[f, b] = step(b, LAYERS_S1, True, f)[1]
    print('| | batch 1 | batch 256 | batch 1, without the fusions | batch 256, without |')
    print('| --- | ---: | ---: | ---: | ---: |')
    cols = [res[True, 1], res[True, 256], res[False, 1], res[False, 256]]

    def line(label, fn, bold=False):
        cells = ' | '.join((f'**{fn(t)}**' if bold else fn(t)) for t in cols)
        print(f'| {label} | {cells} |')
    line('HBM traffic', lambda t: f"{(t['w'] + t['act']) / 1e9:,.2f} GB")
    line('FLOPs', lambda t: f"{t['flops'] / 1e12:,.2f} TFLOP")
    line('kernel launches (in the graph)', lambda t: f"{t['launches']:,}")
    line('floor (weights + latent cache at 3.35 TB/s)', lambda t: f"{t['floor'] * 1e3:,.3f} ms")
    line('modelled step', lambda t: f"{t['t'] * 1e3:,.3f} ms")
    line('of which collectives', lambda t: f"{t['comm'] * 1e3:,.3f} ms")
    line('of which launch gaps', lambda t: f"{t['gaps'] * 1e3:,.3f} ms")
    line('**step / floor**', lambda t: f"{t['t'] / t['floor']:.2f} x", True)
    line('step / floor without collectives',
         lambda t: f"{(t['t'] - t['comm']) / t['floor']:.2f} x")
    print('| target | 1.3 x | 1.5 x | 1.3 x | 1.5 x |')
    print('\n### MTP draft logits, per draft pass (the tail after the module\'s lm_head)\n')
    print('| batch | logits | before: to the host at 50 GB/s | as built: argmax on the device + ids |')
    print('| ---: | ---: | ---: | ---: |')
    for b in (1, 256):
        nb, bef, aft = mtp_draft_tail(b)
        print(f'| {b} | {nb / 1e6:,.2f} MB | {bef * 1e6:,.1f} us | {aft * 1e6:,.1f} us |')
    print(f"\nexperts touched: b=1 {touched(1):.1f}, b=16 {touched(16):.1f}, "
          f"b=64 {touched(64):.1f}, b=256 {touched(256):.1f}")
    print(f"one-shot all-reduce up to {AR_ONESHOT_MAX // 1024} KiB: "
          f"B <= {AR_ONESHOT_MAX // (D * 2)} rows of {D} BF16")


if __name__ == '__main__':
    main()
