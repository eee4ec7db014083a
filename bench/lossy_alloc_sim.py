#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""How a size budget could be spent, simulated in numpy: mksparse's quantizer (a group's scale is
step times its RMS, rounded to f16; codes rounded to nearest, 8 bits) under several allocations,
each at the same simulated size (the codes' order-0 entropy plus 2 bytes a scale, the step found
by bisection), and the held-out bits per byte of the result against the fine-tune. Prints
figures, asserts nothing; mksparse's own figures come from bench_lossy.py.

usage: bench/lossy_alloc_sim.py FIXTURES_DIR FINE_TUNE [FRACTION...]

Allocations: groups of 2048 across rows (mksparse before row groups); a group per row in every
weight, or in the embeddings only (mksparse now); and data-free activation-aware weighting, the
step of row j (an input feature of a Conv1D weight) times w_j^-alpha, normalised to a geometric
mean of 1 per tensor, w_j the RMS the base's tensors predict for that input: |ln weight, bias|
for c_attn and c_fc; through the value columns of c_attn for attn.c_proj; of gelu of c_fc's
output (Gauss-Hermite) for mlp.c_proj. FRACTION (default 16 8): the budget is the fine-tune's
bytes over it, less 12000 bytes for the lossless parts.
"""
import json, math, os, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402
import gpt2_eval as g  # noqa: E402

CORPUS = {"ft_sft": "A", "ft_vocab": "A", "ft_lora_merged": "A", "ft_heavy": "B"}
LOSSLESS_PART = 12000


def bf16(x):
    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return u.astype(np.uint32).view(np.float32)


def is_embedding(name):
    return name.endswith(("wte.weight", "wpe.weight"))


def ln_rms(t, p):
    return np.sqrt(t[p + ".weight"] ** 2 + t[p + ".bias"] ** 2)


def input_rms(t, name):
    """The RMS of the input feature each row of weight name multiplies, from t alone; None for
    weights not fed by a layer norm (embeddings)."""
    if not name.startswith("h."):
        return None
    p = name[:name.index(".", 2) + 1]
    s1, s2 = ln_rms(t, p + "ln_1"), ln_rms(t, p + "ln_2")
    if name.endswith("attn.c_attn.weight"):
        return s1
    if name.endswith("mlp.c_fc.weight"):
        return s2
    if name.endswith("attn.c_proj.weight"):
        w, b = t[p + "attn.c_attn.weight"], t[p + "attn.c_attn.bias"]
        c = w.shape[0]
        return np.sqrt(((s1[:, None] * w[:, 2 * c:]) ** 2).sum(0) + b[2 * c:] ** 2)
    w, b = t[p + "mlp.c_fc.weight"], t[p + "mlp.c_fc.bias"]
    sd = np.sqrt(((s2[:, None] * w) ** 2).sum(0))
    x, wt = np.polynomial.hermite_e.hermegauss(40)
    h = b[:, None] + sd[:, None] * x[None, :]
    return np.sqrt((g.gelu_new(h) ** 2 * wt).sum(1) / wt.sum())


def quantize(d, step, rows, mult):
    """d's dequantized values and simulated bytes: groups of 2048 from the start, or one per row
    with rows; mult scales the step of each row (rows) or group."""
    grp = d if rows else np.pad(d.reshape(-1), (0, (-d.size) % 2048)).reshape(-1, 2048)
    rms = np.sqrt((grp ** 2).mean(1))
    sc = (rms * step * mult).astype(np.float16).astype(np.float32)
    q = np.clip(np.round(grp / np.where(sc > 0, sc, 1)[:, None]), -127, 127) * (sc[:, None] > 0)
    q = q.reshape(-1)[:d.size]
    _, counts = np.unique(q, return_counts=True)
    bits = -(counts * np.log2(counts / q.size)).sum()
    return (q * np.repeat(sc, grp.shape[1])[:d.size]).reshape(d.shape), bits / 8 + 2 * len(sc)


class Sim:
    def __init__(self, fixtures, ft):
        self.base = g.load_tensors(os.path.join(fixtures, "base_bf16"))
        self.ft = g.load_tensors(os.path.join(fixtures, ft))
        self.cfg = json.load(open(os.path.join(fixtures, ft, "config.json")))
        self.win = g.windows(os.path.join(fixtures, "eval", CORPUS[ft] + "_eval.bin"))
        self.ref = g.bits_per_byte(self.logits(self.ft), self.win)
        self.lossy = [k for k, v in self.ft.items() if v.ndim == 2 and min(v.shape) >= 16]

    def logits(self, t):
        w = self.win
        return np.concatenate([g.forward(t, self.cfg, w[i:i + 8, :-1]) for i in range(0, len(w), 8)])

    def build(self, step, rows_of, alpha):
        t, size = dict(self.ft), 0
        for k in self.lossy:
            rows, n = self.base[k].shape[0], self.ft[k].shape[0]
            d = self.ft[k][:rows] - self.base[k]
            w = input_rms(self.base, k) if alpha else None
            mult = 1.0
            if w is not None:
                w = np.maximum(w, 1e-3 * w.max())
                mult = (w / np.exp(np.log(w).mean())) ** -alpha
                if not rows_of(k):  # a group's step: the finest of the rows it covers
                    r = np.minimum(np.arange(-(-d.size // 2048) * 2048) // d.shape[1], rows - 1)
                    mult = mult[r].reshape(-1, 2048).min(1)
            deq, s = quantize(d, step, rows_of(k), mult)
            size += s
            t[k] = np.concatenate([bf16(self.base[k] + deq), self.ft[k][rows:n]])
        return t, size

    def at_size(self, budget, rows_of, alpha):
        lo, hi = 0.05, 200.0
        for _ in range(22):
            mid = math.sqrt(lo * hi)
            lo, hi = (mid, hi) if self.build(mid, rows_of, alpha)[1] > budget else (lo, mid)
        t, size = self.build(hi, rows_of, alpha)
        return hi, size, g.bits_per_byte(self.logits(t), self.win)


SETTINGS = [("groups of 2048", lambda k: False, 0), ("rows, every weight", lambda k: True, 0),
            ("rows, embeddings only", is_embedding, 0),
            ("rows, every weight; weighted alpha 0.5", lambda k: True, 0.5),
            ("rows, every weight; weighted alpha 1", lambda k: True, 1),
            ("groups of 2048; weighted alpha 1", lambda k: False, 1)]


def main():
    if len(sys.argv) < 3 or sys.argv[2] not in CORPUS:
        sys.exit(__doc__)
    sim = Sim(sys.argv[1], sys.argv[2])
    ft_bytes = os.path.getsize(os.path.join(sys.argv[1], sys.argv[2], "model.safetensors"))
    print(f"{sys.argv[2]} (bits per byte on {CORPUS[sys.argv[2]]}_eval: {sim.ref:.4f})")
    print("| setting | size | step | bpb | d bpb |\n|---|---|---|---|---|")
    for frac in [int(f) for f in sys.argv[3:]] or [16, 8]:
        for name, rows_of, alpha in SETTINGS:
            step, size, bpb = sim.at_size(ft_bytes / frac - LOSSLESS_PART, rows_of, alpha)
            print(f"| {name} | 1/{frac} | {step:.3f} | {bpb:.4f} | {100 * (bpb / sim.ref - 1):+.2f}% |",
                  flush=True)


if __name__ == "__main__":
    main()
