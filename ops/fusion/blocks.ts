/**
 * The kernel module of fused regions (kernels/blocks_wasm.ts, built from
 * kernels/linear.c, norm.c, attention.c, recurrent.c, gemv.c, decode.c and
 * gemm.c): what it exports, loaded on tfjs-backend-wasm's heap in the build
 * that runs (ops/heap.ts). Pointers are byte offsets into that heap.
 *
 * @module
 */
import * as blocksModule from "../../kernels/blocks_wasm.ts";
import { kernelLoader } from "../heap.ts";

/** What kernels/blocks_wasm.ts exports. */
export interface BlocksExports {
  bias_rows(out: number, b: number, r: number, m: number, n: number): void;
  relu_inplace(x: number, n: number): void;
  relu_grad(dy: number, y: number, m: number, n: number, dz: number, db: number): void;
  col_sums(dy: number, m: number, n: number, db: number): void;
  mul_into(out: number, a: number, b: number, n: number): void;
  mask_add(out: number, mask: number, r: number, n: number): void;
  layernorm(
    x: number,
    g: number,
    b: number,
    n: number,
    d: number,
    eps: number,
    y: number,
    xhat: number,
    inv: number,
  ): void;
  layernorm_grad(
    dy: number,
    xhat: number,
    inv: number,
    g: number,
    n: number,
    d: number,
    dx: number,
    dg: number,
    db: number,
  ): void;
  attention_work_floats(s: number, t: number): number;
  attention_fwd(
    q: number,
    kv: number,
    nb: number,
    s: number,
    t: number,
    nh: number,
    e: number,
    scale: number,
    out: number,
    probs: number,
    dropped: number,
    mask: number,
    work: number,
  ): void;
  attention_bwd(
    q: number,
    kv: number,
    probs: number,
    dropped: number,
    mask: number,
    dout: number,
    nb: number,
    s: number,
    t: number,
    nh: number,
    e: number,
    scale: number,
    dq: number,
    dkv: number,
    work: number,
  ): void;
  attention_softmax(p: number, nbh: number, s: number, t: number, scale: number): void;
  attention_softmax_grad(
    p: number,
    dp: number,
    nbh: number,
    s: number,
    t: number,
    scale: number,
  ): void;
  gru_gates(
    gx: number,
    hr: number,
    hz: number,
    hc: number,
    h: number,
    mb: number,
    nb: number,
    m: number,
    out: number,
    saved: number,
  ): void;
  gru_gates_grad(
    dout: number,
    saved: number,
    hc: number,
    h: number,
    mb: number,
    nb: number,
    m: number,
    dgx: number,
    dhc: number,
    dh: number,
    dmb: number,
  ): void;
  gemv_f32(x: number, w: number, k: number, n: number, y: number, accumulate: number): void;
  q8_work_bytes(k: number): number;
  gemv_q8(
    x: number,
    w: number,
    scales: number,
    k: number,
    n: number,
    np: number,
    y: number,
    accumulate: number,
    work: number,
    dot: number,
  ): void;
  unpack_q8(w: number, scales: number, k: number, n: number, np: number, out: number): void;
  gather_rows_q8(
    table: number,
    scales: number,
    ids: number,
    n: number,
    d: number,
    out: number,
  ): void;
  unpack_rows_q8(table: number, scales: number, r: number, d: number, out: number): void;
  attention_step(
    q: number,
    kv: number,
    kc: number,
    vc: number,
    r: number,
    p: number,
    nh: number,
    e: number,
    scale: number,
    kout: number,
    vout: number,
    out: number,
    scores: number,
    ps: number,
    ts: number,
  ): void;
  add_inplace(x: number, y: number, n: number): void;
  sample_token(
    x: number,
    v: number,
    k: number,
    temperature: number,
    u: number,
    scratch: number,
  ): number;
  embed_rows(
    table: number,
    tscales: number,
    ids: number,
    b: number,
    n: number,
    d: number,
    pos: number,
    pscales: number,
    start: number,
    out: number,
  ): void;
  gemm_work_floats(): number;
  gemm(
    m: number,
    n: number,
    k: number,
    a: number,
    rsa: number,
    csa: number,
    b: number,
    rsb: number,
    csb: number,
    c: number,
    ldc: number,
    accumulate: number,
    work: number,
  ): void;
}

/** The blocks module: `compile()` at start-up, `on(backend)` for its exports on that heap. */
export const blocks = kernelLoader<BlocksExports>(blocksModule);
