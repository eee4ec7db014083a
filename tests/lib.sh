# SPDX-License-Identifier: Apache-2.0
# What the shell tests share: sourced as `. lib.sh NAME` by mount_test.sh, fault_test.sh and
# eco_test.sh. Sets MKSPARSE, SPARSEFS and TMP (a fresh folder, sparse-NAME.XXXXXX); every
# mount listed in MOUNTS is unmounted and every pid in PIDS ended when the script exits, whether
# it passed or not. Remembered base checks go to TMP/cache, never the user's cache.
set -euo pipefail

: "${BUILD:?set BUILD to the build directory}"
MKSPARSE=$BUILD/mksparse
SPARSEFS=$BUILD/sparsefs
TMP=$(mktemp -d "${TMPDIR:-/tmp}/sparse-$1.XXXXXX")
export XDG_CACHE_HOME=$TMP/cache
MOUNTS=()
PIDS=()

cleanup() {
	local m p
	for m in "${MOUNTS[@]}"; do
		mountpoint -q "$m" 2>/dev/null && { fusermount3 -u "$m" 2>/dev/null ||
			fusermount3 -uz "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; }
	done
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$TMP"
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

# Mounts DELTA on MNT in the foreground, in the background of this shell, so that its pid is
# known; waits until the mount is up. Extra arguments go to sparsefs; stderr to MNT.log.
mount_fg() {
	local delta=$1 mnt=$2
	shift 2
	mkdir -p "$mnt"
	"$SPARSEFS" -f "$@" "$delta" "$mnt" 2>"$mnt.log" &
	PIDS+=($!)
	MOUNTS+=("$mnt")
	for _ in $(seq 100); do
		mountpoint -q "$mnt" && return 0
		kill -0 "${PIDS[-1]}" 2>/dev/null || fail "sparsefs $delta exited: $(cat "$mnt.log")"
		sleep 0.1
	done
	fail "$mnt did not mount"
}

# Every file under ORIG has the same sha256 under MNT.
same_sums() {
	local orig=$1 mnt=$2
	(cd "$orig" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$TMP/sums"
	(cd "$mnt" && sha256sum --quiet -c "$TMP/sums") || fail "sha256 of $mnt differs from $orig"
}

super_field() { # DIR FIELD -> its value, from delta_reader.py's layout
	python3 -c '
import struct, sys
f = open(sys.argv[1] + "/delta.sparse", "rb").read(128)
names = ["magic", "version", "super_size", "feature_compat", "feature_incompat", "chunk_table_off",
         "chunk_count", "chunk_table_hash", "manifest_off", "manifest_len", "manifest_raw_len",
         "manifest_hash", "file_size", "chunk_table_len", "reserved", "super_hash"]
print(dict(zip(names, struct.unpack("<8sIIQQQQQQQQQQQ16sQ", f)))[sys.argv[2]])' "$1" "$2"
}
