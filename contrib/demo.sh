#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The main job in one go: install what is missing, build, write the delta of a small generated
# model pair, mount it, show that every file is the fine-tune's, unmount.
set -euo pipefail
cd "$(dirname "$0")/.."
bash contrib/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
T=$(mktemp -d)
trap 'mountpoint -q "$T/mnt" && fusermount3 -u "$T/mnt"; rm -rf "$T"' EXIT
set -x
build/sparse-genmodel demo "$T/base" "$T/finetune"
build/mksparse "$T/base" "$T/finetune" -o "$T/delta"
mkdir "$T/mnt"
build/sparsefs "$T/delta" "$T/mnt"
ls -l "$T/finetune" "$T/mnt"
du -b "$T/finetune/model.safetensors" "$T/delta/delta.sparse"
(cd "$T/finetune" && sha256sum -- *) | tee "$T/sums"
(cd "$T/mnt" && sha256sum -c "$T/sums")
fusermount3 -u "$T/mnt"
