#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Remote deltas, served on loopback by the servers of remote.sh, through the fault proxy where a
# fault is wanted.
#
#   remote_test.sh harness   the test servers themselves, with curl: nginx over HTTP and HTTPS
#                            (If-Match answered 412), each fault of fault_proxy.py as it says,
#                            its SigV4 check (the AWS suite's cases; curl's signature passes, a
#                            wrong secret is refused), the redirect target's Authorization record
#   remote_test.sh http      a delta over HTTP and HTTPS (-o cafile=): every byte, the Python
#                            reader, a few requests to open, If-Match on every range, --info,
#                            --check, --extract; an untrusted certificate and a 404 refused
#   remote_test.sh faults    each fault of the proxy, a few times or in every N-th request,
#                            under a mount without a disk cache: right bytes after retries, the
#                            daemon alive
#   remote_test.sh failures  faults that last: EIO in bounded time, never a wrong byte, the
#                            daemon alive, right bytes once they clear; the object replaced
#                            mid-read: EIO and one log line
#   remote_test.sh cache     -o cache_dir: a second mount reads everything with no request to
#                            nginx, a damaged cache file is fetched again, a tiny cache_max evicts
#                            and serves, and with nginx stopped a warm cache still serves
#   remote_test.sh secrets   -o bearer_file: the token goes to its host, never to a redirect's
#                            other host, nor into logs, --info or the cache
#   remote_test.sh fixture   gpt2-small's ft_sft over HTTPS, mounted by the Python helper
#                            (contrib/python) and read by the safetensors reader and a GPT-2
#                            forward pass: the same logits as the fine-tune (skipped, 77, when
#                            ../shared/fixtures is absent; FIXTURES overrides where it is)
#
# BUILD (the build directory) must be set. Every mount is unmounted and every server and daemon
# ended by its pid when the script exits, whether it passed or not.
. "$(dirname "$0")/lib.sh" remote
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/remote.sh"

# curl ARGS...: "STATUS BYTES" of the answer, whose body goes to TMP/body; "STATUS BYTES rc=N"
# when curl fails (a reset, a short body, a timeout).
fetch() {
	local rc=0 out
	out=$(curl -s -o "$TMP/body" -w '%{http_code} %{size_download}' --max-time 5 "$@") || rc=$?
	[ $rc = 0 ] && echo "$out" || echo "$out rc=$rc"
}

expect() { # WHAT WANT GOT
	[ "$2" = "$3" ] || fail "$1: got '$3', wanted '$2'"
	echo "ok: $1: $3"
}

# ---- the servers themselves ----
harness() {
	local u etag f=$TMP/www/d/f.bin
	mkdir -p "$TMP/www/d"
	head -c 100000 /dev/urandom >"$f"
	python3 "$HERE/fault_proxy.py" --selftest

	nginx_start "$TMP/www"
	expect "https with the test's CA" "206 100" \
		"$(fetch --cacert "$NGINX_CA" -r 0-99 "https://127.0.0.1:$NGINX_TLS_PORT/d/f.bin")"
	cmp -s -n 100 "$TMP/body" "$f" || fail "https: wrong bytes"
	fetch "https://127.0.0.1:$NGINX_TLS_PORT/d/f.bin" | grep -q "rc=60" ||
		fail "https without the test's CA was trusted"
	u=http://127.0.0.1:$NGINX_PORT/d/f.bin
	etag=$(curl -sI "$u" | sed -n 's/^ETag: //Ip' | tr -d '\r')
	expect "nginx If-Match, same ETag" "206 10" "$(fetch -r 0-9 -H "If-Match: $etag" "$u")"
	expect "nginx If-Match, other ETag" 412 "$(fetch -r 0-9 -H 'If-Match: "x"' "$u" | cut -d' ' -f1)"
	grep -q '^GET /d/f.bin 206 range=bytes=0-9 sent=10 auth=no ifmatch=yes$' "$NGINX_LOG" ||
		fail "access log: $(cat "$NGINX_LOG")"

	proxy_start "$NGINX_PORT"
	u=http://127.0.0.1:$PROXY_PORT/d/f.bin
	expect "proxy, no fault" "206 1000" "$(fetch -r 1000-1999 "$u")"
	cmp -s "$TMP/body" <(tail -c +1001 "$f" | head -c 1000) || fail "proxy: wrong bytes"
	proxy_ctl "fault?kind=503&count=2&match=f.bin" >/dev/null
	expect "503 twice" "503 0,503 0,206 10" \
		"$(fetch -r 0-9 "$u"),$(fetch -r 0-9 "$u"),$(fetch -r 0-9 "$u")"
	proxy_ctl "fault?kind=429&secs=3" >/dev/null
	curl -s -D - -o /dev/null "$u" | grep -q "^Retry-After: 3" || fail "429 without Retry-After"
	proxy_ctl "fault?kind=500&after=1" >/dev/null
	expect "500 after one" "206 10,500 0" "$(fetch -r 0-9 "$u"),$(fetch -r 0-9 "$u")"
	proxy_ctl "fault?kind=reset" >/dev/null
	expect "reset mid-body" "206 5000 rc=56" "$(fetch -r 0-9999 "$u")"
	proxy_ctl "fault?kind=short" >/dev/null
	expect "short body" "206 5000 rc=18" "$(fetch -r 0-9999 "$u")"
	proxy_ctl "fault?kind=stall&secs=3" >/dev/null
	expect "stall" "000 0 rc=28" "$(fetch --max-time 1 -r 0-9 "$u")"
	proxy_ctl "fault?kind=redirect" >/dev/null
	expect "redirect, Authorization dropped by curl" "200 100000" \
		"$(fetch -L -H 'Authorization: Bearer t0ken' "$u")"
	proxy_ctl "fault?kind=redirect" >/dev/null
	fetch -L --location-trusted -H 'Authorization: Bearer t0ken' "$u" >/dev/null
	proxy_ctl stats | python3 -c '
import json, sys
s = json.load(sys.stdin)
assert (s["redirected"], s["target_requests"], s["target_auth"]) == (2, 2, 1), s' ||
		fail "the redirect target did not record what arrived: $(proxy_ctl stats)"
	echo "ok: the redirect target records an Authorization only when one arrives"
	grep -q t0ken "$PROXY_LOG" "$NGINX_LOG" && fail "a token was logged"
	proxy_ctl "fault?kind=change&match=f.bin" >/dev/null
	expect "changed object, If-Match old ETag" 412 \
		"$(fetch -r 0-9 -H "If-Match: $etag" "$u" | cut -d' ' -f1)"
	expect "changed object" "206 100" "$(fetch -r 0-99 "$u")"
	cmp -s -n 100 "$TMP/body" "$f" && fail "the changed object kept its bytes"
	curl -sI "$u" | grep -qi "^ETag: $etag" && fail "the changed object kept its ETag"
	proxy_stop

	s3rver_start "$TMP/s3" bkt
	s3_put bkt "deltas/ft a/delta.sparse" "$f"
	proxy_start "$S3_PORT" --sigv4 S3RVER:S3RVER
	u=http://127.0.0.1:$PROXY_PORT/bkt/deltas/ft%20a/delta.sparse
	local sign=(--aws-sigv4 aws:amz:us-east-1:s3 -H "x-amz-content-sha256: UNSIGNED-PAYLOAD")
	expect "sigv4, curl's signature" "206 100" "$(fetch "${sign[@]}" --user S3RVER:S3RVER -r 0-99 "$u")"
	cmp -s -n 100 "$TMP/body" "$f" || fail "s3rver: wrong bytes"
	expect "sigv4, a listing" 200 "$(fetch "${sign[@]}" --user S3RVER:S3RVER \
		"http://127.0.0.1:$PROXY_PORT/bkt?delimiter=%2F&list-type=2&prefix=deltas%2F" | cut -d' ' -f1)"
	grep -q "<Prefix>deltas/ft a/</Prefix>" "$TMP/body" || fail "listing: $(cat "$TMP/body")"
	expect "sigv4, a wrong secret" 403 \
		"$(fetch "${sign[@]}" --user S3RVER:wrong -r 0-99 "$u" | cut -d' ' -f1)"
	grep -q SignatureDoesNotMatch "$TMP/body" || fail "wrong secret: $(cat "$TMP/body")"
	expect "sigv4, unsigned" 403 "$(fetch -r 0-99 "$u" | cut -d' ' -f1)"
	proxy_stop
	s3rver_stop
	nginx_stop
}

# ---- a remote delta ----
VERIFY=(python3 "$HERE/verify_read.py")

# A demo pair of LAYERS layers (default 2) in TMP/base and TMP/ft, its delta in 64 KiB chunks
# (many ranges) in TMP/www/ft, served by nginx.
serve_demo() {
	"$BUILD/sparse-genmodel" demo "$TMP/base" "$TMP/ft" "${1:-2}" >/dev/null
	"$MKSPARSE" -q -c 64K "$TMP/base" "$TMP/ft" -o "$TMP/www/ft"
	DELTA_BYTES=$(stat -c %s "$TMP/www/ft/delta.sparse")
	nginx_start "$TMP/www"
}

# URL MNT [SPARSEFS_ARGS...]: mount_fg, MOUNT_PID its daemon, OPEN_MS how long it took.
mount_url() {
	local t0
	t0=$(date +%s%N)
	mount_fg "$@"
	OPEN_MS=$((($(date +%s%N) - t0) / 1000000))
	MOUNT_PID=${PIDS[-1]}
}

# MNT: the daemon still serves, then the mount goes.
alive_unmount() {
	kill -0 "$MOUNT_PID" 2>/dev/null || fail "the daemon of $1 died: $(tail -5 "$1.log")"
	cmp -s "$TMP/ft/config.json" "$1/config.json" || fail "$1 no longer serves config.json"
	fusermount3 -u "$1"
}

# The bytes nginx sent for the access log's lines FROM (1-based) on.
sent_since() {
	tail -n +"$1" "$NGINX_LOG" | awk -F' sent=' '{ split($2, a, " "); s += a[1] } END { print s + 0 }'
}

http() {
	local url m=$TMP/mnt-http n0 n1 n2 f
	serve_demo
	url=http://127.0.0.1:$NGINX_PORT/ft
	n0=$(($(nginx_requests) + 1))
	mount_url "$url" "$m" -o cache_dir="$TMP/rc"
	n1=$(($(nginx_requests) + 1))
	echo "http: mounted in $OPEN_MS ms with $((n1 - n0)) requests ($(sent_since "$n0") bytes)"
	[ $((n1 - n0)) -le 4 ] || fail "opening took $((n1 - n0)) requests: $(tail -n +"$n0" "$NGINX_LOG")"
	same_sums "$TMP/ft" "$m"
	python3 "$HERE/st_reader.py" "$m" "$TMP/ft" --procs 4 --reads 150
	n2=$(nginx_requests)
	echo "http: read the model with $((n2 + 1 - n1)) requests, $(sent_since "$n1") bytes for" \
		"a delta of $DELTA_BYTES and a model of $(du -sb "$TMP/ft" | cut -f1)"
	f=$(tail -n +"$n1" "$NGINX_LOG" | grep -c "ifmatch=no" || true)
	[ "$f" = 0 ] || fail "$f ranges without If-Match: $(grep ifmatch=no "$NGINX_LOG")"
	grep -q " 206 " "$NGINX_LOG" || fail "no range request: $(cat "$NGINX_LOG")"
	grep -v " 206 \| 200 " "$NGINX_LOG" && fail "unexpected answers"
	alive_unmount "$m"

	"$SPARSEFS" --info -o cache_dir= "$url" >"$TMP/info" || fail "--info $url"
	grep -q "the delta is" "$TMP/info" || fail "--info $url: $(head -5 "$TMP/info")"
	"$SPARSEFS" --check -o cache_dir= "$url" >/dev/null || fail "--check $url"
	"$SPARSEFS" --extract -o cache_dir= "$url" "$TMP/x"
	diff -r "$TMP/ft" "$TMP/x" >/dev/null || fail "--extract $url differs"
	echo "ok: --info, --check, --extract over HTTP"

	url=https://127.0.0.1:$NGINX_TLS_PORT/ft
	mount_url "$url" "$m" -o cafile="$NGINX_CA",cache_dir=
	"${VERIFY[@]}" "$m" "$TMP/ft" --order random >"$TMP/out"
	echo "ok: https (-o cafile=): mounted in $OPEN_MS ms, $(cat "$TMP/out")"
	alive_unmount "$m"
	mkdir -p "$TMP/mnt-untrusted"
	if "$SPARSEFS" -f -o cache_dir= "$url" "$TMP/mnt-untrusted" 2>"$TMP/err"; then
		fail "mounted over an untrusted certificate"
	fi
	grep -q "127.0.0.1:$NGINX_TLS_PORT" "$TMP/err" || fail "untrusted certificate: $(cat "$TMP/err")"
	echo "ok: an untrusted certificate: $(head -1 "$TMP/err")"
	if "$SPARSEFS" --info "http://127.0.0.1:$NGINX_PORT/nowhere" 2>"$TMP/err" >/dev/null; then
		fail "--info of a missing delta succeeded"
	fi
	grep "nowhere" "$TMP/err" | grep -q 404 || fail "404: $(cat "$TMP/err")"
	echo "ok: a 404: $(head -1 "$TMP/err")"
}

# ---- faults between the mount and nginx ----
# How many faults of KIND the proxy injected so far.
injected() {
	proxy_ctl stats | python3 -c 'import json, sys; print(json.load(sys.stdin)["faults"].get(sys.argv[1], 0))' "$1"
}

# SPEC (a fault?kind=... query): a fresh mount without a disk cache, reading every block in a
# random order (no read-ahead) while the fault is on: every byte right, the fault injected.
transient() {
	local spec=$1 m=$TMP/mnt-fault kind=${1%%&*} before after t0
	mount_url "$PROXY_URL" "$m" -o cache_dir=,timeout=2
	before=$(injected "$kind")
	proxy_ctl "fault?kind=$spec&match=delta.sparse" >/dev/null
	t0=$(date +%s%N)
	"${VERIFY[@]}" "$m" "$TMP/ft" --order random >"$TMP/out" || fail "$spec: $(cat "$TMP/out")"
	t0=$((($(date +%s%N) - t0) / 1000000))
	proxy_ctl clear >/dev/null
	after=$(injected "$kind")
	[ "$after" -gt "$before" ] || fail "$spec: the fault never happened"
	alive_unmount "$m"
	echo "ok: $spec: $(cat "$TMP/out"), $((after - before)) injected, $t0 ms"
}

# SPEC for every request: EIO (in bounded time: a few blocks), the daemon alive, the log says
# so; once the fault clears the same mount reads right.
persistent() {
	local spec=$1 m=$TMP/mnt-fault
	mount_url "$PROXY_URL" "$m" -o cache_dir=,timeout=2
	proxy_ctl "fault?kind=$spec&prob=1&match=delta.sparse" >/dev/null
	timeout 200 "${VERIFY[@]}" "$m" "$TMP/ft" --order random --blocks 2 --eio some >"$TMP/out" ||
		fail "$spec always: $(cat "$TMP/out")"
	[ -s "$m.log" ] || fail "$spec always: nothing logged"
	proxy_ctl clear >/dev/null
	"${VERIFY[@]}" "$m" "$TMP/ft" --order random >/dev/null || fail "$spec: no recovery once cleared"
	alive_unmount "$m"
	echo "ok: $spec always: $(cat "$TMP/out"), then every block once cleared; logged:" \
		"$(head -1 "$m.log")"
}

faults() {
	local spec
	serve_demo 8
	proxy_start "$NGINX_PORT"
	PROXY_URL=http://127.0.0.1:$PROXY_PORT/ft
	for spec in 500\&count=3 503\&count=2 408\&count=2 429\&count=2\&secs=1 reset\&count=2 \
		short\&count=2 stall\&count=2\&secs=5 500\&every=2 reset\&every=2 short\&every=2; do
		transient "$spec"
	done
	grep -q "fault=429" "$PROXY_LOG" && python3 -c '
import sys
lines = [l.split() for l in open(sys.argv[1])]
for i, l in enumerate(lines):
    if l[5] == "fault=429":
        again = [m for m in lines[i + 1:] if m[1:3] == l[1:3] and m[4] == l[4]]
        assert again and float(again[0][0]) - float(l[0]) >= 0.9, "Retry-After not honoured: " + " ".join(l)' \
		"$PROXY_LOG" || fail "429"
}

failures() {
	local spec m=$TMP/mnt-change lines
	serve_demo 8
	proxy_start "$NGINX_PORT"
	PROXY_URL=http://127.0.0.1:$PROXY_PORT/ft
	for spec in 503 reset; do
		persistent "$spec"
	done

	# The object replaced under the mount: what was read stays right, the rest is EIO with one
	# log line that says so and one for the first chunk that failed, never bytes of the new
	# object.
	mount_url "$PROXY_URL" "$m" -o cache_dir=
	"${VERIFY[@]}" "$m" "$TMP/ft" --order random --blocks 2 >/dev/null
	lines=$(wc -l <"$m.log")
	proxy_ctl "fault?kind=change&match=delta.sparse" >/dev/null
	"${VERIFY[@]}" "$m" "$TMP/ft" --order random --eio some >"$TMP/out" || fail "changed: $(cat "$TMP/out")"
	[ "$(tail -n +$((lines + 1)) "$m.log" | grep -c "changed")" = 1 ] &&
		[ "$(tail -n +$((lines + 1)) "$m.log" | wc -l)" -le 2 ] ||
		fail "changed: wanted two log lines: $(tail -n +$((lines + 1)) "$m.log" | head)"
	grep -q "fault=change" "$PROXY_LOG" || fail "the changed object was never asked for"
	alive_unmount "$m"
	echo "ok: the object replaced mid-read: $(cat "$TMP/out"); logged: $(grep changed "$m.log")"
}

# ---- the chunk cache on disk ----
cache() {
	local url m=$TMP/mnt-cache n1 n2 f rc=$TMP/rc small=$TMP/rc-small
	serve_demo 8
	url=http://127.0.0.1:$NGINX_PORT/ft
	mount_url "$url" "$m" -o cache_dir="$rc"
	"${VERIFY[@]}" "$m" "$TMP/ft" >/dev/null
	alive_unmount "$m"
	echo "cache: $(du -sb "$rc" | cut -f1) bytes in $rc after one read of a delta of $DELTA_BYTES"

	mount_url "$url" "$m" -o cache_dir="$rc"
	n1=$(nginx_requests)
	"${VERIFY[@]}" "$m" "$TMP/ft" --order random >/dev/null
	same_sums "$TMP/ft" "$m"
	n2=$(nginx_requests)
	[ "$n1" = "$n2" ] || fail "a warm cache: $((n2 - n1)) requests: $(tail -n +$((n1 + 1)) "$NGINX_LOG")"
	alive_unmount "$m"
	echo "ok: a second mount read everything with 0 requests to nginx (opening it took some)"

	# Not block 0: opening the delta fetches that one anyway.
	f=$(find "$rc" -type f -path "$rc/??/*" ! -name "*-0000000000000000" | sort | head -1)
	[ -n "$f" ] || fail "no block file in $rc: $(find "$rc")"
	python3 -c '
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR); off = os.fstat(fd).st_size // 2
b = os.pread(fd, 1, off); os.pwrite(fd, bytes([b[0] ^ 0x5a]), off)' "$f"
	mount_url "$url" "$m" -o cache_dir="$rc"
	n1=$(nginx_requests)
	"${VERIFY[@]}" "$m" "$TMP/ft" >/dev/null || fail "a damaged cache file was served"
	n2=$(nginx_requests)
	[ "$n2" -gt "$n1" ] || fail "a damaged cache file was not fetched again"
	grep -q "damaged" "$m.log" || fail "a damaged cache file: nothing logged"
	alive_unmount "$m"
	echo "ok: a damaged cache file fetched again ($((n2 - n1)) requests); logged: $(head -1 "$m.log")"

	# Room for two of its 1 MiB blocks, of five: each read evicts, what stays is within the bound.
	mount_url "$url" "$m" -o cache_dir="$small",cache_max=2M
	"${VERIFY[@]}" "$m" "$TMP/ft" >/dev/null
	alive_unmount "$m"
	mount_url "$url" "$m" -o cache_dir="$small",cache_max=2M
	n1=$(nginx_requests)
	"${VERIFY[@]}" "$m" "$TMP/ft" --order random >/dev/null
	n2=$(nginx_requests)
	f=$(find "$small" -type f -path "$small/??/*" -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
	[ "$f" -le $((2 << 20)) ] || fail "cache_max=2M holds $f bytes"
	[ "$f" -ge $((1 << 20)) ] || fail "cache_max=2M holds only $f bytes"
	alive_unmount "$m"
	echo "ok: cache_max=2M: right bytes, $f bytes of blocks kept, $((n2 - n1)) requests to read again"

	# nginx stopped: a warm cache still serves the mount opened before; what is not cached is
	# EIO, after the retries of the first request only (a hundred reads would take an hour at
	# seconds each); once nginx is back the same mount reads everything right.
	mount_url "$url" "$m" -o cache_dir="$rc",timeout=2
	mount_url "$url" "$m-small" -o cache_dir="$small",cache_max=2M,timeout=2
	nginx_stop
	"${VERIFY[@]}" "$m" "$TMP/ft" --order random >"$TMP/out" || fail "nginx stopped: $(cat "$TMP/out")"
	alive_unmount "$m"
	echo "ok: nginx stopped, a warm cache: $(cat "$TMP/out")"
	timeout 100 "${VERIFY[@]}" "$m-small" "$TMP/ft" --order random --blocks 100 --eio some \
		>"$TMP/out" || fail "nginx stopped, a cold cache: $(cat "$TMP/out")"
	[ "$(grep -c "does not answer" "$m-small.log")" = 1 ] ||
		fail "nginx stopped: wanted one line that says so: $(head "$m-small.log")"
	echo "ok: nginx stopped, a cold cache: $(cat "$TMP/out")"
	nginx_resume
	"${VERIFY[@]}" "$m-small" "$TMP/ft" --order random >"$TMP/out" ||
		fail "nginx back: $(cat "$TMP/out")"
	grep -q "answers again" "$m-small.log" || fail "nginx back: not logged: $(tail -3 "$m-small.log")"
	alive_unmount "$m-small"
	echo "ok: nginx back, the same mount: $(cat "$TMP/out"); logged $(wc -l <"$m-small.log") lines"
}

# ---- credentials ----
secrets() {
	local m=$TMP/mnt-secret token st
	serve_demo
	proxy_start "$NGINX_PORT"
	token=sEcReT-$RANDOM$RANDOM
	echo "$token" >"$TMP/bearer"
	proxy_ctl "fault?kind=redirect&prob=1" >/dev/null
	mount_url "http://127.0.0.1:$PROXY_PORT/ft" "$m" -o bearer_file="$TMP/bearer",cache_dir="$TMP/rc"
	"${VERIFY[@]}" "$m" "$TMP/ft" >/dev/null
	alive_unmount "$m"
	"$SPARSEFS" --info -o bearer_file="$TMP/bearer",cache_dir= "http://127.0.0.1:$PROXY_PORT/ft" \
		>"$TMP/info" 2>&1 || fail "--info: $(cat "$TMP/info")"
	st=$(proxy_ctl stats)
	python3 -c '
import json, sys
s = json.loads(sys.argv[1])
assert s["redirected"] > 0 and s["target_requests"] > 0, s
assert s["target_auth"] == 0, "the token reached the redirect target: %s" % s' "$st" || fail "$st"
	grep -q "host=127.0.0.1:$PROXY_PORT auth=yes" "$PROXY_LOG" || fail "the token never went to its host"
	grep -rqF "$token" "$TMP/rc" "$m.log" "$TMP/info" "$PROXY_LOG" "$NGINX_LOG" &&
		fail "the token was written: $(grep -rlF "$token" "$TMP/rc" "$m.log" "$TMP/info")"
	echo "ok: the bearer token went to its host only: $st"
}

# ---- a real model through the Python path ----
fixture() {
	local dir=${FIXTURES:-$HERE/../../shared/fixtures/gpt2-small}
	if [ ! -d "$dir" ]; then
		echo "SKIP: fixtures $dir not found (../shared is absent on this machine)"
		exit 77
	fi
	dir=$(cd "$dir" && pwd)
	"$MKSPARSE" -q "$dir/base_bf16" "$dir/ft_sft" -o "$TMP/www/ft_sft"
	mkdir "$TMP/mnt-py"
	MOUNTS+=("$TMP/mnt-py")
	nginx_start "$TMP/www"
	# numpy is the system's (as for mount_test.sh's logits).
	PYTHONPATH=$HERE/../contrib/python SPARSEFS=$SPARSEFS /usr/bin/python3 -c '
import json, subprocess, sys, sparsefs
url, mnt, ca, cache, ft, here, evalbin = sys.argv[1:]
with sparsefs.mount(url, mountpoint=mnt, options={"cafile": ca, "cache_dir": cache}) as path:
    subprocess.run([sys.executable, here + "/st_reader.py", path, ft, "--procs", "2"], check=True)
    out = subprocess.run([sys.executable, here + "/../bench/gpt2_eval.py", path, evalbin, ft],
                         check=True, capture_output=True, text=True).stdout
r = json.loads(out)
assert r["max_abs_logit_diff"] == 0.0 and r["top1_agree"] == 1.0, r
print("ok: ft_sft over https, through sparsefs.mount: the same logits,", out.strip())' \
		"https://127.0.0.1:$NGINX_TLS_PORT/ft_sft" "$TMP/mnt-py" "$NGINX_CA" "$TMP/rc" "$dir/ft_sft" "$HERE" \
		"$dir/eval/A_eval.bin" || fail "ft_sft over https through the Python helper"
}

cmd=$1
shift
"$cmd" "$@"
