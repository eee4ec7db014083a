# SPDX-License-Identifier: Apache-2.0
# The servers the remote tests read from, all on loopback, each started by the test in its own
# folder under TMP and ended by its pid (in PIDS, so lib.sh's cleanup ends it also when the test
# fails). Sourced after lib.sh.
#
#   nginx_start ROOT        serves ROOT over HTTP and HTTPS (a self-signed certificate made
#                           here); sets NGINX_PORT, NGINX_TLS_PORT, NGINX_CA (the certificate,
#                           for -o cafile=), NGINX_LOG (its access log: one line a request,
#                           "METHOD URI STATUS range=RANGE sent=BYTES auth=yes|no
#                           ifmatch=yes|no": whether Authorization or If-Match came)
#   nginx_stop
#   nginx_resume            the stopped nginx again, on its ports, appending to its log
#   nginx_requests          how many requests NGINX_LOG holds
#   s3rver_start DIR BUCKET s3rver (npm, pinned in tests/npm, installed into BUILD/npm on first
#                           use) keeping its objects in DIR, with BUCKET made; sets S3_PORT
#   s3rver_stop
#   s3_put BUCKET KEY FILE  uploads FILE to the s3rver as KEY; s3_put_dir BUCKET PREFIX DIR
#                           uploads every file under DIR below PREFIX; s3_put_many BUCKET
#                           PREFIX N uploads N one-byte objects PREFIX0000... (over one
#                           connection: a thousand curl runs would take long)
#   proxy_start UPSTREAM_PORT [ARGS...]
#                           tests/fault_proxy.py in front of 127.0.0.1:UPSTREAM_PORT (more
#                           arguments go to it, e.g. --sigv4 KEY:SECRET); sets PROXY_PORT,
#                           PROXY_CTL (its control URL) and PROXY_LOG
#   proxy_ctl PATH          a control request (see fault_proxy.py), e.g.
#                           proxy_ctl "fault?kind=500&count=2"; prints the answer
#   proxy_stop
REMOTE_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# Ends PID (one of PIDS) and forgets it; SIGKILL after 5 s, so that a server that does not end
# cannot hang the test.
stop_pid() {
	local pid=$1 i
	kill "$pid" 2>/dev/null || true
	for _ in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -9 "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	for i in "${!PIDS[@]}"; do
		[ "${PIDS[$i]}" = "$pid" ] && unset "PIDS[$i]"
	done
	PIDS=("${PIDS[@]}")
}

# A loopback TCP port free now (the server that takes it may still lose a race: callers retry).
free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits (5 s at most) until URL answers with any HTTP status; extra arguments go to curl.
wait_http() {
	local url=$1 pid=$2
	shift 2
	for _ in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || return 1
		curl -s -o /dev/null --max-time 1 "$@" "$url" && return 0
		sleep 0.1
	done
	return 1
}

# ---- nginx ----
nginx_start() {
	local root=$1 dir try user=""
	dir=$(mktemp -d "$TMP/nginx.XXXXXX")
	mkdir -p "$dir/tmp"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
		-subj /CN=127.0.0.1 -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
		-keyout "$dir/key.pem" -out "$dir/cert.pem" 2>"$dir/openssl.err" ||
		fail "openssl req: $(cat "$dir/openssl.err")"
	NGINX_DIR=$dir
	NGINX_CA=$dir/cert.pem
	NGINX_LOG=$dir/access.log
	# Run as root, its workers would drop to nobody, who cannot read under the test's TMP.
	[ "$(id -u)" = 0 ] && user="user root root;"
	for try in 1 2 3 4 5; do
		NGINX_PORT=$(free_port)
		NGINX_TLS_PORT=$(free_port)
		cat >"$dir/nginx.conf" <<EOF
$user
daemon off;
worker_processes 2;
pid $dir/nginx.pid;
error_log $dir/error.log info;
events { worker_connections 512; }
http {
	types { application/json json; text/plain txt; }
	default_type application/octet-stream;
	map \$http_authorization \$auth_sent { "" no; default yes; }
	map \$http_if_match \$if_match_sent { "" no; default yes; }
	log_format tests '\$request_method \$request_uri \$status range=\$http_range sent=\$body_bytes_sent auth=\$auth_sent ifmatch=\$if_match_sent';
	access_log $NGINX_LOG tests;
	client_body_temp_path $dir/tmp/body;
	proxy_temp_path $dir/tmp/proxy;
	fastcgi_temp_path $dir/tmp/fastcgi;
	uwsgi_temp_path $dir/tmp/uwsgi;
	scgi_temp_path $dir/tmp/scgi;
	sendfile on;
	keepalive_requests 100000;
	server {
		listen 127.0.0.1:$NGINX_PORT;
		listen 127.0.0.1:$NGINX_TLS_PORT ssl;
		ssl_certificate $dir/cert.pem;
		ssl_certificate_key $dir/key.pem;
		root $root;
		autoindex on;
	}
}
EOF
		nginx -c "$dir/nginx.conf" -p "$dir" 2>>"$dir/error.log" &
		NGINX_PID=$!
		PIDS+=("$NGINX_PID")
		if wait_http "https://127.0.0.1:$NGINX_TLS_PORT/" "$NGINX_PID" --cacert "$NGINX_CA" &&
			wait_http "http://127.0.0.1:$NGINX_PORT/" "$NGINX_PID"; then
			# nginx logs a request after it has answered it: the two probes' lines must be
			# in before the log is emptied, or one lands in the first test's count.
			for _ in $(seq 50); do
				[ "$(nginx_requests)" -ge 2 ] && break
				sleep 0.1
			done
			: >"$NGINX_LOG"
			return 0
		fi
		stop_pid "$NGINX_PID"
		grep -q "Address already in use" "$dir/error.log" || break
	done
	fail "nginx did not start: $(tail -5 "$dir/error.log")"
}

nginx_stop() {
	stop_pid "$NGINX_PID"
}

nginx_resume() {
	nginx -c "$NGINX_DIR/nginx.conf" -p "$NGINX_DIR" 2>>"$NGINX_DIR/error.log" &
	NGINX_PID=$!
	PIDS+=("$NGINX_PID")
	wait_http "http://127.0.0.1:$NGINX_PORT/" "$NGINX_PID" ||
		fail "nginx did not start again: $(tail -5 "$NGINX_DIR/error.log")"
}

nginx_requests() {
	wc -l <"$NGINX_LOG"
}

# ---- s3rver ----
# The pinned tools of tests/npm, installed into BUILD/npm by `npm ci` once (under a lock: tests
# run in parallel), again only when the lock file changes; offline after that.
npm_tools() {
	local dst=$BUILD/npm
	mkdir -p "$dst"
	(
		flock 9
		if ! cmp -s "$REMOTE_HERE/npm/package-lock.json" "$dst/package-lock.json" ||
			[ ! -x "$dst/node_modules/.bin/s3rver" ]; then
			cp "$REMOTE_HERE/npm/package.json" "$REMOTE_HERE/npm/package-lock.json" "$dst/"
			npm ci --prefix "$dst" --prefer-offline --no-audit --no-fund --ignore-scripts >"$dst/npm.log" 2>&1 || {
				rm -f "$dst/package-lock.json"
				echo "npm ci in $dst failed: $(tail -5 "$dst/npm.log")" >&2
				exit 1
			}
		fi
	) 9>"$dst/.lock" || fail "cannot install s3rver"
	S3RVER=$dst/node_modules/.bin/s3rver
}

s3rver_start() {
	local data=$1 bucket=$2 log
	npm_tools
	log=$(mktemp "$TMP/s3rver.XXXXXX")
	mkdir -p "$data"
	# Port 0: it takes a free one and says which. Its continuation tokens use a cipher that
	# Node's OpenSSL 3 keeps in the legacy provider: without it, a second page is a 500.
	NODE_OPTIONS=--openssl-legacy-provider "$S3RVER" -d "$data" -a 127.0.0.1 -p 0 --configure-bucket "$bucket" >"$log" 2>&1 &
	S3_PID=$!
	PIDS+=("$S3_PID")
	for _ in $(seq 100); do
		S3_PORT=$(sed -n 's/^S3rver listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$log")
		[ -n "$S3_PORT" ] && wait_http "http://127.0.0.1:$S3_PORT/" "$S3_PID" && return 0
		kill -0 "$S3_PID" 2>/dev/null || break
		sleep 0.1
	done
	fail "s3rver did not start: $(tail -5 "$log")"
}

s3rver_stop() {
	stop_pid "$S3_PID"
}

s3_put() {
	local bucket=$1 key=$2 file=$3
	key=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$key")
	curl -sf -o /dev/null -X PUT --data-binary "@$file" "http://127.0.0.1:$S3_PORT/$bucket/$key" ||
		fail "upload of $file to s3rver $bucket/$key"
}

s3_put_many() {
	python3 - "$S3_PORT" "$@" <<'EOF' || fail "upload of $3 objects to s3rver $1/$2"
import http.client, sys, urllib.parse
port, bucket, prefix, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
for i in range(n):
    c.request("PUT", "/%s/%s" % (bucket, urllib.parse.quote("%s%04d" % (prefix, i))), body=b"x")
    r = c.getresponse()
    r.read()
    assert r.status == 200, r.status
EOF
}

s3_put_dir() {
	local bucket=$1 prefix=$2 dir=$3 f
	while IFS= read -r -d '' f; do
		s3_put "$bucket" "$prefix${f#./}" "$dir/$f"
	done < <(cd "$dir" && find . -type f -print0)
}

# ---- the fault proxy ----
proxy_start() {
	local upstream=$1 dir
	shift
	dir=$(mktemp -d "$TMP/proxy.XXXXXX")
	PROXY_LOG=$dir/requests.log
	python3 "$REMOTE_HERE/fault_proxy.py" --upstream "127.0.0.1:$upstream" \
		--port-file "$dir/port" --log "$PROXY_LOG" "$@" 2>"$dir/stderr" &
	PROXY_PID=$!
	PIDS+=("$PROXY_PID")
	for _ in $(seq 50); do
		if [ -s "$dir/port" ]; then
			PROXY_PORT=$(cat "$dir/port")
			PROXY_CTL=http://127.0.0.1:$PROXY_PORT/_proxy
			return 0
		fi
		kill -0 "$PROXY_PID" 2>/dev/null || break
		sleep 0.1
	done
	fail "fault_proxy.py did not start: $(tail -5 "$dir/stderr")"
}

proxy_ctl() {
	curl -sf --max-time 5 "$PROXY_CTL/$1" || fail "fault proxy control $1"
}

proxy_stop() {
	stop_pid "$PROXY_PID"
}
