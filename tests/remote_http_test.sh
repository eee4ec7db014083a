#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The library's remote reads (http.c, source_remote.c, remote.c) against a real nginx on
# loopback, through tests/remote_read (open, fork as sparsefs does, read every file on threads,
# compare every byte with the fine-tune):
#
#   remote_http_test.sh http      over HTTP: every byte; the bytes fetched stay within 5% of the
#                                 delta's size; a second reader with the disk cache warm makes
#                                 one request (the open's, which pins the ETag)
#   remote_http_test.sh https     over HTTPS with the test's CA (-o cafile); refused without it
#   remote_http_test.sh errors    404 (saying a URL is one delta), 403, a 200 to a range, the
#                                 listings of a URL and of a local folder
#   remote_http_test.sh changed   the object changes between open and read: EIO, one log line
#                                 naming the change, never other bytes
#   remote_http_test.sh faults    500, 503, 429 (Retry-After), resets and short bodies through
#                                 the fault proxy: every byte right after retries
#   remote_http_test.sh bearer    -o bearer_file: the token goes to the origin, not to where it
#                                 redirects (another host name), and never into the output
#   remote_http_test.sh threads   no thread more than for a local delta runs once a remote one
#                                 is open (sparsefs forks then)
#
# BUILD must be set. Every server ends by its pid when the script exits, passed or not.
. "$(dirname "$0")/lib.sh" remote-http
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/remote.sh"
READ=$BUILD/tests/remote_read

pair() {
	"$BUILD/sparse-genmodel" demo "$TMP/base" "$TMP/ft" 8 >/dev/null
	"$MKSPARSE" "$TMP/base" "$TMP/ft" -o "$TMP/www/ft1" >/dev/null 2>&1 || fail "mksparse"
	DELTA_BYTES=$(stat -c %s "$TMP/www/ft1/delta.sparse")
}

# The bytes nginx sent, all requests of its log.
sent() {
	sed -n 's/.* sent=\([0-9]*\) .*/\1/p' "$NGINX_LOG" | awk '{s += $1} END {print s + 0}'
}

http() {
	pair
	nginx_start "$TMP/www"
	XDG_CACHE_HOME=$TMP/c1 "$READ" "http://127.0.0.1:$NGINX_PORT/ft1" "$TMP/base" "$TMP/ft" \
		>"$TMP/out" 2>&1 || fail "remote_read: $(cat "$TMP/out")"
	local got
	got=$(sent)
	[ "$got" -le $((DELTA_BYTES + DELTA_BYTES / 20)) ] ||
		fail "fetched $got bytes for a delta of $DELTA_BYTES"
	grep -q " 200 " "$NGINX_LOG" && fail "a request without a range: $(cat "$NGINX_LOG")"
	echo "ok: every byte over http, $got bytes fetched for $DELTA_BYTES"
	: >"$NGINX_LOG"
	XDG_CACHE_HOME=$TMP/c1 "$READ" -j 3 -r 4099 "http://127.0.0.1:$NGINX_PORT/ft1" "$TMP/base" \
		"$TMP/ft" >"$TMP/out" 2>&1 || fail "remote_read, warm: $(cat "$TMP/out")"
	[ "$(nginx_requests)" = 1 ] || fail "warm cache: $(cat "$NGINX_LOG")"
	echo "ok: warm cache, one request"
}

https() {
	pair
	nginx_start "$TMP/www"
	local u=https://127.0.0.1:$NGINX_TLS_PORT/ft1
	XDG_CACHE_HOME=$TMP/c1 "$READ" -c "$NGINX_CA" "$u" "$TMP/base" "$TMP/ft" >"$TMP/out" 2>&1 ||
		fail "remote_read over https: $(cat "$TMP/out")"
	echo "ok: every byte over https"
	"$READ" "$u" "$TMP/base" "$TMP/ft" >"$TMP/out" 2>&1 &&
		fail "an untrusted certificate was accepted"
	grep -q "^$u/delta.sparse: .*certificate" "$TMP/out" || fail "no clear error: $(cat "$TMP/out")"
	echo "ok: refused without the CA: $(cat "$TMP/out")"
}

errors() {
	pair
	mkdir -p "$TMP/www/dir/ft/delta.sparse"
	nginx_start "$TMP/www"
	proxy_start "$NGINX_PORT" --sigv4 KEY:SECRET
	local u=http://user:secret@127.0.0.1:$NGINX_PORT
	"$READ" list "$u/nothing" >"$TMP/out" 2>&1 && fail "a missing delta listed"
	grep -q "^http://127.0.0.1:$NGINX_PORT/nothing/delta.sparse: HTTP 404; an http(s) URL names one delta folder" \
		"$TMP/out" || fail "404: $(cat "$TMP/out")"
	# A folder: nginx redirects to its listing, a 200 to a range request.
	"$READ" "$u/dir/ft" "$TMP/base" "$TMP/ft" >"$TMP/out" 2>&1 && fail "a folder opened"
	grep -q "delta.sparse: the server ignores range requests" "$TMP/out" ||
		fail "200: $(cat "$TMP/out")"
	# The proxy wants a signature.
	"$READ" "http://127.0.0.1:$PROXY_PORT/ft1" "$TMP/base" "$TMP/ft" >"$TMP/out" 2>&1 &&
		fail "a 403 opened"
	grep -q "^http://127.0.0.1:$PROXY_PORT/ft1/delta.sparse: HTTP 403$" "$TMP/out" ||
		fail "403: $(cat "$TMP/out")"
	grep -q secret "$TMP/out" && fail "the password shown: $(cat "$TMP/out")"
	[ "$("$READ" list "$u/ft1")" = "a delta" ] || fail "a remote delta not listed as one"
	printf '1 deltas\nft1\n' | cmp -s - <("$READ" list "$TMP/www") ||
		fail "local listing: $("$READ" list "$TMP/www")"
	echo "ok: 404, 403, a 200 to a range, listings"
}

changed() {
	pair
	nginx_start "$TMP/www"
	mkfifo "$TMP/go"
	"$READ" -W "http://127.0.0.1:$NGINX_PORT/ft1" "$TMP/base" "$TMP/ft" <"$TMP/go" \
		>"$TMP/out" 2>&1 &
	local pid=$!
	PIDS+=("$pid")
	exec 3>"$TMP/go"
	for _ in $(seq 100); do
		grep -q "^opened" "$TMP/out" && break
		sleep 0.1
	done
	touch -d "2001-01-01" "$TMP/www/ft1/delta.sparse" # nginx's ETag: mtime and size
	echo go >&3
	exec 3>&-
	wait "$pid" && fail "a changed object was read: $(cat "$TMP/out")"
	[ "$(grep -c "the object changed" "$TMP/out")" = 1 ] || fail "not one log line: $(cat "$TMP/out")"
	grep -q "differs" "$TMP/out" && fail "wrong bytes served: $(cat "$TMP/out")"
	grep -q " 412 " "$NGINX_LOG" || fail "no If-Match: $(cat "$NGINX_LOG")"
	echo "ok: a changed object fails: $(grep "the object changed" "$TMP/out")"
}

faults() {
	pair
	nginx_start "$TMP/www"
	proxy_start "$NGINX_PORT"
	local k injected before=0
	for k in "500&count=3" "503&count=2" "429&secs=1" "reset&count=2" "short&count=2" "408"; do
		proxy_ctl "clear" >/dev/null
		proxy_ctl "fault?kind=$k&after=3&match=delta.sparse" >/dev/null
		XDG_CACHE_HOME=$TMP/c-$RANDOM "$READ" "http://127.0.0.1:$PROXY_PORT/ft1" "$TMP/base" \
			"$TMP/ft" >"$TMP/out" 2>&1 || fail "fault $k: $(cat "$TMP/out")"
		injected=$(proxy_ctl stats | python3 -c 'import json, sys; print(sum(json.load(sys.stdin)["faults"].values()))')
		[ "$injected" -gt "$before" ] || fail "fault $k was not injected"
		before=$injected
		echo "ok: fault $k, every byte after retries"
	done
	proxy_ctl "clear" >/dev/null
	proxy_ctl "fault?kind=500&count=100&after=3&match=delta.sparse" >/dev/null
	"$READ" "http://127.0.0.1:$PROXY_PORT/ft1" "$TMP/base" "$TMP/ft" >"$TMP/out" 2>&1 &&
		fail "a read through endless 500s succeeded"
	grep -q "HTTP 500" "$TMP/out" || fail "endless 500s: $(cat "$TMP/out")"
	grep -q "differs" "$TMP/out" && fail "wrong bytes: $(cat "$TMP/out")"
	echo "ok: endless 500s: EIO after bounded retries"
}

bearer() {
	pair
	nginx_start "$TMP/www"
	proxy_start "$NGINX_PORT"
	echo "tok-$RANDOM$RANDOM" >"$TMP/token"
	"$READ" -C "" -b "$TMP/token" "http://127.0.0.1:$NGINX_PORT/ft1" "$TMP/base" "$TMP/ft" \
		>"$TMP/out" 2>&1 || fail "with a bearer token: $(cat "$TMP/out")"
	grep -q "auth=no" "$NGINX_LOG" && fail "a request without the token: $(cat "$NGINX_LOG")"
	proxy_ctl "fault?kind=redirect&count=1000&match=delta.sparse" >/dev/null
	"$READ" -C "" -b "$TMP/token" "http://127.0.0.1:$PROXY_PORT/ft1" "$TMP/base" "$TMP/ft" \
		>"$TMP/out" 2>&1 || fail "through a redirect: $(cat "$TMP/out")"
	local st
	st=$(proxy_ctl stats | python3 -c 'import json, sys; s = json.load(sys.stdin); print(s["redirected"], s["target_requests"], s["target_auth"])')
	[ "${st% *}" != "0 0" ] && [ "${st##* }" = 0 ] || fail "redirected, at the target, with a token: $st"
	grep -q "$(cat "$TMP/token")" "$TMP/out" "$PROXY_LOG" "$NGINX_LOG" && fail "the token shown"
	echo "ok: the token to the origin only (redirected, at the target, with a token: $st)"
}

# The threads of remote_read once WHERE is open: must be WANT (when given) before it may read.
threads_open() {
	local pid n
	rm -f "$TMP/go"
	mkfifo "$TMP/go"
	"$READ" -W "$1" "$TMP/base" "$TMP/ft" <"$TMP/go" >"$TMP/out" 2>&1 &
	pid=$!
	PIDS+=("$pid")
	exec 3>"$TMP/go"
	for _ in $(seq 100); do
		grep -q "^opened" "$TMP/out" && break
		sleep 0.1
	done
	n=$(ls "/proc/$pid/task" | wc -l)
	[ -z "${2:-}" ] || [ "$n" = "$2" ] || fail "$n threads once $1 is open, $2 for a local delta"
	echo go >&3
	exec 3>&-
	wait "$pid" || fail "remote_read $1: $(cat "$TMP/out")"
	echo "$n"
}

threads() {
	pair
	nginx_start "$TMP/www"
	local here
	here=$(threads_open "$TMP/www/ft1")
	threads_open "http://127.0.0.1:$NGINX_PORT/ft1" "$here" >/dev/null
	echo "ok: $here threads once open, as for a local delta; every byte read after"
}

"$1"
