#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Remote deltas, served on loopback by the servers of remote.sh, through the fault proxy where a
# fault is wanted.
#
#   remote_test.sh harness   the test servers themselves, with curl: nginx over HTTP and HTTPS
#                            (If-Match answered 412), each fault of fault_proxy.py as it says,
#                            its SigV4 check (the AWS suite's cases; curl's signature passes, a
#                            wrong secret is refused), the redirect target's Authorization record
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

cmd=$1
shift
"$cmd" "$@"
