#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Integration tests that really mount with FUSE and compare every byte with the original.
#
#   mount_test.sh pair NAME BASE FT [MKSPARSE_ARGS...]  one delta, every way a user reads it
#   mount_test.sh root BASE FT1 FT2 FT3                 a directory of three deltas
#   mount_test.sh faults BASE FT                        damage, wrong bases, writes, the daemon
#                                                       /gpt2-small (FIXTURES overrides where it
#                                                       is): paths are relative to it; skips with
#                                                       exit 77 when it is absent
#   mount_test.sh generated                             pair, root, faults and lossy over model
#                                                       pairs that sparse-genmodel writes
#   mount_test.sh lossy NAME BASE FT [--logits]         svd at ranks 4, 16, 64 and quant at 8 and
#                                                       4 bits: each mounts, is laid out as the
#                                                       fine-tune, and errs less with more bits
#   mount_test.sh adapter BASE ADAPTER MERGED           an adapter mounts as its merged model
#   mount_test.sh datasets                              derived datasets (gen_datasets.py) and a
#                                                       tree of links and modes, as patches
#   mount_test.sh prefetch                              every -o prefetch= mode and decoder count
#                                                       over a small cache: byte-identical mounts
#                                                       under several concurrent readers
#   mount_test.sh splice                                -o splice over a pair with frozen layers:
#                                                       byte-identical, really spliced, and EIO
#                                                       once the base file changes under it or
#                                                       where a byte of it changed before
#   mount_test.sh base_check                            the base checked whole at mount once,
#                                                       then trusted while its files are unchanged
#   mount_test.sh fixture SUBCOMMAND NAME ARGS...       any of these over ../shared/fixtures
#
# BUILD (the build directory) must be set. Every mount is unmounted and every daemon ended by
# its pid when the script exits, whether it passed or not.
. "$(dirname "$0")/lib.sh" mount
HERE=$(cd "$(dirname "$0")" && pwd)

unmount() {
	fusermount3 -u "$1"
}

# ---- one delta, every way a user reads it ----
pair() {
	local name=$1 base=$2 ft=$3
	shift 3
	local delta=$TMP/$name mnt=$TMP/mnt-$name
	"$MKSPARSE" -q "$@" "$base" "$ft" -o "$delta"
	# Default mode: sparsefs returns once the mount is ready, and runs in the background.
	mkdir -p "$mnt"
	MOUNTS+=("$mnt")
	"$SPARSEFS" "$delta" "$mnt"
	mountpoint -q "$mnt" || fail "sparsefs returned before $mnt was mounted"
	PIDS+=("$(pgrep -n -f "sparsefs $delta $mnt")")
	ls -l "$mnt" >/dev/null
	same_sums "$ft" "$mnt"
	python3 "$HERE/st_reader.py" "$mnt" "$ft" --procs 4 --reads 150
	cp -r "$mnt" "$TMP/copy-$name"
	diff -r "$ft" "$TMP/copy-$name" >/dev/null || fail "cp -r out of $mnt differs"
	unmount "$mnt"
	"$SPARSEFS" --check "$delta" >/dev/null || fail "--check $delta"
	# One thread per CPU (the default), one, and more threads than CPUs and files.
	for opt in "" -odecoders=1 -odecoders=5; do
		# shellcheck disable=SC2086 # none or one word
		"$SPARSEFS" --extract $opt "$delta" "$TMP/extract-$name"
		diff -r "$ft" "$TMP/extract-$name" >/dev/null || fail "--extract $opt $delta differs"
		rm -rf "$TMP/extract-$name"
	done
	"$SPARSEFS" --info "$delta" >"$TMP/info-$name" || fail "--info $delta"
	grep -q "the delta is" "$TMP/info-$name" || fail "--info $delta: $(head -5 "$TMP/info-$name")"
	echo "ok: $name: $(du -b "$delta/delta.sparse" | cut -f1) bytes for $(du -sb "$ft" | cut -f1)"
}

# ---- a directory of three deltas ----
root() {
	local base=$1
	shift
	local i=0 ft
	for ft in "$@"; do
		i=$((i + 1))
		"$MKSPARSE" -q "$base" "$ft" -o "$TMP/deltas/d$i"
	done
	mount_fg "$TMP/deltas" "$TMP/mnt-root"
	[ "$(ls "$TMP/mnt-root" | tr '\n' ' ')" = "d1 d2 d3 " ] || fail "root lists $(ls "$TMP/mnt-root")"
	i=0
	for ft in "$@"; do
		i=$((i + 1))
		same_sums "$ft" "$TMP/mnt-root/d$i"
	done
	unmount "$TMP/mnt-root"
	echo "ok: a directory of $i deltas"
}

# ---- damage, wrong bases, writes ----
chunk_of() { # DELTA CODEC FILE -> the JSON line of the biggest such chunk
	python3 "$HERE/delta_reader.py" "$1" | python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin]
rows = [r for r in rows if r["codec"] == sys.argv[1] and r["file"] == sys.argv[2]]
print(json.dumps(max(rows, key=lambda r: r["data_len"] + r["out_len"])))' "$2" "$3"
}

field() { python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

flip_byte() { # FILE OFFSET
	python3 -c '
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR); off = int(sys.argv[2])
b = os.pread(fd, 1, off); os.pwrite(fd, bytes([b[0] ^ 0x5a]), off); os.close(fd)' "$1" "$2"
}

faults() {
	local base=$1 ft=$2 delta=$TMP/delta m
	cp -r "$base" "$TMP/base"
	"$MKSPARSE" -q -c 64K "$TMP/base" "$ft" -o "$delta"

	# Writes are refused with EROFS.
	mount_fg "$delta" "$TMP/mnt-w"
	m=$TMP/mnt-w
	python3 -c '
import errno, sys
for how in ("r+b", "wb", "ab"):
    try:
        open(sys.argv[1], how)
    except OSError as e:
        assert e.errno == errno.EROFS, e
    else:
        raise SystemExit("write open succeeded")
try:
    open(sys.argv[2], "wb")
except OSError as e:
    assert e.errno == errno.EROFS, e
else:
    raise SystemExit("create succeeded")' "$m/config.json" "$m/new-file"
	unmount "$m"

	# A damaged chunk: EIO for the pages it covers, one log line naming file, tensor and chunk,
	# and the daemon goes on serving everything else.
	cp -r "$delta" "$TMP/bad"
	local c off
	c=$(chunk_of "$TMP/bad" delta model.safetensors)
	flip_byte "$TMP/bad/delta.sparse" $(($(field "$c" data_off) + $(field "$c" data_len) / 2))
	mount_fg "$TMP/bad" "$TMP/mnt-bad"
	m=$TMP/mnt-bad
	off=$(field "$c" out_off)
	if dd if="$m/model.safetensors" of=/dev/null bs=4096 skip=$((off / 4096)) count=1 2>"$TMP/dd.err"; then
		fail "a damaged chunk was read without error"
	fi
	grep -q "Input/output error" "$TMP/dd.err" || fail "damaged chunk: $(cat "$TMP/dd.err")"
	kill -0 "${PIDS[-1]}" || fail "sparsefs died on a damaged chunk"
	cmp -s "$m/config.json" "$ft/config.json" || fail "config.json unreadable after a bad chunk"
	python3 -c '
import os, sys
a, b = (os.open(p, os.O_RDONLY) for p in sys.argv[1:3])
end = int(sys.argv[3]) // 4096 * 4096  # the kernel reads whole pages
for off in range(0, end, 4096):
    assert os.pread(a, 4096, off) == os.pread(b, 4096, off), off' "$m/model.safetensors" "$ft/model.safetensors" "$off" ||
		fail "bytes before the bad chunk are wrong"
	[ "$(grep -c "chunk $(field "$c" index) " "$m.log")" = 1 ] || fail "log: $(cat "$m.log")"
	grep -q "model.safetensors, tensor transformer" "$m.log" || fail "log: $(cat "$m.log")"
	unmount "$m"

	# The wrong base is refused, with a message that says so, and nothing is mounted.
	mkdir -p "$TMP/mnt-wrong"
	if "$SPARSEFS" -o base="$ft" "$delta" "$TMP/mnt-wrong" 2>"$TMP/wrong.err"; then
		MOUNTS+=("$TMP/mnt-wrong")
		fail "mounted over the wrong base"
	fi
	grep -q "differs from the base this delta was made against" "$TMP/wrong.err" ||
		fail "wrong base: $(cat "$TMP/wrong.err")"
	mountpoint -q "$TMP/mnt-wrong" && fail "wrong base left a mount"
	"$SPARSEFS" --check -o base="$ft" "$delta" 2>/dev/null && fail "--check passed a wrong base"

	# A base that changes under the mount: EIO, never wrong bytes.
	mount_fg "$delta" "$TMP/mnt-chg"
	c=$(chunk_of "$delta" delta model.safetensors)
	flip_byte "$TMP/base/model.safetensors" $(($(field "$c" base_off) + 5000))
	off=$(field "$c" out_off)
	if dd if="$TMP/mnt-chg/model.safetensors" of=/dev/null bs=4096 skip=$((off / 4096)) count=1 2>/dev/null; then
		fail "read over a changed base succeeded"
	fi
	unmount "$TMP/mnt-chg"
	"$SPARSEFS" --check "$delta" >/dev/null 2>&1 && fail "--check passed a changed base"
	echo "ok: faults"
}

# ---- lossy deltas ----
rel_err() { # REPORT.json -> the total relative error of the delta
	python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["total"]["delta_rel_err"])' "$1"
}

lossy() {
	local name=$1 base=$2 ft=$3 logits=${4:-} prev setting e m
	for setting in "svd -r 4" "svd -r 16" "svd -r 64" "quant -b 4" "quant -b 8"; do
		local tag=${setting// /}
		"$MKSPARSE" -q -m $setting --report "$TMP/$name$tag.json" "$base" "$ft" -o "$TMP/$name$tag"
		m=$TMP/mnt-$name$tag
		"$SPARSEFS" --check "$TMP/$name$tag" >/dev/null || fail "--check $name $setting"
		"$SPARSEFS" --info "$TMP/$name$tag" >"$TMP/info" && grep -q "lossy" "$TMP/info" ||
			fail "--info $name $setting"
		mount_fg "$TMP/$name$tag" "$m"
		python3 "$HERE/st_reader.py" "$m" "$ft" --lossy >/dev/null
		if [ -n "$logits" ] && [ "$setting" = "quant -b 8" ]; then
			/usr/bin/python3 "$HERE/../bench/gpt2_eval.py" "$m" "$(dirname "$base")/eval/A_eval.bin" "$ft" >"$TMP/logits.json"
			python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); assert r["max_abs_logit_diff"] < 0.5 and abs(r["bpb"] / r["ref_bpb"] - 1) < 0.002, r' "$TMP/logits.json" ||
				fail "quant -b 8 changes the model: $(cat "$TMP/logits.json")"
		fi
		unmount "$m"
		e=$(rel_err "$TMP/$name$tag.json")
		case $setting in
		"svd -r 4" | "quant -b 4") ;;
		*) python3 -c 'import sys; assert float(sys.argv[1]) < float(sys.argv[2])' "$e" "$prev" ||
			fail "$name: $setting errs $e, not less than $prev" ;;
		esac
		prev=$e
		echo "ok: $name: $setting: relative error of the delta $e"
	done
}

adapter() {
	local base=$1 ad=$2 merged=$3 m=$TMP/mnt-adapter
	"$MKSPARSE" -q --adapter "$ad" "$base" -o "$TMP/adapter"
	mount_fg "$TMP/adapter" "$m"
	python3 -c '
import struct, sys
a, b = (open(p, "rb").read() for p in sys.argv[1:3])
head = 8 + struct.unpack("<Q", b[:8])[0]
assert len(a) == len(b) and a[:head] == b[:head], "not laid out as the merged model"
words = [(int.from_bytes(a[i:i + 2], "little"), int.from_bytes(b[i:i + 2], "little"))
         for i in range(0, len(a), 2) if a[i:i + 2] != b[i:i + 2]]
def ordered(w): return w ^ 0xffff if w & 0x8000 else w | 0x8000
worst = max((abs(ordered(x) - ordered(y)) for x, y in words), default=0)
assert worst <= 1, f"{len(words)} words differ, by up to {worst} ulp"
print(f"ok: the adapter mounts as its merged model ({len(words)} words 1 ulp apart)")' "$m/model.safetensors" "$merged/model.safetensors"
	unmount "$m"
	# An adapter whose target modules the base lacks is refused, and says which.
	cp -r "$ad" "$TMP/bad-adapter"
	python3 -c '
import json, struct, sys
p = sys.argv[1] + "/adapter_model.safetensors"
data = open(p, "rb").read(); n = struct.unpack("<Q", data[:8])[0]
h = json.loads(data[8:8 + n])
h = {k.replace("h.0.", "h.9."): v for k, v in h.items()}
j = json.dumps(h).encode(); j += b" " * (-len(j) % 8)
open(p, "wb").write(struct.pack("<Q", len(j)) + j + data[8 + n:])' "$TMP/bad-adapter"
	if "$MKSPARSE" -q --adapter "$TMP/bad-adapter" "$base" -o "$TMP/bad-adapter-delta" 2>"$TMP/bad.err"; then
		fail "an adapter for modules the base lacks was packaged"
	fi
	grep -q "transformer.h.9" "$TMP/bad.err" || fail "adapter error: $(cat "$TMP/bad.err")"
}

# ---- derived datasets: every file a patch against a base file ----
same_tree() { # ORIG MNT: permission bits (less write bits) and link targets as the original's
	python3 -c '
import os, stat, sys
orig, mnt = sys.argv[1:3]
for d, dirs, files in os.walk(orig):
    for f in files:
        a = os.path.join(d, f); b = os.path.join(mnt, os.path.relpath(a, orig))
        if os.path.islink(a):
            assert os.readlink(a) == os.readlink(b), b
        elif stat.S_IMODE(os.stat(a).st_mode) & 0o555 != stat.S_IMODE(os.stat(b).st_mode):
            raise SystemExit(f"{b}: mode {oct(os.stat(b).st_mode)}")' "$1" "$2"
}

# Zeroes bytes 50..249 of every file under $1, in place.
damage_tree() {
	find "$1" -type f -exec dd if=/dev/zero of={} bs=1 seek=50 count=200 conv=notrunc status=none \;
}

# New small files are packed apart from changed ones when they fill more than a pack of their
# own (mksparse(1)), else with them: WANT "apart" when no pack of DELTA holds both a file that
# BASE has and one it lacks, "mixed" when one does.
pack_kinds() { # DELTA BASE WANT
	python3 "$HERE/delta_reader.py" "$1" | python3 -c '
import json, os, sys
kinds = {}
for r in map(json.loads, sys.stdin):
    if r["codec"] == "slice":
        known = os.path.exists(os.path.join(sys.argv[1], r["file"]))
        kinds.setdefault(r["base_file"], set()).add(known)
mixed = any(len(k) > 1 for k in kinds.values())
if set().union(*kinds.values()) != {False, True} or mixed != (sys.argv[2] == "mixed"):
    raise SystemExit(f"packs (pack: does the base have each file?): {kinds}")' "$2" "$3" ||
		fail "$1: new and changed files are not packed $3"
}

# The split case's small files are packed, its larger new file coded against the history (base
# files they took parts of), and its unchanged files read from the history (they have no hash of
# their own, and the files split have no size); over a base whose content changed since the mount, reading one is EIO, never other
# bytes. Once the history is joined, an unchanged file comes from it whatever the base holds.
split_history() {
	local b=$TMP/split-base m=$TMP/mnt-split f info d=$TMP/ds/split/derived
	info=$("$SPARSEFS" --info "$TMP/ds-split")
	[[ $info =~ " history "[1-9] && $info =~ " slice "[1-9] && $info =~ " base "[1-9] ]] ||
		fail "the split case is not coded against the history, packed, or kept: $info"
	(( ($(super_field "$TMP/ds-split" feature_incompat) & 1152) == 1152 )) ||
		fail "the split case's unchanged files are not read from the history, or the sizes" \
			"of the files it split are not left to the base"
	for f in pkg0/mod000.txt pkg0/mod018.txt pkg0/mod024.txt; do
		grep -qE "^$f +[0-9]+ bytes -> +0 .* base$" <<<"$info" || fail "$f is not kept as the base's"
	done
	cp -r "$TMP/ds/split/base" "$b"
	mount_fg "$TMP/ds-split" "$m" -o base="$b"
	cmp -s "$m/pkg0/mod000.txt" "$d/pkg0/mod000.txt" || fail "an unchanged file differs"
	damage_tree "$b"
	cmp -s "$m/pkg0/mod018.txt" "$d/pkg0/mod018.txt" ||
		fail "an unchanged file, read after the base changed, is not what the history held"
	unmount "$m"
	rm -rf "$b"
	cp -r "$TMP/ds/split/base" "$b"
	mount_fg "$TMP/ds-split" "$m" -o base="$b"
	# In place, after the mount checked the base: the first paragraphs of every base file.
	damage_tree "$b"
	for f in new/mix0.txt new/all.txt pkg0/mod024.txt; do
		if cat "$m/$f" >/dev/null 2>"$TMP/split.err"; then
			fail "$f read over a changed base"
		fi
		grep -q "Input/output error" "$TMP/split.err" || fail "$f: $(cat "$TMP/split.err")"
	done
	unmount "$m"
	# The base files only the history reads have no hash of their own: the history's catches it.
	grep -q "history changed since it was written" "$m.log" ||
		fail "no log line says the history changed: $(cat "$m.log")"
	echo "ok: history chunks and unchanged files are EIO over a changed base; once joined, the history serves the bytes it held"
}

datasets() {
	local c name m
	python3 "$HERE/gen_datasets.py" "$TMP/ds" >/dev/null
	mkdir -p "$TMP/ds/links/base/sub" "$TMP/ds/links/derived/sub"
	echo "a file" >"$TMP/ds/links/base/a.txt"
	printf 'a file\nand more\n' >"$TMP/ds/links/derived/a.txt"
	printf '#!/bin/sh\necho ran\n' >"$TMP/ds/links/derived/run.sh"
	chmod 755 "$TMP/ds/links/derived/run.sh"
	ln -s a.txt "$TMP/ds/links/derived/inside"
	ln -s ../a.txt "$TMP/ds/links/derived/sub/up"
	ln -s nowhere "$TMP/ds/links/derived/dangling"
	for c in "$TMP"/ds/*/; do
		name=$(basename "$c")
		"$MKSPARSE" -q "$c/base" "$c/derived" -o "$TMP/ds-$name"
		m=$TMP/mnt-ds-$name
		mount_fg "$TMP/ds-$name" "$m"
		same_sums "$c/derived" "$m"
		same_tree "$c/derived" "$m"
		unmount "$m"
		"$SPARSEFS" --extract "$TMP/ds-$name" "$TMP/x-$name"
		diff -r --no-dereference "$c/derived" "$TMP/x-$name" >/dev/null || fail "--extract $name differs"
		echo "ok: dataset $name: $(du -sb "$c/derived" | cut -f1) bytes as $(du -b "$TMP/ds-$name/delta.sparse" | cut -f1)"
	done
	[ "$(cat "$TMP/x-links/run.sh" | sh)" = ran ] || fail "an extracted script does not run"
	split_history
	pack_kinds "$TMP/ds-split" "$TMP/ds/split/base" mixed
	pack_kinds "$TMP/ds-added" "$TMP/ds/added/base" apart
	# A Hugging Face cache snapshot's files are links into blobs/: they stand for those files;
	# any other link out of the tree stays a link.
	local hf=$TMP/hub/models--org--name
	mkdir -p "$hf/blobs" "$hf/snapshots/r1" "$hf/snapshots/r2"
	echo '{"v": 1}' >"$hf/blobs/b1"
	echo '{"v": 2}' >"$hf/blobs/b2"
	ln -s ../../blobs/b1 "$hf/snapshots/r1/config.json"
	ln -s ../../blobs/b2 "$hf/snapshots/r2/config.json"
	ln -s /etc/hostname "$hf/snapshots/r2/elsewhere"
	"$MKSPARSE" -q "$hf/snapshots/r1" "$hf/snapshots/r2" -o "$TMP/ds-hub"
	"$SPARSEFS" --extract "$TMP/ds-hub" "$TMP/x-hub"
	[ -f "$TMP/x-hub/config.json" ] && [ ! -L "$TMP/x-hub/config.json" ] &&
		grep -q '"v": 2' "$TMP/x-hub/config.json" || fail "a snapshot's file came out wrong"
	[ "$(readlink "$TMP/x-hub/elsewhere")" = /etc/hostname ] || fail "a link out of the tree was followed"
	# --estimate writes nothing; --map names the base file of a renamed one.
	"$MKSPARSE" --estimate "$TMP/ds/jsonl/base" "$TMP/ds/jsonl/derived" | grep -q "would be" ||
		fail "--estimate"
	[ ! -e delta.sparse ] || fail "--estimate wrote a delta"
	# A damaged patch chunk: EIO, one log line, the rest still served.
	local ch off
	ch=$(chunk_of "$TMP/ds-jsonl" patch "$(basename "$(ls "$TMP/ds/jsonl/derived"/* | head -1)")")
	cp -r "$TMP/ds-jsonl" "$TMP/ds-bad"
	flip_byte "$TMP/ds-bad/delta.sparse" $(($(field "$ch" data_off) + $(field "$ch" data_len) / 2))
	mount_fg "$TMP/ds-bad" "$TMP/mnt-ds-bad"
	off=$(field "$ch" out_off)
	if dd if="$TMP/mnt-ds-bad/$(field "$ch" file)" of=/dev/null bs=4096 skip=$((off / 4096)) count=1 2>/dev/null; then
		fail "a damaged patch chunk was read without error"
	fi
	kill -0 "${PIDS[-1]}" || fail "sparsefs died on a damaged patch chunk"
	unmount "$TMP/mnt-ds-bad"
}

fixture() {
	local cmd=$1 name=$2
	shift 2
	local dir=${FIXTURES:-$HERE/../../shared/fixtures/gpt2-small} args=() a
	if [ ! -d "$dir" ]; then
		echo "SKIP: fixtures $dir not found (../shared is absent on this machine)"
		exit 77
	fi
	for a in "$@"; do
		[ -e "$dir/$a" ] && args+=("$dir/$a") || args+=("$a")
	done
	if [ "$cmd" = adapter ]; then
		adapter "${args[@]}"
	else
		"$cmd" "$name" "${args[@]}"
	fi
}

generated() {
	local gen=$BUILD/sparse-genmodel
	"$gen" demo "$TMP/demo-base" "$TMP/demo-ft"
	"$gen" edge "$TMP/edge-base" "$TMP/edge-ft"
	pair demo "$TMP/demo-base" "$TMP/demo-ft"
	pair edge "$TMP/edge-base" "$TMP/edge-ft" -c 4K
	pair self "$TMP/demo-base" "$TMP/demo-base"
	"$MKSPARSE" -q "$TMP/demo-base" "$TMP/demo-ft" -o "$TMP/deltas/demo"
	"$MKSPARSE" -q "$TMP/edge-base" "$TMP/edge-ft" -o "$TMP/deltas/edge"
	"$MKSPARSE" -q "$TMP/demo-base" "$TMP/demo-base" -o "$TMP/deltas/self"
	mount_fg "$TMP/deltas" "$TMP/mnt-root"
	[ "$(ls "$TMP/mnt-root" | tr '\n' ' ')" = "demo edge self " ] || fail "root lists $(ls "$TMP/mnt-root")"
	same_sums "$TMP/demo-ft" "$TMP/mnt-root/demo"
	same_sums "$TMP/edge-ft" "$TMP/mnt-root/edge"
	same_sums "$TMP/demo-base" "$TMP/mnt-root/self"
	unmount "$TMP/mnt-root"
	echo "ok: a directory of 3 deltas over 2 bases"
	faults "$TMP/demo-base" "$TMP/demo-ft"
	lossy demo "$TMP/demo-base" "$TMP/demo-ft"
}

# ---- decoding ahead: what is read must not depend on it ----
prefetch() {
	local gen=$BUILD/sparse-genmodel mode opts mnt pids p f
	"$gen" demo "$TMP/demo-base" "$TMP/demo-ft" 12
	"$gen" edge "$TMP/edge-base" "$TMP/edge-ft"
	"$MKSPARSE" -q "$TMP/demo-base" "$TMP/demo-ft" -o "$TMP/deltas/demo" -c 64K
	"$MKSPARSE" -q "$TMP/edge-base" "$TMP/edge-ft" -o "$TMP/deltas/edge" -c 4K
	# A cache of a few chunks, so that what is decoded ahead is evicted before it is read.
	for opts in prefetch=none,decoders=1 prefetch=sequential,cache_size=512K \
		prefetch=all,cache_size=512K,decoders=3 prefetch=all,readahead=8192; do
		mnt=$TMP/mnt-$opts
		mount_fg "$TMP/deltas" "$mnt" -o "$opts"
		pids=()
		for f in "$TMP/demo-ft/model.safetensors" "$TMP/demo-ft/model.safetensors" \
			"$TMP/edge-ft/model-00001-of-00002.safetensors"; do
			p=${f#"$TMP/"}
			p=${p%%-ft/*}/${f##*/}
			cmp "$f" "$mnt/$p" &
			pids+=($!)
		done
		python3 "$HERE/st_reader.py" "$mnt/demo" "$TMP/demo-ft" --procs 3 --reads 100
		same_sums "$TMP/edge-ft" "$mnt/edge"
		for p in "${pids[@]}"; do
			wait "$p" || fail "-o $opts: a concurrent cmp differs"
		done
		unmount "$mnt"
		echo "ok: -o $opts"
	done
	# In the background (a forked daemon), decoding ahead works and ends with the mount.
	mkdir "$TMP/mnt-bg"
	MOUNTS+=("$TMP/mnt-bg")
	"$SPARSEFS" -o prefetch=all "$TMP/deltas" "$TMP/mnt-bg"
	p=$(pgrep -n -f "sparsefs -o prefetch=all $TMP/deltas")
	PIDS+=("$p")
	cmp "$TMP/demo-ft/model.safetensors" "$TMP/mnt-bg/demo/model.safetensors"
	unmount "$TMP/mnt-bg"
	for _ in $(seq 50); do
		kill -0 "$p" 2>/dev/null || break
		sleep 0.1
	done
	! kill -0 "$p" 2>/dev/null || fail "the daemon $p outlived its unmount"
	mkdir "$TMP/mnt-bad"
	if "$SPARSEFS" -f -o prefetch=some "$TMP/deltas" "$TMP/mnt-bad" 2>"$TMP/bad.log"; then
		fail "-o prefetch=some was taken"
	fi
	grep -q "prefetch=some" "$TMP/bad.log" || fail "-o prefetch=some: $(cat "$TMP/bad.log")"
}

# ---- base chunks spliced from the base file ----
splice() {
	local mnt=$TMP/mnt-splice n
	"$BUILD/sparse-genmodel" demo "$TMP/base" "$TMP/ft" 8 256 4
	"$MKSPARSE" -q "$TMP/base" "$TMP/ft" -o "$TMP/delta"
	# -d: libfuse says "(splice)" of each reply it spliced.
	mount_fg "$TMP/delta" "$mnt" -d -o splice
	same_sums "$TMP/ft" "$mnt"
	python3 "$HERE/st_reader.py" "$mnt" "$TMP/ft" --procs 3 --reads 100
	n=$(grep -c "success, outsize: .* (splice)" "$mnt.log" || true)
	[ "$n" -gt 0 ] || fail "-o splice spliced no reply: $(grep -m3 sparsefs: "$mnt.log")"
	unmount "$mnt"
	# The base file changes under the mount (here its times only): spliced reads fail, and
	# say why once per chunk; the daemon goes on.
	mount_fg "$TMP/delta" "$mnt" -o splice
	touch "$TMP/base/model.safetensors"
	if cat "$mnt/model.safetensors" >/dev/null 2>"$TMP/cat.err"; then
		fail "-o splice read over a changed base file"
	fi
	grep -q "Input/output error" "$TMP/cat.err" || fail "changed base: $(cat "$TMP/cat.err")"
	grep -q "its base file changed since it was opened" "$mnt.log" || fail "log: $(cat "$mnt.log")"
	kill -0 "${PIDS[-1]}" || fail "sparsefs died on a changed base"
	cmp -s "$mnt/config.json" "$TMP/ft/config.json" || fail "config.json after a changed base"
	unmount "$mnt"
	# Without -o splice every chunk is checked by its hash: the same bytes still read.
	mount_fg "$TMP/delta" "$mnt"
	same_sums "$TMP/ft" "$mnt"
	unmount "$mnt"
	echo "ok: -o splice ($n replies spliced)"
	splice_flipped
}

# A byte flipped in a frozen tensor of the base before the mount, where the quick check does not
# look: spliced or copied, its chunk is EIO, logged once naming the base file, every other byte
# is right and the daemon goes on.
splice_flipped() {
	local mnt=$TMP/mnt-flip c at opts
	c=$(chunk_of "$TMP/delta" base model.safetensors)
	at=$(python3 -c '
import json, sys
c, size = json.loads(sys.argv[1]), int(sys.argv[2])
step = (size - 4096) // 15  # past the 16 blocks the quick check samples
at = c["base_off"] + c["out_len"] // 2
while any(i * step <= at < i * step + 4096 for i in range(16)):
    at += 4096
assert at < c["base_off"] + c["out_len"]
print(at)' "$c" "$(stat -c %s "$TMP/base/model.safetensors")")
	cp "$TMP/base/model.safetensors" "$TMP/model.orig"
	flip_byte "$TMP/base/model.safetensors" "$at"
	for opts in splice,base_check=quick base_check=quick; do
		mount_fg "$TMP/delta" "$mnt" -o "$opts"
		python3 -c '
import errno, json, os, sys
mnt, ft, c = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
a, b = os.open(mnt + "/model.safetensors", os.O_RDONLY), os.open(ft + "/model.safetensors", os.O_RDONLY)
lo, hi = c["out_off"], c["out_off"] + c["out_len"]
for o in range(0, os.fstat(b).st_size, 4096):  # pages: a longer read may end short at EIO
    try:
        got = os.pread(a, 4096, o)
    except OSError as e:
        assert e.errno == errno.EIO and lo < o + 4096 and o < hi, (o, e)
        continue
    assert not (lo < o + 4096 and o < hi), f"bytes {o}.. read over a flipped base byte"
    assert got == os.pread(b, 4096, o), f"wrong bytes at {o}"' "$mnt" "$TMP/ft" "$c" ||
			fail "-o $opts over a flipped base byte"
		grep -q "base file $TMP/base/model.safetensors, bytes .*checksum mismatch" "$mnt.log" ||
			fail "-o $opts, flipped base byte: log: $(cat "$mnt.log")"
		kill -0 "${PIDS[-1]}" || fail "sparsefs -o $opts died over a flipped base byte"
		unmount "$mnt"
	done
	mv "$TMP/model.orig" "$TMP/base/model.safetensors"
	echo "ok: a flipped byte in a frozen tensor of the base: EIO there, spliced or not"
}

# ---- the whole base checked at mount, the verdict remembered by the files' identity ----
# Bytes the daemon of the last mount_fg has read so far (read and pread, page cache or not).
daemon_read() {
	awk '$1 == "rchar:" {print $2}' "/proc/${PIDS[-1]}/io"
}

# Mounts with ARGS and says whether the daemon read the base whole (checked) or not (trusted).
mount_says() {
	local mnt=$1 size
	shift
	size=$(stat -c %s "$TMP/base/model.safetensors")
	mount_fg "$TMP/delta" "$mnt" "$@"
	if [ "$(daemon_read)" -ge "$size" ]; then echo checked; else echo trusted; fi
	unmount "$mnt"
}

base_check() {
	local mnt=$TMP/mnt-check verdicts=$XDG_CACHE_HOME/sparse/base-verified got
	"$BUILD/sparse-genmodel" demo "$TMP/base" "$TMP/ft" 8 256 4
	"$MKSPARSE" -q "$TMP/base" "$TMP/ft" -o "$TMP/delta"
	sleep 2 # a file changed in the last 2 s is not remembered: a write could leave its times
	[ "$(mount_says "$mnt")" = checked ] || fail "the first mount did not check the base whole"
	[ "$(ls "$verdicts" | wc -l)" = 4 ] || fail "verdicts: $(ls -l "$verdicts")"
	[ "$(mount_says "$mnt")" = trusted ] || fail "a second mount of an unchanged base read it again"
	[ "$(mount_says "$mnt" -o base_check=quick)" = trusted ] || fail "base_check=quick read the base"
	mount_fg "$TMP/delta" "$mnt" -o splice
	same_sums "$TMP/ft" "$mnt"
	unmount "$mnt"
	echo "ok: the base checked whole once, then trusted while unchanged"

	touch "$TMP/base/model.safetensors"
	[ "$(mount_says "$mnt" -o base_check=quick)" = trusted ] || fail "base_check=quick read the base"
	[ "$(mount_says "$mnt")" = checked ] || fail "a touched base was not checked again"
	sleep 2 # remembered by the check above if it began 2 s after the touch, else by this one
	mount_says "$mnt" >/dev/null
	[ "$(mount_says "$mnt")" = trusted ] || fail "the check of a touched base was not remembered"
	echo "ok: a touched base checked again"

	for got in "$verdicts"/*; do printf 'sparse base verified 1: garbage\n' >"$got"; done
	[ "$(mount_says "$mnt")" = checked ] || fail "a corrupt verdict was trusted"
	[ "$(mount_says "$mnt")" = trusted ] || fail "a corrupt verdict was not replaced"
	rm -rf "$XDG_CACHE_HOME"
	"$SPARSEFS" --check "$TMP/delta" >/dev/null || fail "--check"
	[ "$(mount_says "$mnt")" = trusted ] || fail "--check did not remember its verdict"
	XDG_CACHE_HOME=$TMP/base/config.json # not a folder: nothing can be remembered there
	[ "$(mount_says "$mnt")" = checked ] || fail "a mount with no cache did not check"
	[ "$(mount_says "$mnt")" = checked ] || fail "a mount with no cache remembered"
	echo "ok: a corrupt verdict ignored, --check remembers, no cache folder is no error"
}

cmd=$1
shift
"$cmd" "$@"
