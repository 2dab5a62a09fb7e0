#!/usr/bin/env python3
"""The reference CRT of SUBSTRATE.md in PyTorch: a speed peer for bench/peers.ts.

The same model, config and optimizer as `referenceCrt` (spec/model.ts) run by
our compiler, written out by hand so that it does the same matmuls in the
same shapes as spec/models.ts: one fused key|value projection, biases on
every projection, the memory token e_0 = m W_m + b prepended to the segment,
a GRU cell without recurrent biases (ours has none: nn.GRUCell would add
3M parameters and three bias adds), an untied output layer. The parameter
count and the matmul FLOPs per token are printed so that the parity shows.

Modes (each prints JSON lines on stdout):
  train   full optimizer steps (forward, backward, clip 0.25, AdamW) on
          random windows of K = bptt segments per stream, B = 20
  infer   B = 20, one segment, logits for every position, no autograd
  stream  batch 1, one token at a time. Like ours (Program.inferStep) it runs
          the whole open prefix of the segment again for every new token and
          carries the memory when a segment fills up; no key/value cache, so
          both sides do the same work per token.
  profile one training step under torch.autograd.profiler, top operators
  serve   read commands as JSON lines on stdin, answer each with one JSON
          line: how bench/peers.ts runs this peer and ours alternately.

Threads: torch.set_num_threads(--threads) for its own kernels, and
OPENBLAS_NUM_THREADS (read when the library loads, so set before importing
torch) for the GEMMs; set_num_threads alone does not limit OpenBLAS.

Run: OPENBLAS_NUM_THREADS=2 /usr/bin/python3 bench/peers/torch_ref.py --mode train --segment-len 35
"""

import argparse
import json
import math
import os
import statistics
import sys
import time


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=["train", "infer", "stream", "profile", "serve"], default="train")
    p.add_argument("--segment-len", type=int, default=35, help="S, tokens per segment")
    p.add_argument("--batch-size", type=int, default=20, help="B for train and infer (stream uses 1)")
    p.add_argument("--bptt", type=int, default=2, help="K: segments per training window, all in one BPTT span")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--steps", type=int, default=5, help="timed steps; the median is reported")
    p.add_argument("--threads", type=int, default=2, help="torch and OpenBLAS threads")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


ARGS = parse_args(sys.argv[1:])
# OpenBLAS reads this once, when torch loads it: it must precede the import.
os.environ["OPENBLAS_NUM_THREADS"] = str(ARGS.threads)
os.environ.setdefault("OMP_NUM_THREADS", str(ARGS.threads))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(ARGS.threads)

# The reference config (spec/model.ts referenceCrt); only S varies.
VOCAB, D_MODEL, N_HEADS, D_FF, N_LAYERS, D_MEMORY = 10000, 256, 4, 1024, 2, 256
DROPOUT, LN_EPS, INIT_STD = 0.1, 1e-5, 0.02
LR, BETAS, ADAM_EPS, WEIGHT_DECAY, CLIP = 1e-3, (0.9, 0.999), 1e-8, 0.01, 0.25
MASKED = -1e9  # additive mask value for hidden keys (ours adds a large negative too)


class FlopCounter:
    """Matmul FLOPs (2 per multiply-add), the convention of core/flops.ts."""

    def __init__(self):
        self.active = False
        self.total = 0

    def add(self, m, n, k, batch=1):
        if self.active:
            self.total += 2 * batch * m * n * k


FLOPS = FlopCounter()


def linear(x, w, b):
    """x [..., Din] @ w [Din, Dout] + b [Dout], as one GEMM with the bias folded in (addmm)."""
    x2 = x.reshape(-1, x.shape[-1])
    FLOPS.add(x2.shape[0], w.shape[1], w.shape[0])
    return torch.addmm(b, x2, w).view(*x.shape[:-1], w.shape[1])


def matmul(a, b):
    """Plain (batched) product: [.., m, k] @ [.., k, n], counted like linear."""
    batch = math.prod(a.shape[:-2]) if a.dim() > 2 else 1
    FLOPS.add(a.shape[-2], b.shape[-1], a.shape[-1], batch)
    return torch.matmul(a, b)


def normal(gen, *shape):
    return torch.nn.Parameter(torch.empty(*shape).normal_(0.0, INIT_STD, generator=gen))


def uniform(gen, limit, *shape):
    return torch.nn.Parameter(torch.empty(*shape).uniform_(-limit, limit, generator=gen))


def zeros(n):
    return torch.nn.Parameter(torch.zeros(n))


def ones(n):
    return torch.nn.Parameter(torch.ones(n))


class Block(torch.nn.Module):
    """One pre-LN block: x + Attn(LN1(x)), then + FFN(LN2(.)); names as in spec/models.ts."""

    def __init__(self, gen):
        super().__init__()
        d, f = D_MODEL, D_FF
        self.ln1_gain, self.ln1_bias = ones(d), zeros(d)
        self.wq, self.bq = normal(gen, d, d), zeros(d)
        self.wkv, self.bkv = normal(gen, d, 2 * d), zeros(2 * d)  # keys | values side by side
        self.wo, self.bo = normal(gen, d, d), zeros(d)
        self.ln2_gain, self.ln2_bias = ones(d), zeros(d)
        self.w1, self.b1 = normal(gen, d, f), zeros(f)
        self.w2, self.b2 = normal(gen, f, d), zeros(d)

    def forward(self, x, mask, training):  # x [B, T, D], mask [T, T]
        b, t, d = x.shape
        h, e = N_HEADS, d // N_HEADS
        a = F.layer_norm(x, (d,), self.ln1_gain, self.ln1_bias, LN_EPS)
        q = linear(a, self.wq, self.bq).view(b, t, h, e).transpose(1, 2)  # [B, H, T, E]
        kv = linear(a, self.wkv, self.bkv)  # [B, T, 2D]
        k = kv[..., :d].reshape(b, t, h, e).transpose(1, 2)  # [B, H, T, E]
        v = kv[..., d:].reshape(b, t, h, e).transpose(1, 2)  # [B, H, T, E]
        scores = matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(e)) + mask  # [B, H, T, T]
        probs = F.dropout(torch.softmax(scores, -1), DROPOUT, training)
        out = matmul(probs, v).transpose(1, 2).reshape(b, t, d)  # [B, T, D]
        x1 = x + F.dropout(linear(out, self.wo, self.bo), DROPOUT, training)
        hid = torch.relu(linear(F.layer_norm(x1, (d,), self.ln2_gain, self.ln2_bias, LN_EPS), self.w1, self.b1))
        return x1 + F.dropout(linear(hid, self.w2, self.b2), DROPOUT, training)  # [B, T, D]


class Crt(torch.nn.Module):
    """The reference CRT: shallow encoder over [memory token; segment], GRU memory, untied LM head."""

    def __init__(self, segment_len, seed):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        v, d, m = VOCAB, D_MODEL, D_MEMORY
        self.segment_len = segment_len
        self.embed = normal(gen, v, d)
        self.pos = normal(gen, segment_len, d)  # learned, restarting at every segment
        self.blocks = torch.nn.ModuleList([Block(gen) for _ in range(N_LAYERS)])
        self.lnf_gain, self.lnf_bias = ones(d), zeros(d)
        self.head_w, self.head_b = normal(gen, d, v), zeros(v)  # untied
        self.mem_win, self.mem_bin = normal(gen, m, d), zeros(d)  # e_0 = m W_m + b
        limit = 1.0 / math.sqrt(m)  # PyTorch's GRU default, as ours
        self.gru_wx, self.gru_bx = uniform(gen, limit, d, 3 * m), zeros(3 * m)  # reset | update | candidate
        self.gru_ur = uniform(gen, limit, m, m)
        self.gru_uz = uniform(gen, limit, m, m)
        self.gru_uc = uniform(gen, limit, m, m)
        self._masks = {}

    def mask(self, t):
        """Causal [T, T] additive mask over [memory token; tokens]: everyone sees the memory token."""
        if t not in self._masks:
            self._masks[t] = torch.triu(torch.full((t, t), MASKED), diagonal=1)
        return self._masks[t]

    def gru(self, x, h):  # x [B, D], h [B, M]
        m = D_MEMORY
        gx = linear(x, self.gru_wx, self.gru_bx)  # [B, 3M]
        r = torch.sigmoid(gx[:, :m] + matmul(h, self.gru_ur))
        z = torch.sigmoid(gx[:, m : 2 * m] + matmul(h, self.gru_uz))
        c = torch.tanh(gx[:, 2 * m :] + r * matmul(h, self.gru_uc))
        return c + z * (h - c)  # z * h + (1 - z) * c

    def segment(self, tokens, memory, training):
        """tokens [B, S] (S <= segment_len), memory [B, M] -> logits [B, S, V], new memory [B, M]."""
        b, s = tokens.shape
        x = F.embedding(tokens, self.embed) + self.pos[:s]  # [B, S, D]
        tok = linear(memory, self.mem_win, self.mem_bin)  # [B, D]
        x = F.dropout(torch.cat([tok[:, None], x], 1), DROPOUT, training)  # [B, 1 + S, D]
        mask = self.mask(s + 1)
        for blk in self.blocks:
            x = blk(x, mask, training)
        hf = F.layer_norm(x, (D_MODEL,), self.lnf_gain, self.lnf_bias, LN_EPS)
        h = hf[:, 1:]  # [B, S, D] token outputs (the memory slot is not read out)
        new_memory = self.gru(h.mean(1), memory)  # GRU fed the mean of the segment's outputs
        logits = linear(h, self.head_w, self.head_b)  # [B, S, V]
        return logits, new_memory

    def window_loss(self, tokens, targets, memory, bptt, training):
        """Mean NLL over a window of K segments, weighted by segment length like core/program.ts."""
        s, total_len = self.segment_len, tokens.shape[1]
        loss = 0.0
        for k, start in enumerate(range(0, total_len, s)):
            if k > 0 and k % bptt == 0:
                memory = memory.detach()  # truncated BPTT
            tok, tgt = tokens[:, start : start + s], targets[:, start : start + s]
            logits, memory = self.segment(tok, memory, training)
            nll = F.cross_entropy(logits.reshape(-1, VOCAB), tgt.reshape(-1))
            loss = loss + nll * (tok.shape[1] / total_len)
        return loss, memory


def param_count(model):
    return sum(p.numel() for p in model.parameters())


def forward_flops_per_token(model):
    """Matmul FLOPs of one B=1 segment, per token: the number core/flops.ts reports for ours."""
    s = model.segment_len
    FLOPS.active, FLOPS.total = True, 0
    with torch.no_grad():
        model.segment(torch.zeros(1, s, dtype=torch.long), torch.zeros(1, D_MEMORY), False)
    FLOPS.active = False
    return FLOPS.total / s


def adamw(model):
    """AdamW with decoupled decay on matrices only, as core/optim.ts (not biases, gains)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    plain = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": plain, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=LR, betas=BETAS, eps=ADAM_EPS)


class Runner:
    """One phase at one segment length: built once, then `step()` as often as asked."""

    def __init__(self, phase, segment_len, args):
        self.phase, self.s, self.args = phase, segment_len, args
        self.gen = torch.Generator().manual_seed(args.seed + 1)
        self.model = Crt(segment_len, args.seed)
        self.b = 1 if phase == "stream" else args.batch_size
        self.memory = torch.zeros(self.b, D_MEMORY)
        if phase in ("train", "profile"):
            self.model.train()
            self.opt = adamw(self.model)
            self.tokens_per_step = self.b * args.bptt * segment_len
        else:
            self.model.eval()
            self.tokens_per_step = self.b * segment_len
            self.open = []

    def random_tokens(self, length):
        return torch.randint(0, VOCAB, (self.b, length), generator=self.gen)

    def step(self):
        """Run one step; returns its wall time in seconds (input generation excluded)."""
        if self.phase in ("train", "profile"):
            window = self.random_tokens(self.args.bptt * self.s + 1)
            tokens, targets = window[:, :-1], window[:, 1:]
            t0 = time.perf_counter()
            self.opt.zero_grad(set_to_none=True)
            loss, memory = self.model.window_loss(tokens, targets, self.memory, self.args.bptt, True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), CLIP)
            self.opt.step()
            self.memory = memory.detach()
            loss.item()  # ours reads the loss back too
            return time.perf_counter() - t0
        if self.phase == "infer":
            tokens = self.random_tokens(self.s)
            t0 = time.perf_counter()
            with torch.inference_mode():
                logits, _ = self.model.segment(tokens, self.memory, False)
            return time.perf_counter() - t0
        # stream: one full segment, fed token by token; each token reruns the open prefix.
        ids = self.random_tokens(self.s)[0].tolist()
        t0 = time.perf_counter()
        with torch.inference_mode():
            for tok in ids:
                self.open.append(tok)
                prefix = torch.tensor([self.open], dtype=torch.long)
                logits, new_memory = self.model.segment(prefix, self.memory, False)
                _last = logits[:, -1]  # [1, V]: the prediction for the next token
                if len(self.open) == self.s:
                    self.memory, self.open = new_memory, []
        return time.perf_counter() - t0


def describe(runner):
    return {
        "event": "model",
        "engine": "pytorch",
        "phase": runner.phase,
        "segmentLen": runner.s,
        "params": param_count(runner.model),
        "forward_flops_per_token": forward_flops_per_token(runner.model),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "openblas_threads": int(os.environ["OPENBLAS_NUM_THREADS"]),
    }


def emit(obj):
    print(json.dumps(obj), flush=True)


def profile(runner, top=12):
    """Top operators of one training step by self CPU time; returns a summary for the done line."""
    from torch.autograd import profiler

    runner.step()
    t0 = time.perf_counter()
    with profiler.profile() as prof:
        runner.step()
    wall_ms = 1000.0 * (time.perf_counter() - t0)
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in rows)
    matmul = sum(e.self_cpu_time_total for e in rows if e.key in ("aten::mm", "aten::addmm", "aten::bmm"))
    for e in rows[:top]:
        emit({
            "event": "profile",
            "engine": "pytorch",
            "segmentLen": runner.s,
            "op": e.key,
            "ms": e.self_cpu_time_total / 1000.0,
            "share": e.self_cpu_time_total / total,
            "calls": e.count,
        })
    return {"wall_ms": round(wall_ms), "op_ms": round(total / 1000.0), "matmul_ms": round(matmul / 1000.0)}


def serve(args):
    """Line protocol: {"phase", "segmentLen", "steps"} in, {"seconds": [...], ...} out; EOF ends."""
    runners = {}
    emit({"event": "ready", "engine": "pytorch", "torch": torch.__version__, "threads": torch.get_num_threads()})
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        key = (cmd["phase"], cmd["segmentLen"])
        if key not in runners:
            runners[key] = Runner(cmd["phase"], cmd["segmentLen"], args)
            emit(describe(runners[key]))
        r = runners[key]
        if cmd["phase"] == "profile":
            emit({"event": "done", **profile(r)})
            continue
        seconds = [r.step() for _ in range(cmd.get("steps", 1))]
        emit({"event": "steps", "seconds": seconds, "tokens_per_step": r.tokens_per_step})


def main(args):
    if args.mode == "serve":
        serve(args)
        return
    r = Runner(args.mode, args.segment_len, args)
    emit(describe(r))
    if args.mode == "profile":
        emit({"event": "done", **profile(r)})
        return
    for _ in range(args.warmup):
        r.step()
    seconds = [r.step() for _ in range(args.steps)]
    med = statistics.median(seconds)
    emit({
        "event": "result",
        "engine": "pytorch",
        "phase": args.mode,
        "segmentLen": args.segment_len,
        "batchSize": r.b,
        "tokens_per_step": r.tokens_per_step,
        "seconds": seconds,
        "median_s": med,
        "tokens_per_s": r.tokens_per_step / med,
        **({"ms_per_token": 1000.0 * med / r.tokens_per_step} if args.mode == "stream" else {}),
    })


if __name__ == "__main__":
    main(ARGS)
