#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the libFuzzer targets (clang, ASan+UBSan) and runs each for SECONDS (default 60),
# JOBS at a time (default 1), starting from fuzz/corpus/<target>; prints the executions per
# target. New inputs and any crash go to WORK (default: a temporary folder, kept on a crash).
# Exit status 1 when a target found something: the reproducer's path is printed; add it to
# fuzz/corpus/<target>/ with the fix.
#   fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
build=${BUILD_FUZZ:-build-fuzz}
CC=clang cmake -S . -B "$build" -DSPARSE_FUZZ=ON >/dev/null
cmake --build "$build" -j"$(nproc)" >/dev/null
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(manifest safetensors superblock chunk lossless lossy patch delta http s3_list)
work=${WORK:-$(mktemp -d)}
mkdir -p "$work"

run_one() {
	local t=$1 log=$work/$t.log
	mkdir -p "$work/$t"
	if "$build/fuzz/fuzz_$t" -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$work/$t-" "$work/$t" "fuzz/corpus/$t" \
		>"$log" 2>&1; then
		echo "$t: $(sed -n 's/^stat::number_of_executed_units: *//p' "$log") executions in ${secs}s, $(ls "$work/$t" | wc -l) new inputs"
	else
		echo "$t: FAILED, see $log and $(ls "$work/$t"-* 2>/dev/null | tr '\n' ' ')"
		return 1
	fi
}

status=0
pids=()
for t in "${targets[@]}"; do
	run_one "$t" &
	pids+=($!)
	if [ ${#pids[@]} -ge "${JOBS:-1}" ]; then
		wait "${pids[0]}" || status=1
		pids=("${pids[@]:1}")
	fi
done
for p in "${pids[@]}"; do
	wait "$p" || status=1
done
[ $status -ne 0 ] || [ -n "${WORK:-}" ] || rm -rf "$work"
exit $status
