#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Dataset deltas against what a user can do today. Prints figures, asserts nothing.

usage: bench/bench_datasets.py BUILD_DIR [--large-mb 512] [--tree NAME=BASE:DERIVED ...]
                                [--no-python-trees]

For each pair tests/gen_datasets.py writes: the derived tree's bytes; `zstd -19` of each derived
file alone (summed); the archive-level patch available today (each tree tarred with sorted names
and fixed mtime and owners, then `zstd -19 --long=31 --patch-from=base.tar derived.tar`); our
delta (`mksparse BASE DERIVED -o DELTA`, the size of DELTA/delta.sparse) and its ratio to each
(the target is ours <= 1.3x patch-from); mksparse MB/s of derived bytes.

Then the jsonl pair scaled so its derived file is at least --large-mb MiB: the delta's size,
mksparse MB/s, and the median and p99 time of 200 random 4 KiB preads in the middle half of the
big file through a fresh mount (cold: page cache of the delta and base dropped first) and again
(warm), beside the same reads of the plain derived file (cold: its page cache dropped; warm).

Then real source trees, two releases each: every pair given with --tree, and the Python
standard libraries this machine has (the .py files outside tests and site-packages of Debian's
python3.11 and pyenv's 3.11.7, 3.12.1 and 3.13.0, and pyenv's pip 23.2.1 and 24.2, where
installed): our delta against `zstd -19 --long=31` of the derived tree as one tar and the
whole-tree patch-from, mksparse MB/s, and the median and p99 time of 4 KiB preads at random
offsets of 200 random files of at most 128 KiB through a fresh mount (each decodes at most one
pack: 256 KiB, or 512 KiB for a pack of new files).

Where mksparse fails, the row says n/a and what it printed follows the tables. Every mount is
unmounted, every sparsefs ended and every temporary file removed, on errors and SIGTERM too.
"""
import argparse, math, os, random, shutil, signal, statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
GEN = os.path.join(HERE, "..", "tests", "gen_datasets.py")
CASES = ["jsonl", "words", "csv", "truncated", "renames", "gz", "split", "added"]
READS, READ_SIZE = 200, 4096


def files_of(d):
    """Sorted paths of every regular file under d."""
    return sorted(os.path.join(r, f) for r, _, fs in os.walk(d) for f in fs)


def size_of(d):
    """Total bytes of the files under d."""
    return sum(os.path.getsize(f) for f in files_of(d))


def run(*cmd):
    """Runs a command and returns its stdout as bytes; its stderr (zstd's notes on the optimal
    parser, say) is shown only when it fails."""
    r = subprocess.run(cmd, capture_output=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.decode()[-2000:]}")
    return r.stdout


def generate(out, *args):
    """Runs tests/gen_datasets.py OUT ARGS."""
    run(sys.executable, GEN, out, *args)


def zstd19(d):
    """Bytes of `zstd -19` of each file of d on its own, summed: the no-base baseline."""
    return sum(len(run("zstd", "-19", "-q", "-c", f)) for f in files_of(d))


def tar(d, out):
    """A deterministic tar of d: sorted names, mtime 0, owner and group 0, GNU format."""
    run("tar", "--sort=name", "--mtime=@0", "--owner=0", "--group=0", "--numeric-owner",
        "--format=gnu", "-C", d, "-cf", out, ".")


def patch_from(base, derived, tmp):
    """Bytes of `zstd -19 --long=31 --patch-from` of the derived tree's tar against the base's:
    the best archive-level patch a user can make today without sparse."""
    bt, dt, pt = (os.path.join(tmp, n) for n in ("base.tar", "derived.tar", "patch.zst"))
    tar(base, bt)
    tar(derived, dt)
    run("zstd", "-19", "-q", "-f", "--long=31", "--patch-from=" + bt, dt, "-o", pt)
    size = os.path.getsize(pt)
    for p in (bt, dt, pt):
        os.remove(p)
    return size


def mksparse(build, base, derived, delta):
    """Runs mksparse; returns (delta.sparse bytes, seconds), or (None, what it printed)."""
    t = time.perf_counter()
    r = subprocess.run([os.path.join(build, "mksparse"), "-q", base, derived, "-o", delta],
                       capture_output=True, text=True)
    secs = time.perf_counter() - t
    if r.returncode != 0:
        return None, f"exit {r.returncode}: " + (r.stderr + r.stdout).strip()[-2000:]
    return os.path.getsize(os.path.join(delta, "delta.sparse")), secs


def ratio(a, b):
    """a/b to three places, or n/a."""
    return "n/a" if a is None else f"{a / b:.3f}"


def bench_case(build, case, data, tmp, failures):
    """Prints the table row of one generated pair."""
    base, derived = (os.path.join(data, case, s) for s in ("base", "derived"))
    der_b, z19, pf = size_of(derived), zstd19(derived), patch_from(base, derived, tmp)
    ours, secs = mksparse(build, base, derived, os.path.join(tmp, "delta-" + case))
    if ours is None:
        failures.append((case, secs))
    speed = "n/a" if ours is None else f"{der_b / secs / 1e6:.1f}"
    print(f"| {case} | {der_b:,} | {z19:,} | {pf:,} | "
          f"{'n/a' if ours is None else f'{ours:,}'} | {ratio(ours, der_b)} | {ratio(ours, z19)} "
          f"| {ratio(ours, pf)} | {speed} |", flush=True)


class Mount:
    """`sparsefs -f DELTA MNT` for the duration of a with block; on leaving, unmounts (lazily if
    busy) and ends the daemon, even when the block raised."""

    def __init__(self, build, delta, mnt):
        os.makedirs(mnt, exist_ok=True)
        self.mnt = mnt
        self.proc = subprocess.Popen([os.path.join(build, "sparsefs"), "-f", delta, mnt])

    def __enter__(self):
        deadline = time.monotonic() + 30
        while not os.path.ismount(self.mnt):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"sparsefs did not mount {self.mnt}")
            time.sleep(0.005)
        return self

    def __exit__(self, *exc):
        if os.path.ismount(self.mnt):
            if subprocess.run(["fusermount3", "-u", self.mnt]).returncode != 0:
                subprocess.run(["fusermount3", "-u", "-z", self.mnt])
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def drop_cache(path):
    """Drops path's pages from the kernel page cache (only this file's), so reads go to disk.
    Written back first: the kernel keeps dirty pages, and these files are freshly written."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def preads(path, offsets):
    """Microseconds each READ_SIZE pread at the given offsets took, in order."""
    fd = os.open(path, os.O_RDONLY)
    try:
        times = []
        for off in offsets:
            t = time.perf_counter()
            os.pread(fd, READ_SIZE, off)
            times.append((time.perf_counter() - t) * 1e6)
        return times
    finally:
        os.close(fd)


def med_p99(times):
    """'median / p99' of a list of microseconds."""
    return f"{statistics.median(times):.0f} / {statistics.quantiles(times, n=100)[98]:.0f}"


def bench_large(build, small_derived, large_mb, tmp, failures):
    """The scaled jsonl pair: delta size and speed, then random 4 KiB reads, mount and plain."""
    target = large_mb << 20
    scale = math.ceil(target / os.path.getsize(small_derived) * 1.05)
    data = os.path.join(tmp, "large")
    generate(data, "--scale", str(scale), "--cases", "jsonl")
    base, derived = (os.path.join(data, "jsonl", s) for s in ("base", "derived"))
    big = os.path.join(derived, "train.jsonl")
    size = os.path.getsize(big)
    delta = os.path.join(tmp, "delta-large")
    ours, secs = mksparse(build, base, derived, delta)
    rng = random.Random(1)
    offsets = [rng.randrange(size // 4, size * 3 // 4) for _ in range(READS)]
    if ours is None:
        failures.append((f"jsonl x{scale}", secs))
        cold = warm = "n/a"
    else:
        for f in files_of(base) + [os.path.join(delta, "delta.sparse")]:
            drop_cache(f)
        mnt = os.path.join(tmp, "mnt")
        with Mount(build, delta, mnt):
            mounted = os.path.join(mnt, "train.jsonl")
            cold, warm = med_p99(preads(mounted, offsets)), med_p99(preads(mounted, offsets))
    drop_cache(big)
    plain_cold, plain_warm = med_p99(preads(big, offsets)), med_p99(preads(big, offsets))
    speed = "n/a" if ours is None else f"{size / secs / 1e6:.1f}"
    print(f"| jsonl x{scale} | {size:,} | {'n/a' if ours is None else f'{ours:,}'} | "
          f"{ratio(ours, size)} | {speed} | {cold} | {warm} | {plain_cold} | {plain_warm} |",
          flush=True)


PYENV = os.path.expanduser("~/.pyenv/versions")
PYTHON_TREES = [  # name, base, derived: releases this machine may have
    ("stdlib 3.11.2 -> 3.11.7", "/usr/lib/python3.11", PYENV + "/3.11.7/lib/python3.11"),
    ("stdlib 3.12.1 -> 3.13.0", PYENV + "/3.12.1/lib/python3.12", PYENV + "/3.13.0/lib/python3.13"),
    ("pip 23.2.1 -> 24.2", PYENV + "/3.12.1/lib/python3.12/site-packages/pip",
     PYENV + "/3.13.0/lib/python3.13/site-packages/pip"),
]
SKIP_DIRS = {"test", "tests", "site-packages", "dist-packages", "__pycache__"}


def copy_sources(src, out):
    """The .py files of src, outside test folders, installed packages and config-* folders."""
    for root, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("config-")
                         and not os.path.islink(os.path.join(root, d)))
        for f in files:
            path = os.path.join(root, f)
            if f.endswith(".py") and not os.path.islink(path):
                dst = os.path.join(out, os.path.relpath(path, src))
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                shutil.copy2(path, dst)


def python_trees(tmp):
    """The PYTHON_TREES pairs this machine has, copied as (name, base, derived)."""
    pairs = []
    for i, (name, a, b) in enumerate(PYTHON_TREES):
        if not (os.path.isdir(a) and os.path.isdir(b)):
            continue
        base, derived = os.path.join(tmp, f"py{i}", "base"), os.path.join(tmp, f"py{i}", "derived")
        copy_sources(a, base)
        copy_sources(b, derived)
        pairs.append((name, base, derived))
    return pairs


def zstd_tree(derived, tmp):
    """Bytes of `zstd -19 --long=31` of the derived tree as one tar: no base, no random access."""
    dt, zt = os.path.join(tmp, "derived.tar"), os.path.join(tmp, "derived.tar.zst")
    tar(derived, dt)
    run("zstd", "-19", "-q", "-f", "--long=31", dt, "-o", zt)
    size = os.path.getsize(zt)
    os.remove(dt)
    os.remove(zt)
    return size


def small_reads(build, delta, derived, tmp):
    """'median / p99' us of 4 KiB preads of 200 random files of at most 128 KiB, each at a
    random offset, through a fresh mount."""
    rng = random.Random(2)
    small = [f for f in files_of(derived) if 0 < os.path.getsize(f) <= 128 << 10]
    picks = [rng.choice(small) for _ in range(READS)] if small else []
    mnt, times = os.path.join(tmp, "mnt-tree"), []
    with Mount(build, delta, mnt):
        for f in picks:
            path = os.path.join(mnt, os.path.relpath(f, derived))
            off = rng.randrange(max(os.path.getsize(f) - READ_SIZE, 0) + 1)
            times += preads(path, [off])
    return med_p99(times) if len(times) > 1 else "n/a"


def bench_tree(build, name, base, derived, tmp, failures):
    """Prints the table row of one real pair of trees."""
    der_b, n = size_of(derived), len(files_of(derived))
    z, pf = zstd_tree(derived, tmp), patch_from(base, derived, tmp)
    delta = os.path.join(tmp, "delta-tree")
    shutil.rmtree(delta, ignore_errors=True)
    ours, secs = mksparse(build, base, derived, delta)
    if ours is None:
        failures.append((name, secs))
        print(f"| {name} | {n} | {der_b:,} | {z:,} | {pf:,} | n/a | n/a | n/a | n/a | n/a |")
        return
    reads = small_reads(build, delta, derived, tmp)
    print(f"| {name} | {n} | {der_b:,} | {z:,} | {pf:,} | {ours:,} | {pf / z:.3f} | "
          f"{ours / z:.3f} | {ours / pf:.3f} | {der_b / secs / 1e6:.1f} | {reads} |", flush=True)


def bench_trees(build, trees, tmp, failures):
    """The table of real source trees."""
    if not trees:
        return
    print("\nReal source trees, two releases each; zstd-19 is `zstd -19 --long=31` of the derived "
          "tree as one tar; 4 KiB reads of small files through a fresh mount, median / p99 us.\n")
    print("| pair | files | derived B | zstd-19 B | patch-from B | ours B | patch-from/zstd-19 "
          "| ours/zstd-19 | ours/patch-from | mksparse MB/s | 4 KiB reads |")
    print("|" + "---|" * 11)
    for name, base, derived in trees:
        bench_tree(build, name, base, derived, tmp, failures)


def tree_arg(text):
    """NAME=BASE:DERIVED -> (name, base, derived)."""
    name, _, dirs = text.partition("=")
    base, _, derived = dirs.partition(":")
    if not (name and os.path.isdir(base) and os.path.isdir(derived)):
        raise argparse.ArgumentTypeError(f"{text}: not NAME=BASE_DIR:DERIVED_DIR")
    return name, os.path.abspath(base), os.path.abspath(derived)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("build")
    ap.add_argument("--large-mb", type=int, default=512,
                    help="MiB of the large case's derived file (0 skips it)")
    ap.add_argument("--tree", type=tree_arg, action="append", default=[],
                    help="NAME=BASE:DERIVED, a real pair of trees (repeatable)")
    ap.add_argument("--no-python-trees", action="store_true",
                    help="skip the Python standard library pairs")
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # run the cleanups on SIGTERM too
    failures = []
    with tempfile.TemporaryDirectory(prefix="sparse-bench-") as tmp:
        data = os.path.join(tmp, "data")
        generate(data)
        print("| case | derived B | zstd-19 B | patch-from B | ours B | ours/derived "
              "| ours/zstd-19 | ours/patch-from | mksparse MB/s |")
        print("|" + "---|" * 9)
        for case in CASES:
            bench_case(build, case, data, tmp, failures)
        if args.large_mb > 0:
            print(f"\nRandom {READ_SIZE} B preads, {READS} in the middle half of the file; "
                  "median / p99 us.\n")
            print("| case | derived B | ours B | ours/derived | mksparse MB/s | mount cold "
                  "| mount warm | plain cold | plain warm |")
            print("|" + "---|" * 9)
            bench_large(build, os.path.join(data, "jsonl", "derived", "train.jsonl"),
                        args.large_mb, tmp, failures)
        trees = args.tree + ([] if args.no_python_trees else python_trees(tmp))
        bench_trees(build, trees, tmp, failures)
    for case, message in failures:
        print(f"\nmksparse failed on {case}: {message}")


if __name__ == "__main__":
    main()
