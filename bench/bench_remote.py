#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A remote delta on loopback: an nginx of its own serves a delta folder, and sparsefs mounts
it by URL. Prints the figures and the issue's goals as ratios; asserts nothing. The machines are
shared and noisy: compare within one run.

usage: bench/bench_remote.py BUILD_DIR [--layers N] [--width N] [--work DIR] [--rounds N]

The pair is generated (sparse-genmodel demo, 12 layers of width 1536 by default: about 700 MB
of bf16) into WORK (default BUILD_DIR/remote-bench) and reused. Rows, each round:
- curl: `curl -o /dev/null` of the delta's delta.sparse (the ceiling of a download);
- cold: a fresh mount of the URL with an empty chunk cache, every file read with cat;
- warm: a fresh mount of the URL over the chunk cache the cold row filled (opening asks the
  server once for the object's first block, to pin its version);
- local: a fresh mount of the same delta folder on the local disk.
Besides: the mount time of each mount, and the bytes nginx sent for the cold and the warm read
(from its access log), the cold over the delta's size and over the fine-tune's. The delta folder, the base and
the cache files are in the page cache for every row.
"""
import os, shutil, socket, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_speed import (Mount, files_of, generated_pair, pair_parser, seq_mbps,  # noqa: E402
                         size_of, warm)

NGINX_CONF = """daemon off;
user root;
worker_processes 2;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 256; }}
http {{
    log_format bytes '$status $body_bytes_sent';
    access_log {dir}/access.log bytes;
    sendfile on;
    client_body_temp_path {dir}/tmp; proxy_temp_path {dir}/tmp; fastcgi_temp_path {dir}/tmp;
    uwsgi_temp_path {dir}/tmp; scgi_temp_path {dir}/tmp;
    server {{ listen 127.0.0.1:{port}; root {root}; }}
}}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Nginx:
    """nginx serving root on a loopback port, in the foreground, ended by its pid."""

    def __init__(self, root, work):
        self.dir = tempfile.mkdtemp(dir=work, prefix="nginx.")
        os.mkdir(os.path.join(self.dir, "tmp"))
        self.port = free_port()
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(dir=self.dir, port=self.port, root=root))
        self.proc = subprocess.Popen(["nginx", "-c", conf, "-p", self.dir],
                                     stderr=subprocess.DEVNULL)
        for _ in range(500):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.1).close()
                return
            except OSError:
                time.sleep(0.01)
        self.stop()
        raise SystemExit("bench_remote: nginx did not start")

    def sent(self):
        """Bytes sent so far, by the access log."""
        with open(os.path.join(self.dir, "access.log")) as f:
            return sum(int(line.split()[1]) for line in f if line.strip())

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


def timed_mount(cmd, mnt):
    m = Mount(cmd, mnt)
    return m, m.ms


def main():
    a = pair_parser(__doc__).parse_args()
    build = os.path.abspath(a.build)
    work = os.path.abspath(a.work or os.path.join(build, "remote-bench"))
    root = os.path.join(work, "served")
    delta = os.path.join(root, "ft")
    base, ft = generated_pair(build, work, a, delta)
    sparsefs = os.path.join(build, "sparsefs")
    dbytes, ftbytes = size_of(delta), size_of(ft)
    mnt = tempfile.mkdtemp(dir=work, prefix="mnt.")
    rows = {k: [] for k in ("curl", "cold", "warm", "local", "t_cold", "t_warm", "t_local",
                            "sent_cold", "sent_warm")}
    try:
        for r in range(a.rounds):
            cache = tempfile.mkdtemp(dir=work, prefix="cache.")
            warm([delta, base])
            ng = Nginx(root, work)
            url = f"http://127.0.0.1:{ng.port}/ft"
            try:
                t = time.perf_counter()
                subprocess.run(["curl", "-sf", "-o", "/dev/null", url + "/delta.sparse"],
                               check=True)
                rows["curl"].append(dbytes / (time.perf_counter() - t) / 1e6)
                opts = ["-f", "-o", f"base={base},cache_dir={cache}", url]
                for row in ("cold", "warm"):
                    before = ng.sent()
                    if row == "warm":
                        warm([cache])
                    m, ms = timed_mount([sparsefs] + opts, mnt)
                    try:
                        rows[row].append(seq_mbps(mnt))
                    finally:
                        m.close()
                    rows["t_" + row].append(ms)
                    rows["sent_" + row].append(ng.sent() - before)
            finally:
                ng.stop()
            m, ms = timed_mount([sparsefs, "-f", "-o", f"base={base}", delta], mnt)
            try:
                rows["local"].append(seq_mbps(mnt))
            finally:
                m.close()
            rows["t_local"].append(ms)
            shutil.rmtree(cache)
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in rows.items()),
                  flush=True)
    finally:
        os.rmdir(mnt)
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"\npair: {a.layers} layers x {a.width}, fine-tune {ftbytes / 1e6:.0f} MB, "
          f"delta {dbytes / 1e6:.0f} MB; medians of {a.rounds} rounds")
    print(f"{'row':<8}{'MB/s':>8}{'mount ms':>10}")
    print(f"{'curl':<8}{med['curl']:>8.0f}{'':>10}")
    for k in ("cold", "warm", "local"):
        print(f"{k:<8}{med[k]:>8.0f}{med['t_' + k]:>10.1f}")
    cold_delta = med["cold"] * dbytes / ftbytes
    print(f"\ncold read, in delta bytes per second, over curl's: {cold_delta / med['curl']:.2f}"
          f" (goal >= 0.8)")
    print(f"warm over local: {med['warm'] / med['local']:.2f} (goal >= 0.9)")
    print(f"bytes fetched, cold, over the delta: {med['sent_cold'] / dbytes:.3f} (goal <= 1.05);"
          f" over the fine-tune: {med['sent_cold'] / ftbytes:.3f}; warm: {med['sent_warm']:.0f}"
          f" bytes")


if __name__ == "__main__":
    main()
