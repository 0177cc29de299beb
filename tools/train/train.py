#!/usr/bin/env python3
"""Trains the tiny DeepSeek-V3 (+ MTP) on the synthetic corpus, on the CPU.

Loss: cross-entropy of the assistant's tokens (the completion: working,
answer, EOS, tool-call block) plus lambda * the MTP module's cross-entropy
of the token after next (DeepSeek-V3's L_main + lambda L_MTP, lambda 0.3).
Routing is DeepSeek-V3's auxiliary-loss-free balancing: after every step
each MoE layer's e_score_correction_bias moves by `--bias-rate` towards
equal expert load. The last `--qat` fraction of the steps trains through
FP8 e4m3 128x128 block rounding of every FP8 weight (straight-through), so
the served FP8 checkpoint computes what was trained.

Writes OUT/state.pt (float32 state dict of main model + MTP), OUT/log.json
(per-step losses, timings, config) and OUT/loss.png.

Usage: train.py --corpus corpus.jsonl --tokenizer DIR --out DIR [--steps N]
"""
import argparse
import json
import math
import os
import random
import time

import torch
from torch.nn.utils import parametrize
from tokenizers import Tokenizer

import corpus
import model as M


def encode_completions(tok, texts):
    """Token ids of completions: the pieces between corpus.SPLIT marks are
    tokenised apart, so a computed number comes out digit by digit."""
    pieces = [t.split(corpus.SPLIT) for t in texts]
    flat = tok.encode_batch([x for ps in pieces for x in ps], add_special_tokens=False)
    out, k = [], 0
    for ps in pieces:
        ids = []
        for e in flat[k:k + len(ps)]:
            ids += e.ids
        out.append(ids)
        k += len(ps)
    return out


def encode_corpus(path, tok, tool_frac=1.0):
    """(prompt ids, completion ids) of every conversation turn; of the tool
    conversations only the share `tool_frac` is kept, evenly spread."""
    rows = [json.loads(line) for line in open(path)]
    prompts, comps, n_tool = [], [], 0
    for r in rows:
        if r["kind"] == "tool":
            n_tool += 1
            if int(n_tool * tool_frac) == int((n_tool - 1) * tool_frac):
                continue
            prompts += [r["prompt1"], r["prompt2"]]
            comps += [r["completion1"], r["completion2"]]
        else:
            prompts.append(r["prompt"])
            comps.append(r["completion"])
    P = tok.encode_batch(prompts, add_special_tokens=False)
    return [(p.ids, c) for p, c in zip(P, encode_completions(tok, comps))]


def batches(examples, tokens_per_batch, rng):
    """Endless stream of batches of about tokens_per_batch (padded) tokens;
    examples of similar length go together."""
    while True:
        order = list(range(len(examples)))
        rng.shuffle(order)
        for start in range(0, len(order), 2048):
            pool = sorted(order[start:start + 2048],
                          key=lambda i: len(examples[i][0]) + len(examples[i][1]))
            groups, cur, cur_max = [], [], 0
            for i in pool:
                n = len(examples[i][0]) + len(examples[i][1])
                if cur and max(cur_max, n) * (len(cur) + 1) > tokens_per_batch:
                    groups.append(cur)
                    cur, cur_max = [], 0
                cur.append(i)
                cur_max = max(cur_max, n)
            if cur:
                groups.append(cur)
            rng.shuffle(groups)
            for g in groups:
                yield collate([examples[i] for i in g])


def collate(exs):
    T = max(len(p) + len(c) for p, c in exs)
    B = len(exs)
    ids = torch.full((B, T), 1, dtype=torch.long)
    attn = torch.zeros((B, T), dtype=torch.long)
    labels = torch.full((B, T), -100, dtype=torch.long)
    for b, (p, c) in enumerate(exs):
        seq = p + c
        ids[b, :len(seq)] = torch.tensor(seq)
        attn[b, :len(seq)] = 1
        # position j predicts seq[j+1]; only the completion is learned
        for j in range(len(p) - 1, len(seq) - 1):
            labels[b, j] = seq[j + 1]
    return ids, attn, labels


class FakeFP8(torch.nn.Module):
    def forward(self, w):
        return M.fake_fp8(w)


def enable_qat(net):
    n = 0
    for mod_name, mod in list(net.named_modules()):
        for pname, _ in list(mod.named_parameters(recurse=False)):
            full = f"{mod_name}.{pname}"
            if M.is_fp8_param(full):
                parametrize.register_parametrization(mod, pname, FakeFP8())
                n += 1
    return n


def plain_state(net):
    """State dict with parametrizations removed (original tensors)."""
    sd = {}
    for k, v in net.state_dict().items():
        k = k.replace(".parametrizations.", ".").replace(".original", "")
        sd[k] = v.detach().clone().float()
    return sd


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--tokens-per-batch", type=int, default=4096)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--lr-floor", type=float, default=0.1,
                    help="the cosine ends at this fraction of --lr (1: constant lr after "
                         "warm-up, for a stage that another continues)")
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--mtp-lambda", type=float, default=0.3)
    ap.add_argument("--mtp-from", type=float, default=0.0,
                    help="the MTP module is trained (its loss added) from this fraction of "
                         "the schedule on; before it, only the main model runs (faster)")
    ap.add_argument("--tool-frac", type=float, default=1.0,
                    help="share of the corpus's tool conversations trained on (their "
                         "prompts carry the tool definitions: a third of the tokens)")
    ap.add_argument("--bias-rate", type=float, default=1e-3)
    ap.add_argument("--qat", type=float, default=0.15)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=1,
                    help="1 is fastest on a shared 2-core machine (2 threads spin-wait "
                         "on each other when another process holds a core)")
    ap.add_argument("--minutes", type=float, default=0,
                    help="wall-clock budget; the schedule follows whichever of steps "
                         "and time runs out first (0: steps only)")
    ap.add_argument("--config", default="{}", help="JSON overrides of model.DEFAULT")
    ap.add_argument("--init", help="start from this state.pt (continued training)")
    ap.add_argument("--prev-log", help="the log.json of the run --init continues (kept in "
                                       "this run's log and loss curve)")
    ap.add_argument("--bench", type=int, default=0, help="only time this many steps")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = random.Random(a.seed)
    tok = Tokenizer.from_file(os.path.join(a.tokenizer, "tokenizer.json"))
    vocab = tok.get_vocab_size(with_added_tokens=True)
    t0 = time.time()
    examples = encode_corpus(a.corpus, tok, a.tool_frac)
    print(f"{len(examples)} examples, {sum(len(p) + len(c) for p, c in examples)} tokens, "
          f"encoded in {time.time() - t0:.1f}s", flush=True)

    cfg = M.make_config(vocab, **json.loads(a.config))
    net = M.TinyV3(cfg)
    if a.init:
        missing, unexpected = net.load_state_dict(torch.load(a.init), strict=True)
    n_params = sum(p.numel() for p in net.parameters())
    print(f"parameters: {n_params} (main {sum(p.numel() for p in net.lm.parameters())}, "
          f"MTP {sum(p.numel() for p in net.mtp.parameters())})", flush=True)
    decay = [p for n, p in net.named_parameters() if p.dim() >= 2 and "embed" not in n]
    no_decay = [p for n, p in net.named_parameters() if not (p.dim() >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8)

    gates = [m.mlp.gate for m in list(net.lm.model.layers) + [net.mtp.layer]
             if hasattr(m.mlp, "gate")]
    loads = {id(g): torch.zeros(cfg.n_routed_experts) for g in gates}

    def count(mod, inp, out):
        loads[id(mod)] += torch.bincount(out[2].flatten(), minlength=cfg.n_routed_experts).float()
    for g in gates:
        g.register_forward_hook(count)

    steps = a.bench or a.steps
    log = {"config": cfg.to_dict(), "args": vars(a), "n_params": n_params,
           "n_examples": len(examples), "steps": []}
    os.makedirs(a.out, exist_ok=True)
    if not a.bench:  # the config now, so that intermediate states convert
        with open(os.path.join(a.out, "log.json"), "w") as f:
            json.dump(log, f)
    stream = batches(examples, a.tokens_per_batch, rng)
    t_start = time.time()
    n_tok = 0
    qat_on = False
    step = 0
    while True:
        # Progress drives the schedule: the step count, or the wall-clock
        # budget when the machine is too slow to finish the steps in it (the
        # log says which); on a machine fast enough the run is a pure
        # function of the seed.
        el = time.time() - t_start
        progress = max(step / steps, el / (60 * a.minutes) if a.minutes else 0.0)
        if progress >= 1.0:
            break
        if not qat_on and not a.bench and progress >= 1.0 - a.qat:
            qat_on = True
            log["qat_from_step"] = step
            print(f"step {step}: FP8 quantisation-aware training on "
                  f"{enable_qat(net)} weights", flush=True)
        lr = a.lr * min(1.0, (step + 1) / a.warmup)
        if step >= a.warmup:
            lr = a.lr * (a.lr_floor + (1 - a.lr_floor) * 0.5 * (1 + math.cos(math.pi * progress)))
        for g in opt.param_groups:
            g["lr"] = lr
        ids, attn, labels = next(stream)
        n_tok += int(attn.sum())
        opt.zero_grad(set_to_none=True)
        with parametrize.cached():  # one FP8 rounding per weight per step
            loss, mloss = net(ids, attn, labels, mtp=progress >= a.mtp_from)
            total = loss + a.mtp_lambda * mloss
            total.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            for g in gates:
                ld = loads[id(g)]
                g.e_score_correction_bias += a.bias_rate * torch.sign(ld.mean() - ld)
                ld.zero_()
        el = time.time() - t_start
        log["steps"].append({"step": step, "loss": loss.item(), "mtp_loss": mloss.item(),
                             "lr": lr, "t": round(el, 2), "tokens": n_tok})
        if step % 20 == 0:
            print(f"step {step} loss {loss.item():.4f} mtp {mloss.item():.4f} lr {lr:.2e} "
                  f"{el:.0f}s {n_tok / el:.0f} tok/s", flush=True)
        if a.bench == 0 and (step + 1) % 500 == 0:
            os.makedirs(a.out, exist_ok=True)
            torch.save(plain_state(net), os.path.join(a.out, "state.pt"))
        step += 1
    if a.prev_log:
        with open(a.prev_log) as f:
            prev = json.load(f)
        off, t_off, n_off = prev["steps_done"], prev["train_seconds"], prev["steps"][-1]["tokens"]
        for e in log["steps"]:
            e.update(step=e["step"] + off, t=round(e["t"] + t_off, 2), tokens=e["tokens"] + n_off)
        log["steps"] = prev["steps"] + log["steps"]
        if "qat_from_step" in log:
            log["qat_from_step"] = min(log["qat_from_step"] + off,
                                       prev.get("qat_from_step", log["qat_from_step"] + off))
        log["continued_from"] = {"steps_done": off, "train_seconds": t_off,
                                 "args": prev["args"], "stopped_by": prev.get("stopped_by"),
                                 "qat_from_step": prev.get("qat_from_step")}
    log["steps_done"] = len(log["steps"])  # this run's and the one it continues
    log["stopped_by"] = "steps" if step >= steps else "time"
    log["train_seconds"] = time.time() - t_start + (
        log["continued_from"]["train_seconds"] if a.prev_log else 0.0)
    if a.bench:
        print(f"{a.bench} steps in {log['train_seconds']:.1f}s", flush=True)
        return
    os.makedirs(a.out, exist_ok=True)
    torch.save(plain_state(net), os.path.join(a.out, "state.pt"))
    with open(os.path.join(a.out, "log.json"), "w") as f:
        json.dump(log, f)
    plot(log, os.path.join(a.out, "loss.png"))


def plot(log, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    s = log["steps"]
    x = [e["step"] for e in s]

    def smooth(v, k=20):
        out, acc = [], 0.0
        for i, y in enumerate(v):
            acc = y if i == 0 else 0.9 * acc + 0.1 * y
            out.append(acc)
        return out
    fig, ax = plt.subplots(figsize=(6, 3.4), dpi=80)
    ax.plot(x, smooth([e["loss"] for e in s]), label="main (next token)")
    m = [e for e in s if e["mtp_loss"] > 0]  # 0: the MTP module was not run
    ax.plot([e["step"] for e in m], smooth([e["mtp_loss"] for e in m]),
            label="MTP (token after next)")
    ax.set_yscale("log")
    if "continued_from" in log:
        ax.axvline(log["continued_from"]["steps_done"], color="gray", ls="--", lw=0.8)
        ax.text(log["continued_from"]["steps_done"], ax.get_ylim()[1], " next stage",
                va="top", fontsize=8, color="gray")
    if "qat_from_step" in log:
        ax.axvline(log["qat_from_step"], color="red", ls=":", lw=0.8)
        ax.text(log["qat_from_step"], ax.get_ylim()[0], " FP8-aware", va="bottom",
                fontsize=8, color="red")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats, EMA)")
    th = log["args"].get("threads", 1)
    ax.set_title(f"tiny DeepSeek-V3: {log['n_params'] / 1e6:.1f}M params, "
                 f"{log['train_seconds'] / 60:.0f} min, CPU, {th} thread{'s' if th > 1 else ''}")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    main()
