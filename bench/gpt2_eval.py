#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""A GPT-2 forward pass in numpy, from a model folder's safetensors files: held-out bits per byte
and logits, to measure how much a delta changes a model (no torch, no transformers).

usage: gpt2_eval.py MODEL_DIR EVAL.bin [REF_MODEL_DIR]

MODEL_DIR is a folder (a mount works) with config.json and *.safetensors in the Hugging Face
GPT2LMHeadModel layout. EVAL.bin is held-out text; EVAL.starts.txt beside it lists the byte
offset of each document. Token 256 (end of text) goes before each document, the stream is cut
into 64 evenly spaced windows of 257 tokens, and the mean bits per predicted token is reported
(the fixtures' README protocol). With REF_MODEL_DIR, also the largest absolute logit difference
between the two models over the windows, and how often their top-1 predictions agree.
"""
import json, os, struct, sys

import numpy as np

WINDOWS, CTX = 64, 256


def load_tensors(folder):
    tensors = {}
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".safetensors"):
            continue
        with open(os.path.join(folder, name), "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
            data = f.read()
        for key, t in header.items():
            if key == "__metadata__":
                continue
            b, e = t["data_offsets"]
            raw = np.frombuffer(data[b:e], dtype={"F32": "<f4", "F16": "<f2", "BF16": "<u2"}[t["dtype"]])
            if t["dtype"] == "BF16":
                raw = (raw.astype(np.uint32) << 16).view(np.float32)
            tensors[key.removeprefix("transformer.")] = raw.astype(np.float32).reshape(t["shape"])
    return tensors


def layer_norm(x, w, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def gelu_new(x):
    return 0.5 * x * (1 + np.tanh(0.7978845608028654 * (x + 0.044715 * x ** 3)))


def forward(t, cfg, ids):
    """Logits for a batch of token windows (B, T), as GPT2LMHeadModel computes them."""
    nh, T = cfg["n_head"], ids.shape[1]
    h = t["wte.weight"][ids] + t["wpe.weight"][:T]
    mask = np.triu(np.full((T, T), -np.inf, dtype=np.float32), 1)
    for i in range(cfg["n_layer"]):
        p = f"h.{i}."
        x = layer_norm(h, t[p + "ln_1.weight"], t[p + "ln_1.bias"])
        q, k, v = np.split(x @ t[p + "attn.c_attn.weight"] + t[p + "attn.c_attn.bias"], 3, axis=-1)
        B, _, C = q.shape
        q, k, v = (a.reshape(B, T, nh, C // nh).transpose(0, 2, 1, 3) for a in (q, k, v))
        att = q @ k.transpose(0, 1, 3, 2) / np.sqrt(C // nh) + mask
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        y = (att @ v).transpose(0, 2, 1, 3).reshape(B, T, C)
        h = h + y @ t[p + "attn.c_proj.weight"] + t[p + "attn.c_proj.bias"]
        x = layer_norm(h, t[p + "ln_2.weight"], t[p + "ln_2.bias"])
        x = gelu_new(x @ t[p + "mlp.c_fc.weight"] + t[p + "mlp.c_fc.bias"])
        h = h + x @ t[p + "mlp.c_proj.weight"] + t[p + "mlp.c_proj.bias"]
    h = layer_norm(h, t["ln_f.weight"], t["ln_f.bias"])
    return h @ t["wte.weight"].T


def windows(path):
    data = open(path, "rb").read()
    starts = {int(x) for x in open(path[:-4] + ".starts.txt").read().split()}
    toks = []
    for i, byte in enumerate(data):
        if i in starts:
            toks.append(256)
        toks.append(byte)
    toks = np.array(toks, dtype=np.int64)
    offs = np.linspace(0, len(toks) - CTX - 1, WINDOWS).astype(np.int64)
    return np.stack([toks[o:o + CTX + 1] for o in offs])


def logits_of(folder, win):
    cfg = json.load(open(os.path.join(folder, "config.json")))
    t = load_tensors(folder)
    return np.concatenate([forward(t, cfg, win[i:i + 8, :-1]) for i in range(0, len(win), 8)])


def bits_per_byte(logits, win):
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    tgt = win[:, 1:]
    return float(-np.take_along_axis(logp, tgt[..., None], -1).mean() / np.log(2))


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    win = windows(sys.argv[2])
    a = logits_of(sys.argv[1], win)
    out = {"model": sys.argv[1], "bpb": round(bits_per_byte(a, win), 4)}
    if len(sys.argv) == 4:
        b = logits_of(sys.argv[3], win)
        out["ref_bpb"] = round(bits_per_byte(b, win), 4)
        out["max_abs_logit_diff"] = float(np.abs(a - b).max())
        out["top1_agree"] = float((a.argmax(-1) == b.argmax(-1)).mean())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
