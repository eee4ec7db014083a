#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""How fast a model loads through the mount, beside the plain folder and squashfuse. Prints one
table per pair; asserts nothing. The machines are shared and noisy: compare within one run.

usage: bench/bench_speed.py BUILD_DIR [--fixtures DIR] [--large LAYERS:WIDTH | --no-large]
                            [--work DIR] [--opts SPARSEFS_OPTS]... [--rows TEXT]
                            [--before BUILD2]

Pairs: the fixture pair gpt2-small ft_sft over base_bf16 (where FIXTURES_DIR exists), and a
generated pair (sparse-genmodel demo, 60 layers of width 1280 by default: 2.4 GB, 724 tensors).
The generated pair, its deltas and its squashfs image are kept in WORK (default BUILD_DIR/speed)
and reused by later runs.

Rows: the plain fine-tune folder with its files in the page cache (warm) and with the page cache
dropped before each figure (cold); squashfuse_ll over `mksquashfs -comp zstd` of the folder
(skipped when not installed); sparsefs over the lossless delta, and over a quant delta (4 bits).
Each --opts adds a lossless row mounted with those -o options (e.g. --opts prefetch=none);
--before BUILD2 adds one mounted by BUILD2's sparsefs (the code before a change).
Every mounted figure comes from a fresh mount (nothing of the file in the kernel's page cache)
over backing files (image, delta, base) in the page cache.

Columns: bytes on disk (a delta's own bytes; the base is not counted), mount time (start of the
daemon to the mount answering), sequential read MB/s (cat of every file to /dev/null), random
4 KiB pread latency p50/p99, the 8-thread mmap load (bench/mmap_load.c: each safetensors file
mapped, tensors copied out from 8 threads, as transformers' loader does) and the daemon's peak
RSS (VmHWM). Below each table: the lossless codec's decode MB/s in-process on one thread
(bench/codec_bench), to tell codec cost from FUSE cost, and the issue's targets as ratios.
"""
import argparse, os, random, shutil, statistics, subprocess, sys, tempfile, time

FIXTURE_FT, FIXTURE_BASE = "ft_sft", "base_bf16"


def files_of(d):
    return sorted(os.path.join(r, f) for r, _, fs in os.walk(d) for f in fs)


def size_of(d):
    return sum(os.path.getsize(f) for f in files_of(d))


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def warm(paths):
    for p in paths:
        for f in files_of(p) if os.path.isdir(p) else [p]:
            with open(f, "rb", buffering=0) as fh:
                while fh.read(8 << 20):
                    pass


def peak_rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Mount:
    """A daemon in the foreground on mnt: its start-to-answer time and its pid."""

    def __init__(self, cmd, mnt, log=None):
        self.mnt = mnt
        err = open(log, "w") if log else None
        t = time.perf_counter()
        self.proc = subprocess.Popen(cmd + [mnt], stdout=subprocess.DEVNULL, stderr=err)
        if err:
            err.close()
        while not os.path.ismount(mnt):
            if self.proc.poll() is not None or time.perf_counter() - t > 30:
                self.close()
                raise SystemExit(f"bench_speed: {' '.join(cmd)} did not mount")
            time.sleep(0.0005)
        self.ms = (time.perf_counter() - t) * 1e3

    def close(self):
        subprocess.run(["fusermount3", "-u", "-z", self.mnt], check=False,
                       stderr=subprocess.DEVNULL)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def pair_parser(doc):
    """The arguments of a bench over a generated pair: BUILD_DIR, --layers, --width, --work,
    --rounds (default 3)."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("build")
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--width", type=int, default=1536)
    ap.add_argument("--work")
    ap.add_argument("--rounds", type=int, default=3)
    return ap


def generated_pair(build, work, a, delta):
    """WORK/base and WORK/ft (sparse-genmodel demo, a.layers x a.width) and their lossless
    delta at delta (under WORK), made unless delta already holds one; returns (base, ft)."""
    base, ft = os.path.join(work, "base"), os.path.join(work, "ft")
    if not os.path.exists(os.path.join(delta, "delta.sparse")):
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(os.path.dirname(delta), exist_ok=True)
        run([os.path.join(build, "sparse-genmodel"), "demo", base, ft, str(a.layers),
             str(a.width)])
        run([os.path.join(build, "mksparse"), "-q", base, ft, "-o", delta])
    return base, ft


def seq_mbps(d):
    fs = files_of(d)
    t = time.perf_counter()
    run(["cat"] + fs, stdout=subprocess.DEVNULL)
    return sum(os.path.getsize(f) for f in fs) / (time.perf_counter() - t) / 1e6


def random_4k(d, n=1000, seed=5):
    """p50 and p99 microseconds of n preads of 4 KiB at random aligned offsets of the tensor
    files (open before the clock starts)."""
    fs = [f for f in files_of(d) if f.endswith(".safetensors")]
    fds = [os.open(f, os.O_RDONLY) for f in fs]
    sizes = [os.fstat(fd).st_size for fd in fds]
    rng = random.Random(seed)
    lat = []
    for _ in range(n):
        i = rng.choices(range(len(fds)), weights=sizes)[0]
        off = rng.randrange(max(sizes[i] - 4096, 1)) // 4096 * 4096
        t = time.perf_counter()
        os.pread(fds[i], 4096, off)
        lat.append((time.perf_counter() - t) * 1e6)
    for fd in fds:
        os.close(fd)
    lat.sort()
    return lat[len(lat) // 2], lat[min(len(lat) - 1, len(lat) * 99 // 100)]


def mmap_load(build, d):
    out = run([os.path.join(build, "mmap_load"), d, "8"], capture_output=True, text=True).stdout
    return float(out.split()[0])


def measure(build, row, opener, before):
    """Fills row with the figures; opener() gives (folder, Mount or None) freshly, before()
    runs ahead of each figure (drops or warms the page cache)."""
    rss, mounts = [], []
    for fig in ("seq", "rand", "mmap"):
        before()
        d, m = opener()
        if m:
            mounts.append(m.ms)
        try:
            if fig == "seq":
                row["seq"] = seq_mbps(d)
            elif fig == "rand":
                row["p50"], row["p99"] = random_4k(d)
            else:
                row["mmap"] = mmap_load(build, d)
            if m:
                rss.append(peak_rss_mb(m.proc.pid))
        finally:
            if m:
                m.close()
    row["mount"] = statistics.median(mounts) if mounts else None
    row["rss"] = max(rss) if rss else None


def mount_opener(cmd, mnt):
    def opener():
        return mnt, Mount(cmd, mnt)
    return opener


def make_delta(build, base, ft, out, args):
    if not os.path.exists(os.path.join(out, "delta.sparse")):
        run([os.path.join(build, "mksparse"), "-q"] + args + [base, ft, "-o", out])
    return out


def make_squashfs(ft, img):
    if not os.path.exists(img):
        run(["mksquashfs", ft, img, "-comp", "zstd", "-noappend", "-quiet", "-no-progress"],
            stdout=subprocess.DEVNULL)
    return img


def codec_mbps(build, base, ft):
    """The lossless codec's decode MB/s on one thread, in-process, over the tensor files."""
    st = lambda d: [f for f in files_of(d) if f.endswith(".safetensors")]
    if len(st(base)) != 1 or len(st(ft)) != 1:
        return None
    reps = "1" if os.path.getsize(st(ft)[0]) > 1 << 30 else "5"
    out = run([os.path.join(build, "codec_bench"), st(base)[0], st(ft)[0], str(1 << 20), reps],
              capture_output=True, text=True).stdout
    return float(out.split("decode ")[1].split()[0])


def bench_pair(build, name, base, ft, work, extra_opts, only="", other=None):
    tmp = tempfile.mkdtemp(prefix="bench_speed.")
    mnt = os.path.join(tmp, "mnt")
    os.makedirs(mnt)
    rows = []
    key = os.path.join(work, name.replace(" ", "_"))
    try:
        lossless = make_delta(build, base, ft, key + ".lossless", [])
        quant = make_delta(build, base, ft, key + ".quant",
                           ["-m", "quant", "-b", "4"])
        sparsefs = os.path.join(build, "sparsefs")
        ft_bytes = size_of(ft)
        plain = lambda: (ft, None)
        for label, before in (("plain folder, warm", lambda: warm([ft])),
                              ("plain folder, cold", drop_caches)):
            if only not in label:
                continue
            row = {"name": label, "disk": ft_bytes}
            measure(build, row, plain, before)
            rows.append(row)
        if only not in "squashfuse_ll (zstd)":
            pass
        elif shutil.which("squashfuse_ll") and shutil.which("mksquashfs"):
            img = make_squashfs(ft, key + ".squashfs")
            row = {"name": "squashfuse_ll (zstd)", "disk": os.path.getsize(img)}
            measure(build, row, mount_opener(["squashfuse_ll", "-f", img], mnt),
                    lambda: warm([img]))
            rows.append(row)
        else:
            print("bench_speed: squashfuse_ll or mksquashfs not installed: no squashfuse row "
                  "(apt-get install squashfuse squashfs-tools)")
        variants = [("sparsefs lossless", lossless, None)]
        variants += [(f"sparsefs lossless -o {o}", lossless, o) for o in extra_opts]
        variants += [("sparsefs quant 4-bit", quant, None)]
        if other:
            variants += [("sparsefs lossless, --before", lossless, None)]
        for label, delta, opts in (v for v in variants if only in v[0]):
            exe = os.path.join(other, "sparsefs") if label.endswith("--before") else sparsefs
            cmd = [exe, "-f"] + (["-o", opts] if opts else []) + [delta]
            row = {"name": label, "disk": size_of(delta)}
            measure(build, row, mount_opener(cmd, mnt), lambda: warm([delta, base]))
            rows.append(row)
        codec = codec_mbps(build, base, ft) if not only else None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print_table(name, ft_bytes, rows, codec)


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def print_table(name, ft_bytes, rows, codec):
    print(f"\n{name}: {ft_bytes / 1e6:.1f} MB")
    head = ("", "on disk MB", "mount ms", "seq MB/s", "4K p50 us", "4K p99 us", "mmap-8 s",
            "RSS MB")
    print(f"| {head[0]:<30} | " + " | ".join(f"{h:>10}" for h in head[1:]) + " |")
    print("|" + "-" * 32 + "|" + "|".join(["-" * 12] * (len(head) - 1)) + "|")
    for r in rows:
        cells = (fmt(r["disk"] / 1e6, ".1f"), fmt(r["mount"], ".1f"), fmt(r["seq"], ".0f"),
                 fmt(r["p50"], ".0f"), fmt(r["p99"], ".0f"), fmt(r["mmap"], ".3f"),
                 fmt(r["rss"], ".0f"))
        print(f"| {r['name']:<30} | " + " | ".join(f"{c:>10}" for c in cells) + " |")
    by = {r["name"]: r for r in rows}
    sp, sq, pw = by.get("sparsefs lossless"), by.get("squashfuse_ll (zstd)"), by.get("plain folder, warm")
    print(f"lossless codec, in-process, one thread: {fmt(codec, '.0f')} MB/s decode "
          "(target >= 1000)")
    if sp and sq:
        print(f"sparsefs lossless / squashfuse: seq read {sp['seq'] / sq['seq']:.2f}x "
              f"(target >= 1.0), bytes on disk {sp['disk'] / sq['disk']:.2f}x (target <= 0.5)")
    if sp and pw:
        print(f"sparsefs lossless / plain warm: mmap-8 load {sp['mmap'] / pw['mmap']:.2f}x "
              f"(target <= 1.5); mount {sp['mount']:.1f} ms (target < 50 for 2 GB)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("build")
    ap.add_argument("--fixtures", default="/work/shared/fixtures/gpt2-small")
    ap.add_argument("--large", default="60:1280", help="LAYERS:WIDTH of the generated pair")
    ap.add_argument("--no-large", action="store_true")
    ap.add_argument("--work")
    ap.add_argument("--opts", action="append", default=[])
    ap.add_argument("--rows", default="", help="only the rows whose name holds this")
    ap.add_argument("--before", help="a build dir of another version: one more lossless row")
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_speed: needs root (drop_caches)")
    build = os.path.abspath(a.build)
    work = os.path.abspath(a.work or os.path.join(build, "speed"))
    os.makedirs(work, exist_ok=True)
    base, ft = (os.path.join(a.fixtures, d) for d in (FIXTURE_BASE, FIXTURE_FT))
    if os.path.isdir(ft) and os.path.isdir(base):
        bench_pair(build, "gpt2-small ft_sft", base, ft, work, a.opts, a.rows, a.before)
    else:
        print(f"bench_speed: no fixtures in {a.fixtures}: fixture pair skipped")
    if not a.no_large:
        layers, width = a.large.split(":")
        base, ft = (os.path.join(work, f"gen{layers}x{width}.{w}") for w in ("base", "ft"))
        if not os.path.isdir(ft):
            run([os.path.join(build, "sparse-genmodel"), "demo", base, ft, layers, width])
        bench_pair(build, f"generated {layers} layers x {width}", base, ft, work, a.opts, a.rows, a.before)


if __name__ == "__main__":
    main()
