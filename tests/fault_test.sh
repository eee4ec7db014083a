#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The fault matrix: every way a delta, its base, mksparse or the mount can go wrong, each a case
# that checks the message and that no wrong byte is served. Over model pairs that
# sparse-genmodel writes, so it needs no fixtures.
#
#   fault_test.sh delta      damaged or crafted deltas (re-sealed with delta_tool so that every
#                            checksum passes), and safetensors inputs that do not parse
#   fault_test.sh base       missing, wrong, a byte changed, truncated, overwritten or replaced
#                            under the mount, unreadable
#   fault_test.sh mksparse   a full file system, SIGINT and SIGTERM half-way, an output that
#                            already holds a delta, unreadable or missing input
#   fault_test.sh extract    --extract onto a full file system, of a damaged chunk, over a
#                            read-only extract; --info and --check onto a full disk
#   fault_test.sh sparsefs   lazy unmount with open files, SIGTERM, a missing, non-directory or
#                            busy mountpoint, a busy unmount, a second mount, a killed daemon
#   fault_test.sh options    every mount option documented or passed on to libfuse: mounts and
#                            serves, or is refused before mounting; bad values
#   fault_test.sh stress [SECONDS [PROCS THREADS [CACHE_BYTES]]]
#                            tests/stress.c on a mount with a small cache (20 s, 4 x 4, 8 MiB),
#                            then 5 s more with a single worker thread (max_threads=1)
#   fault_test.sh soak [SECONDS]
#                            stress.c for 25 s on a 100 MB model: the daemon's peak RSS within
#                            the bound sparsefs(1) documents (MEMORY), unless sanitized
#
# BUILD (the build directory) must be set. Every mount is unmounted and every daemon ended by
# its pid when the script exits, whether it passed or not.
. "$(dirname "$0")/lib.sh" fault
HERE=$(cd "$(dirname "$0")" && pwd)
TOOL=$BUILD/tests/delta_tool
CASES=0

ok() {
	CASES=$((CASES + 1))
	echo "ok: $*"
}

# The command (after --) fails, says WANT on stderr, and mounts nothing on MNT (- for none).
refused() {
	local want=$1 mnt=$2
	shift 3
	if "$@" 2>"$TMP/err" >/dev/null; then
		[ "$mnt" != - ] && MOUNTS+=("$mnt")
		fail "accepted: $* (wanted: $want)"
	fi
	grep -qF -- "$want" "$TMP/err" || fail "$*: wanted '$want', got: $(cat "$TMP/err")"
	if [ "$mnt" != - ] && mountpoint -q "$mnt"; then
		MOUNTS+=("$mnt")
		fail "$* left a mount on $mnt"
	fi
}

# A delta that every reader must refuse, with WANT in the message: the mount, --check, --info.
delta_refused() {
	local dir=$1 want=$2 what=$3
	mkdir -p "$TMP/mnt-refused"
	refused "$want" "$TMP/mnt-refused" -- "$SPARSEFS" "$dir" "$TMP/mnt-refused"
	refused "$want" - -- "$SPARSEFS" --check "$dir"
	refused "$want" - -- "$SPARSEFS" --info "$dir"
	ok "delta: $what: refused ($want)"
}

# Can the tests run a program as nobody (root reads every file, so unreadable input needs
# another user)? Needs setpriv, the user, and the build and temporary directories open to
# others.
NOBODY=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
as_nobody_works() {
	chmod 755 "$TMP"
	command -v setpriv >/dev/null && id nobody >/dev/null 2>&1 && getent group nogroup >/dev/null &&
		"${NOBODY[@]}" "$SPARSEFS" --version >/dev/null 2>&1 &&
		"${NOBODY[@]}" test -r "$TMP/ft/config.json"
}

pair() { # a fresh demo pair in $TMP/base, $TMP/ft and its delta in $TMP/delta
	"$BUILD/sparse-genmodel" demo "$TMP/base" "$TMP/ft" "${1:-2}"
	"$MKSPARSE" -q -c 64K "$TMP/base" "$TMP/ft" -o "$TMP/delta"
}

fresh() { # DIR [FROM]: a copy of the delta (or of FROM) to damage
	rm -rf "$1"
	cp -r "${2:-$TMP/delta}" "$1"
}

flip_byte() { # FILE OFFSET
	python3 -c '
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR); off = int(sys.argv[2])
b = os.pread(fd, 1, off); os.pwrite(fd, bytes([b[0] ^ 0x5a]), off); os.close(fd)' "$1" "$2"
}

# DIR PYTHON: runs PYTHON on the manifest m (a dict; files f = m["files"]), then writes it back
# and seals the delta. PYTHON may instead set raw (bytes) to write exactly those bytes.
edit_manifest() {
	"$TOOL" get-manifest "$1" >"$TMP/m.json"
	python3 -c '
import json, sys
m = json.load(open(sys.argv[1])); f = m["files"]; raw = None
exec(sys.argv[2])
open(sys.argv[1], "wb").write(raw if raw is not None else json.dumps(m).encode())' "$TMP/m.json" "$2"
	"$TOOL" put-manifest "$1" "$TMP/m.json"
}

# DIR -> the index of model.safetensors's largest stored chunk, the offset of its data's middle
# byte in delta.sparse, and its output offset and length.
big_chunk() {
	python3 "$HERE/delta_reader.py" "$1" | python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin if "\"model.safetensors\"" in l]
r = max((r for r in rows if r["data_len"] > 0), key=lambda r: r["data_len"])
print(r["index"], r["data_off"] + r["data_len"] // 2, r["out_off"], r["out_len"])'
}

# ---- damaged and crafted deltas ----
delta() {
	pair
	local d=$TMP/d model
	# Damage that the checksums catch.
	fresh "$d"
	truncate -s -4096 "$d/delta.sparse"
	delta_refused "$d" "truncated?" "data file truncated"
	fresh "$d"
	truncate -s 100 "$d/delta.sparse"
	delta_refused "$d" "bad magic" "data file truncated inside the superblock"
	fresh "$d"
	flip_byte "$d/delta.sparse" $(($(super_field "$d" manifest_off) + 7))
	delta_refused "$d" "manifest checksum mismatch" "a flipped bit in the manifest"
	fresh "$d"
	flip_byte "$d/delta.sparse" $(($(super_field "$d" chunk_table_off) + 9))
	delta_refused "$d" "chunk table checksum mismatch" "a flipped bit in the chunk table"
	fresh "$d"
	flip_byte "$d/delta.sparse" 40
	delta_refused "$d" "superblock checksum mismatch" "a flipped bit in the superblock"
	fresh "$d"
	rm "$d/delta.sparse"
	mkdir -p "$TMP/mnt-refused"
	refused "neither a delta (no delta.sparse)" "$TMP/mnt-refused" -- "$SPARSEFS" "$d" "$TMP/mnt-refused"
	refused "delta.sparse: No such file or directory" - -- "$SPARSEFS" --check "$d"
	ok "delta: delta.sparse missing: refused"
	delta_refused "$TMP/no-such-delta" "No such file or directory" "the delta directory missing"

	# A flipped bit in chunk data: EIO for that chunk, one log line, the rest served; --check
	# names it.
	fresh "$d"
	# shellcheck disable=SC2046 # four numbers
	set -- $(big_chunk "$d")
	local bigk=$1
	flip_byte "$d/delta.sparse" "$2"
	mount_fg "$d" "$TMP/mnt-bad"
	python3 -c '
import errno, os, sys
mnt, orig, off, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
a, b = os.open(mnt, os.O_RDONLY), os.open(orig, os.O_RDONLY)
bad = 0
for o in range(0, os.fstat(b).st_size, 4096):
    try:
        got = os.pread(a, 4096, o)
    except OSError as e:
        assert e.errno == errno.EIO, e
        assert o + 4096 > off and o < off + n, f"EIO at {o}, outside the bad chunk"
        bad += 1
        continue
    assert got == os.pread(b, 4096, o), f"wrong bytes at {o}"
assert bad, "the damaged chunk read without error"' "$TMP/mnt-bad/model.safetensors" "$TMP/ft/model.safetensors" "$3" "$4" ||
		fail "a flipped bit in chunk data"
	cmp -s "$TMP/mnt-bad/config.json" "$TMP/ft/config.json" || fail "config.json after a bad chunk"
	grep -q "chunk $1 .*checksum mismatch\|chunk $1 .*does not decode" "$TMP/mnt-bad.log" ||
		fail "no log line for chunk $1: $(cat "$TMP/mnt-bad.log")"
	fusermount3 -u "$TMP/mnt-bad"
	refused "chunk $1" - -- "$SPARSEFS" --check "$d"
	ok "delta: a flipped bit in chunk data: EIO for chunk $1 alone, logged, --check names it"

	# Crafted manifests and superblocks, re-sealed so that every checksum passes.
	local name why
	while IFS='|' read -r name why; do
		fresh "$d"
		edit_manifest "$d" "f[1][\"name\"] = $name"
		delta_refused "$d" "$why" "a file named $name"
	done <<-'EOF'
	"../evil"|a file name that leaves the mount
	"a/../../evil"|a file name that leaves the mount
	"/etc/passwd"|a file name that leaves the mount
	"a//b"|a file name that leaves the mount
	""|a file name that leaves the mount
	f[0]["name"]|a file name that appears twice
	f[0]["name"] + "/x"|a file name that is also a folder
	EOF
	fresh "$d"
	edit_manifest "$d" 'f[1]["name"] = "conf\u0000ig.json"'
	delta_refused "$d" "a NUL character" "a file name with an escaped NUL"
	fresh "$d"
	edit_manifest "$d" 'raw = json.dumps(m).replace("config.json", "conf\u0000ig.json").encode()'
	delta_refused "$d" "a NUL character" "a file name with a raw NUL byte"
	fresh "$d"
	# The base files: runs [first, count] of output files' names, and fingerprints (objects).
	local fp='[b for b in m["base"]["files"] if isinstance(b, dict)][0]'
	edit_manifest "$d" "$fp[\"name\"] = \"../ft/model.safetensors\""
	delta_refused "$d" "a base file name that leaves the base" "a base file named ../"
	fresh "$d"
	edit_manifest "$d" "$fp[\"name\"] = \"/etc/passwd\""
	delta_refused "$d" "a base file name that leaves the base" "an absolute base file name"
	fresh "$d"
	edit_manifest "$d" "$fp[\"name\"] = len(f)"
	delta_refused "$d" "a base file's fingerprint" "a base file named by an output file past the last"

	model=$(python3 -c 'import json, sys; print([i for i, f in enumerate(json.load(open(sys.argv[1]))["files"]) if f["name"] == "model.safetensors"][0])' <("$TOOL" get-manifest "$TMP/delta"))
	fresh "$d"
	edit_manifest "$d" "t = f[$model][\"tensors\"][0]; t[\"shape\"] = [2**31, 2**31, 2**2]; t[\"dtype\"] = \"F32\""
	delta_refused "$d" "a size that overflows" "a tensor shape whose byte size overflows"
	fresh "$d"
	edit_manifest "$d" "t = f[$model][\"tensors\"][0]; t[\"offset\"] = 10**12"
	delta_refused "$d" "outside its file" "a tensor offset past the end of its file"
	fresh "$d"
	edit_manifest "$d" "del f[$model][\"tensors\"][0][\"offset\"]"
	delta_refused "$d" "a tensor's shape, dtype or offsets" "a tensor without an offset"
	fresh "$d"
	edit_manifest "$d" "f[$model][\"size\"] = 10**12"
	delta_refused "$d" "chunks do not add up to the file size" "a file size other than its chunks'"
	# What the table implies, given where it was left out: it must agree with the table.
	fresh "$d"
	edit_manifest "$d" "f[-1][\"first_chunk\"] = 0"
	delta_refused "$d" "chunk range out of order" "a first chunk that repeats a chunk"
	fresh "$d"
	edit_manifest "$d" 'b = m["base"]["files"]; first, n = b[0]; b[0:1] = [{"name": first, "size": 1}] + [[first + 1, n - 1]] * (n > 1)'
	delta_refused "$d" "a chunk reads, without its content hash" "a base file read in part, its hash left out"
	fresh "$d"
	"$TOOL" set "$d" chunk.0.base_off 1
	delta_refused "$d" "without its size that no chunk reads whole" "a base file's size left to no chunk"
	fresh "$d"
	edit_manifest "$d" 'm["history"] = sum(b[1] if isinstance(b, list) else 1 for b in m["base"]["files"]) + 1'
	delta_refused "$d" "a history count outside 1 to the number of base files" "a history of too many base files"
	fresh "$d"
	"$TOOL" set "$d" feature_incompat $(($(super_field "$d" feature_incompat) & ~64))
	delta_refused "$d" "the manifest is malformed" "a manifest that leaves out what the table implies, in a delta without the bit"
	fresh "$d"
	edit_manifest "$d" "f[$model][\"chunk_count\"] = 10**9"
	delta_refused "$d" "a chunk range outside the chunk table" "a chunk range past the table"
	fresh "$d"
	edit_manifest "$d" "f[$model][\"mtime\"] = 1e30"
	delta_refused "$d" "a file's time" "an mtime past int64"
	fresh "$d"
	edit_manifest "$d" 'm["version"] = 2'
	delta_refused "$d" "a format version this reader does not know" "manifest format version 2"
	fresh "$d"
	"$TOOL" set "$d" chunk.$bigk.data_off $(($(super_field "$d" file_size) + 4096))
	delta_refused "$d" "data outside the data area" "a chunk's data offset past the end"
	local basek
	basek=$(python3 "$HERE/delta_reader.py" "$TMP/delta" | python3 -c '
import json, sys
print([r for r in map(json.loads, sys.stdin) if r["codec"] == "delta"][0]["index"])')
	fresh "$d"
	"$TOOL" set "$d" chunk.$basek.base_off $((1 << 40))
	delta_refused "$d" "base range outside the base file" "a chunk's base offset past the base file's end"
	fresh "$d"
	"$TOOL" set "$d" chunk.$bigk.out_len 12345
	delta_refused "$d" "model.safetensors" "a chunk's output length changed (the file size it implies with it)"
	fresh "$d"
	"$TOOL" set "$d" version 2
	delta_refused "$d" "format version 2 is not supported" "superblock format version 2"
	fresh "$d"
	"$TOOL" set "$d" feature_incompat 0x10000000003
	delta_refused "$d" "incompatible features 0x10000000000" "an unknown incompatible feature bit"
	# An unknown compatible feature may be ignored: the delta still reads, byte for byte.
	fresh "$d"
	"$TOOL" set "$d" feature_compat 0x8000
	"$SPARSEFS" --extract "$d" "$TMP/x-compat" 2>/dev/null && diff -r "$TMP/ft" "$TMP/x-compat" >/dev/null ||
		fail "an unknown compatible feature bit"
	ok "delta: an unknown compatible feature bit: ignored, every byte right"

	# Inputs whose safetensors header does not parse are stored as plain bytes, with a note,
	# and served back exactly.
	cp -r "$TMP/ft" "$TMP/ft-odd"
	python3 -c '
import json, struct, sys
def st(path, n, header):
    j = json.dumps(header).encode()
    open(path, "wb").write(struct.pack("<Q", n if n is not None else len(j)) + j + bytes(64))
d = sys.argv[1]
st(d + "/huge_header.safetensors", 200_000_000, {})
st(d + "/overflow.safetensors", None, {"t": {"dtype": "F64", "shape": [2**30, 2**31], "data_offsets": [0, 0]}})
st(d + "/past_end.safetensors", None, {"t": {"dtype": "U8", "shape": [4096], "data_offsets": [0, 4096]}})' "$TMP/ft-odd"
	"$MKSPARSE" "$TMP/base" "$TMP/ft-odd" -o "$TMP/d-odd" >/dev/null 2>"$TMP/odd.err"
	grep -q "huge_header.safetensors: not a safetensors file (the header length is past the end or over 100000000 bytes); stored as plain bytes" "$TMP/odd.err" &&
		grep -q "overflow.safetensors: tensor 't': byte size does not match" "$TMP/odd.err" &&
		grep -q "past_end.safetensors: tensor 't': bad data_offsets" "$TMP/odd.err" ||
		fail "notes on safetensors that do not parse: $(cat "$TMP/odd.err")"
	mount_fg "$TMP/d-odd" "$TMP/mnt-odd"
	same_sums "$TMP/ft-odd" "$TMP/mnt-odd"
	fusermount3 -u "$TMP/mnt-odd"
	ok "delta: safetensors headers over 100 MB, with overflowing shapes, past the end: noted, stored and served exactly"
	tree_forms
	echo "delta: $CASES fault cases passed"
}

# A tree's delta in the forms only trees use: unchanged files read from the history, which
# have no hash of their own (the history's must be there); base files named by the output
# files' indices, in runs; the table coded against earlier records, in a frame, as byte planes;
# a deleted file's size left to the base.
tree_forms() {
	python3 -c '
import os, random, sys
r = random.Random(7); words = [("w%d" % i) * (1 + i % 3) for i in range(400)]
def text(n): return " ".join(r.choice(words) for _ in range(n)).encode()
kept = [text(3000) for _ in range(4)]
for side in ("base", "derived"):
    os.makedirs(os.path.join(sys.argv[1], side))
    for i, b in enumerate(kept):
        open(os.path.join(sys.argv[1], side, "kept%d.txt" % i), "wb").write(b)
for i in range(4):
    open(os.path.join(sys.argv[1], "derived", "new%d.txt" % i), "wb").write(
        kept[i][:9000] + text(500) + kept[(i + 1) % 4][5000:])
open(os.path.join(sys.argv[1], "base", "gone.txt"), "wb").write(text(2000))' "$TMP/hb"
	"$MKSPARSE" -q "$TMP/hb/base" "$TMP/hb/derived" -o "$TMP/d-hb"
	local d=$TMP/d-hb-bad bits
	bits=$(super_field "$TMP/d-hb" feature_incompat)
	(( (bits & 3968) == 3968 )) || fail "the tree's delta lacks bit 7, 8, 9, 10 or 11: $bits"
	tree_sizes "$d"
	fresh "$d" "$TMP/d-hb"
	edit_manifest "$d" 'del m["history_hash"]'
	delta_refused "$d" "a history without its hash, that base files are read from" \
		"base files read from a history without its hash"
	fresh "$d" "$TMP/d-hb"
	edit_manifest "$d" 'm["base"]["files"].append([0, 1])'
	delta_refused "$d" "naming one twice" "a base file named by an output file's index twice"
	fresh "$d" "$TMP/d-hb"
	edit_manifest "$d" 'm["base"]["files"] = [[0, len(f) + 1]]'
	delta_refused "$d" "a run of base files outside the files" "a run of base files past the files"
	fresh "$d" "$TMP/d-hb"
	edit_manifest "$d" 'm["base"]["files"].append({"name": "other.txt", "size": 100000})'
	delta_refused "$d" "more than 64 KiB without its hashes, that the history does not hold whole" \
		"a large base file without its hashes, outside the history"
	fresh "$d" "$TMP/d-hb"
	"$TOOL" set "$d" feature_incompat $((bits & ~16))
	delta_refused "$d" "a coded chunk table that is not a zstd frame" "a coded table, not in a frame"
	fresh "$d" "$TMP/d-hb"
	"$TOOL" set "$d" feature_incompat $((bits & ~512))
	delta_refused "$d" "a chunk table in byte planes that is not coded" "planes of a table not coded"
}

# The tree's deleted file has its size in the base alone: a base where it has another is
# refused when opened, the manifest must say the history's length, and no chunk may read it.
tree_sizes() {
	local d=$1 m=$TMP/mnt-refused
	mkdir -p "$m"
	cp -r "$TMP/hb/base" "$TMP/hb/base-grown"
	echo more >>"$TMP/hb/base-grown/gone.txt"
	refused "the history's files hold" "$m" -- "$SPARSEFS" -o base="$TMP/hb/base-grown" "$TMP/d-hb" "$m"
	refused "the history's files hold" - -- "$SPARSEFS" --check -o base="$TMP/hb/base-grown" "$TMP/d-hb"
	ok "delta: a base whose history files add up to another length: refused"
	fresh "$d" "$TMP/d-hb"
	edit_manifest "$d" 'del m["history_len"]'
	delta_refused "$d" "a history_len missing" "sizes left to the base without the history's length"
	fresh "$d" "$TMP/d-hb"
	edit_manifest "$d" 'm["history_len"] = 2**25 + 1'
	delta_refused "$d" "not the history's length" "a history_len over 32 MiB"
	fresh "$d" "$TMP/d-hb"
	"$TOOL" set "$d" chunk.0.base_file "$("$TOOL" get-manifest "$d" | python3 -c '
import json, sys
m = json.load(sys.stdin); names = []
for b in m["base"]["files"]:
    names += [None] * b[1] if isinstance(b, list) else [b["name"]]
print(names.index("gone.txt"))')"
	"$TOOL" set "$d" chunk.0.base_off 1
	delta_refused "$d" "a base file whose size the base gives, that a chunk reads" \
		"a chunk reading a file whose size the base gives"
	fresh "$d" "$TMP/d-hb"
	"$TOOL" set "$d" feature_incompat $(($(super_field "$d" feature_incompat) & ~1024))
	delta_refused "$d" "a history file without its size" "a size left to the base without bit 10"
}

# ---- the base ----
base() {
	pair 4
	local m=$TMP/mnt
	mv "$TMP/base" "$TMP/base-away"
	mkdir -p "$m"
	refused "not found (-o base=DIR says where it is)" "$m" -- "$SPARSEFS" "$TMP/delta" "$m"
	refused "not found" - -- "$SPARSEFS" --check "$TMP/delta"
	ok "base: missing: refused"
	refused "differs from the base this delta was made against" "$m" -- "$SPARSEFS" -o base="$TMP/ft" "$TMP/delta" "$m"
	"$BUILD/sparse-genmodel" edge "$TMP/other" "$TMP/other-ft"
	refused "config.json: the size differs from the base" "$m" -- "$SPARSEFS" -o base="$TMP/other" "$TMP/delta" "$m"
	ok "base: a different model: refused, and the message says so"
	mv "$TMP/base-away" "$TMP/base"
	mv "$TMP/base/model.safetensors" "$TMP/model.away"
	refused "model.safetensors: No such file or directory" "$m" -- "$SPARSEFS" "$TMP/delta" "$m"
	mv "$TMP/model.away" "$TMP/base/model.safetensors"
	ok "base: one file missing: refused, naming it"

	# A byte changed since the delta was written, where the quick check does not look: the full
	# check at mount (the default) refuses it, naming the file, as do --extract and --check.
	cp "$TMP/base/model.safetensors" "$TMP/model.orig"
	python3 -c '
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR); size = os.fstat(fd).st_size
off = (size - 4096) // 15 // 2  # between two of the blocks the quick check samples
os.pwrite(fd, bytes([os.pread(fd, 1, off)[0] ^ 0x10]), off)' "$TMP/base/model.safetensors"
	refused "model.safetensors: the content hash differs from the base" "$m" -- "$SPARSEFS" "$TMP/delta" "$m"
	refused "model.safetensors: the content hash differs from the base" - -- "$SPARSEFS" --extract "$TMP/delta" "$TMP/out"
	[ ! -e "$TMP/out" ] || fail "--extract over a changed base wrote $(ls "$TMP/out")"
	refused "model.safetensors: the content hash differs from the base" - -- "$SPARSEFS" --check "$TMP/delta"
	mv "$TMP/model.orig" "$TMP/base/model.safetensors"
	ok "base: a byte changed before the mount: refused by the full check, naming the file"

	# Unreadable: as root every file reads, so the reader runs as nobody.
	if as_nobody_works; then
		chmod 000 "$TMP/base/model.safetensors"
		refused "model.safetensors: Permission denied" - -- "${NOBODY[@]}" "$SPARSEFS" --check "$TMP/delta"
		chmod 644 "$TMP/base/model.safetensors"
		ok "base: unreadable (as nobody): refused, naming the file and the reason"
	else
		echo "skip: base: unreadable: cannot run $SPARSEFS as nobody (setpriv, the user, permissions)"
	fi

	# Replaced by rename while mounted: the daemon holds the file it checked, and serves it.
	mount_fg "$TMP/delta" "$m" -o cache_size=64K
	cp "$TMP/base/model.safetensors" "$TMP/base/model.orig"
	cp "$TMP/ft/model.safetensors" "$TMP/base/model.new"
	mv "$TMP/base/model.new" "$TMP/base/model.safetensors"
	same_sums "$TMP/ft" "$m"
	fusermount3 -u "$m"
	refused "differs from the base" "$m" -- "$SPARSEFS" "$TMP/delta" "$m"
	mv "$TMP/base/model.orig" "$TMP/base/model.safetensors"
	ok "base: a file replaced by rename while mounted: the old one keeps serving; a new mount refuses it"

	# Truncated or overwritten while mounted: EIO where a chunk needs what is gone, every other
	# byte right, one log line per chunk, the daemon alive.
	local how
	for how in truncated overwritten; do
		cp "$TMP/base/model.safetensors" "$TMP/model.orig"
		mount_fg "$TMP/delta" "$m" -o cache_size=64K
		local size
		size=$(stat -c %s "$TMP/base/model.safetensors")
		if [ $how = truncated ]; then
			truncate -s $((size / 2)) "$TMP/base/model.safetensors"
		else
			dd if=/dev/urandom of="$TMP/base/model.safetensors" bs=4096 seek=$((size / 8192)) count=64 conv=notrunc status=none
		fi
		python3 -c '
import errno, os, sys
mnt, orig = sys.argv[1], sys.argv[2]
bad = good = 0
for name in sorted(os.listdir(orig)):
    a, b = os.open(os.path.join(mnt, name), os.O_RDONLY), os.open(os.path.join(orig, name), os.O_RDONLY)
    for o in range(0, os.fstat(b).st_size, 65536):
        try:
            got = os.pread(a, 65536, o)
        except OSError as e:
            assert e.errno == errno.EIO, e
            bad += 1
            continue
        assert got == os.pread(b, 65536, o), f"{name}: wrong bytes at {o}"
        good += 1
assert bad and good, (bad, good)
print(bad, good)' "$m" "$TMP/ft" >"$TMP/counts" || fail "base $how while mounted"
		kill -0 "${PIDS[-1]}" || fail "sparsefs died when its base was $how"
		grep -q "cannot read the base\|the base changed" "$m.log" || fail "no log line: $(cat "$m.log")"
		fusermount3 -u "$m"
		mv "$TMP/model.orig" "$TMP/base/model.safetensors"
		read -r bad good <"$TMP/counts"
		ok "base: $how while mounted: EIO for $bad blocks of 64K, $good others right, logged"
	done
	echo "base: $CASES fault cases passed"
}

# ---- mksparse ----
no_delta_left() { # DIR: neither delta.sparse nor a temporary file in it
	[ ! -e "$1/delta.sparse" ] || fail "$1/delta.sparse was left"
	! ls -A "$1" 2>/dev/null | grep -q '^\.delta\.sparse\.' || fail "a temporary file was left in $1: $(ls -A "$1")"
}

wait_temp() { # DIR N: until DIR holds N entries, one a temporary file
	local t
	for _ in $(seq 200); do
		t=("$1"/.delta.sparse.??????)
		[ -e "${t[0]}" ] && [ "$(find "$1" -mindepth 1 -maxdepth 1 | wc -l)" -ge "$2" ] && return 0
		sleep 0.05
	done
	fail "mksparse wrote no temporary file in $1"
}

# The arguments to mksparse are a usage error (exit 2) that says WANT.
# The Nth allocation libcjson makes failing (tests/failcall.c), N by STEP from 1 until one that
# mksparse no longer makes: each run either exits 1 with a message and leaves nothing, or (a
# safetensors header it could not parse is then stored as bytes) writes a delta that extracts
# to the fine-tune; never a delta whose manifest lacks an entry.
manifest_oom() { # BASE FT WHAT STEP
	local o=$TMP/out n rc runs=0
	for ((n = 1; n < 20000; n += $4)); do
		rm -rf "$o" "$TMP/oom-x"
		rc=0
		FAILCALL=cjson:$n LD_PRELOAD=$BUILD/tests/libfailcall.so "$MKSPARSE" -q "$1" "$2" \
			-o "$o" 2>"$TMP/err" || rc=$?
		grep -q "failcall: acted" "$TMP/err" || break
		runs=$((runs + 1))
		if [ "$rc" = 0 ]; then
			"$SPARSEFS" --extract "$o" "$TMP/oom-x" && diff -r "$2" "$TMP/oom-x" >/dev/null ||
				fail "libcjson's allocation $n failing: a delta that does not extract to $2"
			continue
		fi
		[ "$rc" = 1 ] && grep -q "^mksparse: " "$TMP/err" ||
			fail "libcjson's allocation $n failing: exit $rc, wanted 1 and a message: $(cat "$TMP/err")"
		no_delta_left "$o"
	done
	if ((runs == 0)); then
		echo "skip: mksparse: a failing allocation: the preloaded failcall cannot reach it here"
		return
	fi
	[ "$rc" = 0 ] && "$SPARSEFS" --check "$o" >/dev/null || fail "$3 delta after the sweep"
	ok "mksparse: $3 manifest, each of libcjson's allocations 1 to $n by $4 failing ($runs runs):" \
		"exit 1, named, nothing left, or a delta that extracts whole"
}

out_refused() {
	local want=$1 rc=0
	shift
	"$MKSPARSE" -q "$@" 2>"$TMP/err" >/dev/null || rc=$?
	[ "$rc" = 2 ] || fail "mksparse $*: exit $rc, wanted 2 ($(cat "$TMP/err"))"
	grep -qF -- "$want" "$TMP/err" || fail "mksparse $*: wanted '$want', got: $(cat "$TMP/err")"
}

mksparse() {
	pair
	local o=$TMP/out sig
	# A full file system: the error names the reason, nothing is left.
	mkdir -p "$TMP/full"
	if mount -t tmpfs -o size=1m tmpfs "$TMP/full" 2>/dev/null; then
		MOUNTS+=("$TMP/full")
		refused "No space left on device" - -- "$MKSPARSE" -q "$TMP/base" "$TMP/ft" -o "$TMP/full/d"
		no_delta_left "$TMP/full/d"
		umount "$TMP/full"
		ok "mksparse: output on a full file system: refused, nothing left"
	else
		echo "skip: mksparse: a full file system: cannot mount a tmpfs here"
	fi

	# Interrupted half-way: nothing that looks like a delta, no temporary file.
	"$BUILD/sparse-genmodel" demo "$TMP/big-base" "$TMP/big-ft" 24
	for sig in INT TERM; do
		rm -rf "$o"
		"$MKSPARSE" -q -j1 -l 19 "$TMP/big-base" "$TMP/big-ft" -o "$o" 2>"$TMP/sig.err" &
		local pid=$!
		PIDS+=("$pid")
		for _ in $(seq 200); do
			ls -A "$o" 2>/dev/null | grep -q '^\.delta\.sparse\.' && break
			sleep 0.05
		done
		ls -A "$o" 2>/dev/null | grep -q '^\.delta\.sparse\.' || fail "mksparse wrote no temporary file"
		sleep 0.5
		kill -s "$sig" "$pid"
		local rc=0
		wait "$pid" || rc=$?
		[ "$rc" -gt 128 ] || fail "mksparse after SIG$sig: exit status $rc"
		grep -q "interrupted: no delta written" "$TMP/sig.err" || fail "SIG$sig: $(cat "$TMP/sig.err")"
		no_delta_left "$o"
		ok "mksparse: SIG$sig half-way: exit $rc, no delta, no temporary file"
	done

	# Killed outright: the temporary file stays, and the next run to that output removes it,
	# saying so; the temporary file of a writer still running is never removed.
	rm -rf "$o"
	"$MKSPARSE" -q -j1 -l 19 "$TMP/big-base" "$TMP/big-ft" -o "$o" &
	pid=$!
	PIDS+=("$pid")
	wait_temp "$o" 1
	kill -s KILL "$pid"
	wait "$pid" 2>/dev/null || true # no "Killed" line
	local left t
	t=("$o"/.delta.sparse.??????)
	left=${t[0]##*/}
	"$MKSPARSE" "$TMP/base" "$TMP/ft" -o "$o" 2>"$TMP/kill.err" >/dev/null
	grep -qF "$o/$left: removed: a temporary file of" "$TMP/kill.err" ||
		fail "the killed writer's $left: not said removed: $(cat "$TMP/kill.err")"
	[ "$(ls -A "$o")" = delta.sparse ] || fail "after a killed writer, the next run left: $(ls -A "$o")"
	"$MKSPARSE" -q --force -j1 -l 19 "$TMP/big-base" "$TMP/big-ft" -o "$o" 2>/dev/null &
	pid=$!
	PIDS+=("$pid")
	wait_temp "$o" 2
	t=("$o"/.delta.sparse.??????)
	left=${t[0]##*/}
	"$MKSPARSE" --force "$TMP/base" "$TMP/ft" -o "$o" 2>"$TMP/kill.err" >/dev/null
	[ -e "$o/$left" ] || fail "a running writer's temporary file $left was removed"
	! grep -q removed "$TMP/kill.err" || fail "a running writer's temporary: $(cat "$TMP/kill.err")"
	kill -0 "$pid" || fail "the writer still running was meant to outlast the second run"
	kill -s TERM "$pid"
	wait "$pid" || true
	ok "mksparse: SIGKILL half-way: the next run removes its temporary file, says so; a running writer's is kept"

	# An output inside an input, or around one: a usage error, nothing written.
	"$BUILD/sparse-genmodel" demo "$TMP/nest/base" "$TMP/nest/ft" 1
	ln -s "$TMP/nest/ft" "$TMP/nest/ft-link"
	local before out
	before=$(ls -AR "$TMP/nest")
	for out in ft ft/d ft/x/../d base base/d . ft-link/d; do
		out_refused "write the delta outside its inputs" "$TMP/nest/base" "$TMP/nest/ft" -o "$TMP/nest/$out"
	done
	out_refused "the output is inside the fine-tune $TMP/nest/ft-link ($TMP/nest/ft)" "$TMP/nest/base" "$TMP/nest/ft-link" -o "$TMP/nest/ft/d"
	out_refused "the output holds the base" "$TMP/nest/base" "$TMP/ft" -o "$TMP/nest"
	out_refused "the output is inside the adapter" --adapter "$TMP/nest/ft" "$TMP/nest/base" -o "$TMP/nest/ft/d"
	[ "$(ls -AR "$TMP/nest")" = "$before" ] || fail "a refused output changed the inputs: $(ls -AR "$TMP/nest")"
	"$MKSPARSE" -q -n "$TMP/nest/base" "$TMP/nest/ft" -o "$TMP/nest/ft" || fail "a dry run into the fine-tune was refused"
	ok "mksparse: an output inside an input, equal to one, holding one or through a link: exit 2, nothing written"

	# An unrelated base (another width: no tensor shares a shape): written, with a warning that
	# says how little matched, also with -q; --info shows the share, and older deltas without it
	# read as before.
	"$BUILD/sparse-genmodel" demo "$TMP/narrow-base" "$TMP/narrow-ft" 2 128
	rm -rf "$TMP/unrel"
	"$MKSPARSE" -q "$TMP/narrow-base" "$TMP/ft" -o "$TMP/unrel" 2>"$TMP/unrel.err" ||
		fail "an unrelated base: $(cat "$TMP/unrel.err")"
	grep -qE "warning: .*narrow-base matches little of .*/ft: 0 of [0-9]+ tensors, 0\.0[0-9]* of their" "$TMP/unrel.err" ||
		fail "an unrelated base: no warning: $(cat "$TMP/unrel.err")"
	"$SPARSEFS" --info "$TMP/unrel" >"$TMP/info"
	grep -qE "^matched +0 of [0-9]+ tensors by name and shape, 0\.0" "$TMP/info" ||
		fail "--info does not show the share matched: $(head -5 "$TMP/info")"
	"$SPARSEFS" --info --json "$TMP/unrel" | python3 -c '
import json, sys
m = json.load(sys.stdin)["base"]["matched"]
assert m["tensors"] == 0 and m["of_tensors"] > 0 and m["bytes"] * 2 < m["of_bytes"], m'
	"$MKSPARSE" -q --force "$TMP/base" "$TMP/ft" -o "$TMP/unrel" 2>"$TMP/unrel.err"
	[ ! -s "$TMP/unrel.err" ] || fail "a related base: $(cat "$TMP/unrel.err")"
	"$SPARSEFS" --info "$TMP/unrel" >"$TMP/info"
	grep -qE "^matched +([0-9]+) of \1 tensors by name and shape, 1\.0000" "$TMP/info" ||
		fail "a related base: $(head -5 "$TMP/info")"
	edit_manifest "$TMP/unrel" 'del m["base"]["matched"]'
	"$SPARSEFS" --info "$TMP/unrel" >"$TMP/info" && ! grep -q "^matched" "$TMP/info" ||
		fail "a delta without the share: --info: $(head -5 "$TMP/info")"
	"$SPARSEFS" --check "$TMP/unrel" >/dev/null || fail "a delta without the share does not check"
	edit_manifest "$TMP/unrel" 'm["base"]["matched"] = {"tensors": 9, "of_tensors": 2, "bytes": 0, "of_bytes": 1}'
	delta_refused "$TMP/unrel" "a malformed share of tensors matched" "more tensors matched than there are"
	ok "mksparse: an unrelated base: a warning with the share matched, also with -q; --info shows it"

	# A call on the temporary file failing (tests/failcall.c, preloaded): the message names the
	# file, the call and its errno, and nothing is left; short writes are retried.
	local case call want rc
	for case in "close:close: Input/output error" "fsync:fsync: Input/output error" \
		"pwrite0:Input/output error"; do
		call=${case%%:*} want=${case#*:} rc=0
		rm -rf "$o"
		FAILCALL=$call LD_PRELOAD=$BUILD/tests/libfailcall.so "$MKSPARSE" -q "$TMP/base" "$TMP/ft" \
			-o "$o" 2>"$TMP/err" || rc=$?
		if ! grep -q "failcall: acted" "$TMP/err"; then
			echo "skip: mksparse: a failing $call: the preloaded failcall cannot reach it here"
			continue
		fi
		[ "$rc" = 1 ] && grep -qE "^mksparse: $o/\.delta\.sparse\.[A-Za-z0-9]{6}: $want\$" "$TMP/err" ||
			fail "a failing $call: exit $rc, wanted 1 and '$want': $(cat "$TMP/err")"
		no_delta_left "$o"
		ok "mksparse: a failing $call on the temporary file: $want, named; nothing left"
	done
	rm -rf "$o"
	FAILCALL=pwrite_short LD_PRELOAD=$BUILD/tests/libfailcall.so "$MKSPARSE" -q "$TMP/base" "$TMP/ft" -o "$o" 2>/dev/null
	cp "$o/delta.sparse" "$TMP/short"
	"$MKSPARSE" -q --force "$TMP/base" "$TMP/ft" -o "$o"
	cmp -s "$o/delta.sparse" "$TMP/short" || fail "a delta written 4 KiB a call differs"
	ok "mksparse: short writes: retried, the same delta"
	manifest_oom "$TMP/base" "$TMP/ft" "a model's" 23
	mkdir -p "$TMP/tree-base" "$TMP/tree-ft"
	seq 1 20000 >"$TMP/tree-base/a.txt"
	seq 5000 9000 >"$TMP/tree-base/b.txt"
	seq 1 20000 | sed 's/^1.*7$/changed/' >"$TMP/tree-ft/a.txt"
	seq 3000 12000 >"$TMP/tree-ft/c.txt"
	seq 1 900 >"$TMP/tree-ft/d.txt"
	manifest_oom "$TMP/tree-base" "$TMP/tree-ft" "a tree's (history, packs)" 7

	# Standard output that cannot be written: said, exit 1 (the delta is written).
	rm -rf "$o"
	rc=0
	"$MKSPARSE" "$TMP/base" "$TMP/ft" -o "$o" >/dev/full 2>"$TMP/err" || rc=$?
	[ "$rc" = 1 ] && grep -qx "mksparse: standard output: No space left on device" "$TMP/err" ||
		fail "stdout on /dev/full: exit $rc: $(cat "$TMP/err")"
	ok "mksparse: standard output full: said, exit 1"

	# An output that already holds a delta: refused and untouched, unless --force.
	rm -rf "$o"
	"$MKSPARSE" -q "$TMP/base" "$TMP/base" -o "$o"
	cp "$o/delta.sparse" "$TMP/first"
	refused "already holds a delta (delta.sparse); --force replaces it" - -- "$MKSPARSE" -q "$TMP/base" "$TMP/ft" -o "$o"
	cmp -s "$o/delta.sparse" "$TMP/first" || fail "a refused mksparse changed the delta"
	"$MKSPARSE" -q --force "$TMP/base" "$TMP/ft" -o "$o"
	"$SPARSEFS" --extract "$o" "$TMP/x-force" && diff -r "$TMP/ft" "$TMP/x-force" >/dev/null ||
		fail "--force did not replace the delta"
	ok "mksparse: output already holds a delta: refused without --force, replaced with it"

	# A failed write leaves the old delta as it was.
	refused "No such file or directory" - -- "$MKSPARSE" -q --force "$TMP/base" "$TMP/no-such-ft" -o "$o"
	"$SPARSEFS" --check "$o" >/dev/null || fail "a failed --force damaged the old delta"
	ok "mksparse: missing input: refused; with --force the old delta stays"

	# Unreadable input: as root every file reads, so mksparse runs as nobody.
	if as_nobody_works; then
		mkdir -p "$TMP/o-nobody"
		chmod 777 "$TMP/o-nobody"
		chmod 000 "$TMP/ft/model.safetensors"
		refused "model.safetensors: Permission denied" - -- "${NOBODY[@]}" "$MKSPARSE" -q "$TMP/base" "$TMP/ft" -o "$TMP/o-nobody"
		chmod 644 "$TMP/ft/model.safetensors"
		no_delta_left "$TMP/o-nobody"
		ok "mksparse: unreadable input (as nobody): refused naming the file, nothing left"
	else
		echo "skip: mksparse: unreadable input: cannot run $MKSPARSE as nobody (setpriv, the user, permissions)"
	fi

	# The delta is decoded back before it is kept; --no-verify writes the same bytes.
	rm -rf "$o" "$TMP/o2"
	"$MKSPARSE" -q "$TMP/base" "$TMP/ft" -o "$o"
	"$MKSPARSE" -q --no-verify "$TMP/base" "$TMP/ft" -o "$TMP/o2"
	"$SPARSEFS" --check "$o" >/dev/null || fail "a verified delta does not check"
	ok "mksparse: verified and --no-verify deltas both check"
	echo "mksparse: $CASES fault cases passed"
}

# ---- --extract and the other tools ----
no_file_left() { # DIR NAME: neither NAME nor a temporary file for it in DIR
	[ ! -e "$1/$2" ] || fail "$1/$2 was left"
	! compgen -G "$1/.$2.sparse-*" >/dev/null || fail "a temporary file was left in $1: $(ls -A "$1")"
}

extract() {
	pair
	local x=$TMP/x d=$TMP/d
	# A full file system: the write's own errno, naming the file; nothing half-written left.
	mkdir -p "$TMP/full"
	if mount -t tmpfs -o size=1m tmpfs "$TMP/full" 2>/dev/null; then
		MOUNTS+=("$TMP/full")
		refused "$TMP/full/x/model.safetensors: cannot write: No space left on device" - -- \
			"$SPARSEFS" --extract "$TMP/delta" "$TMP/full/x"
		no_file_left "$TMP/full/x" model.safetensors
		umount "$TMP/full"
		ok "extract: onto a full file system: refused with ENOSPC naming the file, nothing left"
	else
		echo "skip: extract: a full file system: cannot mount a tmpfs here"
	fi

	# A damaged chunk: the library's line names the chunk, the extract's says why.
	fresh "$d"
	# shellcheck disable=SC2046 # four numbers
	set -- $(big_chunk "$d")
	flip_byte "$d/delta.sparse" "$2"
	refused "$x/model.safetensors: cannot read: Input/output error (see the line above)" - -- \
		"$SPARSEFS" --extract "$d" "$x"
	grep -q "chunk $1 .*checksum mismatch\|chunk $1 .*does not decode" "$TMP/err" ||
		fail "no line naming chunk $1: $(cat "$TMP/err")"
	no_file_left "$x" model.safetensors
	ok "extract: a damaged chunk: EIO named, the chunk logged, nothing left"

	# Over an earlier extract whose files are read-only: replaced, every byte right.
	"$SPARSEFS" --extract "$TMP/delta" "$x"
	chmod -R a-w "$x"
	chmod u+w "$x"
	"$SPARSEFS" --extract "$TMP/delta" "$x" && diff -r "$TMP/ft" "$x" >/dev/null ||
		fail "an extract over a read-only one"
	! compgen -G "$x/.*.sparse-*" >/dev/null || fail "a temporary file was left in $x: $(ls -A "$x")"
	ok "extract: over an earlier, read-only extract: replaced, byte for byte"

	# Standard output on a full disk.
	local args
	for args in "--info --json" "--info" "--check"; do
		# shellcheck disable=SC2086
		"$SPARSEFS" $args "$TMP/delta" >/dev/full 2>"$TMP/err" && fail "sparsefs $args >/dev/full: exit 0"
		grep -q "standard output: No space left on device" "$TMP/err" ||
			fail "sparsefs $args >/dev/full: $(cat "$TMP/err")"
	done
	ok "tools: --info [--json] and --check onto a full disk: refused, saying so"
	echo "extract: $CASES fault cases passed"
}

# ---- the mount and its daemon ----
sparsefs() {
	pair 4
	local m=$TMP/mnt pid
	# A lazy unmount while a file is open: the open file still reads right; the daemon exits,
	# cleanly, once it is closed.
	mount_fg "$TMP/delta" "$m"
	pid=${PIDS[-1]}
	exec 3<"$m/model.safetensors"
	fusermount3 -u -z "$m"
	mountpoint -q "$m" && fail "a lazy unmount left the mount in place"
	cmp -s - "$TMP/ft/model.safetensors" <&3 || fail "an open file after a lazy unmount reads wrong"
	kill -0 "$pid" 2>/dev/null || fail "the daemon exited while a file was open"
	exec 3<&-
	for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	local rc=0
	wait "$pid" || rc=$?
	[ "$rc" = 0 ] || fail "after a lazy unmount the daemon exited with $rc: $(tail -3 "$m.log")"
	ok "sparsefs: lazy unmount with a file open: it still reads right, the daemon exits 0 after"

	# SIGTERM: unmounts and exits 0.
	mount_fg "$TMP/delta" "$m"
	pid=${PIDS[-1]}
	kill -TERM "$pid"
	rc=0
	wait "$pid" || rc=$?
	[ "$rc" = 0 ] || fail "after SIGTERM the daemon exited with $rc"
	mountpoint -q "$m" && fail "SIGTERM left the mount"
	ok "sparsefs: SIGTERM: unmounted, exit 0"

	# Mountpoints that cannot be used.
	refused "nowhere': No such file or directory" - -- "$SPARSEFS" "$TMP/delta" "$TMP/nowhere"
	ok "sparsefs: a missing mountpoint: refused"
	touch "$TMP/a-file"
	refused "cannot mount on $TMP/a-file: not a directory" - -- "$SPARSEFS" "$TMP/delta" "$TMP/a-file"
	ok "sparsefs: a mountpoint that is a file: refused"
	mount_fg "$TMP/delta" "$m"
	refused "busy: a FUSE file system is already mounted there" - -- "$SPARSEFS" "$TMP/delta" "$m"
	ok "sparsefs: a busy mountpoint (already mounted): refused"

	# A plain unmount while a file is open fails; the mount keeps serving.
	exec 3<"$m/config.json"
	fusermount3 -u "$m" 2>"$TMP/busy.err" && fail "unmounted with a file open"
	exec 3<&-
	same_sums "$TMP/ft" "$m"
	ok "sparsefs: unmount while a file is open: busy, the mount keeps serving"

	# A second mount of the same delta: both serve, together.
	mount_fg "$TMP/delta" "$TMP/mnt2"
	same_sums "$TMP/ft" "$m" &
	local bg=$!
	same_sums "$TMP/ft" "$TMP/mnt2"
	wait "$bg" || fail "the first of two mounts"
	fusermount3 -u "$TMP/mnt2"
	fusermount3 -u "$m"
	ok "sparsefs: the same delta mounted twice: both serve every byte"

	# A killed daemon leaves a dead mount: reads fail (never wrong bytes), a new mount there is
	# refused until it is unmounted.
	mount_fg "$TMP/delta" "$m"
	pid=${PIDS[-1]}
	kill -KILL "$pid"
	wait "$pid" 2>/dev/null || true
	cat "$m/config.json" >/dev/null 2>&1 && fail "a dead mount served a file"
	refused "cannot mount on $m: busy" - -- "$SPARSEFS" "$TMP/delta" "$m"
	fusermount3 -u "$m"
	mount_fg "$TMP/delta" "$m"
	same_sums "$TMP/ft" "$m"
	fusermount3 -u "$m"
	ok "sparsefs: a killed daemon: reads fail, the dead mount is refused, mounts again once unmounted"
	echo "sparsefs: $CASES fault cases passed"
}

# ---- mount options ----
# sparsefs ARGS... mounts, serves model.safetensors byte for byte and unmounts, exit 0.
mounts_with() {
	local m=$TMP/mnt
	mount_fg "$TMP/delta" "$m" "$@"
	cmp -s "$m/model.safetensors" "$TMP/ft/model.safetensors" || fail "sparsefs $*: $(cat "$m.log")"
	grep " $m fuse" /proc/mounts >"$TMP/mounted"
	fusermount3 -u "$m"
	local rc=0
	wait "${PIDS[-1]}" || rc=$?
	[ "$rc" = 0 ] || fail "sparsefs $*: exit status $rc: $(cat "$m.log")"
}

# Every option sparsefs documents or passes on either works (mounts, reads right) or is refused
# before anything is mounted, with a message naming it.
options() {
	pair
	local m=$TMP/mnt o n=0
	mkdir -p "$m"
	for o in "" "-o base=$TMP/base" -d -s "-o cache_size=0" "-o cache_size=64K" "-o readahead=0" \
		"-o readahead=128" "-o prefetch=none" "-o prefetch=sequential" "-o prefetch=all" \
		"-o decoders=0" "-o decoders=1" "-o splice" "-o clone_fd" "-o max_threads=1" \
		"-o max_idle_threads=1" "-o allow_other" "-o allow_root" "-o default_permissions" \
		"-o ro" "-o fsname=x,subtype=y" "-o auto_unmount" "-o user=root" \
		"-o rw,nosuid,nodev,noexec,noatime" "-o suid,dev,exec,atime,sync,dirsync,async" \
		"-o base_check=full" "-o base_check=quick"; do
		# shellcheck disable=SC2086
		mounts_with $o
		grep -q " fuse\.[a-z]* ro," "$TMP/mounted" || fail "$o: not mounted read-only: $(cat "$TMP/mounted")"
		n=$((n + 1))
	done
	ok "options: $n sets of the documented and passed-on options mount read-only and serve"

	# max_read: the user's, or splice's cap where smaller; the kernel is given it.
	for o in max_read=1048576 max_read=65536 splice,max_read=65536; do
		mounts_with -o "$o"
		grep -q ",max_read=${o##*=}" "$TMP/mounted" || fail "-o $o: $(cat "$TMP/mounted")"
	done
	# As the issue found it: in the background, the mount up and serving when sparsefs returns.
	"$SPARSEFS" -o max_read=1048576 "$TMP/delta" "$m" || fail "-o max_read=1048576 in the background"
	MOUNTS+=("$m")
	cmp -s "$m/model.safetensors" "$TMP/ft/model.safetensors" || fail "-o max_read=1048576 in the background serves"
	fusermount3 -u "$m"
	ok "options: max_read as given, the smaller of it and splice's cap, also in the background"

	local want
	while IFS='|' read -r o want; do
		# shellcheck disable=SC2086
		refused "$want" "$m" -- "$SPARSEFS" $o "$TMP/delta" "$m"
	done <<-EOF
	-o max_read=0|max_read=0: a whole number from 4096 to
	-o max_read=abc|max_read=abc: a whole number
	-o max_read=-1|max_read=-1: a whole number
	-o max_read=100|max_read=100: a whole number from 4096
	-o max_threads=0|max_threads=0: a whole number from 1 to 100000
	-o max_threads=abc|max_threads=abc: a whole number
	-o max_idle_threads=-1|max_idle_threads=-1: a whole number
	-o cache_size=-1|cache_size=-1: not a size
	-o cache_size=abc|cache_size=abc: not a size
	-o decoders=999|decoders=999: a whole number from 0 to 64
	-o decoders=2x|decoders=2x: a whole number
	-o readahead=x|readahead=x: a whole number
	-o readahead=-1|readahead=-1: a whole number
	-o prefetch=bogus|prefetch=bogus: none, sequential or all
	-o base_check=bogus|base_check=bogus: full or quick
	-o base_check|-o base_check: takes a value
	-o cache_size|-o cache_size: takes a value
	-o blkdev|blkdev: for a file system on a block device
	-o blksize=4096|blksize=4096: for a file system on a block device
	-o foo|unknown option(s): \`-o foo'
	-o relatime|unknown option(s): \`-o relatime'
	-o splice=1|unknown option(s): \`-o splice=1'
	-x|unknown option(s): \`-x'
	-o base=$TMP/nowhere|$TMP/nowhere/config.json: No such file or directory
	EOF
	ok "options: bad values and unknown options refused before mounting, naming them"

	if unshare -m true 2>/dev/null; then
		unshare -m bash "$0" readahead_fails "$(readlink /proc/self/ns/mnt)" || fail "a readahead window that cannot be set"
		ok "options: a readahead window that cannot be set: served, and logged with the file and why"
	else
		echo "skip: options: a readahead window that cannot be set: no mount namespace here"
	fi
	echo "options: $CASES fault cases passed"
}

# Run by options in a private mount namespace (not the caller's, NS), where /sys/class/bdi is a
# tmpfs: the mount's read_ahead_kb there is /dev/full, so raising the window fails, and the
# daemon says so.
readahead_fails() {
	[ "$(readlink /proc/self/ns/mnt)" != "$1" ] || fail "readahead_fails: not in a mount namespace of its own"
	pair
	local m=$TMP/mnt dev rc=0
	mount -t tmpfs tmpfs /sys/class/bdi
	mount_fg "$TMP/delta" "$m"
	dev=$(awk -v m="$m" '$5 == m {print $3}' /proc/self/mountinfo)
	mkdir "/sys/class/bdi/$dev"
	touch "/sys/class/bdi/$dev/read_ahead_kb"
	mount --bind /dev/full "/sys/class/bdi/$dev/read_ahead_kb"
	cmp -s "$m/config.json" "$TMP/ft/config.json" || fail "config.json: $(cat "$m.log")"
	fusermount3 -u "$m"
	wait "${PIDS[-1]}" || rc=$?
	[ "$rc" = 0 ] || fail "exit status $rc"
	grep -q "readahead=1024: /sys/class/bdi/$dev/read_ahead_kb: No space left on device" "$m.log" ||
		fail "no log line: $(cat "$m.log")"
}

# ---- load ----
stress() {
	local seconds=${1:-20} procs=${2:-4} threads=${3:-4} cache=${4:-$((8 << 20))}
	"$BUILD/sparse-genmodel" demo "$TMP/base" "$TMP/ft" 24
	"$MKSPARSE" -q "$TMP/base" "$TMP/ft" -o "$TMP/delta"
	mount_fg "$TMP/delta" "$TMP/mnt" -o cache_size=$cache
	"$BUILD/tests/stress" "$TMP/mnt" "$TMP/ft" "$seconds" "$procs" "$threads" "${PIDS[-1]}" "$cache" ||
		fail "stress: $(tail -5 "$TMP/mnt.log")"
	kill -0 "${PIDS[-1]}" || fail "the daemon died under load"
	fusermount3 -u "$TMP/mnt"
	# One worker thread under 16 readers: were a worker ever to wait on another request, the
	# queue would never drain and the watchdog would fire.
	mount_fg "$TMP/delta" "$TMP/mnt" -o cache_size=$cache,max_threads=1
	echo "stress: the same with -o max_threads=1, 5 s"
	"$BUILD/tests/stress" "$TMP/mnt" "$TMP/ft" 5 "$procs" "$threads" "${PIDS[-1]}" "$cache" ||
		fail "stress with one worker: $(tail -5 "$TMP/mnt.log")"
	fusermount3 -u "$TMP/mnt"
}

# ---- memory ----
# Random reads from several processes and threads (4 KiB to 1 MiB, unaligned, mapped) on a model
# three times the cache: the daemon's peak RSS stays within what sparsefs(1) documents for a
# lossless delta of 1 MiB chunks, what it took once mounted plus cache_size, 6 MiB per FUSE
# worker and 5 MiB per decoding thread. Under a sanitizer RSS means nothing (shadow memory,
# quarantined frees): the bytes are still compared, the bound is not checked.
soak() {
	local seconds=${1:-25} cache=32 workers=10 decoders=2 start bound
	"$BUILD/sparse-genmodel" demo "$TMP/base" "$TMP/ft" 16 512
	"$MKSPARSE" -q "$TMP/base" "$TMP/ft" -o "$TMP/delta"
	mount_fg "$TMP/delta" "$TMP/mnt" -o cache_size=${cache}M,max_threads=$workers,decoders=$decoders
	start=$(awk '/^VmRSS/ {print $2}' "/proc/${PIDS[-1]}/status")
	bound=$((start / 1024 + cache + 6 * workers + 5 * decoders))
	if grep -qaE '__(a|t|m)san_init' "$SPARSEFS"; then
		echo "soak: a sanitizer build: the peak RSS is not checked"
		bound=0
	fi
	echo "soak: bound ${bound} MiB: ${start} KiB once mounted, cache ${cache} MiB," \
		"$workers workers, $decoders decoders"
	"$BUILD/tests/stress" "$TMP/mnt" "$TMP/ft" "$seconds" 3 3 "${PIDS[-1]}" $((cache << 20)) \
		"$bound" || fail "soak: $(tail -5 "$TMP/mnt.log")"
	kill -0 "${PIDS[-1]}" || fail "the daemon died under load"
	fusermount3 -u "$TMP/mnt"
}

cmd=$1
shift
"$cmd" "$@"
