#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The end-to-end check with real transformers, on a machine that has it (torch, transformers,
# peft) but none of our Debian packages: the project's GPU machine (../shared/device/README.md).
#
#   contrib/device-check.sh prepare BUILD FIXTURES HF_LOAD_PY   here: fills .dev/ (git-ignored)
#   contrib/device-check.sh run OUT                             there, in the repository root
#
# prepare writes lossless deltas of the fixture fine-tunes and the adapter's delta here, and puts
# them in .dev/ beside the plain folders, the binaries, the runtime .debs and the loader script,
# so that the machine there only unpacks, mounts and loads (its time is scarce). run mounts the
# directory of deltas over the base and has hf_load.py load every model plainly and through the
# mount with transformers, comparing logits; OUT/result.json holds its verdict.
set -euo pipefail

DEV=.dev
PAIRS="ft_sft ft_sft_sharded ft_vocab ft_heavy"
DEBS="libfuse3-3 fuse3 libcjson1 libzstd1 libxxhash0 libopenblas0-pthread libgfortran5 libquadmath0"

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

run() {
	local out=$1 fz
	fz=$(mktemp -d) MNT=$(mktemp -d)
	for f in "$DEV"/debs/*.deb; do dpkg -x "$f" "$fz"; done
	export LD_LIBRARY_PATH=$fz/usr/lib/x86_64-linux-gnu:$fz/lib/x86_64-linux-gnu
	export PATH=$fz/bin:$fz/usr/bin:$PATH
	"$DEV/bin/sparsefs" -o base="$DEV/base" "$DEV/deltas" "$MNT"
	trap 'fusermount3 -u "$MNT" || umount -l "$MNT"' EXIT
	ls -l "$MNT"/*
	(cd "$DEV/plain" && sha256sum */*.safetensors) >"$out/plain.sha256"
	(cd "$MNT" && sha256sum */*.safetensors) >"$out/mount.sha256"
	diff "$out/plain.sha256" "$out/mount.sha256" && echo "sha256: every tensor file identical"
	python3 "$DEV/hf_load.py" "$DEV/plain" "$MNT" "$out/result.json"
	cat "$out/result.json"
}

case "${1:-}" in
prepare) shift && prepare "$@" ;;
run) shift && run "$@" ;;
*) echo "usage: $0 prepare BUILD FIXTURES HF_LOAD_PY | run OUT" >&2 && exit 2 ;;
esac
