#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A loopback HTTP/1.1 proxy in front of one upstream (nginx or s3rver) that injects the faults
a remote mount must survive, set at run time through its control URL, /_proxy/...:

  fault?kind=K[&count=N|&every=E|&prob=F][&after=M][&match=S][&secs=T]
      adds a fault for the next N requests (default 1) whose path contains S, after letting M
      of them through, or for every E-th of them from then on, or for a fraction F of them
      (seeded: --seed). K is one of:
        500, 503, 408    that status, no body from upstream
        429              429 with Retry-After: T (default 1)
        reset            the headers and half the body, then a TCP reset
        short            the headers (the right Content-Length) and half the body, then close
        stall            nothing for T seconds (default 5), then the answer
        change           from now on (count and prob ignored) the object is replaced: other
                         bytes of the same size and another ETag; If-Match with the old ETag
                         answers 412, as nginx does
        redirect         302 to http://localhost:PORT/same path (this proxy under another host
                         name), which serves it without faults and records whether an
                         Authorization came
  clear              removes every fault (a changed object stays changed)
  stats              JSON: requests forwarded, by status, faults injected, sigv4 failures,
                     requests at the redirect target and how many carried Authorization

With --sigv4 KEY:SECRET[:REGION] every request must carry an AWS SigV4 signature (header form)
made with that key, which is recomputed here; a mismatch or none answers 403. Each request is
one line in --log: SECONDS METHOD PATH STATUS range=RANGE fault=KIND host=HOST auth=yes|no
ifmatch=yes|no (seconds since the proxy started; whether Authorization and If-Match came, never
their values).
"""
import argparse
import hashlib
import hmac
import http.client
import http.server
import json
import os
import random
import socket
import struct
import sys
import threading
import time
import urllib.parse

HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
       "upgrade", "proxy-authorization", "proxy-authenticate"}


class Fault:
    def __init__(self, q):
        self.kind = q.get("kind", "500")
        self.count = int(q.get("count", 1))
        self.prob = float(q["prob"]) if "prob" in q else None
        self.every = int(q["every"]) if "every" in q else None
        self.seen = 0
        self.after = int(q.get("after", 0))
        self.match = q.get("match", "")
        self.secs = float(q.get("secs", 1 if self.kind == "429" else 5))


class State:
    def __init__(self, seed):
        self.lock = threading.Lock()
        self.faults = []
        self.changed = []  # path substrings of replaced objects
        self.rand = random.Random(seed)
        self.stats = {"requests": 0, "status": {}, "faults": {}, "sigv4_failed": 0,
                      "redirected": 0, "target_requests": 0, "target_auth": 0}

    def take(self, path):
        """The fault this request gets, if any, counting it down."""
        with self.lock:
            for f in self.faults:
                if f.match not in path:
                    continue
                if f.after > 0:
                    f.after -= 1
                    continue
                if f.every:
                    f.seen += 1
                    if f.seen % f.every:
                        continue
                elif f.prob is not None:
                    if self.rand.random() >= f.prob:
                        continue
                elif f.count <= 0:
                    continue
                else:
                    f.count -= 1
                self.stats["faults"][f.kind] = self.stats["faults"].get(f.kind, 0) + 1
                return f
            return None

    def count(self, key, sub=None):
        with self.lock:
            if sub is None:
                self.stats[key] += 1
            else:
                self.stats[key][sub] = self.stats[key].get(sub, 0) + 1


def sigv4_check(method, raw_path, headers, key, secret, region):
    """None if the request's SigV4 Authorization header is right for key/secret, else why."""
    auth = headers.get("authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return "not signed"
    try:
        parts = dict(p.strip().split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 "):].split(","))
    except ValueError:
        return "malformed Authorization"
    cred = parts.get("Credential", "").split("/")
    if len(cred) != 5 or cred[0] != key or cred[2] != region or cred[4] != "aws4_request":
        return "credential scope " + "/".join(cred[1:])
    signed = parts.get("SignedHeaders", "").split(";")
    if "host" not in signed or "x-amz-date" not in headers:
        return "host or x-amz-date not signed"
    path, _, query = raw_path.partition("?")
    pairs = []
    for item in filter(None, query.split("&")):
        k, _, v = item.partition("=")
        enc = lambda s: urllib.parse.quote(urllib.parse.unquote(s), safe="-_.~")
        pairs.append((enc(k), enc(v)))
    canonical = "\n".join([
        method, path, "&".join(f"{k}={v}" for k, v in sorted(pairs)),
        "".join(f"{h}:{' '.join(headers.get(h, '').split())}\n" for h in signed),
        ";".join(signed),
        headers.get("x-amz-content-sha256", hashlib.sha256(b"").hexdigest())])
    scope = "/".join(cred[1:])
    to_sign = "\n".join(["AWS4-HMAC-SHA256", headers["x-amz-date"], scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    k = ("AWS4" + secret).encode()
    for part in cred[1:]:
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    want = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    return None if hmac.compare_digest(want, parts.get("Signature", "")) else "signature mismatch"


# The AWS SigV4 test suite's example key and some of its GET cases (path, signature): the
# checker must accept these signatures before it can be trusted to reject others.
AWS_SUITE_KEY = ("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
AWS_SUITE = [
    ("/", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
    ("/?Param2=value2&Param1=value1",
     "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
    ("/?Param1=value2&Param1=value1",
     "5772eed61e12b33fae39ee5e7012498b51d56abc0abb7c60486157bd471c4694"),
    ("/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
     "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f"),
]


def selftest():
    key, secret = AWS_SUITE_KEY
    for path, sig in AWS_SUITE:
        headers = {"host": "example.amazonaws.com", "x-amz-date": "20150830T123600Z",
                   "authorization": f"AWS4-HMAC-SHA256 Credential={key}/20150830/us-east-1/"
                   f"service/aws4_request, SignedHeaders=host;x-amz-date, Signature={sig}"}
        assert sigv4_check("GET", path, headers, key, secret, "us-east-1") is None, path
        assert sigv4_check("GET", path, headers, key, secret + "x", "us-east-1"), path
    print(f"ok: sigv4 checker: {len(AWS_SUITE)} cases of the AWS test suite")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fault_proxy"

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.serve()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_GET

    def serve(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
        if self.path.startswith("/_proxy/"):
            return self.control()
        st, opts = self.server.state, self.server.opts
        host = self.headers.get("Host", "")
        hdrs = {k.lower(): v for k, v in self.headers.items()}
        if host.startswith("localhost"):
            st.count("target_requests")
            if "authorization" in hdrs:
                st.count("target_auth")
        if opts.sigv4 and self.sigv4_fails(hdrs):
            return
        # The redirect target serves plainly: it stands for another host.
        fault = None if host.startswith("localhost") else st.take(self.path)
        kind = fault.kind if fault else "-"
        if kind in ("500", "503", "408"):
            return self.answer(int(kind), kind)
        if kind == "429":
            return self.answer(429, kind, {"Retry-After": str(int(fault.secs))})
        if kind == "redirect":
            st.count("redirected")
            loc = f"http://localhost:{self.server.server_address[1]}{self.path}"
            return self.answer(302, kind, {"Location": loc})
        if kind == "stall":
            time.sleep(fault.secs)
        self.forward(body, hdrs, fault)

    def sigv4_fails(self, hdrs):
        key, secret, *region = self.server.opts.sigv4.split(":")
        why = sigv4_check(self.command, self.path, hdrs, key, secret,
                          region[0] if region else "us-east-1")
        if why is None:
            return False
        self.server.state.count("sigv4_failed")
        self.answer(403, "sigv4", body=(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SignatureDoesNotMatch</Code>"
            f"<Message>{why}</Message></Error>").encode())
        return True

    def forward(self, body, hdrs, fault):
        st = self.server.state
        kind = fault.kind if fault else "-"
        changed = any(m in self.path for m in st.changed)
        out = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        if changed:
            # The upstream keeps the old object: ask for it unconditionally, then answer as
            # the replaced object would.
            out = {k: v for k, v in out.items() if k.lower() not in ("if-match", "if-range")}
            kind = "change"
        up = http.client.HTTPConnection(*self.server.upstream, timeout=30)
        try:
            up.request(self.command, self.path, body=body or None, headers=out)
            r = up.getresponse()
            data = r.read() if self.command != "HEAD" else b""
        except OSError as e:
            return self.answer(502, "upstream", body=str(e).encode())
        finally:
            up.close()
        rh = [(k, v) for k, v in r.getheaders() if k.lower() not in HOP]
        status = r.status
        if changed:
            etag = r.getheader("ETag", "")
            new_etag = etag[:-1] + '-changed"' if etag.endswith('"') else etag + "-changed"
            if_match = hdrs.get("if-match")
            if if_match is not None and if_match.strip() not in ("*", new_etag):
                return self.answer(412, kind)
            rh = [(k, new_etag if k.lower() == "etag" else v) for k, v in rh]
            if 200 <= status < 300:
                data = bytes(b ^ 0x5A for b in data)
        self.send_response(status)
        for k, v in rh:
            if k.lower() != "content-length":
                self.send_header(k, v)
        length = int(r.getheader("Content-Length", len(data))) if self.command == "HEAD" \
            else len(data)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self.log(status, kind)
        if kind in ("reset", "short") and len(data) > 1:
            self.wfile.write(data[:len(data) // 2])
            self.wfile.flush()
            if kind == "reset":
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return
        self.wfile.write(data)

    def answer(self, status, kind, extra=None, body=b""):
        self.send_response(status)
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.log(status, kind)

    def log(self, status, kind):
        st = self.server.state
        st.count("requests")
        st.count("status", str(status))
        has = lambda h: "yes" if h in self.headers else "no"
        line = (f"{time.monotonic() - self.server.started:.3f} {self.command} {self.path} {status} "
                f"range={self.headers.get('Range', '-')} fault={kind} "
                f"host={self.headers.get('Host', '-')} auth={has('Authorization')} "
                f"ifmatch={has('If-Match')}\n")
        with st.lock, open(self.server.opts.log, "a") as f:
            f.write(line)

    def control(self):
        st = self.server.state
        what, _, query = self.path[len("/_proxy/"):].partition("?")
        q = dict(urllib.parse.parse_qsl(query))
        if what == "fault":
            f = Fault(q)
            with st.lock:
                if f.kind == "change":
                    st.changed.append(f.match)
                else:
                    st.faults.append(f)
        elif what == "clear":
            with st.lock:
                st.faults.clear()
        elif what != "stats":
            body = f"unknown control {what}\n".encode()
            self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        with st.lock:
            body = (json.dumps(st.stats, sort_keys=True) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that gave up (a timeout, a stall it would not wait out) is no error here.
        if not isinstance(sys.exc_info()[1], (ConnectionError, OSError, ValueError)):
            super().handle_error(request, client_address)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--upstream", help="HOST:PORT")
    ap.add_argument("--selftest", action="store_true",
                    help="check the SigV4 checker against the AWS test suite's cases, and exit")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", help="where the port taken is written once listening")
    ap.add_argument("--log", default=os.devnull)
    ap.add_argument("--sigv4", help="KEY:SECRET[:REGION] that every request must be signed with")
    ap.add_argument("--seed", type=int, default=14)
    opts = ap.parse_args()
    if opts.selftest:
        return selftest()
    if not opts.upstream:
        ap.error("--upstream is required")
    host, port = opts.upstream.rsplit(":", 1)
    srv = Server(("127.0.0.1", opts.port), Handler)
    srv.upstream = (host, int(port))
    srv.opts = opts
    srv.state = State(opts.seed)
    srv.started = time.monotonic()
    if opts.port_file:
        tmp = opts.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{srv.server_address[1]}\n")
        os.rename(tmp, opts.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
