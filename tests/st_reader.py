#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""An independent reader of a mounted delta: it knows nothing of libsparse, only the safetensors
format, and reads the mount the way the safetensors library and the loaders do.

usage: st_reader.py MOUNT ORIGINAL [--procs N] [--reads N] [--lossy]

For every file of ORIGINAL (recursively) the file under MOUNT must have the same size and bytes.
Every *.safetensors that is valid in ORIGINAL must be valid under MOUNT by the rules the
safetensors library enforces, and every tensor, read through a private mmap (as safetensors maps
a file) and a shared one, must equal the original's. Then N processes (default 1) read random
ranges with pread and compare them. The index's weight_map must point at files that hold the
tensors. Exits 1 on any difference.

With --lossy (a lossy delta), tensor bytes may differ: everything else must not (file names and
sizes, the safetensors headers, hence names, dtypes, shapes and offsets, the other files), every
tensor must still read through both mmaps, and no random reads are compared.
"""
import hashlib, json, mmap, os, random, struct, sys
from multiprocessing import Pool

DTYPE_SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8,
              "I32": 4, "I16": 2, "I8": 1, "U8": 1, "U16": 2, "U32": 4, "U64": 8, "BOOL": 1}


def fail(msg):
    print("st_reader: " + msg, file=sys.stderr)
    sys.exit(1)


def parse_safetensors(path):
    """The header as safetensors validates it, or None where the library would refuse it."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return None
        (n,) = struct.unpack("<Q", head)
        if n > 100_000_000 or 8 + n > size:
            return None
        try:
            header = json.loads(f.read(n))
        except ValueError:
            return None
    tensors = sorted(((k, v) for k, v in header.items() if k != "__metadata__"),
                     key=lambda kv: kv[1]["data_offsets"][0])
    pos = 0
    for name, t in tensors:
        b, e = t["data_offsets"]
        elems = 1
        for d in t["shape"]:
            elems *= d
        if b != pos or (t["dtype"] in DTYPE_SIZE and e - b != elems * DTYPE_SIZE[t["dtype"]]):
            return None
        pos = e
    if 8 + n + pos != size:
        return None
    return 8 + n, tensors


def check_layout(mpath, opath, parsed):
    """A lossy file: the same header bytes, and every tensor readable through mmap."""
    data_start, tensors = parsed
    with open(mpath, "rb") as mf, open(opath, "rb") as of:
        if mf.read(data_start) != of.read(data_start):
            fail(f"{mpath}: the safetensors header differs")
        m = mmap.mmap(mf.fileno(), 0, access=mmap.ACCESS_COPY)
        for name, t in tensors:
            b, e = (data_start + x for x in t["data_offsets"])
            if len(m[b:e]) != e - b:
                fail(f"{mpath}: tensor {name} does not read whole")
        m.close()


def check_tensors(mpath, opath, parsed):
    data_start, tensors = parsed
    with open(mpath, "rb") as mf, open(opath, "rb") as of:
        orig = of.read()
        for access in (mmap.ACCESS_COPY, mmap.ACCESS_READ):  # MAP_PRIVATE, then MAP_SHARED
            if len(orig) == 0:
                break
            m = mmap.mmap(mf.fileno(), 0, access=access)
            for name, t in tensors:
                b, e = (data_start + x for x in t["data_offsets"])
                if m[b:e] != orig[b:e]:
                    fail(f"{mpath}: tensor {name} differs through mmap")
            m.close()


def check_file(mount, orig, rel, lossy):
    mpath, opath = os.path.join(mount, rel), os.path.join(orig, rel)
    if os.path.getsize(mpath) != os.path.getsize(opath):
        fail(f"{mpath}: size differs")
    parsed = parse_safetensors(opath) if rel.endswith(".safetensors") else None
    if lossy and parsed is not None:
        if parse_safetensors(mpath) is None:
            fail(f"{mpath}: not valid safetensors through the mount")
        check_layout(mpath, opath, parsed)
        return
    with open(mpath, "rb") as a, open(opath, "rb") as b:
        if hashlib.sha256(a.read()).digest() != hashlib.sha256(b.read()).digest():
            fail(f"{mpath}: content differs")
    if rel.endswith(".safetensors"):
        if parsed is not None:
            if parse_safetensors(mpath) is None:
                fail(f"{mpath}: not valid safetensors through the mount")
            check_tensors(mpath, opath, parsed)
    if rel.endswith(".safetensors.index.json"):
        weight_map = json.load(open(mpath)).get("weight_map", {})
        for name, shard in weight_map.items():
            parsed = parse_safetensors(os.path.join(os.path.dirname(mpath), shard))
            if parsed is not None and name not in dict(parsed[1]):
                fail(f"{mpath}: {name} is not in {shard}")


def random_reads(args):
    mount, orig, files, seed, reads = args
    rng = random.Random(seed)
    for _ in range(reads):
        rel = rng.choice(files)
        size = os.path.getsize(os.path.join(orig, rel))
        off = rng.randrange(size + 1)
        n = rng.choice((1, 7, 4096, 65536, 1 << 20, rng.randrange(1, 3 << 20)))
        fa, fb = (os.open(os.path.join(d, rel), os.O_RDONLY) for d in (mount, orig))
        try:
            if os.pread(fa, n, off) != os.pread(fb, n, off):
                return f"{rel}: bytes {off}+{n} differ"
        finally:
            os.close(fa)
            os.close(fb)
    return None


def main():
    args = sys.argv[1:]
    procs = reads = None
    lossy = "--lossy" in args
    if lossy:
        args.remove("--lossy")
    if "--procs" in args:
        i = args.index("--procs")
        procs = int(args[i + 1])
        del args[i:i + 2]
    if "--reads" in args:
        i = args.index("--reads")
        reads = int(args[i + 1])
        del args[i:i + 2]
    if len(args) != 2:
        fail(__doc__)
    mount, orig = args
    files = sorted(os.path.relpath(os.path.join(d, f), orig)
                   for d, _, fs in os.walk(orig) for f in fs)
    listed = sorted(os.path.relpath(os.path.join(d, f), mount)
                    for d, _, fs in os.walk(mount) for f in fs)
    if files != listed:
        fail(f"{mount}: lists {listed}, not {files}")
    for rel in files:
        check_file(mount, orig, rel, lossy)
    if lossy:
        print(f"st_reader: {mount}: {len(files)} files laid out as {orig}")
        return
    procs = procs or 1
    with Pool(procs) as pool:
        jobs = [(mount, orig, files, seed, reads or 200) for seed in range(procs)]
        for err in pool.map(random_reads, jobs):
            if err:
                fail(f"{mount}: {err}")
    print(f"st_reader: {mount}: {len(files)} files equal to {orig}, {procs} reader(s)")


if __name__ == "__main__":
    main()
