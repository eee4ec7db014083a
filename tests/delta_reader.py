#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A second reader of delta.sparse, written from sparse-format(5) alone: it checks the
superblock, the chunk table and the manifest, and prints the chunks as JSON lines, so that the
integration tests can damage one precisely.

usage: delta_reader.py DELTA_DIR     prints {"file", "index", "codec", "out_off", "out_len",
                                     "data_off", "data_len", "base_file", "base_off"} per chunk
"""
import json, os, struct, subprocess, sys

SUPER = struct.Struct("<8sIIQQQQQQQQQQQ16sQ")
CHUNK = struct.Struct("<QQQQIIIBBBB")
CODECS = ["raw", "zstd", "base", "delta", "lossy", "patch", "history", "slice"]
KNOWN_INCOMPAT = 0xfff  # lossy, aux chunks; patch; history; packs; ztable; whole-file fps;
                        # members the table implies; base chunks read from the history; base
                        # files named by index; a coded table; sizes the base gives; planes
ZTABLE = 0x10
IMPLIED = 0x40
DTABLE = 0x200
PTABLE = 0x800


def uncode(records, per_codec=False):
    """The records of a coded table (DTABLE; PTABLE: per_codec), decoded in order as
    sparse-format(5) says."""
    d, f, e, prev, out = 128, {}, {}, None, []
    for r in records:
        (out_off, data_off, base_off, h, out_len, data_len, base_file, codec, dt, bdt, res) = r
        base_file = (base_file + f.get(codec, 0)) % 2**32
        if base_file == 0xffffffff:
            pass
        elif per_codec and f.get(codec, 0) == base_file:
            base_off = (base_off + e.get(codec, 0)) % 2**64
        elif not per_codec and prev and prev[7] == codec and prev[6] == base_file:
            base_off = (base_off + prev[2] + prev[4]) % 2**64
        if data_len:
            data_off = (data_off + d) % 2**64
            d = data_off + data_len
        f[codec], e[codec] = base_file, (base_off + out_len) % 2**64
        prev = (out_off, data_off, base_off, h, out_len, data_len, base_file, codec, dt, bdt, res)
        out.append(prev)
    return out


def unplane(table, count):
    """The records' bytes from a table stored as 48 byte planes (PTABLE)."""
    return bytes(table[j * count + k] for k in range(count) for j in range(CHUNK.size))


def unzstd(frame):
    """The bytes one zstd frame holds."""
    return subprocess.run(["zstd", "-dc"], input=frame, capture_output=True, check=True).stdout


def main():
    path = os.path.join(sys.argv[1], "delta.sparse")
    data = open(path, "rb").read()
    (magic, version, super_size, _compat, incompat, table_off, count, _table_hash, man_off,
     man_len, man_raw, _man_hash, file_size, table_len, _reserved,
     _super_hash) = SUPER.unpack_from(data)
    assert magic == b"SPRSDLT\x1a" and version == 1 and super_size == 128, "bad superblock"
    assert incompat & ~KNOWN_INCOMPAT == 0 and file_size == len(data), "bad superblock fields"
    manifest = json.loads(unzstd(data[man_off:man_off + man_len]))
    assert len(json.dumps(manifest)) > 0 and manifest["version"] == 1
    table = data[table_off:table_off + count * CHUNK.size]
    if incompat & ZTABLE:
        table = unzstd(data[table_off:table_off + table_len])
    if incompat & PTABLE:
        assert incompat & DTABLE, "planes of a table that is not coded"
        table = unplane(table, count)
    records = [CHUNK.unpack_from(table, k * CHUNK.size) for k in range(count)]
    if incompat & DTABLE:
        assert incompat & ZTABLE, "a coded table that is not a frame"
        records = uncode(records, bool(incompat & PTABLE))
    first = 0
    for f in manifest["files"]:
        if "first_chunk" in f or not incompat & IMPLIED:
            first = f["first_chunk"]
        for k in range(first, first + f["chunk_count"]):
            (out_off, data_off, base_off, _h, out_len, data_len, base_file, codec, _dt, _bdt,
             _r) = records[k]
            print(json.dumps({"file": f["name"], "index": k, "codec": CODECS[codec],
                              "out_off": out_off, "out_len": out_len, "data_off": data_off,
                              "data_len": data_len, "base_file": base_file,
                              "base_off": base_off}))
        first += f["chunk_count"]
    assert count == sum(f["chunk_count"] for f in manifest["files"]) + manifest.get("aux_chunks", 0)


if __name__ == "__main__":
    main()
