#!/usr/bin/env python3
"""The reference CRT (docs/substrate.md) in PyTorch: a speed peer for bench/peers.ts.

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
  stream  batch 1, one token at a time, one step = one segment of S tokens.
          --variant kvcache (default): the way generation is written in
          practice: a per-layer key/value cache, one token per call (queries
          of the new token against the cached keys of the memory token and of
          the segment so far), logits of that token only; when the segment
          fills, the GRU memory update runs on the mean of the segment's final
          LayerNorm outputs and the cache resets (Program.inferStep without
          recompute does the same). --variant recompute: the whole open prefix
          of the segment runs again for every new token (no cache), like
          ours with `recompute: true`. --variant kvcache-matvec: the key/value
          cache with every product as matrix-vector products (torch.addmv),
          a tuned decoder: Debian's OpenBLAS is several times slower on a
          one-row GEMM than on the same GEMV.
  profile one training step under torch.autograd.profiler, top operators
  export  write the inference segment graph (tokens [B, S] int64, memory
          [B, M] -> logits [B, S, V], new memory [B, M]) with torch.onnx.export
          (opset 13) into --out, and a check case beside it: random tokens and
          memory and PyTorch's outputs for them, as raw little-endian arrays
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
import warnings


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=["train", "infer", "stream", "profile", "export", "serve"], default="train")
    p.add_argument("--variant", choices=["kvcache", "kvcache-matvec", "recompute"], default="kvcache", help="how stream runs")
    p.add_argument("--out", help="export: the folder to write into")
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


def openblas_core():
    """The kernel set of the OpenBLAS torch loaded (one copy per process), or None."""
    try:
        import ctypes

        lib = ctypes.CDLL("libopenblas.so.0")
        lib.openblas_get_corename.restype = ctypes.c_char_p
        return lib.openblas_get_corename().decode()
    except (OSError, AttributeError):
        return None


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


def linear_rows(x, w, b):
    """linear, one matrix-vector product (addmv) per row: for the one or two rows of a decode step.

    Debian's OpenBLAS runs a GEMM with one row several times slower than the
    GEMV of the same product (1.2 ms against 0.2 ms for the [256] x [256,
    10000] output layer here), so a tuned decoder takes rows one at a time.
    """
    x2 = x.reshape(-1, x.shape[-1])
    FLOPS.add(x2.shape[0], w.shape[1], w.shape[0])
    rows = [torch.addmv(b, w.t(), r) for r in x2]
    return (rows[0][None] if len(rows) == 1 else torch.stack(rows)).view(*x.shape[:-1], w.shape[1])


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

    def forward(self, x, mask, training, cache=None, lin=linear):
        """x [B, r, D] -> new x [B, r, D] and this layer's keys and values (k, v), each [B, H, T, E].

        A segment: mask [r, r], no cache. A decode step: cache (k, v) [B, H, P, E]
        of the earlier rows (None at a segment start); mask the [r, r] causal
        mask when r > 1 (the memory token and the first token), else None (one
        query sees every cached key and itself); lin linear or linear_rows.
        """
        b, r, d = x.shape
        h, e = N_HEADS, d // N_HEADS
        a = F.layer_norm(x, (d,), self.ln1_gain, self.ln1_bias, LN_EPS)
        q = lin(a, self.wq, self.bq).view(b, r, h, e).transpose(1, 2)  # [B, H, r, E]
        kv = lin(a, self.wkv, self.bkv)  # [B, r, 2D]
        k = kv[..., :d].reshape(b, r, h, e).transpose(1, 2)  # [B, H, r, E]
        v = kv[..., d:].reshape(b, r, h, e).transpose(1, 2)  # [B, H, r, E]
        if cache is not None:
            k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)  # [B, H, T = P + r, E]
        scores = matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(e))  # [B, H, r, T]
        if mask is not None:
            scores = scores + mask
        probs = F.dropout(torch.softmax(scores, -1), DROPOUT, training)
        out = matmul(probs, v).transpose(1, 2).reshape(b, r, d)  # [B, r, D]
        x1 = x + F.dropout(lin(out, self.wo, self.bo), DROPOUT, training)
        hid = torch.relu(lin(F.layer_norm(x1, (d,), self.ln2_gain, self.ln2_bias, LN_EPS), self.w1, self.b1))
        return x1 + F.dropout(lin(hid, self.w2, self.b2), DROPOUT, training), (k, v)  # [B, r, D]


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
        t = int(t)  # under torch.onnx.export's tracer a size is a tensor: keep the mask a constant
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
            x, _ = blk(x, mask, training)
        hf = F.layer_norm(x, (D_MODEL,), self.lnf_gain, self.lnf_bias, LN_EPS)
        h = hf[:, 1:]  # [B, S, D] token outputs (the memory slot is not read out)
        new_memory = self.gru(h.mean(1), memory)  # GRU fed the mean of the segment's outputs
        logits = linear(h, self.head_w, self.head_b)  # [B, S, V]
        return logits, new_memory

    def decode(self, token, stream, matvec=False):
        """One token through a key/value-cached stream (batch 1, inference): its logits [1, V].

        stream is a KvStream; it advances in place. At a segment start the
        memory token is fed with the token (two rows); when the segment
        fills, the memory update runs and the caches reset. matvec: every
        product of a decode step as matrix-vector products (linear_rows).
        """
        lin = linear_rows if matvec else linear
        t = stream.t
        x = (self.embed[token] + self.pos[t]).view(1, 1, D_MODEL)  # [1, 1, D]
        mask = None
        if t == 0:
            tok = lin(stream.memory, self.mem_win, self.mem_bin)  # [1, D]
            x = torch.cat([tok[:, None], x], 1)  # [1, 2, D]
            mask = self.mask(2)
        for l, blk in enumerate(self.blocks):
            x, stream.cache[l] = blk(x, mask, False, stream.cache[l], lin)
        h = F.layer_norm(x[:, -1], (D_MODEL,), self.lnf_gain, self.lnf_bias, LN_EPS)  # [1, D]
        stream.h_sum = h if t == 0 else stream.h_sum + h  # the memory update reads the mean
        logits = lin(h, self.head_w, self.head_b)  # [1, V]
        stream.t = t + 1
        if stream.t == self.segment_len:
            stream.memory = self.gru(stream.h_sum / self.segment_len, stream.memory)
            stream.reset()
        return logits

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


class KvStream:
    """A batch-1 stream's state: memory [1, M], per-layer (k, v) of the open segment, sum of its outputs."""

    def __init__(self):
        self.memory = torch.zeros(1, D_MEMORY)
        self.reset()

    def reset(self):
        self.t, self.cache, self.h_sum = 0, [None] * N_LAYERS, None


def kv_check(model, matvec):
    """Max |difference| of logits and new memory, key/value stream against the segment graph."""
    gen = torch.Generator().manual_seed(7)
    s = model.segment_len
    tokens = torch.randint(0, VOCAB, (1, s), generator=gen)
    memory = torch.randn(1, D_MEMORY, generator=gen)
    with torch.inference_mode():
        ref_logits, ref_memory = model.segment(tokens, memory, False)
        stream = KvStream()
        stream.memory = memory
        logits = torch.cat([model.decode(int(t), stream, matvec) for t in tokens[0]], 0)  # [S, V]
    return max(float((logits - ref_logits[0]).abs().max()), float((stream.memory - ref_memory).abs().max()))


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

    def __init__(self, phase, segment_len, args, variant=None):
        self.phase, self.s, self.args = phase, segment_len, args
        self.variant = variant or args.variant
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
            self.kv = KvStream()

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
        ids = self.random_tokens(self.s)[0].tolist()
        if self.variant.startswith("kvcache"):
            # stream: one full segment, fed token by token through the key/value cache.
            matvec = self.variant == "kvcache-matvec"
            t0 = time.perf_counter()
            with torch.inference_mode():
                for tok in ids:
                    _last = self.model.decode(tok, self.kv, matvec)  # [1, V]
            return time.perf_counter() - t0
        # stream, recompute: each token reruns the open prefix of the segment.
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
    stream = runner.phase == "stream"
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
        **({"variant": runner.variant} if stream else {}),
        **(
            {"kv_check_max_abs": kv_check(runner.model, runner.variant == "kvcache-matvec")}
            if stream and runner.variant.startswith("kvcache")
            else {}
        ),
    }


class Segment(torch.nn.Module):
    """The inference segment graph as a module with tensor inputs only, for torch.onnx.export."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, tokens, memory):  # [B, S] int64, [B, M]
        return self.model.segment(tokens, memory, False)


def export(args):
    """Write crt_b{B}_s{S}.onnx and its check case (check_b{B}_s{S}.*.bin) into args.out."""
    b, s = args.batch_size, args.segment_len
    model = Crt(s, args.seed).eval()
    os.makedirs(args.out, exist_ok=True)
    name = f"crt_b{b}_s{s}"
    gen = torch.Generator().manual_seed(args.seed + 2)
    tokens = torch.randint(0, VOCAB, (b, s), generator=gen)
    memory = torch.randn(b, D_MEMORY, generator=gen)
    # The tracer warns where a size becomes a constant: intended, the graph is for one B and S.
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    with torch.no_grad():
        logits, new_memory = model.segment(tokens, memory, False)
        torch.onnx.export(
            Segment(model),
            (tokens, memory),
            os.path.join(args.out, name + ".onnx.tmp"),
            input_names=["tokens", "memory"],
            output_names=["logits", "new_memory"],
            opset_version=13,
            do_constant_folding=True,
        )
    check = f"check_b{b}_s{s}"
    for part, t in (("tokens", tokens), ("memory", memory), ("logits", logits), ("new_memory", new_memory)):
        t.contiguous().numpy().tofile(os.path.join(args.out, f"{check}.{part}.bin"))
    # The model last: its presence says the folder is complete.
    os.replace(os.path.join(args.out, name + ".onnx.tmp"), os.path.join(args.out, name + ".onnx"))
    emit({"event": "done", "onnx": os.path.join(args.out, name + ".onnx"), "torch": torch.__version__})


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
    """Line protocol: {"phase", "segmentLen", "steps", "variant"?} in, {"seconds": [...], ...} out; EOF ends."""
    runners = {}
    emit(
        {
            "event": "ready",
            "engine": "pytorch",
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "openblas_core": openblas_core(),
        }
    )
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        variant = cmd.get("variant") or args.variant
        key = (cmd["phase"], cmd["segmentLen"], variant if cmd["phase"] == "stream" else None)
        if key not in runners:
            runners[key] = Runner(cmd["phase"], cmd["segmentLen"], args, variant)
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
    if args.mode == "export":
        if not args.out:
            sys.exit("--mode export needs --out FOLDER")
        export(args)
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
