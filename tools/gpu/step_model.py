#!/usr/bin/env python3
"""step_model.py - the modelled decode step of one DeepSeek-V3 rank (TP=8 x
PP=2) under the issue-18 design, per op: bytes read/written in HBM, FLOPs,
launches, and the time each takes at H100 limits with the efficiency
assumed for its kernel class.  Prints the tables of docs/perf/gpu-model.md
(python3 tools/gpu/step_model.py).  Every number is a model, not a
measurement; the assumptions are the constants below."""
import math

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
AR_LAT = 6.0e-6         # one-shot NVLink all-reduce latency at decode sizes


def op(name, cls, w_bytes, act_bytes, flops, launches=1, fp8=True):
    eff, t_min = EFF[cls]
    t_mem = (w_bytes + act_bytes) / (eff * BW)
    t_flop = flops / (FP8_REACHED if fp8 else BF16_REACHED)
    return dict(name=name, cls=cls, w=w_bytes, act=act_bytes, flops=flops, launches=launches,
                t=max(t_mem, t_flop, t_min * launches))


def allreduce(name, nbytes):
    # one-shot below 1 MB (latency), NCCL ring above (2 x 7/8 of the bytes over NVLink)
    t = AR_LAT if nbytes < (1 << 20) else AR_LAT + 2 * 7 / 8 * nbytes / NVLINK
    return dict(name=name, cls='comm', w=0, act=0, flops=0, launches=1, t=t)


def touched(b):
    """Expected distinct experts hit by b tokens x 8 (balanced routing)."""
    return E * (1 - (1 - TOPK / E) ** b)


def moe_layer(b):
    a = b * TOPK
    ops = []
    ops.append(op('attn norm + residual', 'small', 0, b * D * 2 * 3, 0))
    ops.append(op('quantise x (1x128)', 'small', 0, b * D * 3, 0))
    ops.append(op('q_a + kv_a (2112 x 7168)', 'gemm_big' if b > 16 else 'gemm', 2112 * D,
                  b * (D + 2112 * 2), 2 * b * 2112 * D))
    ops.append(op('q_a, kv_a norms', 'small', 0, b * 2112 * 2 * 2, 0, 2))
    ops.append(op('quantise + q_b (3072 x 1536)', 'gemm_big' if b > 16 else 'gemm',
                  H * (NOPE + ROPE) * Q_LORA, b * (Q_LORA * 3 + 3072 * 2),
                  2 * b * 3072 * Q_LORA, 2))
    ops.append(op('RoPE + latent store', 'small', 0, b * (H * ROPE + 576) * 2 * 2, 0, 2))
    ops.append(op('absorb q (W_UK, 16 heads)', 'gemm', H * NOPE * KV_LORA, b * H * 640 * 2,
                  2 * b * H * NOPE * KV_LORA))
    ops.append(op('MLA decode (FlashInfer)', 'mla', 0, b * CTX * 576 * 2,
                  2 * b * H * CTX * (576 + KV_LORA), 1, fp8=False))
    ops.append(op('absorb o (W_UV, 16 heads)', 'gemm', H * VD * KV_LORA, b * H * 640 * 2,
                  2 * b * H * VD * KV_LORA))
    ops.append(op('quantise + o_proj (7168 x 2048)', 'gemm_big' if b > 16 else 'gemm',
                  D * H * VD, b * (H * VD * 3 + D * 2), 2 * b * D * H * VD, 2))
    ops.append(allreduce('all-reduce (o_proj)', b * D * 2))
    ops.append(op('ffn norm + residual', 'small', 0, b * D * 2 * 3, 0))
    ops.append(op('router (BF16 256 x 7168, F32 out) + top-k', 'gemm', E * D * 2,
                  b * (D * 2 + E * 4), 2 * b * E * D, 2, fp8=False))
    ops.append(op('shared expert (quant, gate+up, silu, down)', 'gemm_big' if b > 16 else 'gemm',
                  3 * I_MOE * D, b * (D * 3 + 1024 + D * 2), 2 * b * 3 * I_MOE * D, 4))
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
    ops.append(allreduce('all-reduce (MoE)', b * D * 2))
    return ops


def head(b):
    vr = V // TP
    ops = [op('final norm', 'small', 0, b * D * 2 * 2, 0),
           op('lm_head (BF16 16160 x 7168, F32 out)', 'gemm_big' if b > 16 else 'gemm',
              vr * D * 2, b * (D * 2 + vr * 4), 2 * b * vr * D, 1, fp8=False)]
    t = AR_LAT + 7 / 8 * b * V * 4 / NVLINK
    ops.append(dict(name='logits all-gather to the sampling rank', cls='comm', w=0, act=0,
                    flops=0, launches=1, t=t))
    ops.append(op('penalties, masks, sampling (FlashInfer)', 'sample', 0, b * V * 4 * 2, 0, 4))
    return ops


def floor_s(ops):
    """The HBM floor: weights and cache read once, or FLOPs at the FP8 peak."""
    w = sum(o['w'] for o in ops)
    kv = sum(o['act'] for o in ops if o['cls'] == 'mla')
    fl = sum(o['flops'] for o in ops)
    return max((w + kv) / BW, fl / FP8_PEAK)


def step(b, layers, with_head):
    lay = moe_layer(b)
    ops = [dict(o) for o in lay]
    tot = dict(w=0.0, act=0.0, flops=0.0, launches=0, t=0.0, comm=0.0)
    for o in lay:
        for k in ('w', 'act', 'flops', 'launches'):
            tot[k] += o[k] * layers
        tot['t'] += o['t'] * layers
        if o['cls'] == 'comm':
            tot['comm'] += o['t'] * layers
    fl = floor_s(lay) * layers
    if with_head:
        for o in head(b):
            for k in ('w', 'act', 'flops', 'launches'):
                tot[k] += o[k]
            tot['t'] += o['t']
            if o['cls'] == 'comm':
                tot['comm'] += o['t']
        hd = head(b)
        fl += max(sum(o['w'] for o in hd) / BW, sum(o['flops'] for o in hd) / FP8_PEAK)
    tot['gaps'] = GAP * tot['launches']
    tot['t'] += tot['gaps']
    tot['floor'] = fl
    return ops, tot


def fmt_b(x):
    return f'{x / 1e6:,.2f} MB' if x else '-'


def fmt_f(x):
    return f'{x / 1e9:,.2f}' if x else '-'


def main():
    for b in (1, 256):
        ops, tot = step(b, LAYERS_S1, True)
        print(f'\n### One MoE layer at batch {b} (stage 1 rank; x {LAYERS_S1} layers)\n')
        print('| op | launches | weights read | activations/cache | GFLOP | modelled time |')
        print('| --- | ---: | ---: | ---: | ---: | ---: |')
        lt = 0.0
        for o in ops:
            lt += o['t']
            print(f"| {o['name']} | {o['launches']} | {fmt_b(o['w'])} | {fmt_b(o['act'])} | "
                  f"{fmt_f(o['flops'])} | {o['t'] * 1e6:,.1f} us |")
        nl = sum(o['launches'] for o in ops)
        print(f"| **layer** | {nl} | {fmt_b(sum(o['w'] for o in ops))} | "
              f"{fmt_b(sum(o['act'] for o in ops))} | {fmt_f(sum(o['flops'] for o in ops))} | "
              f"{lt * 1e6:,.1f} us + {nl} gaps = {(lt + nl * GAP) * 1e6:,.1f} us |")
        print(f"\nlayer floor {floor_s(ops) * 1e6:,.1f} us\n")
        print(f"step (stage 1: {LAYERS_S1} layers + head): bytes "
              f"{(tot['w'] + tot['act']) / 1e9:,.2f} GB, {tot['flops'] / 1e12:,.2f} TFLOP, "
              f"{tot['launches']} launches; modelled {tot['t'] * 1e3:,.3f} ms "
              f"(comm {tot['comm'] * 1e3:,.3f} ms, gaps {tot['gaps'] * 1e3:,.3f} ms); "
              f"floor {tot['floor'] * 1e3:,.3f} ms; ratio {tot['t'] / tot['floor']:.2f}; "
              f"without comm {(tot['t'] - tot['comm']) / tot['floor']:.2f}")
        print('\nhead ops:')
        for o in head(b):
            print(f"| {o['name']} | {o['launches']} | {fmt_b(o['w'])} | {fmt_b(o['act'])} | "
                  f"{fmt_f(o['flops'])} | {o['t'] * 1e6:,.1f} us |")
    print(f"\nexperts touched: b=1 {touched(1):.1f}, b=16 {touched(16):.1f}, "
          f"b=64 {touched(64):.1f}, b=256 {touched(256):.1f}")


if __name__ == '__main__':
    main()
