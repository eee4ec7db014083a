#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Do two mksparse builds write the same bytes? A refactor must not change a delta: this writes
# the deltas of every fixture pair (lossless, quant and svd modes, f32, small chunks, a size
# budget, the adapter) and of the generated dataset pairs with both, and compares each
# delta.sparse byte for byte. Prints what differs; exit 1 when anything does.
# usage: contrib/samebytes.sh OLD_MKSPARSE NEW_MKSPARSE [FIXTURES (default ../shared/fixtures/gpt2-small)]
set -u
old=$1 new=$2
F=${3:-$(dirname "$0")/../../shared/fixtures/gpt2-small}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
same=0 bad=0
one() { # NAME ARGS...: a delta by each build, compared
	local name=$1
	shift
	"$old" "$@" -o "$tmp/a" -q -j2 >/dev/null 2>&1
	"$new" "$@" -o "$tmp/b" -q -j2 >/dev/null 2>&1
	if [ -f "$tmp/a/delta.sparse" ] && cmp -s "$tmp/a/delta.sparse" "$tmp/b/delta.sparse"; then
		same=$((same + 1))
	else
		echo "differs (or not written): $name"
		bad=1
	fi
	rm -rf "$tmp/a" "$tmp/b"
}
for ft in ft_sft ft_heavy ft_vocab ft_sft_sharded ft_lora_merged; do
	one "$ft lossless" "$F/base_bf16" "$F/$ft"
	one "$ft quant 4 bits" "$F/base_bf16" "$F/$ft" -m quant --bits 4
	one "$ft svd rank 16" "$F/base_bf16" "$F/$ft" -m svd --rank 16
done
one "f32 lossless" "$F/base_f32" "$F/ft_sft_f32"
one "f32 quant 3 bits" "$F/base_f32" "$F/ft_sft_f32" -m quant --bits 3
one "ft_heavy -c 64K" "$F/base_bf16" "$F/ft_heavy" -c 64K
one "ft_heavy --size 900000" "$F/base_bf16" "$F/ft_heavy" --size 900000
one adapter --adapter "$F/ft_lora_adapter" "$F/base_bf16"
python3 "$(dirname "$0")/../tests/gen_datasets.py" "$tmp/ds" || exit 1
for c in "$tmp"/ds/*/; do
	one "dataset $(basename "$c")" "$c/base" "$c/derived"
done
echo "$same deltas byte-identical"
exit $bad
