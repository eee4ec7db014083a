#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Integration tests for how sparse fits its users' tools, over a model pair sparse-genmodel writes:
#
#   eco_test.sh hub       hub ids resolved from a fake Hugging Face cache, by mksparse and by the
#                         mount (recorded in the delta, found again after the cache moved)
#   eco_test.sh fstab     contrib/fstab.example's line through mount(8) (sparsefs in a private
#                         namespace's /usr/local/bin, and by path) and mount.fuse3, and
#                         contrib/systemd's unit through systemd-analyze verify
#   eco_test.sh progress  mksparse's progress line on a terminal only; sparsefs --info --json
#   eco_test.sh xattr     user.sparse.* attributes through getfattr, and statfs's totals
#   eco_test.sh install   cmake --install into a temporary DESTDIR, and the Debian package
#                         cpack builds: its files, its dependencies, its binaries run
#
# BUILD (the build directory) must be set. Every mount is unmounted and every daemon ended by
# its pid when the script exits, whether it passed or not.
. "$(dirname "$0")/lib.sh" eco
SRC=$(cd "$(dirname "$0")/.." && pwd)

models() {
	[ -d "$TMP/base" ] || "$BUILD/sparse-genmodel" demo "$TMP/base" "$TMP/ft" 2 >/dev/null
}

# Puts folder SRC into cache ROOT as repository org/NAME at commit COMMIT, laid out as
# huggingface_hub does: content in blobs/, snapshot files linking there, refs/REF -> COMMIT.
hub_put() {
	local root=$1 name=$2 src=$3 commit=$4 ref=$5 repo f sum
	repo=$root/models--org--$name
	mkdir -p "$repo/blobs" "$repo/snapshots/$commit" "$(dirname "$repo/refs/$ref")"
	for f in "$src"/*; do
		sum=$(sha256sum "$f" | cut -d' ' -f1)
		cp "$f" "$repo/blobs/$sum"
		ln -s "../../blobs/$sum" "$repo/snapshots/$commit/$(basename "$f")"
	done
	printf %s "$commit" >"$repo/refs/$ref"
}

hub() {
	models
	local c1=1111111111111111111111111111111111111111 c2=2222222222222222222222222222222222222222
	hub_put "$TMP/cache" base "$TMP/base" $c1 main
	hub_put "$TMP/cache" ft "$TMP/ft" $c2 tags/v1
	export HF_HUB_CACHE=$TMP/cache HOME=$TMP/home
	unset HF_HOME XDG_CACHE_HOME
	"$MKSPARSE" -q org/base org/ft@tags/v1 -o "$TMP/delta"
	"$SPARSEFS" --info "$TMP/delta" >"$TMP/info"
	grep -q "^base id    org/base@main (commit $c1)" "$TMP/info" ||
		fail "--info does not name the hub id: $(head -5 "$TMP/info")"
	# The cache moves away (and the recorded absolute path with it): the id finds it again.
	mv "$TMP/cache" "$TMP/cache2"
	HF_HUB_CACHE=$TMP/cache2 mount_fg "$TMP/delta" "$TMP/mnt"
	same_sums "$TMP/ft" "$TMP/mnt"
	umount "$TMP/mnt"
	# A base given as an id at a commit, and a miss that says where it looked.
	HF_HUB_CACHE=$TMP/cache2 mount_fg "$TMP/delta" "$TMP/mnt" -o base=org/base@$c1
	same_sums "$TMP/ft" "$TMP/mnt"
	umount "$TMP/mnt"
	local err
	err=$("$SPARSEFS" -f -o base=org/nothere "$TMP/delta" "$TMP/mnt" 2>&1) && fail "a missing id mounted"
	echo "$err" | grep -q "$TMP/cache/models--org--nothere" || fail "the miss does not say where: $err"
	err=$("$SPARSEFS" --check "$TMP/delta" 2>&1) && fail "a moved base was found"
	echo "$err" | grep -q "models--org--base/snapshots/$c1" || fail "the miss does not say where: $err"
	echo "ok: hub ids from a fake Hugging Face cache"
}

# Waits for MNT to mount through mount(8) or mount.fuse3 and records the daemon's pid.
mounted_by_helper() {
	local mnt=$1
	MOUNTS+=("$mnt")
	mountpoint -q "$mnt" || fail "$mnt is not mounted"
	PIDS+=("$(pgrep -n -f "sparsefs .* $mnt -o ")")
}

# Unmounts MNT with umount(8); the daemon must end by itself.
umount_helper() {
	local mnt=$1 pid=${PIDS[-1]}
	umount "$mnt"
	for _ in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	fail "sparsefs $pid still runs after umount $mnt"
}

fstab() {
	[ "$(id -u)" = 0 ] || { echo "skip: mount(8) runs mount.fuse3 for root only"; exit 77; }
	models
	"$MKSPARSE" -q "$TMP/base" "$TMP/ft" -o "$TMP/delta"
	mkdir -p "$TMP/bin" "$TMP/mnt"
	ln -s "$BUILD/sparsefs" "$TMP/bin/sparsefs"
	# The example line, with this test's paths (every option kept).
	local line opts
	line=$(grep -v '^#' "$SRC/contrib/fstab.example" | grep fuse.sparsefs)
	opts=$(echo "$line" | awk '{print $4}' | sed "s|base=[^,]*|base=$TMP/base|")
	# mount(8) runs its helper with a fixed PATH: name sparsefs by its path (TYPE#SOURCE).
	echo "$TMP/bin/sparsefs#$TMP/delta $TMP/mnt fuse $opts 0 0" >"$TMP/fstab"
	mount -T "$TMP/fstab" "$TMP/mnt" || fail "mount -T fstab"
	mounted_by_helper "$TMP/mnt"
	grep -q " $TMP/mnt fuse.sparsefs ro,.*allow_other" /proc/mounts || fail "$(grep "$TMP/mnt" /proc/mounts)"
	same_sums "$TMP/ft" "$TMP/mnt"
	umount_helper "$TMP/mnt"
	# A hub id as the base: mount(8) drops PATH and HOME, not HF_HUB_CACHE.
	hub_put "$TMP/cache" base "$TMP/base" 1111111111111111111111111111111111111111 main
	sed -i "s|base=[^,]*|base=org/base|" "$TMP/fstab"
	HF_HUB_CACHE=$TMP/cache mount -T "$TMP/fstab" "$TMP/mnt" || fail "mount -T fstab, base=org/base"
	mounted_by_helper "$TMP/mnt"
	same_sums "$TMP/ft" "$TMP/mnt"
	umount_helper "$TMP/mnt"
	# What mount -t fuse.sparsefs runs, with sparsefs found on PATH, and the options mount(8)
	# and mount.fuse3 add (rw, dev, suid) or drop (nofail, _netdev).
	PATH=$TMP/bin:$PATH mount.fuse3 "$TMP/delta" "$TMP/mnt" -t fuse.sparsefs -o "rw,$opts,_netdev" ||
		fail "mount.fuse3 -t fuse.sparsefs"
	mounted_by_helper "$TMP/mnt"
	same_sums "$TMP/ft" "$TMP/mnt"
	umount_helper "$TMP/mnt"
	# The line as it is, with sparsefs on mount(8)'s fixed PATH: in a mount namespace of its
	# own whose /usr/local/bin holds it, so that nothing outside the test changes.
	echo "$TMP/delta $TMP/mnt fuse.sparsefs $opts 0 0" >"$TMP/fstab"
	unshare --mount --propagation private bash -euc '
		mount --bind "$1/bin" /usr/local/bin
		mount -T "$1/fstab" "$1/mnt"
		trap "umount $1/mnt 2>/dev/null || fusermount3 -uz $1/mnt" EXIT
		grep -q " $1/mnt fuse.sparsefs ro," /proc/mounts
		(cd "$2" && find . -type f -print0 | sort -z | xargs -0 sha256sum) | (cd "$1/mnt" && sha256sum --quiet -c)
	' _ "$TMP" "$TMP/ft" || fail "mount -T fstab with sparsefs installed (type fuse.sparsefs)"
	for _ in $(seq 50); do
		pgrep -f "sparsefs $TMP/delta $TMP/mnt" >/dev/null || break
		sleep 0.1
	done
	! pkill -f "sparsefs $TMP/delta $TMP/mnt" || fail "sparsefs still runs after umount in the namespace"
	local unit
	unit=$(ls "$SRC"/contrib/systemd/*.mount)
	if command -v systemd-analyze >/dev/null; then
		systemd-analyze verify --man=no "$unit" || fail "systemd-analyze verify $unit"
	else
		echo "note: no systemd-analyze: $unit not verified"
	fi
	echo "ok: fstab line and systemd unit"
}

progress() {
	models
	# Piped: nothing on stderr. On a terminal (script(1) gives one): the progress line, redrawn
	# with \r, ending with every file and tensor done; -q: nothing again.
	"$MKSPARSE" -j2 "$TMP/base" "$TMP/ft" -o "$TMP/d1" >/dev/null 2>"$TMP/piped"
	[ ! -s "$TMP/piped" ] || fail "mksparse wrote to a pipe: $(cat -A "$TMP/piped")"
	local tensors
	tensors=$(python3 -c 'import json,struct,sys; f=open(sys.argv[1],"rb"); n=struct.unpack("<Q",f.read(8))[0]; print(len([k for k in json.loads(f.read(n)) if k!="__metadata__"]))' "$TMP/ft/model.safetensors")
	script -qec "'$MKSPARSE' -j2 '$TMP/base' '$TMP/ft' -o '$TMP/d2'" /dev/null >"$TMP/tty" </dev/null
	grep -q $'\r'"mksparse: files 4/4, tensors $tensors/$tensors, .*/s, done in" "$TMP/tty" ||
		fail "no progress line on a terminal: $(cat -A "$TMP/tty")"
	script -qec "'$MKSPARSE' -q -j2 '$TMP/base' '$TMP/ft' -o '$TMP/d3'" /dev/null >"$TMP/tty-q" </dev/null
	[ ! -s "$TMP/tty-q" ] || fail "mksparse -q printed: $(cat -A "$TMP/tty-q")"
	# --info --json: one JSON object that agrees with the delta and the fine-tune.
	"$SPARSEFS" --info --json "$TMP/d1" >"$TMP/info.json"
	python3 - "$TMP/info.json" "$TMP/d1/delta.sparse" "$TMP/ft" <<'PY' || fail "--info --json"
import json, os, sys
info = json.load(open(sys.argv[1]))
ft = sorted(os.listdir(sys.argv[3]))
assert info["delta_bytes"] == os.path.getsize(sys.argv[2]), info["delta_bytes"]
assert [f["name"] for f in info["files"]] == ft, info["files"]
assert info["files_bytes"] == sum(os.path.getsize(os.path.join(sys.argv[3], f)) for f in ft)
assert sum(f["stored_bytes"] for f in info["files"]) <= info["delta_bytes"]
assert info["mode"] == "lossless" and "files" not in info["base"]
st = [f for f in info["files"] if f["name"] == "model.safetensors"][0]
assert st["tensors"] and all(t["codecs"] and t["stored_bytes"] >= 0 for t in st["tensors"])
PY
	echo "ok: progress on a terminal only; --info --json"
}

xattr() {
	command -v getfattr >/dev/null || { echo "skip: no getfattr (apt-get install attr)"; exit 77; }
	models
	local c1=1111111111111111111111111111111111111111
	hub_put "$TMP/cache" base "$TMP/base" $c1 main
	HF_HUB_CACHE=$TMP/cache "$MKSPARSE" -q org/base "$TMP/ft" -o "$TMP/delta"
	"$SPARSEFS" --info --json "$TMP/delta" >"$TMP/info.json"
	HF_HUB_CACHE=$TMP/cache mount_fg "$TMP/delta" "$TMP/mnt"
	local f
	for f in "$TMP"/ft/*; do
		f=$(basename "$f")
		getfattr -d --absolute-names "$TMP/mnt/$f" >"$TMP/attrs"
		python3 - "$TMP/attrs" "$TMP/info.json" "$f" "$TMP/ft/$f" "$TMP/cache/models--org--base/snapshots/$c1" "$c1" <<'PY' || fail "xattrs of $f: $(cat "$TMP/attrs")"
import json, os, sys
attrs = dict(l.split("=", 1) for l in open(sys.argv[1]).read().splitlines() if "=" in l)
attrs = {k: json.loads(v) for k, v in attrs.items()}
info = json.load(open(sys.argv[2]))
entry = [f for f in info["files"] if f["name"] == sys.argv[3]][0]
want = {"user.sparse.mode": "lossless", "user.sparse.size": str(os.path.getsize(sys.argv[4])),
        "user.sparse.stored_size": str(entry["stored_bytes"]), "user.sparse.base": sys.argv[5],
        "user.sparse.base_id": "org/base@" + sys.argv[6]}
assert attrs == want, (attrs, want)
PY
	done
	getfattr -n user.sparse.size "$TMP/mnt" 2>/dev/null && fail "a directory has user.sparse.size"
	getfattr -n user.sparse.nothing "$TMP/mnt/config.json" 2>/dev/null && fail "an unknown attribute"
	# statfs: blocks of 4K cover every file's size, one inode per file and the root.
	local total files blocks inodes
	total=$(python3 -c 'import json,sys; print(sum(f["size"] for f in json.load(open(sys.argv[1]))["files"]))' "$TMP/info.json")
	files=$(ls "$TMP/ft" | wc -l)
	read -r blocks inodes < <(stat -f -c '%b %c' "$TMP/mnt")
	[ "$blocks" -ge $(((total + 4095) / 4096)) ] && [ "$blocks" -le $(((total + 4095) / 4096 + files)) ] ||
		fail "statfs: $blocks blocks for $total bytes"
	[ "$inodes" -eq $((files + 1)) ] || fail "statfs: $inodes inodes for $files files"
	umount "$TMP/mnt"
	echo "ok: xattrs and statfs"
}

# The files an install under /usr must hold, sorted.
INSTALLED="usr/bin/mksparse
usr/bin/sparsefs
usr/lib/python3/dist-packages/sparsefs/__init__.py
usr/share/bash-completion/completions/mksparse
usr/share/bash-completion/completions/sparsefs
usr/share/doc/sparse/LICENSE
usr/share/doc/sparse/README.md
usr/share/doc/sparse/examples/fstab.example
usr/share/doc/sparse/examples/systemd/mnt-models-sft.mount
usr/share/man/man1/mksparse.1
usr/share/man/man1/sparsefs.1
usr/share/man/man5/sparse-format.5"

# What an installed tree under ROOT can do: run, import the helper, complete, mount a delta.
try_installed() {
	local root=$1
	"$root/usr/bin/mksparse" --version | grep -q "^mksparse " || fail "$root: mksparse --version"
	"$root/usr/bin/sparsefs" --version | grep -q "^sparsefs " || fail "$root: sparsefs --version"
	for m in mksparse.1 sparsefs.1; do
		[ -z "$(groff -ww -z -man "$root/usr/share/man/man1/$m" 2>&1)" ] || fail "$m: groff warns"
	done
	local got
	got=$(HOME=$TMP/home HF_HUB_CACHE=$TMP/cache bash -c '
		source "$1/usr/share/bash-completion/completions/mksparse"
		COMP_WORDS=(mksparse --mo); COMP_CWORD=1; _mksparse; echo "${COMPREPLY[*]}"
		COMP_WORDS=(sparsefs -o base=org/b); COMP_CWORD=2; _sparsefs; echo "${COMPREPLY[*]}"' _ "$root")
	[ "$got" = $'--mode\nbase=org/base' ] || fail "completion: $got"
	models
	[ -d "$TMP/delta" ] || "$MKSPARSE" -q "$TMP/base" "$TMP/ft" -o "$TMP/delta"
	PYTHONPATH=$root/usr/lib/python3/dist-packages SPARSEFS=$root/usr/bin/sparsefs python3 - "$TMP/delta" "$TMP/ft" "$root" <<'PY' || fail "$root: the installed helper"
import os, sys, sparsefs
assert sparsefs.__file__.startswith(sys.argv[3]), sparsefs.__file__
with sparsefs.mount(sys.argv[1]) as path:
    for name in os.listdir(sys.argv[2]):
        assert open(os.path.join(path, name), "rb").read() == open(os.path.join(sys.argv[2], name), "rb").read(), name
assert not os.path.ismount(path)
PY
}

install() {
	mkdir -p "$TMP/cache/models--org--base/snapshots"
	DESTDIR=$TMP/root cmake --install "$BUILD" --prefix /usr >/dev/null
	[ "$(cd "$TMP/root" && find . ! -type d | sed 's|^\./||' | sort)" = "$INSTALLED" ] ||
		fail "installed: $(cd "$TMP/root" && find . ! -type d | sort)"
	try_installed "$TMP/root"
	echo "ok: cmake --install"
	if ! command -v cpack >/dev/null || ! command -v dpkg-deb >/dev/null; then
		echo "note: no cpack or dpkg-deb: no Debian package built"
		return
	fi
	cpack --config "$BUILD/CPackConfig.cmake" -B "$TMP/pkg" >"$TMP/cpack.log" 2>&1 || fail "cpack: $(tail -5 "$TMP/cpack.log")"
	local deb
	deb=$(ls "$TMP"/pkg/sparse_*.deb)
	[ "$(dpkg-deb -c "$deb" | awk '$1 !~ /^d/ {print $6}' | sed 's|^\./||' | sort)" = "$INSTALLED" ] ||
		fail "$deb holds: $(dpkg-deb -c "$deb")"
	dpkg-deb -f "$deb" Depends | grep -q "fuse3.*libfuse3-3" || fail "$deb depends on: $(dpkg-deb -f "$deb" Depends)"
	dpkg-deb -x "$deb" "$TMP/deb-root"
	try_installed "$TMP/deb-root"
	echo "ok: $(basename "$deb"): $(dpkg-deb -f "$deb" Depends)"
}

cmd=$1
shift
"$cmd" "$@"
