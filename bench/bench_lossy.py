#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Lossy deltas: per fine-tune and setting, the delta's size as a fraction of the fine-tune, the
report's relative errors, and what the mounted model does on held-out text against the original
fine-tune (bits per byte, largest logit difference, top-1 agreement). Prints figures, asserts
nothing.

usage: bench/bench_lossy.py BUILD_DIR FIXTURES_DIR [FINE_TUNE...]
"""
import json, os, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402
import gpt2_eval  # noqa: E402

CORPUS = {"ft_sft": "A", "ft_vocab": "A", "ft_lora_merged": "A", "ft_sft_sharded": "A",
          "ft_heavy": "B"}
SETTINGS = [("svd r4", ["-m", "svd", "-r", "4"]), ("svd r16", ["-m", "svd", "-r", "16"]),
            ("svd r64", ["-m", "svd", "-r", "64"]), ("quant 8", ["-m", "quant", "-b", "8"]),
            ("quant 4", ["-m", "quant", "-b", "4"]), ("quant 2", ["-m", "quant", "-b", "2"]),
            ("quant 2 + r16", ["-m", "quant", "-b", "2", "-r", "16"]),
            ("size 1/8", ["--size", "1/8"]), ("size 1/16", ["--size", "1/16"])]


def size_of(d):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs)


def mounted(build, delta, mnt):
    os.makedirs(mnt, exist_ok=True)
    p = subprocess.Popen([os.path.join(build, "sparsefs"), "-f", delta, mnt])
    for _ in range(200):
        if os.path.ismount(mnt):
            return p
        time.sleep(0.01)
    raise SystemExit("mount failed")


def run(build, fixtures, ft, tmp):
    base, ftdir = os.path.join(fixtures, "base_bf16"), os.path.join(fixtures, ft)
    win = gpt2_eval.windows(os.path.join(fixtures, "eval", CORPUS[ft] + "_eval.bin"))
    ref = gpt2_eval.logits_of(ftdir, win)
    ref_bpb = gpt2_eval.bits_per_byte(ref, win)
    ft_bytes = size_of(ftdir)
    print(f"\n{ft} (bits per byte on {CORPUS[ft]}_eval: {ref_bpb:.4f})")
    print("| setting | delta/ft | delta rel err | weight rel err | bpb | d bpb | max logit diff | top-1 agree |")
    print("|---|---|---|---|---|---|---|---|")
    for name, args in SETTINGS:
        args = [a if a not in ("1/8", "1/16") else str(ft_bytes // int(a[2:])) for a in args]
        delta, mnt, rep = (os.path.join(tmp, x) for x in ("d", "m", "r.json"))
        subprocess.run(["rm", "-rf", delta], check=True)
        subprocess.run([os.path.join(build, "mksparse"), "-q", *args, "--report", rep, base,
                        ftdir, "-o", delta], check=True)
        total = json.load(open(rep))["total"]
        p = mounted(build, delta, mnt)
        try:
            got = gpt2_eval.logits_of(mnt, win)
        finally:
            subprocess.run(["fusermount3", "-u", mnt], check=True)
            p.wait()
        bpb = gpt2_eval.bits_per_byte(got, win)
        frac = os.path.getsize(os.path.join(delta, "delta.sparse")) / ft_bytes
        print(f"| {name} | {frac:.4f} | {total['delta_rel_err']:.3f} | {total['weight_rel_err']:.4f} "
              f"| {bpb:.4f} | {100 * (bpb / ref_bpb - 1):+.2f}% | {np.abs(got - ref).max():.3f} "
              f"| {100 * (got.argmax(-1) == ref.argmax(-1)).mean():.1f}% |", flush=True)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    build, fixtures = os.path.abspath(sys.argv[1]), sys.argv[2]
    fts = sys.argv[3:] or list(CORPUS)
    with tempfile.TemporaryDirectory() as tmp:
        for ft in fts:
            run(build, fixtures, ft, tmp)


if __name__ == "__main__":
    main()
