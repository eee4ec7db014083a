#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""How the read path, --extract and mksparse scale with cores: a generated pair read as a plain
folder (in the page cache), through a passthrough FUSE mount of that folder (build/passthrough:
the ceiling FUSE itself allows) and through a fresh sparsefs mount of its delta, in the access
patterns loaders use. Prints tables and ratios; asserts nothing. Compare within one run.

usage: bench/bench_scale.py BUILD_DIR [--layers N] [--width N] [--work DIR] [--rounds N]
                            [--decoders LIST] [--jobs LIST] [--chunks LIST] [--opts O]...

The pair (sparse-genmodel demo, LAYERS x WIDTH, default 12 x 1536: about 700 MB of bf16) is
generated into WORK (default BUILD_DIR/scale-bench) and reused. Patterns, each the median of
ROUNDS (default 3), every mount fresh for each:
- cat: one reader, `cat` of every file;
- 4 readers: the largest file in four quarters, one `dd bs=4M` each, at once;
- mmap-8: build/mmap_load, which maps each safetensors file and copies its tensors out on 8
  threads (the page faults transformers takes);
- 4K random: p50 and p99 microseconds of 1000 preads of 4 KiB at random offsets;
- from_pretrained: transformers' AutoModelForCausalLM to CPU, where transformers is installed.
sparsefs runs with its defaults, then with each `-o decoders=` of LIST (default "1,2,CPUS"),
then with each `--opts` (sparsefs -o options, e.g. `--opts cache_size=256M`), a column each.
Then the chunk size's trade (mksparse -c of each of CHUNKS, default "256K,1M,4M"): the
delta's size against random 4 KiB reads, cat and mmap-8. Then `sparsefs --extract` to /dev/shm and to
WORK, with each decoders= of LIST, against the default mount's cat; and mksparse (lossless)
with each `-j` of LIST (default "1,CPUS").
"""
import os, shutil, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_speed import (Mount, files_of, generated_pair, pair_parser, random_4k,  # noqa: E402
                         seq_mbps, size_of, warm)

CPUS = os.cpu_count() or 1
PRETRAINED = """import sys, time, torch
from transformers import AutoModelForCausalLM
t = time.perf_counter()
AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.bfloat16)
print(time.perf_counter() - t)
"""


def have_transformers():
    return subprocess.run([sys.executable, "-c", "import transformers, torch"],
                          capture_output=True).returncode == 0


def biggest(d):
    return max(files_of(d), key=os.path.getsize)


def cat_s(d):
    return size_of(d) / seq_mbps(d) / 1e6


def readers_s(d, n=4):
    f = biggest(d)
    size = os.path.getsize(f)
    part = (size + n - 1) // n
    t = time.perf_counter()
    ps = [subprocess.Popen(["dd", f"if={f}", "of=/dev/null", "bs=4M", "status=none",
                            "iflag=skip_bytes,count_bytes", f"skip={i * part}",
                            f"count={part}"]) for i in range(n)]
    for p in ps:
        p.wait()
    return time.perf_counter() - t


def mmap_s(build, d):
    out = subprocess.run([os.path.join(build, "mmap_load"), d, "8"], check=True,
                         capture_output=True, text=True).stdout
    return float(out.split()[0])


def pretrained_s(d):
    out = subprocess.run([sys.executable, "-c", PRETRAINED, d], check=True,
                         capture_output=True, text=True).stdout
    return float(out.split()[-1])


def patterns(build):
    pats = [("cat s", cat_s), ("4 readers s", readers_s),
            ("mmap-8 s", lambda d: mmap_s(build, d)), ("4K random us p50/p99", random_4k)]
    if have_transformers():
        pats.append(("from_pretrained s", pretrained_s))
    return pats


def median(vals):
    """The median of numbers, or of (p50, p99) pairs part by part."""
    if isinstance(vals[0], tuple):
        return tuple(statistics.median(v) for v in zip(*vals))
    return statistics.median(vals)


def cell(v):
    return "%.0f/%.0f" % v if isinstance(v, tuple) else f"{v:.3f}"


def column(fn, opener, rounds, warm_paths):
    """The median of rounds of fn(folder), each on a fresh opener() (folder, Mount or None)."""
    got = []
    for _ in range(rounds):
        warm(warm_paths)
        d, m = opener()
        try:
            got.append(fn(d))
        finally:
            if m:
                m.close()
    return median(got)


def read_table(build, a, base, ft, delta, mnt, decoders, opts):
    sparsefs = os.path.join(build, "sparsefs")
    cols = [("plain", lambda: (ft, None)),
            # its log: libfuse 3.14's fuse_main says it ignores a max_threads it never got
            ("passthrough", lambda: (mnt, Mount([os.path.join(build, "passthrough"), ft, "-f"],
                                                mnt, log=os.devnull)))]
    cols.append(("sparsefs", lambda: (mnt, Mount([sparsefs, "-f", "-o", f"base={base}", delta],
                                                  mnt))))
    for o in [f"decoders={n}" for n in decoders] + opts:
        cols.append((o, lambda o=o: (mnt, Mount([sparsefs, "-f", "-o", f"base={base},{o}", delta],
                                                mnt))))
    rows = []
    for name, fn in patterns(build):
        row = [name]
        for _, opener in cols:
            row.append(column(fn, opener, a.rounds, [ft, delta, base]))
        rows.append(row)
        print("  " + " | ".join([name] + [cell(v) for v in row[1:]]), flush=True)
    heads = ["pattern"] + [c for c, _ in cols] + ["sparsefs speed / passthrough's"]
    print("\n| " + " | ".join(heads) + " |\n|" + "---|" * len(heads))
    for row in rows:
        ratio = "-" if isinstance(row[2], tuple) else f"{row[2] / row[3]:.2f}"
        print("| " + " | ".join([row[0]] + [cell(v) for v in row[1:]] + [ratio]) + " |")
    return rows[0][3]


def extract_table(build, a, base, delta, work, cat_mount, decoders):
    sparsefs = os.path.join(build, "sparsefs")
    print("\n| --extract | to /dev/shm s | to disk s | mount cat s | mount cat / extract (shm) |")
    print("|---|---|---|---|---|")
    for n in ["default"] + decoders:
        opt = [] if n == "default" else ["-o", f"decoders={n}"]
        secs = []
        for where in ("/dev/shm", work):
            out = tempfile.mkdtemp(dir=where, prefix="extract.")
            got = []
            for _ in range(a.rounds):
                warm([delta, base])
                shutil.rmtree(out)
                t = time.perf_counter()
                subprocess.run([sparsefs, "--extract", "-o", f"base={base}"] + opt +
                               [delta, out], check=True)
                got.append(time.perf_counter() - t)
            shutil.rmtree(out)
            secs.append(statistics.median(got))
        print(f"| decoders={n} | {secs[0]:.3f} | {secs[1]:.3f} | {cat_mount:.3f} | "
              f"{cat_mount / secs[0]:.2f} |", flush=True)


def mksparse_table(build, a, base, ft, work, jobs):
    ftb = size_of(ft)
    print("\n| mksparse (lossless) | s | MB/s | MB/s per thread |\n|---|---|---|---|")
    for j in jobs:
        got = []
        for _ in range(a.rounds):
            out = os.path.join(work, "mksparse.out")
            shutil.rmtree(out, ignore_errors=True)
            warm([base, ft])
            t = time.perf_counter()
            subprocess.run([os.path.join(build, "mksparse"), "-q", "-j", str(j), base, ft,
                            "-o", out], check=True)
            got.append(time.perf_counter() - t)
            shutil.rmtree(out)
        s = statistics.median(got)
        print(f"| -j {j} | {s:.2f} | {ftb / s / 1e6:.0f} | {ftb / s / 1e6 / j:.0f} |", flush=True)


def chunk_table(build, a, base, ft, work, mnt, sizes):
    """What a chunk size costs: the delta's size against random 4 KiB reads, cat and mmap-8."""
    ftb = size_of(ft)
    print("\n| chunk size | delta / fine-tune | 4K random p50/p99 us | cat s | mmap-8 s |\n"
          "|---|---|---|---|---|")
    for c in sizes:
        delta = os.path.join(work, "delta-" + c)
        if not os.path.exists(os.path.join(delta, "delta.sparse")):
            subprocess.run([os.path.join(build, "mksparse"), "-q", "-c", c, base, ft, "-o",
                            delta], check=True)
        cmd = [os.path.join(build, "sparsefs"), "-f", "-o", f"base={base}", delta]
        opener = lambda: (mnt, Mount(cmd, mnt))  # noqa: E731
        rand = column(random_4k, opener, a.rounds, [delta, base])
        cat = column(cat_s, opener, a.rounds, [delta, base])
        mm = column(lambda d: mmap_s(build, d), opener, a.rounds, [delta, base])
        print(f"| {c} | {size_of(delta) / ftb:.4f} | {cell(rand)} | {cat:.3f} | {mm:.3f} |",
              flush=True)


def numbers(spec):
    got = [CPUS if v == "CPUS" else int(v) for v in spec.split(",")]
    return sorted(set(got), key=got.index)


def main():
    ap = pair_parser(__doc__)
    ap.add_argument("--decoders", default="1,2,CPUS")
    ap.add_argument("--jobs", default="1,CPUS")
    ap.add_argument("--chunks", default="256K,1M,4M")
    ap.add_argument("--opts", action="append", default=[])
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    work = os.path.abspath(a.work or os.path.join(build, "scale-bench"))
    delta = os.path.join(work, "delta")
    base, ft = generated_pair(build, work, a, delta)
    print(f"pair: {a.layers} x {a.width}, fine-tune {size_of(ft) / 1e6:.0f} MB, delta "
          f"{size_of(delta) / 1e6:.0f} MB; {CPUS} CPUs; medians of {a.rounds} rounds", flush=True)
    mnt = tempfile.mkdtemp(dir=work, prefix="mnt.")
    try:
        cat_mount = read_table(build, a, base, ft, delta, mnt, numbers(a.decoders), a.opts)
        chunk_table(build, a, base, ft, work, mnt, a.chunks.split(","))
    finally:
        os.rmdir(mnt)
    extract_table(build, a, base, delta, work, cat_mount, numbers(a.decoders))
    mksparse_table(build, a, base, ft, work, numbers(a.jobs))


if __name__ == "__main__":
    main()
