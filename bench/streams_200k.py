#!/usr/bin/env python3
"""200,000 clock streams on this machine: the first step of issue 14 (where do they stop, and why).

Starts P fastsse processes (memory engine, one clock location, an event every 10 s, 15 s heartbeats)
behind one nginx (W workers, K listening ports with reuseport, the processes as one least_conn
upstream), then K load clients (bench/sse-load), each on its own port with 8 source addresses
(127.0.0.1-8), so that no process passes the 20,000-descriptor limit and no source runs out of
ports. Every 5 s it samples what tells where streams stop: nginx's stub_status, /proc/net/sockstat,
the accept queues of the listening sockets (ss: Recv-Q), the processes' descriptors and RSS, and the
kernel's slab. At the end it prints streams held and failed (with the reasons), the time to open
them, memory per stream (fastsse, nginx, the kernel's slab: both ends' sockets), tick latency, what
grew during the hold, and nginx's complaints.

Run by hand (root, on a quiet machine; it takes all of it for a few minutes):
    bench/streams_200k.py [--streams 200000] [--workers 32] [--processes 12] [--ports 12]
Binaries from ./build (cmake --build build first). Figures only: nothing is asserted.
"""
import argparse
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE_PORT = 23000


def read(path):
    with open(path) as f:
        return f.read()


def rss_kb(pid):
    try:
        return int(re.search(r"VmRSS:\s+(\d+)", read(f"/proc/{pid}/status")).group(1))
    except (OSError, AttributeError):
        return 0


def nginx_conf(work, a):
    servers = "\n".join(f"        server unix:{work}/fastsse-{i}.sock;" for i in range(a.processes))
    listens = "\n".join(f"        listen 127.0.0.1:{BASE_PORT + k} reuseport backlog=4096;" for k in range(a.ports))
    return f"""
worker_processes {a.workers};
worker_rlimit_nofile 20000;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log info;
events {{ worker_connections {a.worker_connections}; }}
http {{
    access_log off;
    client_body_temp_path {work}/tmp;
    fastcgi_temp_path {work}/tmp;
    upstream fastsse {{
        least_conn;
        zone fastsse 256k;
{servers}
    }}
    server {{
{listens}
        listen 127.0.0.1:{BASE_PORT + 100};
        location = /events {{
            fastcgi_pass fastsse;
            fastcgi_param REQUEST_METHOD $request_method;
            fastcgi_param REQUEST_URI $request_uri;
            fastcgi_param QUERY_STRING $query_string;
            fastcgi_param FASTSSE_PRODUCER clock;
            fastcgi_param FASTSSE_INTERVAL {a.interval_ms};
            fastcgi_param FASTSSE_FORMAT unix_us;
            fastcgi_buffering off;
            fastcgi_read_timeout 1h;
        }}
        location = /status {{ stub_status; }}
    }}
}}
"""


class Run:
    def __init__(self, a):
        self.a = a
        self.work = tempfile.mkdtemp(prefix="fastsse-200k.")
        os.makedirs(f"{self.work}/tmp")
        self.procs = []

    def start(self, argv, name, stdout=None):
        err = open(f"{self.work}/{name}.log", "wb")
        p = subprocess.Popen(argv, stdout=stdout or err, stderr=err, start_new_session=True)
        self.procs.append(p)
        return p

    def sample(self, t0):
        status = urllib.request.urlopen(f"http://127.0.0.1:{BASE_PORT + 100}/status", timeout=10).read().decode()
        tcp = re.search(r"TCP: inuse (\d+) orphan (\d+) tw (\d+) alloc (\d+) mem (\d+)", read("/proc/net/sockstat"))
        listen_queues = [int(line.split()[1]) for line in
                         subprocess.run(["ss", "-ltnH"], capture_output=True, text=True).stdout.splitlines()
                         if re.search(rf"127\.0\.0\.1:{BASE_PORT // 1000}\d\d\d\b", line.split()[3])]
        unix_queues = [int(line.split()[2]) for line in
                       subprocess.run(["ss", "-lxH"], capture_output=True, text=True).stdout.splitlines()
                       if f"{self.work}/fastsse-" in line]
        workers = [int(x) for x in read(f"/proc/{self.nginx.pid}/task/{self.nginx.pid}/children").split()]
        fds = [len(os.listdir(f"/proc/{p.pid}/fd")) for p in self.fastsse]
        accepts, handled, _ = re.search(r"\n\s*(\d+) (\d+) (\d+)", status).groups()
        return {
            "t": round(time.time() - t0, 1),
            "nginx_active": int(re.search(r"Active connections: (\d+)", status).group(1)) - 1,  # this request
            "nginx_accepts": int(accepts), "nginx_handled": int(handled),
            "tcp_inuse": int(tcp.group(1)), "tcp_mem_pages": int(tcp.group(5)),
            "listen_queue_max": max(listen_queues or [0]), "unix_queue_max": max(unix_queues or [0]),
            "fastsse_fds": sum(fds), "fastsse_fds_max": max(fds),
            "worker_fds_max": max(len(os.listdir(f"/proc/{w}/fd")) for w in workers),
            "fastsse_rss_kb": sum(rss_kb(p.pid) for p in self.fastsse),
            "nginx_rss_kb": sum(rss_kb(w) for w in workers) + rss_kb(self.nginx.pid),
            "slab_kb": int(re.search(r"Slab:\s+(\d+)", read("/proc/meminfo")).group(1)),
        }

    def go(self):
        a = self.a
        binary, load = f"{a.build}/fastsse", f"{a.build}/bench/sse-load"
        self.fastsse = [self.start([binary, "--listen", f"unix:{self.work}/fastsse-{i}.sock", "--socket-mode", "0666",
                                    "--max-streams", "19900", "--log-level", "warn"], f"fastsse-{i}")
                        for i in range(a.processes)]
        time.sleep(1)
        with open(f"{self.work}/nginx.conf", "w") as f:
            f.write(nginx_conf(self.work, a))
        self.nginx = self.start(["/usr/sbin/nginx", "-c", f"{self.work}/nginx.conf", "-g", "daemon off; user root;"],
                                "nginx")
        time.sleep(1)
        baseline = self.sample(time.time())
        per_client = a.streams // a.ports
        t0 = time.time()
        clients = [self.start([load, "--host", "127.0.0.1", "--port", str(BASE_PORT + k), "--path", "/events",
                               "--streams", str(per_client), "--ramp", str(max(1, a.ramp // a.ports)),
                               "--hold", str(a.hold), "--settle", "30", "--sources", "8", "--connect-timeout", "120",
                               "--latency-from", "unix_us", "--processes", "1"],
                              f"load-{k}", stdout=open(f"{self.work}/load-{k}.json", "wb"))
                   for k in range(a.ports)]
        samples = []
        while any(c.poll() is None for c in clients):
            time.sleep(5)
            try:
                samples.append(self.sample(t0))
                s = samples[-1]
                print(f"[{s['t']:6.1f} s] nginx {s['nginx_active']:,} connections, fastsse {s['fastsse_fds']:,} "
                      f"descriptors, accept queue max {s['listen_queue_max']}", file=sys.stderr, flush=True)
            except Exception as e:  # a sample may time out while the machine is saturated
                print(f"sample failed: {e!r}", file=sys.stderr, flush=True)
        return baseline, samples, per_client * a.ports

    def report(self, baseline, samples, asked):
        held = failed = events = 0
        failures, latency, ramped = {}, [], []
        for path in glob.glob(f"{self.work}/load-*.json"):
            for line in open(path):
                try:
                    d = json.loads(line)
                except ValueError:
                    continue
                if d.get("phase") == "ramped":
                    ramped.append(d["t"])
                if d.get("phase") == "window_end":
                    held += d["established"]
                    failed += d["failed"]
                    events += d["events"]
                    for reason, n in d["failures"].items():
                        failures[reason] = failures.get(reason, 0) + n
                    latency.append(d["latency_us"])
        full = [s for s in samples if s["nginx_active"] >= held] or samples[-1:]
        end = full[-1]
        n = max(held, 1)
        complaints = [line for line in read(f"{self.work}/nginx-error.log").splitlines()
                      if re.search(r"\[(warn|error|crit|alert|emerg)\]", line)]
        out = {
            "streams_asked": asked, "held": held, "failed": failed, "failures": failures,
            "seconds_to_open_all": full[0]["t"] if full else None,
            "events_in_window": events,
            "kb_per_stream": {
                "fastsse_rss": round((end["fastsse_rss_kb"] - baseline["fastsse_rss_kb"]) / n, 2),
                "nginx_rss": round((end["nginx_rss_kb"] - baseline["nginx_rss_kb"]) / n, 2),
                "kernel_slab_both_ends": round((end["slab_kb"] - baseline["slab_kb"]) / n, 2),
            },
            "tick_latency_ms": {
                "p50_max_of_clients": round(max(x["p50"] for x in latency) / 1000) if latency else None,
                "p99_max_of_clients": round(max(x["p99"] for x in latency) / 1000) if latency else None,
                "max": round(max(x["max"] for x in latency) / 1000) if latency else None,
            },
            "grew_while_held": {k: end[k] - full[0][k] for k in ("fastsse_rss_kb", "nginx_rss_kb", "fastsse_fds")},
            "peaks": {k: max(s[k] for s in samples) for k in ("listen_queue_max", "unix_queue_max", "worker_fds_max",
                                                               "fastsse_fds_max", "tcp_mem_pages")},
            "nginx_complaints": len(complaints), "nginx_complaint_sample": complaints[:3],
            "work_dir": self.work if self.a.keep else "(removed; --keep keeps it)",
        }
        print(json.dumps(out, indent=2))

    def stop(self):
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.time() + 5
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=200000)
    ap.add_argument("--processes", type=int, default=12, help="fastsse processes")
    ap.add_argument("--workers", type=int, default=32, help="nginx workers")
    ap.add_argument("--worker-connections", type=int, default=19000)
    ap.add_argument("--ports", type=int, default=12, help="nginx ports, one load client each")
    ap.add_argument("--ramp", type=int, default=2400, help="new streams per second, all clients together")
    ap.add_argument("--hold", type=int, default=120, help="seconds held after ramp and settle")
    ap.add_argument("--interval-ms", type=int, default=10000, help="the clock's interval")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--keep", action="store_true", help="keep the work folder (logs, configs)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: nginx's workers, and /proc/slabinfo-level readings")
    run = Run(a)
    try:
        baseline, samples, asked = run.go()
    finally:
        run.stop()
    run.report(baseline, samples, asked)
    if not a.keep:
        shutil.rmtree(run.work)


if __name__ == "__main__":
    main()
