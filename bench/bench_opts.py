#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Mount options side by side: sequential read and the 8-thread mmap load of one delta, each
variant mounted afresh, the variants taking turns round after round so that the load of a shared
machine falls on all of them alike. Prints each round and the medians; asserts nothing.

usage: bench/bench_opts.py BUILD_DIR DELTA FT_DIR [--opts OPTS]... [--rounds N] [--threads N]
                           [--count] [--before BUILD2] [--plain]

Each --opts is one variant's -o options ("" for none, the default; e.g. --opts "" --opts
splice). The delta and its base are read into the page cache before each figure (a warm base);
nothing of the mounted files is (a fresh mount each time). FT_DIR is the fine-tune that DELTA
stores: its sha256 is checked once per variant. --count mounts with -d and adds, per variant,
the READ requests the mmap load made, their sizes and how many were spliced. --before BUILD2
adds each variant once more, mounted by BUILD2's sparsefs (the code before a change). --plain
adds FT_DIR itself, in the page cache. Beside the times: the CPU seconds of the daemon and of
the reader (cat, or mmap_load's threads), where the time of a CPU-bound machine goes.
"""
import argparse, collections, hashlib, json, os, re, resource, statistics, subprocess, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_speed import Mount, files_of, seq_mbps, warm  # noqa: E402


def mmap_secs(build, d, threads):
    out = subprocess.run([os.path.join(build, "mmap_load"), d, str(threads)], check=True,
                         capture_output=True, text=True).stdout
    return float(out.split()[0])


def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(8 << 20):
            h.update(b)
    return h.hexdigest()


def daemon_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reader_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def count_reads(log):
    """READ requests of a -d log: how many, by reply size, and how many spliced."""
    sizes, spliced = collections.Counter(), 0
    reads = set(re.findall(r"^unique: (\d+), opcode: READ", log, re.M))
    for uid, size, tail in re.findall(r"unique: (\d+), success, outsize: (\d+)(.*)", log):
        if uid in reads:
            sizes[int(size) - 16] += 1
            spliced += "splice" in tail
    return sum(sizes.values()), spliced, sizes.most_common(4)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("build")
    ap.add_argument("delta")
    ap.add_argument("ft")
    ap.add_argument("--opts", action="append", default=None)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--count", action="store_true")
    ap.add_argument("--before")
    ap.add_argument("--plain", action="store_true")
    a = ap.parse_args()
    build, delta = os.path.abspath(a.build), os.path.abspath(a.delta)
    exes = [os.path.join(build, "sparsefs")] + ([os.path.join(a.before, "sparsefs")] if a.before else [])
    variants = [(e, o) for e in exes for o in (a.opts or [""])] + ([("plain", "")] if a.plain else [])
    info = json.loads(subprocess.run([os.path.join(build, "sparsefs"), "--info", "--json", delta],
                                     check=True, capture_output=True, text=True).stdout)
    backing = [delta, info["base"]["path"]]
    name = lambda v: "plain folder" if v[0] == "plain" else (v[1] or "(none)") + (
        ", --before" if v[0] != exes[0] else "")
    tmp = tempfile.mkdtemp(prefix="bench_opts.")
    mnt = os.path.join(tmp, "mnt")
    os.makedirs(mnt)
    res = {v: collections.defaultdict(list) for v in variants}
    counts = {}

    def mount(v, debug=False):
        if v[0] == "plain":
            warm([a.ft])
            return None
        cmd = [v[0], "-f"] + (["-d"] if debug else []) + (["-o", v[1]] if v[1] else []) + [delta]
        warm(backing)
        return Mount(cmd, mnt, log=os.path.join(tmp, "log") if debug else None)

    try:
        for v in variants[:len(variants) - a.plain]:
            m = mount(v)
            try:
                for f in files_of(a.ft):
                    rel = os.path.relpath(f, a.ft)
                    if sha(f) != sha(os.path.join(mnt, rel)):
                        raise SystemExit(f"bench_opts: {name(v)}: {rel} differs")
            finally:
                m.close()
        for r in range(a.rounds):
            for v in variants:
                for fig in ("seq", "mmap"):
                    m, k = mount(v), reader_cpu()
                    d = mnt if m else a.ft
                    try:
                        x = seq_mbps(d) if fig == "seq" else mmap_secs(build, d, a.threads)
                        res[v][fig + " daemon"].append(daemon_cpu(m.proc.pid) if m else 0)
                        res[v][fig + " reader"].append(reader_cpu() - k)
                    finally:
                        if m:
                            m.close()
                    res[v][fig].append(x)
                print(f"round {r + 1}: {name(v)}: seq {res[v]['seq'][-1]:.0f} MB/s, "
                      f"mmap-{a.threads} {res[v]['mmap'][-1]:.3f} s", flush=True)
        if a.count:
            for v in variants[:len(variants) - a.plain]:
                m = mount(v, debug=True)
                try:
                    mmap_secs(build, mnt, a.threads)
                finally:
                    m.close()
                with open(os.path.join(tmp, "log"), errors="replace") as f:
                    counts[v] = count_reads(f.read())
    finally:
        subprocess.run(["rm", "-rf", tmp], check=False)
    size = sum(os.path.getsize(f) for f in files_of(a.ft)) / 1e6
    print(f"\n{a.ft}: {size:.0f} MB, medians of {a.rounds} rounds")
    print(f"| -o | seq MB/s | CPU s daemon, cat | mmap-{a.threads} s | CPU s daemon, loader |"
          + (" READs (spliced), top sizes |" if a.count else ""))
    print("|---|---|---|---|---|" + ("---|" if a.count else ""))
    med = lambda v, k: statistics.median(res[v][k])
    for v in variants:
        row = (f"| {name(v)} | {med(v, 'seq'):.0f} | {med(v, 'seq daemon'):.2f}, "
               f"{med(v, 'seq reader'):.2f} | {med(v, 'mmap'):.3f} | {med(v, 'mmap daemon'):.2f}, "
               f"{med(v, 'mmap reader'):.2f} |")
        if a.count and v in counts:
            n, s, top = counts[v]
            row += f" {n} ({s}), " + ", ".join(f"{k >> 10}K x{c}" for k, c in top) + " |"
        elif a.count:
            row += " - |"
        print(row)


if __name__ == "__main__":
    main()
