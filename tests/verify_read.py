#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Reads a mount block by block and compares every block with the original, telling the blocks
that read right from those that failed with EIO and from those that came back wrong.

usage: verify_read.py MOUNT ORIGINAL [--order seq|random] [--blocks N] [--bs BYTES]
                      [--eio never|some|any]

Every file of ORIGINAL (recursively), in blocks of --bs (64 KiB) read with pread, in file order
or a seeded random order, at most --blocks of them. Prints "read R, eio E, wrong W". Exits 1 on
any wrong byte (or a short read, or an error other than EIO), and when the EIO count breaks
--eio: never (the default: every block must read right), some (at least one must fail), any.
"""
import argparse
import errno
import os
import random
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mount")
    ap.add_argument("original")
    ap.add_argument("--order", choices=("seq", "random"), default="seq")
    ap.add_argument("--blocks", type=int, default=0)
    ap.add_argument("--bs", type=int, default=64 << 10)
    ap.add_argument("--eio", choices=("never", "some", "any"), default="never")
    a = ap.parse_args()
    blocks = []
    for d, _, files in sorted(os.walk(a.original)):
        for f in sorted(files):
            rel = os.path.relpath(os.path.join(d, f), a.original)
            size = os.path.getsize(os.path.join(a.original, rel))
            blocks += [(rel, off) for off in range(0, max(size, 1), a.bs)]
    if a.order == "random":
        random.Random(14).shuffle(blocks)
    if a.blocks:
        blocks = blocks[:a.blocks]
    fds = {}
    good = eio = wrong = 0
    for rel, off in blocks:
        if rel not in fds:
            fds[rel] = (os.open(os.path.join(a.original, rel), os.O_RDONLY),
                        os.open(os.path.join(a.mount, rel), os.O_RDONLY))
        want = os.pread(fds[rel][0], a.bs, off)
        try:
            got = os.pread(fds[rel][1], a.bs, off)
        except OSError as e:
            if e.errno != errno.EIO:
                raise
            eio += 1
            continue
        if got == want:
            good += 1
        else:
            wrong += 1
            print(f"WRONG: {rel} at {off}: {len(got)} bytes, wanted {len(want)}", file=sys.stderr)
    print(f"read {good}, eio {eio}, wrong {wrong}")
    if wrong or (a.eio == "never" and eio) or (a.eio == "some" and not eio):
        sys.exit(1)


if __name__ == "__main__":
    main()
