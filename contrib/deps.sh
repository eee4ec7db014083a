#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs the Debian 12 packages sparse needs to build, test and run, where missing (clang and
# its sanitizer and libFuzzer runtimes for CI's sanitized builds and fuzz/; libcurl for remote
# deltas, expat for S3's listings).
set -euo pipefail
PACKAGES=(cmake gcc make pkg-config libfuse3-dev fuse3 libzstd-dev zstd libcjson-dev
	libxxhash-dev uthash-dev libopenblas-dev python3 python3-numpy procps util-linux
	wamerican wbritish attr dpkg-dev clang libclang-rt-14-dev libcurl4-openssl-dev libexpat1-dev)
missing=()
# The remote tests' servers (nginx, openssl for its certificate, node for s3rver, which they
# install themselves from tests/npm's lock file: tests/remote.sh) and curl, which checks them.
PACKAGES+=(nginx openssl curl nodejs)
for p in "${PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "installing: ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Debian's npm is a package of its own; NodeSource's nodejs carries npm and conflicts with it.
if ! command -v npm >/dev/null; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
fi
