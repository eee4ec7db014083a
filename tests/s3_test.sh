#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# s3:// deltas (s3.c, s3_list.c, remote.c) in s3rver on loopback, read through tests/remote_read
# (open, fork as sparsefs does, read every file on threads, compare every byte with the
# fine-tune):
#
#   s3_test.sh delta    one delta (a key with a space), every byte; listed as a delta
#   s3_test.sh prefix   a prefix of four deltas (keys with '%', '+', '&', '<' and UTF-8) among
#                       objects that are not deltas: listed by name, sorted, each read whole
#   s3_test.sh sigv4    through fault_proxy.py, which recomputes every request's SigV4
#                       signature with the test's secret: listing and reading pass with keys
#                       from the environment (with a session token) and from a credentials
#                       file; a wrong secret and no credentials fail with the URL and the
#                       status, the secret never shown; a redirect to another host is not
#                       followed
#   s3_test.sh errors   a missing delta, bucket or prefix: errors naming them and the status
#   s3_test.sh mount    sparsefs: a prefix mounted as one folder per delta, every file's sum
#                       right; one delta through the SigV4-checking proxy; --info of an s3 URL
#
# BUILD must be set. Every server ends by its pid when the script exits, passed or not.
. "$(dirname "$0")/lib.sh" s3
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/remote.sh"
READ=$BUILD/tests/remote_read

# The credentials are the test's alone: none from the environment or the user's ~/.aws.
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE \
	AWS_SHARED_CREDENTIALS_FILE AWS_REGION AWS_DEFAULT_REGION
export HOME=$TMP/home
mkdir -p "$HOME"
# s3rver's own key: it refuses any other key id (but takes any secret: the proxy checks that).
export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER

# Two fine-tunes and their deltas: TMP/{base,ft,delta}{1,2}.
pairs() {
	local i
	for i in 1 2; do
		"$BUILD/sparse-genmodel" demo "$TMP/base$i" "$TMP/ft$i" $((i + 1)) >/dev/null
		"$MKSPARSE" -q "$TMP/base$i" "$TMP/ft$i" -o "$TMP/delta$i" || fail "mksparse $i"
	done
}

# read_s3 ENDPOINT URL N [ARGS...]: every byte of the delta at URL, which is pair N's.
read_s3() {
	local endpoint=$1 url=$2 i=$3
	shift 3
	"$READ" -e "$endpoint" "$@" "$url" "$TMP/base$i" "$TMP/ft$i" >"$TMP/out" 2>&1 ||
		fail "remote_read $url: $(cat "$TMP/out")"
}

delta() {
	pairs
	s3rver_start "$TMP/s3" bkt
	local e=http://127.0.0.1:$S3_PORT
	s3_put bkt "deltas/ft a/delta.sparse" "$TMP/delta1/delta.sparse"
	read_s3 "$e" "s3://bkt/deltas/ft a" 1
	echo "ok: every byte of s3://bkt/deltas/ft a: $(tr '\n' ' ' <"$TMP/out")"
	read_s3 "$e/" "s3://bkt/deltas/ft a/" 1 -g us-east-1
	[ "$("$READ" list -e "$e" "s3://bkt/deltas/ft a")" = "a delta" ] ||
		fail "not listed as a delta: $("$READ" list -e "$e" "s3://bkt/deltas/ft a" 2>&1)"
	echo "ok: listed as a delta"
}

prefix() {
	pairs
	s3rver_start "$TMP/s3" bkt
	local e=http://127.0.0.1:$S3_PORT name want
	s3_put bkt "deltas/ft a/delta.sparse" "$TMP/delta1/delta.sparse"
	s3_put bkt "deltas/ft&b<c>/delta.sparse" "$TMP/delta2/delta.sparse"
	s3_put bkt "deltas/ünï/delta.sparse" "$TMP/delta2/delta.sparse"
	s3_put bkt "deltas/%41+b/delta.sparse" "$TMP/delta1/delta.sparse"
	# not deltas one level down: other files, a delta two levels down, a sibling prefix
	s3_put bkt "deltas/readme.txt" "$TMP/ft1/config.json"
	s3_put bkt "deltas/notes/delta.sparse.bak" "$TMP/ft1/config.json"
	s3_put bkt "deltas/ft a/old/delta.sparse" "$TMP/delta2/delta.sparse"
	s3_put bkt "deltas-old/x/delta.sparse" "$TMP/delta2/delta.sparse"
	# ListObjectsV2 answers 1000 keys a page: these push deltas/ünï/ onto the second.
	s3_put_many bkt deltas/notes/pad 1010
	want=$(printf '4 deltas\n%%41+b\nft a\nft&b<c>\nünï')
	for name in "s3://bkt/deltas" "s3://bkt/deltas/"; do
		[ "$("$READ" list -e "$e" "$name" 2>&1)" = "$want" ] ||
			fail "listing of $name: $("$READ" list -e "$e" "$name" 2>&1)"
	done
	echo "ok: the prefix lists its four deltas, sorted, from two pages of keys"
	read_s3 "$e" "s3://bkt/deltas/%41+b" 1
	read_s3 "$e" "s3://bkt/deltas/ft a" 1
	read_s3 "$e" "s3://bkt/deltas/ft&b<c>" 2
	read_s3 "$e" "s3://bkt/deltas/ünï" 2
	echo "ok: every byte of each"
}

# The fault proxy's count of requests that failed its SigV4 check, and of all requests.
sig_stats() {
	proxy_ctl stats | python3 -c '
import json, sys
s = json.load(sys.stdin)
print(s["sigv4_failed"], s["requests"])'
}

sigv4() {
	pairs
	s3rver_start "$TMP/s3" bkt
	s3_put bkt "deltas/ft a/delta.sparse" "$TMP/delta1/delta.sparse"
	s3_put bkt "deltas/ft&b<c>/delta.sparse" "$TMP/delta2/delta.sparse"
	proxy_start "$S3_PORT" --sigv4 S3RVER:S3RVER:eu-west-1
	local e=http://127.0.0.1:$PROXY_PORT fails total
	# keys from the environment, the region from AWS_REGION, then from -g with a session token
	AWS_REGION=eu-west-1 read_s3 "$e" "s3://bkt/deltas/ft a" 1
	AWS_SESSION_TOKEN=t0k3n/+= read_s3 "$e" "s3://bkt/deltas/ft&b<c>" 2 -g eu-west-1
	AWS_REGION=eu-west-1 "$READ" list -e "$e" s3://bkt/deltas >"$TMP/out" 2>&1 ||
		fail "a signed listing: $(cat "$TMP/out")"
	# keys from a credentials file's profile
	printf '[default]\naws_access_key_id = OTHER\n[test]\naws_access_key_id = S3RVER\naws_secret_access_key = S3RVER\n' \
		>"$TMP/credentials"
	env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY AWS_SHARED_CREDENTIALS_FILE="$TMP/credentials" \
		AWS_PROFILE=test "$READ" list -e "$e" -g eu-west-1 s3://bkt/deltas >"$TMP/out" 2>&1 ||
		fail "a listing signed with a profile's keys: $(cat "$TMP/out")"
	read -r fails total <<<"$(sig_stats)"
	[ "$fails" = 0 ] && [ "$total" -gt 4 ] || fail "signatures refused: $fails of $total"
	grep -q "auth=no" "$PROXY_LOG" && fail "an unsigned request: $(grep auth=no "$PROXY_LOG")"
	echo "ok: $total requests, every signature right"

	AWS_SECRET_ACCESS_KEY=N0tTh3S3cr3t AWS_REGION=eu-west-1 \
		"$READ" -e "$e" "s3://bkt/deltas/ft a" "$TMP/base1" "$TMP/ft1" >"$TMP/out" 2>&1 &&
		fail "a wrong secret read a delta"
	grep -q "^$e/bkt/deltas/ft%20a/delta.sparse: HTTP 403; check the AWS credentials" \
		"$TMP/out" || fail "wrong secret: $(cat "$TMP/out")"
	echo "ok: a wrong secret: $(cat "$TMP/out")"
	AWS_SECRET_ACCESS_KEY=N0tTh3S3cr3t "$READ" list -e "$e" -g eu-west-1 s3://bkt/deltas \
		>"$TMP/out" 2>&1 && fail "a wrong secret listed a prefix"
	grep -q "^$e/bkt/: HTTP 403; check the AWS credentials" "$TMP/out" ||
		fail "wrong secret, listing: $(cat "$TMP/out")"
	env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY "$READ" list -e "$e" s3://bkt/deltas \
		>"$TMP/out" 2>&1 && fail "an unsigned listing passed the proxy's check"
	grep -q "^$e/bkt/: HTTP 403" "$TMP/out" || fail "unsigned: $(cat "$TMP/out")"
	grep -q "N0tTh3S3cr3t" "$TMP/out" "$PROXY_LOG" && fail "the secret was shown"
	read -r fails total <<<"$(sig_stats)"
	[ "$fails" = 3 ] || fail "the proxy refused $fails requests, not 3"
	echo "ok: a wrong secret and no credentials refused, with the URL and the status"

	# A redirect is not followed: the signature and the token are for the store's host.
	proxy_ctl "fault?kind=redirect" >/dev/null
	AWS_SESSION_TOKEN=t0k3n AWS_REGION=eu-west-1 "$READ" -e "$e" "s3://bkt/deltas/ft a" \
		"$TMP/base1" "$TMP/ft1" >"$TMP/out" 2>&1 && fail "a redirected delta opened"
	grep -q "^$e/bkt/deltas/ft%20a/delta.sparse: HTTP 302" "$TMP/out" ||
		fail "redirect: $(cat "$TMP/out")"
	proxy_ctl stats | python3 -c '
import json, sys
s = json.load(sys.stdin)
assert (s["redirected"], s["target_requests"]) == (1, 0), s' ||
		fail "a redirect was followed: $(proxy_ctl stats)"
	echo "ok: a redirect to another host is not followed"
}

errors() {
	pairs
	s3rver_start "$TMP/s3" bkt
	local e=http://127.0.0.1:$S3_PORT
	s3_put bkt "deltas/ft a/delta.sparse" "$TMP/delta1/delta.sparse"
	"$READ" -e "$e" "s3://bkt/deltas/none" "$TMP/base1" "$TMP/ft1" >"$TMP/out" 2>&1 &&
		fail "a missing delta opened"
	grep -q "^$e/bkt/deltas/none/delta.sparse: HTTP 404; no such bucket or key" "$TMP/out" ||
		fail "missing delta: $(cat "$TMP/out")"
	"$READ" list -e "$e" "s3://bkt/none" >"$TMP/out" 2>&1 && fail "an empty prefix listed"
	grep -q "^s3://bkt/none: neither a delta (no delta.sparse) nor a prefix of deltas" \
		"$TMP/out" || fail "empty prefix: $(cat "$TMP/out")"
	"$READ" list -e "$e" "s3://nobucket/deltas" >"$TMP/out" 2>&1 && fail "a missing bucket listed"
	grep -q "^$e/nobucket/: HTTP 404; no such bucket or key" "$TMP/out" ||
		fail "missing bucket: $(cat "$TMP/out")"
	"$READ" list -e "$e" "s3://b@d/deltas" >"$TMP/out" 2>&1 && fail "a bad bucket name listed"
	grep -q "^s3://b@d/deltas: not s3://BUCKET/PREFIX" "$TMP/out" ||
		fail "bad bucket: $(cat "$TMP/out")"
	"$READ" list -e "ftp://127.0.0.1" "s3://bkt/deltas" >"$TMP/out" 2>&1 &&
		fail "an ftp endpoint listed"
	grep -q "^s3://bkt/deltas: endpoint ftp://127.0.0.1: not http(s)://HOST\[:PORT\]" "$TMP/out" ||
		fail "bad endpoint: $(cat "$TMP/out")"
	# a mistake in the S3 settings does not stop an http(s) delta
	read_s3 "ftp://127.0.0.1" "$e/bkt/deltas/ft%20a" 1
	AWS_SECRET_ACCESS_KEY= "$READ" list -e "$e" "s3://bkt/deltas" >"$TMP/out" 2>&1 &&
		fail "half a key pair listed"
	grep -q "^s3://bkt/deltas: AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not" \
		"$TMP/out" || fail "half a key pair: $(cat "$TMP/out")"
	echo "ok: missing delta, prefix and bucket; bad bucket, endpoint and credentials"
}

mount() {
	pairs
	s3rver_start "$TMP/s3" bkt
	local e=http://127.0.0.1:$S3_PORT m=$TMP/mnt fails total
	s3_put bkt "deltas/ft a/delta.sparse" "$TMP/delta1/delta.sparse"
	s3_put bkt "deltas/ft&b<c>/delta.sparse" "$TMP/delta2/delta.sparse"
	s3_put bkt "deltas/readme.txt" "$TMP/ft1/config.json"
	mount_fg s3://bkt/deltas/ "$m" -o endpoint="$e",cache_dir=
	[ "$(ls "$m" | tr '\n' '|')" = "ft a|ft&b<c>|" ] || fail "the prefix's folders: $(ls "$m")"
	same_sums "$TMP/ft1" "$m/ft a"
	same_sums "$TMP/ft2" "$m/ft&b<c>"
	fusermount3 -u "$m"
	echo "ok: a prefix mounted, one folder per delta, every sum right"

	proxy_start "$S3_PORT" --sigv4 S3RVER:S3RVER
	mount_fg "s3://bkt/deltas/ft a" "$m" -o endpoint="http://127.0.0.1:$PROXY_PORT",cache_dir=
	same_sums "$TMP/ft1" "$m"
	fusermount3 -u "$m"
	read -r fails total <<<"$(sig_stats)"
	[ "$fails" = 0 ] && [ "$total" -gt 1 ] || fail "signatures refused: $fails of $total"
	echo "ok: a delta mounted through the SigV4 check, $total requests"
	"$SPARSEFS" --info -o endpoint="$e",cache_dir= "s3://bkt/deltas/ft a" >"$TMP/info" 2>&1 ||
		fail "--info: $(cat "$TMP/info")"
	grep -q "s3://bkt/deltas/ft a" "$TMP/info" || fail "--info: $(head -5 "$TMP/info")"
	grep -q "S3RVER" "$TMP/info" && fail "--info shows a credential"
	echo "ok: --info of an s3 URL"
}

cmd=$1
shift
"$cmd" "$@"
