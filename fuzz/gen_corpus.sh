#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Regenerates the fuzz seeds: fuzz/model (the tiny base and its lossless and quant deltas, which
# fuzz_delta reads) and fuzz/corpus/<target>/ from them. Inputs of past findings in the corpus
# (named after the bug) are kept: only the generated seeds are rewritten.
#   fuzz/gen_corpus.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
cmake --build "$build" --target sparse-fuzz-corpus >/dev/null
rm -rf fuzz/model
"$build/fuzz/sparse-fuzz-corpus" fuzz
