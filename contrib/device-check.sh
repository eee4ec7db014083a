#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The end-to-end check with real transformers, on a machine that has it (torch, transformers,
# peft) but none of our Debian packages: the project's GPU machine (../shared/device/README.md).
#
#   contrib/device-check.sh prepare BUILD FIXTURES HF_LOAD_PY   here: fills .dev/ (git-ignored)
#   contrib/device-check.sh run OUT                             there, in the repository root
#   contrib/device-check.sh scale-prepare BUILD                 here: the scaling bench's parts
#   contrib/device-check.sh scale OUT [BENCH_SCALE_ARGS...]     there: bench/bench_scale.py
#
# prepare writes lossless deltas of the fixture fine-tunes and the adapter's delta here, and puts
# them in .dev/ beside the plain folders, the binaries, the runtime .debs and the loader script,
# so that the machine there only unpacks, mounts and loads (its time is scarce). run mounts the
# directory of deltas over the base and has hf_load.py load every model plainly and through the
# mount with transformers, comparing logits; OUT/result.json holds its verdict.
set -euo pipefail

DEV=.dev
PAIRS="ft_sft ft_sft_sharded ft_vocab ft_heavy"
# What `ldd` of our binaries resolves to outside libc (libcurl's TLS, HTTP/2 and Kerberos
# stacks included: the machine there has none of Debian's packages).
DEBS="libfuse3-3 fuse3 libcjson1 libzstd1 libxxhash0 libopenblas0-pthread libgfortran5 libquadmath0
 libexpat1 libcurl4 libnghttp2-14 libpsl5 librtmp1 libssh2-1 libbrotli1 libldap-2.5-0 libsasl2-2
 libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libkeyutils1 libcom-err2 libssl3
 libgnutls30 libhogweed6 libnettle8 libidn2-0 libunistring2 libtasn1-6 libp11-kit0 libffi8
 libgmp10"

prepare() {
	local build=$1 fx=$2 loader=$3
	rm -rf "$DEV" && mkdir -p "$DEV"/{debs,bin,plain,deltas}
	(cd "$DEV/debs" && apt-get download $DEBS >/dev/null)
	cp "$build/mksparse" "$build/sparsefs" "$DEV/bin/"
	cp "$loader" "$DEV/hf_load.py"
	cp -r "$fx/base_bf16" "$DEV/base"
	for p in $PAIRS; do
		cp -r "$fx/$p" "$DEV/plain/$p"
		"$build/mksparse" -q "$fx/base_bf16" "$fx/$p" -o "$DEV/deltas/$p"
	done
	cp -r "$fx/ft_lora_merged" "$DEV/plain/ft_lora"
	"$build/mksparse" -q --adapter "$fx/ft_lora_adapter" "$fx/base_bf16" -o "$DEV/deltas/ft_lora"
	chmod -R u+w "$DEV"
	du -sh "$DEV"
}

# The .debs unpacked without touching /: fusermount3 on PATH, the libraries in LIBS, for our
# binaries only (python3 and torch there must keep their own libssl and the rest).
unpack() {
	local fz
	fz=$(mktemp -d)
	for f in "$DEV"/debs/*.deb; do dpkg -x "$f" "$fz"; done
	LIBS=$fz/usr/lib/x86_64-linux-gnu:$fz/lib/x86_64-linux-gnu
	export PATH=$fz/bin:$PATH
}

# A folder of wrappers that run each binary in $1 with LIBS.
wrap() {
	local dir b
	dir=$(mktemp -d)
	for b in "$1"/*; do
		printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' "$LIBS" "$(realpath "$b")" \
			>"$dir/${b##*/}"
		chmod +x "$dir/${b##*/}"
	done
	echo "$dir"
}

run() {
	local out=$1
	MNT=$(mktemp -d)
	unpack
	"$(wrap "$DEV/bin")/sparsefs" -o base="$DEV/base" "$DEV/deltas" "$MNT"
	trap 'fusermount3 -u "$MNT" || umount -l "$MNT"' EXIT
	ls -l "$MNT"/*
	(cd "$DEV/plain" && sha256sum */*.safetensors) >"$out/plain.sha256"
	(cd "$MNT" && sha256sum */*.safetensors) >"$out/mount.sha256"
	diff "$out/plain.sha256" "$out/mount.sha256" && echo "sha256: every tensor file identical"
	python3 "$DEV/hf_load.py" "$DEV/plain" "$MNT" "$out/result.json"
	cat "$out/result.json"
}

# bench_scale.py there reads the pair it generates with these binaries (.dev/build stands for
# the build folder) and the bench scripts beside it.
scale_prepare() {
	local build=$1
	rm -rf "$DEV" && mkdir -p "$DEV"/{debs,build,bench}
	(cd "$DEV/debs" && apt-get download $DEBS >/dev/null)
	for b in mksparse sparsefs passthrough mmap_load sparse-genmodel; do
		cp "$build/$b" "$DEV/build/"
	done
	cp bench/bench_scale.py bench/bench_speed.py "$DEV/bench/"
	du -sh "$DEV"
}

scale() {
	local out=$1
	shift
	unpack
	python3 "$DEV/bench/bench_scale.py" "$(wrap "$DEV/build")" --work "$(mktemp -d)/scale" "$@" |
		tee "$out/scale.txt"
}

case "${1:-}" in
prepare) shift && prepare "$@" ;;
run) shift && run "$@" ;;
scale-prepare) shift && scale_prepare "$@" ;;
scale) shift && scale "$@" ;;
*) echo "usage: $0 prepare BUILD FIXTURES HF_LOAD_PY | run OUT | scale-prepare BUILD |" \
	"scale OUT [BENCH_SCALE_ARGS...]" >&2 && exit 2 ;;
esac
