#!/usr/bin/env python3
"""200,000 streams on this machine, fastsse's hub beside nchan's and Pushpin's (issue 14).

One nginx (W workers, K listening ports with reuseport) in front of the system under test, K load
clients (bench/sse-load, one a port, 8 source addresses 127.0.0.1-8 each) so that no process passes
the 20,000-descriptor limit and no source runs out of ports. Systems (--systems, in this order):

  fastsse:  P fastsse processes on one redis-server of the run's own (--engine redis://), the hub
            location anonymous for subscribers (FASTSSE_ANONYMOUS 1), 15 s heartbeats, the processes
            one least_conn upstream over unix sockets. Publishes: POST through nginx, with a token.
  nchan:    Debian's libnginx-mod-nchan in the same nginx: nchan_subscriber eventsource, a comment
            ping every 15 s (nchan_eventsource_ping_interval), its memory store (shared by the
            workers: one machine needs no Redis). Publishes: POST to nchan_publisher.
  pushpin:  P Pushpin instances (Debian's pushpin: condure, zurl, pushpin-proxy, pushpin-handler
            each), one upstream behind nginx (proxy_pass, unbuffered); the origin is a location of
            the same nginx that answers GRIP (Grip-Hold: stream, Grip-Channel, Grip-Keep-Alive every
            15 s). One instance's condure holds every client connection in one process, so one
            instance stops below 20,000 here; P of them as fastsse has P processes. A publish goes to
            every instance's HTTP control port (POST /publish/): Pushpin's own way to scale out.
            message_rate and message_hwm are raised from 2,500/s and 25,000 (a broadcast to 17,000
            subscribers would wait 7 s at the default rate): see --pushpin-message-rate.
  clock:    the first measurement: fastsse's clock producer, an event every --interval-ms, no hub.

For each --streams count and each system: ramp all the streams, settle 30 s, then a quiet stretch
(--quiet s: heartbeats only, for CPU per heartbeat round, less what each part uses with no stream,
read for --idle s before the ramp), then --publishes updates --publish-every s
apart, each carrying the time it was sent (µs) as its data. Every 5 s it samples nginx's stub_status,
/proc/net/sockstat, the accept queues (ss), the descriptors, RSS and PSS of each part and the slab.

Prints one JSON document a run and appends it to OUT/results.json: streams held and failed (with the
reasons), the time to open them, memory per stream for the system, nginx, Redis, the kernel (slab
and TCP buffer pages, both ends), CPU per heartbeat round and per fan-out (per 1,000 deliveries),
publish to last delivery p50/p99/max, every delivery's p50/p99, and what grew over the publishes.
--plot writes OUT/streams_200k.png (gnuplot) from OUT/results.json: memory and fan-out p99 against
streams held, one line a system.

Run by hand, as root, on a quiet machine (it takes all of it):
    bench/streams_200k.py --streams 200000 --systems fastsse,nchan,pushpin
    bench/streams_200k.py --streams 10000,50000,100000 --publishes 5 --publish-every 20 --quiet 30
    bench/streams_200k.py --plot
Binaries from ./build (cmake --build build first). Figures only: nothing is asserted.
"""
import argparse
import concurrent.futures
import glob
import importlib.machinery
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from urllib.parse import quote, urlencode

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TOPIC = "https://example.com/bench/all"
NCHAN_MODULE = "/usr/lib/nginx/modules/ngx_nchan_module.so"


def load_bench(name):
    """bench/<name> as a module (it has no .py suffix)."""
    loader = importlib.machinery.SourceFileLoader(f"bench_{name}", os.path.join(HERE, name))
    spec = importlib.util.spec_from_loader(f"bench_{name}", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


hub = load_bench("hub")  # its publisher token; through it bench/compare's /proc readings
cmp = hub.cmp


def read(path):
    with open(path) as f:
        return f.read()


class Ports:
    """Free loopback ports for one run, held open together while chosen so that none repeats: nginx's
    listening ports (one a load client), its control port (stub_status, the publishers' locations),
    Pushpin's origin, Redis, and each Pushpin instance's HTTP port."""

    def __init__(self, a):
        held = []
        for _ in range(a.ports + 3 + a.processes):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            held.append(s)
        numbers = [s.getsockname()[1] for s in held]
        for s in held:
            s.close()
        self.listen, numbers = numbers[:a.ports], numbers[a.ports:]
        self.control, self.origin, self.redis, *self.pushpin = numbers


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def pct(values, p):
    return cmp.pct(values, p) if values else None


class System:
    """What one run puts behind nginx: its processes, its nginx configuration, its publish."""
    name = ""
    sub_path = "/hub"
    server_label = None  # its own processes' name in the figures (None: it lives inside nginx)

    def __init__(self, run):
        self.run, self.a, self.work = run, run.a, run.work
        self.procs = []  # the system's own (the figures' "server"), not Redis

    def start(self):
        pass

    def nginx_main(self):
        return ""

    def nginx_http(self):
        return ""

    def locations(self):
        return ""

    def publish(self, stamp_us):
        """Sends one update; returns the HTTP statuses."""
        return []

    def server_pids(self):
        return [pid for p in self.procs for pid in cmp.tree(p.pid)]

class FastsseProcesses(System):
    """fastsse's processes (--processes), one least_conn upstream of nginx over unix sockets, and a
    location of nginx/fastsse_params as shipped with the producer's FASTSSE_* params."""
    server_label = "fastsse"

    def nginx_http(self):
        servers = "\n".join(f"        server unix:{self.work}/fastsse-{i}.sock;" for i in range(self.a.processes))
        return f"""
    upstream fastsse {{
        least_conn;
        zone fastsse 256k;
{servers}
    }}"""

    def start_fastsse(self, extra):
        for i in range(self.a.processes):
            self.procs.append(self.run.start(
                [f"{self.a.build}/fastsse", "--listen", f"unix:{self.work}/fastsse-{i}.sock", "--socket-mode",
                 "0666", "--max-streams", "19900", "--log-level", "warn", *extra], f"fastsse-{i}"))
        cmp.wait_for(lambda: all(os.path.exists(f"{self.work}/fastsse-{i}.sock") for i in range(self.a.processes)),
                     10, "fastsse's sockets")

    def location(self, path, params):
        lines = "".join(f"\n            fastcgi_param FASTSSE_{name} {value};" for name, value in params.items())
        return f"""
        location = {path} {{
            include {self.work}/fastcgi_params;{lines}
        }}"""


class Clock(FastsseProcesses):
    name, sub_path = "clock", "/events"

    def start(self):
        self.start_fastsse([])

    def locations(self):
        return self.location("/events", {"PRODUCER": "clock", "INTERVAL": self.a.interval_ms, "FORMAT": "unix_us"})


class Fastsse(FastsseProcesses):
    name = "fastsse"
    sub_path = f"/hub?topic={quote(TOPIC, safe='')}"

    def start(self):
        self.redis = self.run.start(["redis-server", "--bind", "127.0.0.1", "--port", str(self.run.ports.redis), "--save", "",
                                     "--appendonly", "no", "--daemonize", "no"], "redis")
        cmp.wait_for(lambda: cmp.connectable(("127.0.0.1", self.run.ports.redis)), 10, "redis-server")
        self.run.watch["redis"] = [self.redis.pid]
        os.environ["MERCURE_PUBLISHER_JWT_KEY"] = hub.PUBLISHER_KEY
        self.start_fastsse(["--engine", f"redis://127.0.0.1:{self.run.ports.redis}", "--heartbeat", str(self.a.heartbeat)])

    def locations(self):
        return self.location("/hub", {"PRODUCER": "hub", "ANONYMOUS": 1})

    def publish(self, stamp_us):
        body = urlencode({"topic": TOPIC, "data": str(stamp_us)}).encode()
        return [post(f"http://127.0.0.1:{self.run.ports.control}/hub", body,
                     {"Content-Type": "application/x-www-form-urlencoded",
                      "Authorization": f"Bearer {hub.PUBLISHER_TOKEN}"})]


class Nchan(System):
    name = "nchan"

    def nginx_main(self):
        return f"load_module {NCHAN_MODULE};"

    def locations(self):
        return f"""
        location = /hub {{
            nchan_subscriber eventsource;
            nchan_channel_id all;
            nchan_eventsource_ping_interval {self.a.heartbeat};
            nchan_eventsource_ping_event "";
            nchan_eventsource_ping_comment "hb";
        }}
        location = /pub {{
            allow 127.0.0.1;
            deny all;
            nchan_publisher;
            nchan_channel_id all;
            nchan_message_buffer_length 1;
        }}"""

    def publish(self, stamp_us):
        return [post(f"http://127.0.0.1:{self.run.ports.control}/pub", str(stamp_us).encode(), {})]


class Pushpin(System):
    name, server_label = "pushpin", "pushpin"

    def start(self):
        for i in range(self.a.processes):
            d = f"{self.work}/pushpin-{i}"
            os.makedirs(f"{d}/run")
            os.makedirs(f"{d}/log")
            with open(f"{d}/routes", "w") as f:
                f.write(f"* 127.0.0.1:{self.run.ports.origin}\n")
            with open(f"{d}/pushpin.conf", "w") as f:
                f.write(pushpin_conf(d, i, self.run.ports.pushpin[i], self.a))
            self.procs.append(self.run.start(["pushpin", "--config", f"{d}/pushpin.conf"],
                                             f"pushpin-{i}"))
        cmp.wait_for(lambda: all(cmp.connectable(("127.0.0.1", self.run.ports.pushpin[i])) and
                                 cmp.connectable(("127.0.0.1", pushpin_control_port(i)))
                                 for i in range(self.a.processes)), 20, "Pushpin's ports")

    def nginx_http(self):
        servers = "\n".join(f"        server 127.0.0.1:{self.run.ports.pushpin[i]};" for i in range(self.a.processes))
        return f"""
    upstream pushpin {{
        least_conn;
        zone pushpin 256k;
{servers}
    }}
    server {{
        # The origin Pushpin asks for each new stream: a GRIP answer, held as a stream on one channel.
        listen 127.0.0.1:{self.run.ports.origin};
        location / {{
            default_type text/event-stream;
            add_header Grip-Hold stream;
            add_header Grip-Channel all;
            add_header Grip-Keep-Alive ":\\\\n\\\\n; format=cstring; timeout={self.a.heartbeat}";
            return 200 "";
        }}
    }}"""

    def locations(self):
        return """
        location = /hub {
            proxy_pass http://pushpin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 1h;
        }"""

    def publish(self, stamp_us):
        body = json.dumps({"items": [{"channel": "all", "formats": {
            "http-stream": {"content": f"data: {stamp_us}\n\n"}}}]}).encode()
        # To every instance at once, as a publisher with several would (the stamp is taken before).
        with concurrent.futures.ThreadPoolExecutor(self.a.processes) as pool:
            return list(pool.map(lambda i: post(f"http://127.0.0.1:{pushpin_control_port(i)}/publish/", body,
                                                {"Content-Type": "application/json"}), range(self.a.processes)))


def pushpin_control_port(i):
    return 5561 + 10 * (i + 1)  # port_offset moves every TCP port of the handler


def pushpin_conf(d, i, port, a):
    """/etc/pushpin/pushpin.conf as Debian ships it, with this instance's folders and ports, and the
    limits a broadcast to every subscriber needs (see the module's notes)."""
    return f"""[global]
include={{libdir}}/internal.conf
rundir={d}/run
ipc_prefix=pushpin-{i}-
port_offset={10 * (i + 1)}
stats_connection_ttl=120
[runner]
services=condure,zurl,pushpin-proxy,pushpin-handler
http_port=127.0.0.1:{port}
logdir={d}/log
log_level=1
client_buffer_size=8192
client_maxconn=19900
condure_bin=condure
zurl_bin=zurl
[proxy]
routesfile=routes
sig_iss=pushpin
sig_key=bench-{i}
zurl_out_specs=ipc://{{rundir}}/{{ipc_prefix}}zurl-in
zurl_out_stream_specs=ipc://{{rundir}}/{{ipc_prefix}}zurl-in-stream
zurl_in_specs=ipc://{{rundir}}/{{ipc_prefix}}zurl-out
[handler]
push_in_spec=tcp://127.0.0.1:5560
push_in_sub_specs=tcp://127.0.0.1:5562
push_in_sub_connect=false
push_in_http_addr=127.0.0.1
push_in_http_port=5561
push_in_http_max_headers_size=10000
push_in_http_max_body_size=1000000
stats_spec=ipc://{{rundir}}/{{ipc_prefix}}stats
command_spec=tcp://127.0.0.1:5563
message_rate={a.pushpin_message_rate}
message_hwm={a.pushpin_message_hwm}
message_wait=5000
id_cache_ttl=60
connection_subscription_max=20
subscription_linger=60
stats_subscription_ttl=60
stats_report_interval=10
stats_format=tnetstring
"""


def post(url, body, headers):
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError as e:
        return f"error: {e}"


SYSTEMS = {s.name: s for s in (Fastsse, Nchan, Pushpin, Clock)}


def nginx_conf(run, system):
    a = run.a
    listens = "\n".join(f"        listen 127.0.0.1:{port} reuseport backlog=4096;" for port in run.ports.listen)
    return f"""{system.nginx_main()}
worker_processes {a.workers};
worker_rlimit_nofile 20000;
pid {run.work}/nginx.pid;
error_log {run.work}/nginx-error.log info;
events {{ worker_connections {a.worker_connections}; }}
http {{
    access_log off;
    client_body_temp_path {run.work}/tmp;
    fastcgi_temp_path {run.work}/tmp;
    proxy_temp_path {run.work}/tmp;
{system.nginx_http()}
    server {{
{listens}
        listen 127.0.0.1:{run.ports.control};
{system.locations()}
        location = /status {{ stub_status; }}
    }}
}}
"""


class Run:
    def __init__(self, a, system_name, streams):
        self.a, self.streams = a, streams
        self.work = tempfile.mkdtemp(prefix=f"fastsse-200k-{system_name}-{streams}.")
        os.makedirs(f"{self.work}/tmp")
        # nginx/fastsse_params as shipped, passing to the run's upstream of fastsse processes.
        with open(os.path.join(ROOT, "nginx", "fastsse_params")) as f:
            params = re.sub(r"(?m)^fastcgi_pass .*;$", "fastcgi_pass fastsse;", f.read())
        with open(f"{self.work}/fastcgi_params", "w") as f:
            f.write(params)
        self.procs = []
        self.ports = Ports(a)
        self.listen_addresses = {f"127.0.0.1:{port}" for port in self.ports.listen}
        self.watch = {}  # processes beside the system and nginx whose CPU and memory are read: Redis
        self.system = SYSTEMS[system_name](self)

    def start(self, argv, name, stdout=None):
        err = open(f"{self.work}/{name}.log", "wb")
        p = subprocess.Popen(argv, stdout=stdout or err, stderr=err, start_new_session=True)
        self.procs.append(p)
        return p

    def cpu_ms(self):
        """CPU so far of the system's processes, nginx's and the watched ones, ms each."""
        out = {"server": cmp.cpu_ns(self.system.server_pids()) / 1e6, "nginx": cmp.cpu_ns(cmp.tree(self.nginx.pid)) / 1e6}
        for name, pids in self.watch.items():
            out[name] = cmp.cpu_ns(pids) / 1e6
        return out

    def sample(self, t0):
        status = urllib.request.urlopen(f"http://127.0.0.1:{self.ports.control}/status", timeout=10).read().decode()
        tcp = re.search(r"TCP: inuse (\d+) orphan (\d+) tw (\d+) alloc (\d+) mem (\d+)", read("/proc/net/sockstat"))
        listen_queues = [int(line.split()[1]) for line in
                         subprocess.run(["ss", "-ltnH"], capture_output=True, text=True).stdout.splitlines()
                         if line.split()[3] in self.listen_addresses]
        workers = cmp.children(self.nginx.pid)
        server = self.system.server_pids()
        fds = [fd_count(pid) for pid in server] or [0]
        accepts, handled, _ = re.search(r"\n\s*(\d+) (\d+) (\d+)", status).groups()
        s = {
            "t": round(time.time() - t0, 1),
            "nginx_active": int(re.search(r"Active connections: (\d+)", status).group(1)) - 1,  # this request
            "nginx_accepts": int(accepts), "nginx_handled": int(handled),
            "tcp_inuse": int(tcp.group(1)), "tcp_mem_pages": int(tcp.group(5)),
            "listen_queue_max": max(listen_queues or [0]),
            "server_fds": sum(fds), "server_fds_max": max(fds),
            "worker_fds_max": max((fd_count(w) for w in workers), default=0),
            "slab_kb": int(re.search(r"Slab:\s+(\d+)", read("/proc/meminfo")).group(1)),
        }
        # RSS and PSS: nchan's shared memory counts whole in each of nginx's 32 workers' RSS.
        for name, pids in [("server", server), ("nginx", workers + [self.nginx.pid]), *self.watch.items()]:
            s[f"{name}_rss_kb"], s[f"{name}_pss_kb"] = cmp.memory_kb(pids)
        # The system's RSS split: its own heap (anonymous) and the files it maps (shared between the
        # processes of one binary: PSS divides those, RSS counts them in each).
        s["server_anon_kb"] = s["server_file_kb"] = 0
        for pid in server:
            try:
                status = read(f"/proc/{pid}/status")
                s["server_anon_kb"] += int(re.search(r"RssAnon:\s+(\d+)", status).group(1))
                s["server_file_kb"] += int(re.search(r"RssFile:\s+(\d+)", status).group(1))
            except (OSError, AttributeError):
                pass
        return s

    def parts(self):
        """The parts whose memory is read: the system's own processes (if any), nginx, Redis."""
        return (["server"] if self.system.server_label else []) + ["nginx", *self.watch]

    def window_starts(self):
        n = 0
        for path in glob.glob(f"{self.work}/load-*.json"):
            n += '"phase":"window_start"' in read(path)
        return n

    def publishing(self, out):
        """From the clients' window: a quiet stretch (heartbeats only), then the publishes. Reads the
        CPU of each part around each of them."""
        a = self.a
        while self.window_starts() < a.ports:
            if self.stopping.wait(0.5):
                return
        t0 = time.monotonic()
        c0 = self.cpu_ms()
        if self.stopping.wait(a.quiet):
            return
        c1 = self.cpu_ms()
        out["quiet"] = {"seconds": time.monotonic() - t0, "cpu_ms": {k: c1[k] - c0[k] for k in c0}}
        out["publishes"] = []
        start = time.monotonic()
        for i in range(a.publishes):
            if self.stopping.wait(max(0.0, start + i * a.publish_every - time.monotonic())):
                return
            c0, t = self.cpu_ms(), time.monotonic()
            stamp = int(time.time() * 1e6)
            statuses = self.system.publish(stamp)
            answered = time.monotonic() - t
            # The fan-out's CPU: what each part used in the next few seconds, less its heartbeat rate.
            window = min(a.publish_every - 1, a.fanout_window)
            if self.stopping.wait(max(0.0, t + window - time.monotonic())):
                return
            c1 = self.cpu_ms()
            out["publishes"].append({"stamp_us": stamp, "statuses": statuses, "answered_ms": round(answered * 1000, 2),
                                     "window_s": time.monotonic() - t, "cpu_ms": {k: c1[k] - c0[k] for k in c0}})
            print(f"publish {i + 1}/{a.publishes}: {statuses}", file=sys.stderr, flush=True)

    def go(self):
        a = self.a
        self.system.start()
        with open(f"{self.work}/nginx.conf", "w") as f:
            f.write(nginx_conf(self, self.system))
        self.nginx = self.start(["/usr/sbin/nginx", "-c", f"{self.work}/nginx.conf", "-g", "daemon off; user root;"],
                                "nginx")
        cmp.wait_for(lambda: cmp.connectable(("127.0.0.1", self.ports.control)), 10, "nginx")
        time.sleep(1)
        baseline = self.sample(time.time())
        # What each part uses with no stream at all (Qt's and ZeroMQ's timers in Pushpin's four
        # processes, nginx's 32 workers), so that a heartbeat round's CPU is the streams' own.
        c0, t = self.cpu_ms(), time.monotonic()
        time.sleep(a.idle)
        c1 = self.cpu_ms()
        self.idle_cpu_ms_per_s = {k: (c1[k] - c0[k]) / (time.monotonic() - t) for k in c0}
        per_client = self.streams // a.ports
        hub_run = self.system.name != "clock"
        hold = a.quiet + a.publishes * a.publish_every + 5 if hub_run else a.hold
        t0 = time.time()
        extra = ["--by-stamp", "--header", "Accept: text/event-stream"] if hub_run else []
        clients = [self.start([f"{a.build}/bench/sse-load", "--host", "127.0.0.1", "--port", str(self.ports.listen[k]),
                               "--path", self.system.sub_path, "--streams", str(per_client),
                               "--ramp", str(max(1, a.ramp // a.ports)), "--hold", str(hold), "--settle", str(a.settle),
                               "--sources", "8", "--connect-timeout", "120", "--latency-from", "unix_us",
                               "--processes", "1", *extra],
                              f"load-{k}", stdout=open(f"{self.work}/load-{k}.json", "wb"))
                   for k in range(a.ports)]
        self.stopping = threading.Event()
        pubs = {}
        publisher = threading.Thread(target=self.publishing, args=(pubs,), daemon=True)
        if hub_run:
            publisher.start()
        samples = []
        try:
            while any(c.poll() is None for c in clients):
                time.sleep(5)
                try:
                    samples.append(self.sample(t0))
                    s = samples[-1]
                    print(f"[{s['t']:6.1f} s] {self.system.name} {self.streams:,}: nginx {s['nginx_active']:,} "
                          f"connections, server {s['server_fds']:,} descriptors, accept queue max "
                          f"{s['listen_queue_max']}", file=sys.stderr, flush=True)
                except Exception as e:  # a sample may time out while the machine is saturated
                    print(f"sample failed: {e!r}", file=sys.stderr, flush=True)
        finally:
            self.stopping.set()
            publisher.join(5) if publisher.is_alive() else None
        return baseline, samples, per_client * a.ports, pubs

    def report(self, baseline, samples, asked, pubs):
        a = self.a
        held = failed = events = 0
        failures, latency, ramped, stamps, window = {}, [], [], {}, None
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
                    window = d["window_s"]
                    for reason, n in d["failures"].items():
                        failures[reason] = failures.get(reason, 0) + n
                    latency.append(d["latency_us"])
                    for s in d.get("by_stamp") or []:
                        seen = stamps.setdefault(s["t_us"], [0, 0])
                        seen[0] += s["deliveries"]
                        seen[1] = max(seen[1], s["last_us"])
        full = [s for s in samples if s["nginx_active"] >= held] or samples[-1:]
        n = max(held, 1)
        # Memory with every stream open and before the first publish (a Redis stream or a history
        # is not a subscriber's): the sample nearest the end of the quiet stretch.
        quiet_end = full[0]["t"] + a.settle + (a.quiet if self.system.name != "clock" else 0)
        at = min(full, key=lambda s: abs(s["t"] - quiet_end)) if full else baseline
        end = full[-1] if full else baseline
        complaints = [line for line in read(f"{self.work}/nginx-error.log").splitlines()
                      if re.search(r"\[(warn|error|crit|alert|emerg)\]", line)]
        per_stream = lambda k: round((at[k] - baseline[k]) / n, 2)  # noqa: E731
        with open(f"{self.work}/samples.json", "w") as f:
            json.dump(samples, f)
        out = {
            "system": self.system.name, "streams_asked": asked, "held": held, "failed": failed, "failures": failures,
            "seconds_to_open_all": full[0]["t"] if full else None,
            "kb_per_stream": {
                **{f"{name}_{m}": per_stream(f"{name}_{m}_kb") for name in self.parts() for m in ("rss", "pss")},
                "kernel_slab_both_ends": per_stream("slab_kb"),
                "kernel_tcp_buffers": round((at["tcp_mem_pages"] - baseline["tcp_mem_pages"]) * 4 / n, 2),
            },
            "grew_over_publishes": {k: end[k] - at[k] for k in end if k.endswith(("_rss_kb", "_pss_kb", "_anon_kb", "_file_kb", "_fds"))},
            # One sample a minute from the quiet stretch on: whether a growth levels off.
            "memory_kb_about_each_minute": {k: [s[k] for s in full if s["t"] >= at["t"]][::12] for k in end if k.endswith(("_rss_kb", "_pss_kb", "_anon_kb", "_file_kb"))},
            "peaks": {k: max(s[k] for s in samples) for k in ("listen_queue_max", "worker_fds_max", "server_fds_max",
                                                               "tcp_mem_pages")} if samples else {},
            "nginx_complaints": len(complaints), "nginx_complaint_sample": complaints[:3],
            "work_dir": self.work if a.keep else "(removed; --keep keeps it)",
        }
        if latency:
            out["every_delivery_ms"] = {
                "p50_max_of_clients": round(max(x["p50"] for x in latency) / 1000, 2),
                "p99_max_of_clients": round(max(x["p99"] for x in latency) / 1000, 2),
                "max": round(max(x["max"] for x in latency) / 1000, 2)}
        if self.system.name == "clock":
            out["events_in_window"] = events
        else:
            self.report_hub(out, pubs, stamps, held, window)
        return out

    def report_hub(self, out, pubs, stamps, held, window):
        published = [p for p in pubs.get("publishes", []) if all(s in (200, 201, 202) for s in p["statuses"])]
        lasts = [stamps[p["stamp_us"]][1] for p in published if p["stamp_us"] in stamps]
        out["published"] = len(published)
        out["publish_statuses"] = [p["statuses"] for p in pubs.get("publishes", []) if p not in published]
        out["publish_answer_ms_p50"] = pct([p["answered_ms"] for p in published], 50)
        out["deliveries_per_publish_min"] = min((stamps.get(p["stamp_us"], [0])[0] for p in published), default=0)
        out["publishes_delivered_to_all"] = sum(stamps.get(p["stamp_us"], [0])[0] >= held for p in published)
        if lasts:
            out["publish_to_last_delivery_ms"] = {"p50": round(pct(lasts, 50) / 1000, 1),
                                                  "p99": round(pct(lasts, 99) / 1000, 1),
                                                  "max": round(max(lasts) / 1000, 1)}
        quiet = pubs.get("quiet")
        if quiet:
            rounds = quiet["seconds"] / self.a.heartbeat
            beats = {k: v - self.idle_cpu_ms_per_s[k] * quiet["seconds"] for k, v in quiet["cpu_ms"].items()}
            out["idle_cpu_ms_per_s"] = {k: round(v, 1) for k, v in self.idle_cpu_ms_per_s.items()}
            out["cpu_ms_per_heartbeat_round"] = {k: round(v / rounds, 1) for k, v in beats.items()}
            out["cpu_ms_per_1000_heartbeats"] = {k: round(v / rounds / max(held, 1) * 1000, 3)
                                                 for k, v in beats.items()}
            rate = {k: v / quiet["seconds"] for k, v in quiet["cpu_ms"].items()}
            fan = {k: [p["cpu_ms"][k] - rate[k] * p["window_s"] for p in published] for k in rate}
            out["cpu_ms_per_fanout_p50"] = {k: round(pct(v, 50), 1) for k, v in fan.items() if v}
            out["cpu_ms_per_1000_delivered"] = {k: round(pct(v, 50) / max(held, 1) * 1000, 3)
                                                for k, v in fan.items() if v}

    def stop(self):
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.time() + 10
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()


def plot(out_dir):
    """Memory per stream (PSS: the system's own processes and Redis, and nginx) and fan-out p99 against
    streams held."""
    with open(f"{out_dir}/results.json") as f:
        runs = [r for r in json.load(f) if r.get("system") != "clock" and r.get("held")]
    latest = {}
    for r in runs:
        latest[(r["system"], r["streams_asked"])] = r
    data = f"{out_dir}/streams_200k.dat"
    systems = sorted({s for s, _ in latest})
    with open(data, "w") as f:
        for s in systems:
            f.write(f'"{s}"\n')
            for (_, n), r in sorted((k, v) for k, v in latest.items() if k[0] == s):
                # PSS where the run has it, RSS before (runs from before the PSS readings).
                kb = {k.rsplit("_", 1)[0]: v for k, v in r["kb_per_stream"].items() if k.endswith("_rss")}
                kb.update({k.rsplit("_", 1)[0]: v for k, v in r["kb_per_stream"].items() if k.endswith("_pss")})
                own = (kb.get("server") or 0) + (kb.get("redis") or 0)
                grew = r["grew_over_publishes"]
                kind = "pss" if "nginx_pss_kb" in grew else "rss"
                growth = sum(v for k, v in grew.items() if k.endswith(f"_{kind}_kb")) / r["held"] / max(r["published"], 1)
                f.write(f"{r['held']} {own} {own + kb['nginx']} {growth:.3f} "
                        f"{(r.get('publish_to_last_delivery_ms') or {}).get('p99', 'NaN')} "
                        f"{(r.get('every_delivery_ms') or {}).get('p99_max_of_clients', 'NaN')}\n")
            f.write("\n\n")
    png = f"{out_dir}/streams_200k.png"
    script = f"""set terminal pngcairo size 1800,520 font ',10'
set output '{png}'
set multiplot layout 1,3
set key top left
set grid
set xlabel 'streams held'
set format x '%.0s%c'
set ylabel 'KB per stream (PSS)'
set title 'Memory: the hub (Redis included) and nginx together (dashed: the hub alone)'
plot for [i=0:{len(systems) - 1}] '{data}' index i using 1:3 with linespoints lw 2 title columnheader(1), \\
     for [i=0:{len(systems) - 1}] '{data}' index i using 1:2 with linespoints dt 2 lc i+1 notitle
set title 'Memory kept per publish: KB per stream (every part, PSS)'
plot for [i=0:{len(systems) - 1}] '{data}' index i using 1:4 with linespoints lw 2 title columnheader(1)
set ylabel 'ms'
set title 'Fan-out: publish to last delivery, p99 over the publishes'
plot for [i=0:{len(systems) - 1}] '{data}' index i using 1:5 with linespoints lw 2 title columnheader(1)
unset multiplot
"""
    subprocess.run(["gnuplot"], input=script, text=True, check=True)
    print(png)


def complete(out, a):
    """Every stream held, none failed, and (the hub) every publish answered and delivered to every one."""
    if out["held"] < out["streams_asked"] or out["failed"]:
        return False
    return out["system"] == "clock" or out["published"] == a.publishes == out["publishes_delivered_to_all"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", default="200000", help="stream counts, comma-separated")
    ap.add_argument("--systems", default="fastsse,nchan,pushpin", help=f"of {','.join(SYSTEMS)}, comma-separated")
    ap.add_argument("--processes", type=int, default=12, help="fastsse processes or Pushpin instances")
    ap.add_argument("--workers", type=int, default=32, help="nginx workers")
    ap.add_argument("--worker-connections", type=int, default=19000)
    ap.add_argument("--ports", type=int, default=12, help="nginx ports, one load client each")
    ap.add_argument("--ramp", type=int, default=2400, help="new streams per second, all clients together")
    ap.add_argument("--settle", type=int, default=30, help="seconds from the last stream opened to the window")
    ap.add_argument("--heartbeat", type=int, default=15, help="seconds between heartbeats (comments)")
    ap.add_argument("--idle", type=int, default=10, help="seconds of CPU read with no stream, before the ramp")
    ap.add_argument("--quiet", type=int, default=60, help="hub: seconds of heartbeats only, before the publishes")
    ap.add_argument("--publishes", type=int, default=10, help="hub: updates published")
    ap.add_argument("--publish-every", type=int, default=60, help="hub: seconds between two publishes")
    ap.add_argument("--fanout-window", type=int, default=20, help="hub: seconds of CPU counted for one fan-out")
    ap.add_argument("--pushpin-message-rate", type=int, default=1000000, help="Pushpin's message_rate (Debian: 2500)")
    ap.add_argument("--pushpin-message-hwm", type=int, default=1000000, help="Pushpin's message_hwm (Debian: 25000)")
    ap.add_argument("--hold", type=int, default=120, help="clock: seconds held after ramp and settle")
    ap.add_argument("--interval-ms", type=int, default=10000, help="clock: the clock's interval")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "bench-200k"), help="results.json and the plot")
    ap.add_argument("--pause", type=int, default=10, help="seconds between two runs (TIME_WAIT, the slab)")
    ap.add_argument("--keep", action="store_true", help="keep each run's work folder (logs, configs)")
    ap.add_argument("--plot", action="store_true", help="only draw OUT/streams_200k.png from OUT/results.json")
    ap.add_argument("--quick", action="store_true",
                    help="600 streams, 2 of everything, seconds not minutes, fastsse, nchan and the clock "
                         "(ctest bench.streams_200k_quick); exits 1 unless every stream was held and every "
                         "publish reached every one")
    a = ap.parse_args()
    if a.quick:
        a.streams, a.systems, a.processes, a.workers, a.ports, a.ramp = "600", "fastsse,nchan,clock", 2, 2, 2, 1200
        a.settle, a.heartbeat, a.idle, a.quiet, a.publishes, a.publish_every, a.fanout_window = 2, 2, 1, 4, 2, 4, 2
        a.hold, a.interval_ms, a.pause = 4, 1000, 1
        a.out = os.path.join(a.build, "bench-200k-quick")
    os.makedirs(a.out, exist_ok=True)
    if a.plot:
        return plot(a.out)
    if os.geteuid() != 0:
        print("run as root: nginx's workers, and /proc readings of every process", file=sys.stderr)
        return 77  # ctest: skipped
    unknown = [s for s in a.systems.split(",") if s not in SYSTEMS]
    if unknown:
        sys.exit(f"--systems: unknown {unknown}")
    if "nchan" in a.systems and not os.path.exists(NCHAN_MODULE):
        sys.exit("nchan: apt-get install libnginx-mod-nchan")
    if "pushpin" in a.systems and not shutil.which("pushpin"):
        sys.exit("pushpin: apt-get install pushpin")
    results_path = f"{a.out}/results.json"
    incomplete = []

    def on_sigterm(signum, frame):
        raise KeyboardInterrupt  # stops this run's processes on the way out, as ^C does

    signal.signal(signal.SIGTERM, on_sigterm)
    for streams in [int(x) for x in a.streams.split(",")]:
        for name in a.systems.split(","):
            run = Run(a, name, streams)
            try:
                baseline, samples, asked, pubs = run.go()
            except KeyboardInterrupt:
                return 130
            finally:
                run.stop()
            out = run.report(baseline, samples, asked, pubs)
            out.update({"command": " ".join(sys.argv), "when": time.strftime("%Y-%m-%d %H:%M:%S"),
                        "heartbeat_s": a.heartbeat, "publish_every_s": a.publish_every, "processes": a.processes,
                        "nginx_workers": a.workers})
            print(json.dumps(out, indent=2), flush=True)
            previous = json.load(open(results_path)) if os.path.exists(results_path) else []
            with open(results_path, "w") as f:
                json.dump(previous + [out], f, indent=1)
            if not a.keep:
                shutil.rmtree(run.work)
            if not complete(out, a):
                incomplete.append(f"{name} at {streams:,}")
            time.sleep(a.pause)  # sockets in TIME_WAIT and the slab settle before the next baseline
    if incomplete:
        print(f"not every stream held, or not every publish delivered to all: {', '.join(incomplete)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
