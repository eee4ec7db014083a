#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Benchmarks: prints figures, asserts nothing. Every speed is set beside a peer measured in the
same run, since the machines are shared and noisy.

usage: bench/bench.py BUILD_DIR [FIXTURES_DIR] [--large LAYERS]

Per pair (the fixtures' pairs where FIXTURES_DIR exists, and a generated pair of LAYERS layers,
default 60, about 95 MB): the delta's size against the fine-tune's, against `zstd -19` of the
fine-tune alone and against the BitX recipe (bench/bitx); mksparse MB/s; sequential read MB/s
through a fresh mount (chunks decoded on the way) and again (kernel page cache), beside reading
the fine-tune itself from the page cache; the cold (fresh mount) and warm median time of random
4 KiB reads, beside the same reads of the fine-tune; and the time a mount takes to come up.
"""
import os, random, statistics, subprocess, sys, tempfile, time

PAIRS = [("ft_sft", "base_bf16"), ("ft_heavy", "base_bf16"), ("ft_vocab", "base_bf16"),
         ("ft_lora_merged", "base_bf16"), ("ft_sft_sharded", "base_bf16"),
         ("ft_sft_f32", "base_f32")]


def files_of(d):
    return sorted(os.path.join(r, f) for r, _, fs in os.walk(d) for f in fs)


def size_of(d):
    return sum(os.path.getsize(f) for f in files_of(d))


def zstd19(d):
    return sum(len(subprocess.run(["zstd", "-19", "-c", "-q", f], capture_output=True,
                                  check=True).stdout) for f in files_of(d))


def bitx(build, base, ft):
    """BitX over the tensor files, plus zstd -19 of the small files, as the recipe stores them."""
    total = 0
    base_st = [f for f in files_of(base) if f.endswith(".safetensors")][0]
    for f in files_of(ft):
        if f.endswith(".safetensors"):
            out = subprocess.run([os.path.join(build, "bitx"), base_st, f], capture_output=True,
                                 text=True, check=True).stdout
            total += int(out.split()[0])
        else:
            total += len(subprocess.run(["zstd", "-19", "-c", "-q", f], capture_output=True,
                                        check=True).stdout)
    return total


def read_all(d, bufsize=1 << 20):
    t = time.perf_counter()
    n = 0
    for f in files_of(d):
        with open(f, "rb", buffering=0) as fh:
            while True:
                b = fh.read(bufsize)
                if not b:
                    break
                n += len(b)
    return n / (time.perf_counter() - t) / 1e6


class Mount:
    def __init__(self, build, delta, mnt):
        os.makedirs(mnt, exist_ok=True)
        self.mnt = mnt
        t = time.perf_counter()
        self.proc = subprocess.Popen([os.path.join(build, "sparsefs"), "-f", delta, mnt])
        for _ in range(2000):
            if os.path.ismount(mnt):
                self.ms = (time.perf_counter() - t) * 1e3
                return
            time.sleep(0.001)
        raise SystemExit("mount failed")

    def __enter__(self):
        return self

    def __exit__(self, *a):
        subprocess.run(["fusermount3", "-u", self.mnt], check=False)
        self.proc.wait(timeout=10)


def random_4k(path, offsets):
    fd = os.open(path, os.O_RDONLY)
    times = []
    for off in offsets:
        t = time.perf_counter()
        os.pread(fd, 4096, off)
        times.append(time.perf_counter() - t)
    os.close(fd)
    return statistics.median(times) * 1e6


def bench_pair(build, name, base, ft, tmp):
    delta = os.path.join(tmp, name)
    t = time.perf_counter()
    subprocess.run([os.path.join(build, "mksparse"), "-q", base, ft, "-o", delta], check=True)
    mk_s = time.perf_counter() - t
    ft_b, delta_b = size_of(ft), os.path.getsize(os.path.join(delta, "delta.sparse"))
    z19, bx = zstd19(ft), bitx(build, base, ft)
    read_all(ft)
    plain = max(read_all(ft) for _ in range(3))
    big = max(files_of(ft), key=os.path.getsize)
    rel = os.path.relpath(big, ft)
    rng = random.Random(1)
    offsets = [rng.randrange(0, os.path.getsize(big) - 4096) for _ in range(16)]
    mnt = os.path.join(tmp, "mnt-" + name)
    with Mount(build, delta, mnt) as m:
        mount_ms = m.ms
        cold_read = read_all(mnt)
        warm_read = max(read_all(mnt) for _ in range(3))
    with Mount(build, delta, mnt):
        cold_4k = random_4k(os.path.join(mnt, rel), offsets)
        warm_4k = random_4k(os.path.join(mnt, rel), offsets)
    plain_4k = random_4k(big, offsets)
    print(f"| {name} | {ft_b:,} | {delta_b:,} | {delta_b / ft_b:.3f} | {delta_b / z19:.3f} | "
          f"{delta_b / bx:.3f} | {ft_b / mk_s / 1e6:.0f} | {cold_read:.0f} | {warm_read:.0f} | "
          f"{plain:.0f} | {cold_4k:.0f} | {warm_4k:.0f} | {plain_4k:.0f} | {mount_ms:.0f} |",
          flush=True)


def main():
    args = sys.argv[1:]
    layers = 60
    if "--large" in args:
        i = args.index("--large")
        layers = int(args[i + 1])
        del args[i:i + 2]
    build = os.path.abspath(args[0])
    fixtures = args[1] if len(args) > 1 else None
    print("| pair | fine-tune B | delta B | delta/ft | delta/zstd-19 | delta/BitX | mksparse MB/s "
          "| mount read cold MB/s | mount read warm MB/s | plain read (page cache) MB/s "
          "| 4K cold us | 4K warm us | 4K plain us | mount ms |")
    print("|" + "---|" * 14)
    with tempfile.TemporaryDirectory() as tmp:
        if fixtures and os.path.isdir(fixtures):
            for ft, base in PAIRS:
                bench_pair(build, ft, os.path.join(fixtures, base), os.path.join(fixtures, ft), tmp)
        gb, gf = os.path.join(tmp, "gen-base"), os.path.join(tmp, "gen-ft")
        subprocess.run([os.path.join(build, "sparse-genmodel"), "demo", gb, gf, str(layers)],
                       check=True)
        bench_pair(build, f"generated-{layers}L", gb, gf, tmp)


if __name__ == "__main__":
    main()
