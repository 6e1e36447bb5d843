"""The hub on the Redis engine across several fastsse processes, and its faults (issue 12), each
against a real redis-server the test starts on a free port and stops by PID:

- two processes behind one nginx (nginx/fastsse-upstream.conf) or one Apache (mod_proxy_balancer,
  apache/fastsse-balancer.conf): a publish reaches the subscribers of both, in the same order;
- Redis killed (and started again, empty, on its port) or stopped (SIGSTOP, then SIGCONT): streams
  stay open, heartbeats and clocks go on, publishes get 503 with Retry-After, the loss is logged
  once; once Redis is back, subscribers get every update it stored, in order, none twice; one that
  resumes from an id Redis lost is told `earliest`;
- a fastsse process killed while its clients are subscribed: they reconnect through nginx, as
  EventSource does, with Last-Event-ID, and none misses or repeats an update published meanwhile
  (bench/redis_failover.py runs the same with 10,000 updates);
- a Redis that cannot be used at start: one line on stderr, exit status 2.

The subscribers' ids are the stream entries' (`#<entry id>`): the tests compare them with what the
publishers were answered, or with the stream itself (redis-cli XRANGE)."""
from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest

from apachelib import Apache
from fastsse_testlib import (ES, Event, Fastsse, HttpStream, Nginx, RedisServer, Timeout, assert_plain_error, free_port, get,
                             make_dir, start_on_free_port, wait_until)
from test_hub import FORM, HUB, PUBLISHER_KEY, SUBSCRIBER_KEY, publisher_token, subscriber_token, topics_query
from test_several_processes import upstream_conf

REDIS_CLI = "/usr/bin/redis-cli"
STREAM_KEY = "fastsse:channel:mercure"  # the hub's channel, in the Redis store's key space
TOPIC = "https://example.com/redis-engine"
ENTRY_ID = re.compile(r"#([0-9]+)-([0-9]+)")
LOST = r" warning Redis engine: .*publishes are refused \(503\) until it is back; reconnecting"
BACK = r" warning Redis engine: connected again"


def entry_key(update_id: str) -> tuple[int, int]:
    """A hub id of the Redis engine (#ms-seq) as a number pair: the stream's order."""
    m = ENTRY_ID.fullmatch(update_id)
    assert m, update_id
    return int(m.group(1)), int(m.group(2))


def publish(port: int, data: str, topic: str = TOPIC) -> HttpStream:
    headers = {**FORM, "Authorization": f"Bearer {publisher_token()}"}
    return get(port, HUB, headers, method="POST", body=urlencode([("topic", topic), ("data", data)]).encode())


def published(port: int, data: str) -> str:
    r = publish(port, data)
    assert r.status == 200, r.describe()
    assert ENTRY_ID.fullmatch(r.text), r.text
    return r.text


def stream_ids(redis: RedisServer) -> list[str]:
    """Every entry the hub's stream holds, as the hub's ids, oldest first."""
    out = subprocess.run([REDIS_CLI, "-p", str(redis.port), "XRANGE", STREAM_KEY, "-", "+"], capture_output=True,
                         text=True, timeout=10, check=True).stdout
    return [f"#{i}" for i in re.findall(r"^([0-9]+-[0-9]+)$", out, re.M)]


def warnings_of(process: Fastsse) -> list[str]:
    return [line for line in process.log().splitlines() if re.search(r" (warning|error|critical) ", line)]


class Cluster:
    """Redis, `n` fastsse processes on it (the hub, heartbeats every second), each on a socket of
    its own, and a front: nginx with the shipped upstream file (front="nginx"), or Apache with
    apache/fastsse-balancer.conf (front="apache")."""

    def __init__(self, paths, workdir: Path, redis: RedisServer, front: str = "nginx", n: int = 2):
        self.paths, self.workdir, self.redis = paths, workdir, redis
        self.processes: list[Fastsse] = []
        self.restarts = [0] * n
        self.front = None
        # Run as root, Apache's children (www-data) must reach the sockets: a folder of their own.
        self.reach = Path(tempfile.mkdtemp(prefix="fsse-rd-", dir="/tmp"))
        self.reach.chmod(0o755)
        self.sockets = [self.reach / f"fastsse-{i}.sock" for i in range(1, n + 1)]
        try:
            self.processes = [self.start_process(i) for i in range(n)]
            for p in self.processes:
                p.wait_started()
            if front == "nginx":
                # Test-only: a second access log saying which process nginx gave each request to.
                self.upstream_log = workdir / "upstreams.log"
                http_conf = (upstream_conf(paths.source, self.sockets)
                             + "log_format upstreams '$request_method $status $upstream_addr';\n")
                self.front = start_on_free_port(lambda: Nginx(
                    paths.source, workdir, "fastsse", http_conf=http_conf,
                    extra_conf=f"access_log {self.upstream_log} upstreams;\n"))
            else:
                www = make_dir(self.reach / "www")
                (www / "index.html").write_text("<!doctype html><title>fastsse test</title>\n")
                access = self.reach / "access.log"
                access.touch()
                access.chmod(0o666)
                self.front = start_on_free_port(lambda: Apache(paths.source, workdir, self.reach, "balancer",
                                                               docroot=www, access_log=access, upstream=self.sockets))
        except BaseException:
            self.stop()
            raise
        self.port = self.front.port
        self.hub = HUB

    def start_process(self, i: int) -> Fastsse:
        self.restarts[i] += 1
        args = ["--engine", self.redis.url, "--publisher-jwt-key", PUBLISHER_KEY, "--subscriber-jwt-key",
                SUBSCRIBER_KEY, "--heartbeat", "1"]
        workdir = make_dir(self.workdir / f"process{i + 1}-{self.restarts[i]}")
        return Fastsse(self.paths.binary, workdir, f"unix:{self.sockets[i]}", args)

    def restart(self, i: int) -> Fastsse:
        self.processes[i] = self.start_process(i)
        self.processes[i].wait_started()
        return self.processes[i]

    def kill(self, i: int):
        p = self.processes[i]
        p.signal(signal.SIGKILL)
        assert p.wait(timeout=5) == -signal.SIGKILL

    def holder(self, client: int) -> int:
        """Which process opened the client's stream (the last time): its index."""
        found = [i for i, p in enumerate(self.processes)
                 if re.search(rf" info stream \d+ opened: producer=hub uri=\S*[?&]client={client}(&|\s|$)", p.log(), re.M)]
        assert len(found) == 1, (client, found)
        return found[0]

    def subscribe(self, client: int, headers=None) -> HttpStream:
        h = {**ES, "Authorization": f"Bearer {subscriber_token(['*'])}", **(headers or {})}
        s = HttpStream(self.port, f"{HUB}?{topics_query(TOPIC)}&client={client}", h)
        s.wait_comments(1)
        assert s.status == 200, s.describe()
        return s

    def stop(self):
        if self.front is not None:
            self.front.stop()
        for p in self.processes:
            if p.proc.poll() is None:
                p.stop()
        if self.reach.exists():
            for name in ("access.log",):
                if (self.reach / name).exists() and self.front is not None:
                    (self.reach / name).rename(self.workdir / name)  # for a post-mortem
            subprocess.run(["rm", "-rf", str(self.reach)], check=False)


@pytest.fixture
def redis(workdir):
    servers = [RedisServer(workdir).start()]
    yield servers
    for r in servers:
        r.stop()


def redis_again(workdir: Path, redis: list, port: int) -> RedisServer:
    """A new redis-server on the port of the one killed: its clients find it where they look."""
    again = RedisServer(workdir, port=port, name=f"redis-{len(redis) + 1}")
    redis.append(again)
    return again.start()


@pytest.fixture
def cluster(paths, workdir, redis):
    made = []

    def make(front="nginx", n=2) -> Cluster:
        c = Cluster(paths, workdir, redis[0], front, n)
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()  # before Redis: a fastsse that lost it would only wait for it


def read(streams: list[HttpStream], until, timeout: float, what: str):
    """Reads every stream (blocking sockets made non-blocking) until until() or the deadline."""
    sel = selectors.DefaultSelector()
    try:
        for s in streams:
            s.sock.setblocking(False)
            sel.register(s.sock, selectors.EVENT_READ, s)
        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() >= deadline:
                raise Timeout(f"timed out after {timeout} s waiting for {what}: " +
                              "; ".join(s.describe() for s in streams))
            for key, _ in sel.select(0.05):
                if not key.data.on_readable():
                    sel.unregister(key.fileobj)
    finally:
        sel.close()
        for s in streams:
            s.sock.setblocking(True)


def ids(s: HttpStream) -> list[str]:
    return [e.id for e in s.events]


def in_background(fn):
    """fn() in a thread; .join() returns its result (or raises its exception)."""
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as e:
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()

    class Handle:
        def done(self):
            return not t.is_alive()

        def join(self, timeout=30):
            t.join(timeout)
            assert not t.is_alive(), "the background call did not end"
            if "error" in box:
                raise box["error"]
            return box["value"]

    return Handle()


# ----------------------------------------------------------------------------------------------
# Two processes, one Redis


def assert_both_processes_deliver(c: Cluster, n_subscribers: int = 4, n_updates: int = 20):
    subs = [c.subscribe(k) for k in range(n_subscribers)]
    held = [{k for k in range(n_subscribers) if c.holder(k) == i} for i in range(len(c.processes))]
    assert all(held), f"a process holds no subscriber: {held}"
    sent = [published(c.port, f"update {i}") for i in range(n_updates)]
    assert sorted(sent, key=entry_key) == sent  # the stream's order is the order they were answered
    read(subs, lambda: all(len(s.events) >= n_updates for s in subs), 10, f"{n_updates} updates on every stream")
    for s in subs:
        assert ids(s) == sent
        assert [e.data for e in s.events] == [f"update {i}" for i in range(n_updates)]
    return subs, held


def test_a_publish_reaches_the_subscribers_of_both_processes_behind_nginx(cluster):
    c = cluster("nginx")
    subs, held = assert_both_processes_deliver(c)
    assert sorted(len(h) for h in held) == [2, 2], held  # least_conn
    # Both processes answered publishes (least_conn, with two streams on each, takes them in
    # turn): each one's updates reached the other's subscribers too.
    def answered():
        return re.findall(r"^POST 200 unix:(\S+)$", c.upstream_log.read_text(), re.M)

    # nginx logs a request once it closed it, maybe after the client had its answer.
    wait_until(lambda: len(answered()) == 20, 2, "nginx to log the 20 publishes")
    assert set(answered()) == {str(s) for s in c.sockets}, answered()
    for s in subs:
        s.close()


def test_a_publish_reaches_the_subscribers_of_both_processes_behind_apache(cluster):
    c = cluster("apache")
    subs, held = assert_both_processes_deliver(c)
    # One process killed: its clients come back with Last-Event-ID and Apache sends them to the
    # other. They learn late that their process is gone: mod_proxy_fcgi logs the backend's end
    # (AH01075) but neither ends the chunked response nor closes the connection; Apache closes it
    # as an idle one, after KeepAliveTimeout (5 s by default). nginx closes it at once.
    gone = c.holder(0)
    moved = sorted(held[gone])
    last = {k: subs[k].events[-1].id for k in moved}
    killed_at = time.monotonic()
    c.kill(gone)
    for k in moved:
        subs[k].wait(lambda s: s.eof, 10, "the killed process's streams to end")
        assert not subs[k].ended  # cut: no terminating chunk
        assert 4 < subs[k].eof_at - killed_at < 7, subs[k].eof_at - killed_at
    sent = [published(c.port, f"while away {i}") for i in range(5)]
    back = {k: c.subscribe(k, {"Last-Event-ID": last[k]}) for k in moved}
    read(list(back.values()), lambda: all(len(s.events) >= 5 for s in back.values()), 5, "the updates published meanwhile")
    for k, s in back.items():
        assert s.header("Last-Event-ID") == last[k], s.describe()
        assert ids(s) == sent
    # Apache's complaints: the killed process's streams (AH01067, AH01075), then its socket refusing
    # the first request sent there (AH02454, AH01079), and the member put out (AH00959).
    codes = {m for line in c.front.unexpected_lines() for m in re.findall(r"AH\d{5}", line)}
    assert codes <= {"AH01067", "AH01075", "AH02454", "AH00959", "AH01079"}, c.front.unexpected_lines()
    for s in [*subs, *back.values()]:
        s.close()


# ----------------------------------------------------------------------------------------------
# Redis away


def assert_refused_while_away(c: Cluster, n: int = 3):
    """Publishes, through either process: 503, Retry-After, one line of reason; never a 200."""
    for i in range(n):
        r = publish(c.port, f"refused {i}")
        assert_plain_error(r, 503)
        assert r.header("Retry-After") == "2", r.describe()
        assert "Redis" in r.text, r.text


def test_redis_killed_then_back_empty(cluster, redis, workdir):
    c = cluster()
    subs = [c.subscribe(k) for k in range(2)]
    assert {c.holder(0), c.holder(1)} == {0, 1}
    clock = HttpStream(c.port, "/t/fast", ES)  # a clock: one event every 200 ms
    before = [published(c.port, f"before {i}") for i in range(3)]
    read(subs, lambda: all(len(s.events) == 3 for s in subs), 5, "the first updates")

    redis[0].kill()
    killed_at = time.monotonic()
    for p in c.processes:
        p.wait_for_log(LOST)
    assert_refused_while_away(c)
    # The streams stay open: heartbeats every second, and the clock, while fastsse reconnects
    # (200 ms, then longer: 3 s hold several attempts).
    comments = [len(s.comments) for s in subs]
    ticks = len(clock.events)
    read([*subs, clock], lambda: time.monotonic() > killed_at + 3, 4, "")
    for s, n in zip(subs, comments):
        assert len(s.comments) >= n + 2 and not s.eof, s.describe()
    assert len(clock.events) >= ticks + 10, clock.describe()
    # Said once, not once a retry.
    for p in c.processes:
        assert len(warnings_of(p)) == 1, warnings_of(p)

    # Redis back on its port, without the data (no persistence): the processes say so, and empty
    # their histories.
    redis_again(workdir, redis, redis[0].port)
    for p in c.processes:
        p.wait_for_log(BACK, timeout=10)
        p.assert_logged(rf"{STREAM_KEY} no longer holds entry {before[-1][1:]}")
    after = [published(c.port, f"after {i}") for i in range(3)]
    read(subs, lambda: all(len(s.events) >= 6 for s in subs), 5, "the updates after Redis came back")
    for s in subs:
        assert ids(s) == before + after, s.describe()  # every update stored, none twice
        assert not s.eof
    assert stream_ids(redis[-1]) == after

    # A client that resumes from an id Redis lost is told so, and gets what there is since.
    for k in range(2):
        s = c.subscribe(10 + k, {"Last-Event-ID": before[-1]})
        assert s.header("Last-Event-ID") == "earliest", s.describe()
        assert s.header("Mercure-Last-Event-ID") == "earliest", s.describe()
        s.wait_events(3)
        assert ids(s) == after
        subs.append(s)
    more = published(c.port, "more")
    read(subs, lambda: all(s.events and s.events[-1].id == more for s in subs), 5, "the next update")
    for p in c.processes:
        assert len(warnings_of(p)) == 3, warnings_of(p)  # lost, not all there, back
    for s in [*subs, clock]:
        s.close()


def test_redis_stuck_then_going_on(cluster, redis):
    c = cluster()
    subs = [c.subscribe(k) for k in range(2)]
    assert {c.holder(0), c.holder(1)} == {0, 1}
    clock = HttpStream(c.port, "/t/fast", ES)
    before = [published(c.port, f"before {i}") for i in range(3)]
    read(subs, lambda: all(len(s.events) == 3 for s in subs), 5, "the first updates")

    redis[0].signal(signal.SIGSTOP)
    stopped_at = time.monotonic()
    # A publish waits for Redis as long as a command may (2 s), then is refused; the loop goes on
    # meanwhile: the clock ticks and heartbeats go out while the publish waits.
    waiting = in_background(lambda: publish(c.port, "while stuck"))
    ticks = len(clock.events)
    comments = [len(s.comments) for s in subs]
    read([*subs, clock], waiting.done, 6, "the publish to Redis stopped to be answered")
    r = waiting.join()
    assert_plain_error(r, 503)
    assert r.header("Retry-After") == "2"
    assert 1.5 < time.monotonic() - stopped_at < 5
    assert len(clock.events) >= ticks + 6, clock.describe()
    gaps = [b.time - a.time for a, b in zip(clock.events[ticks:], clock.events[ticks + 1:])]
    assert max(gaps) < 0.6, gaps  # never held up by Redis
    for s, n in zip(subs, comments):
        assert len(s.comments) >= n + 1 and not s.eof, s.describe()
    # Until Redis answers again, publishes are refused at once (the loss was noticed).
    lost = [i for i, p in enumerate(c.processes) if re.search(LOST, p.log())]
    assert lost, "no process noticed that Redis stopped answering"
    assert_refused_while_away(c)
    # Stuck for longer: the reconnections find a socket that accepts and a Redis that answers
    # nothing (each one a timeout), quietly; the streams go on.
    comments = [len(s.comments) for s in subs]
    read([*subs, clock], lambda: time.monotonic() > stopped_at + 6, 7, "")
    for s, n in zip(subs, comments):
        assert len(s.comments) >= n + 2 and not s.eof, s.describe()
    for i in lost:
        assert len(warnings_of(c.processes[i])) == 1, warnings_of(c.processes[i])

    redis[0].signal(signal.SIGCONT)
    for i in lost:
        c.processes[i].wait_for_log(BACK, timeout=10)
    after = [published(c.port, f"after {i}") for i in range(3)]
    # What Redis stored, and only that, reached every subscriber, in its order, once: the publish
    # that timed out may have been stored when Redis woke up (its 503 said only that fastsse did
    # not learn it was).
    stored = stream_ids(redis[0])
    assert stored[:3] == before and stored[-3:] == after, stored
    assert len(stored) <= 3 + 1 + 3, stored
    read(subs, lambda: all(len(s.events) >= len(stored) for s in subs), 5, "every stored update")
    for s in subs:
        assert ids(s) == stored, s.describe()
        assert not s.eof
    for p in c.processes:
        w = warnings_of(p)
        assert len(w) == (2 if re.search(LOST, p.log()) else 0), w  # lost and back, once each
    for s in [*subs, clock]:
        s.close()


# ----------------------------------------------------------------------------------------------
# A fastsse process killed: its clients resume on the other


RECONNECT_DELAY = 0.05  # a browser waits its retry (3 s by default); the test need not


class EventSourceClient:
    """A subscriber that reconnects as a browser's EventSource does: when its response ends or
    fails (its process was killed), it opens the same URL again through the front, with
    Last-Event-ID, the last id it received. .ids: every update id received, over all its
    connections; .statuses: the status of each response."""

    def __init__(self, port: int, path: str, headers: dict):
        self.port, self.path, self.headers = port, path, headers
        self.ids: list[str] = []
        self.statuses: list = []
        self.resumed_with: list[tuple[str, str]] = []  # (Last-Event-ID sent, the one answered)
        self.stream = None
        self.reopen_at = 0.0
        self.open()

    def open(self):
        h = dict(self.headers)
        if self.ids:
            h["Last-Event-ID"] = self.ids[-1]
        try:
            self.stream = HttpStream(self.port, self.path, h, connect_timeout=2)
        except OSError as e:
            self.statuses.append(repr(e))
            self.stream, self.reopen_at = None, time.monotonic() + RECONNECT_DELAY
            return
        self.stream.sock.setblocking(False)
        self.taken = 0
        self.answered = False

    def on_readable(self) -> bool:
        """Reads what came; False when the connection ended (the client reopens it later)."""
        s = self.stream
        alive = s.on_readable()
        if s.status is not None and not self.answered:
            self.answered = True
            self.statuses.append(s.status)
            if self.ids:
                self.resumed_with.append((self.ids[-1], s.header("Last-Event-ID")))
        items = s.items
        for item in items[self.taken:]:
            if isinstance(item, Event):
                self.ids.append(item.id)
        self.taken = len(items)
        if alive and not s.ended:
            return True
        s.close()
        self.stream, self.reopen_at = None, time.monotonic() + RECONNECT_DELAY
        return False

    def close(self):
        if self.stream is not None:
            self.stream.close()


class SteadyPublisher(threading.Thread):
    """Publishes `count` updates through the front at `rate` a second, one request each, in a
    thread. .stored: the ids of those answered 200; .failed: (n, what) of the others."""

    def __init__(self, port: int, count: int, rate: float):
        super().__init__(daemon=True)
        self.port, self.count, self.rate = port, count, rate
        self.stored: list[str] = []
        self.failed: list = []
        self.sent = 0

    def run(self):
        start = time.monotonic()
        for n in range(self.count):
            delay = start + n / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            try:
                r = publish(self.port, f"n={n}")
                if r.status == 200:
                    self.stored.append(r.text)
                else:
                    self.failed.append((n, r.status))
            except (OSError, AssertionError) as e:
                self.failed.append((n, repr(e)))
            self.sent = n + 1


def count_per_client(client: EventSourceClient, stored: list[str]) -> dict:
    seen = set(client.ids)
    return {"received": len(client.ids), "missing": len(set(stored) - seen),
            "repeated": len(client.ids) - len(seen), "not_stored": len(seen - set(stored)),
            "in_order": client.ids == sorted(client.ids, key=entry_key),
            "connections": len(client.statuses)}


def failover_run(cluster: Cluster, count: int, rate: float, clients_per_process: int = 3, log=lambda s: None) -> dict:
    """Clients on both processes; `count` updates published at `rate` a second; meanwhile process 1
    is killed and started again, then process 2 is (its clients then resume on the restarted one).
    Returns the counts per client and the publisher's figures."""
    c = cluster
    n_clients = clients_per_process * len(c.processes)
    headers = {**ES, "Authorization": f"Bearer {subscriber_token(['*'])}"}
    clients = [EventSourceClient(c.port, f"{HUB}?{topics_query(TOPIC)}&client={k}", headers) for k in range(n_clients)]
    sel = selectors.DefaultSelector()
    registered: dict[int, object] = {}

    def pump(until, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while not until():
            now = time.monotonic()
            if now >= deadline:
                raise Timeout(f"timed out after {timeout} s waiting for {what}")
            for k, cl in enumerate(clients):
                if cl.stream is None and now >= cl.reopen_at:
                    cl.open()
                sock = cl.stream.sock if cl.stream is not None else None
                if registered.get(k) is not sock:
                    if registered.get(k) is not None:
                        try:
                            sel.unregister(registered[k])
                        except (KeyError, ValueError):
                            pass
                    registered[k] = sock
                    if sock is not None:
                        sel.register(sock, selectors.EVENT_READ, cl)
            for key, _ in sel.select(0.02):
                if not key.data.on_readable():
                    sel.unregister(key.fileobj)
                    registered[clients.index(key.data)] = None

    try:
        pump(lambda: all(cl.statuses == [200] for cl in clients), 5, "every client's stream")
        held = [{k for k in range(n_clients) if c.holder(k) == i} for i in range(len(c.processes))]
        publisher = SteadyPublisher(c.port, count, rate)
        started = time.monotonic()
        publisher.start()
        duration = count / rate
        # Process 1 killed, and started again; then process 2, whose clients then resume on the
        # restarted one (nginx uses a server that refused again after 1 s: fastsse-upstream.conf).
        for at, action, i in ((0.15, "kill", 0), (0.3, "restart", 0), (0.65, "kill", 1), (0.8, "restart", 1)):
            pump(lambda: time.monotonic() >= started + at * duration, duration, f"{action} {i + 1}")
            log(f"{time.monotonic() - started:.2f} s: {action} process {i + 1} (published {publisher.sent})")
            if action == "kill":
                c.kill(i)
            else:
                c.restart(i)
        pump(lambda: not publisher.is_alive(), duration + 30, "the publisher")
        publisher.join()
        stored = publisher.stored
        last = max(stored, key=entry_key)
        pump(lambda: all(cl.ids and entry_key(cl.ids[-1]) >= entry_key(last) for cl in clients), 10,
             "the last update on every client")
        return {"held": held, "published": count, "stored": len(stored), "failed": publisher.failed,
                "seconds": time.monotonic() - started,
                "clients": [count_per_client(cl, stored) for cl in clients],
                "resumed_with": [cl.resumed_with for cl in clients]}
    finally:
        sel.close()
        for cl in clients:
            cl.close()


FAILOVER_UPDATES = int(os.environ.get("FASTSSE_FAILOVER_UPDATES", "1500"))


def test_clients_of_a_killed_process_resume_on_the_other_and_lose_nothing(cluster):
    c = cluster()
    result = failover_run(c, FAILOVER_UPDATES, rate=250)
    assert all(result["held"]), result["held"]
    # A publish that went to the process being killed may be lost with it (502): the publisher
    # knows, and sends again. None that was answered 200 is missing anywhere.
    assert len(result["failed"]) <= 4, result["failed"]
    for k, counts in enumerate(result["clients"]):
        assert counts["missing"] == 0 and counts["repeated"] == 0, (k, counts)
        assert counts["not_stored"] <= len(result["failed"]), (k, counts)
        assert counts["in_order"], (k, counts)
    # Every client moved at least once (each process was killed), and each time resumed where it
    # was: the answer names the id it sent, never `earliest`.
    for k, resumed in enumerate(result["resumed_with"]):
        assert resumed, (k, result["clients"][k])
        assert all(sent == answered for sent, answered in resumed), (k, resumed)


def redis_clients_of(process: Fastsse, redis: RedisServer) -> list[str]:
    """The addresses (127.0.0.1:port) of the process's connections to Redis, as CLIENT LIST names them."""
    inodes = set()
    for fd in os.listdir(f"/proc/{process.pid}/fd"):
        try:
            link = os.readlink(f"/proc/{process.pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if m := re.fullmatch(r"socket:\[(\d+)\]", link):
            inodes.add(m.group(1))
    out = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        local, remote, inode = f[1], f[2], f[9]
        if inode in inodes and int(remote.split(":")[1], 16) == redis.port:
            out.append(f"127.0.0.1:{int(local.split(':')[1], 16)}")
    return out


def test_a_client_resumes_on_a_process_that_has_not_read_its_last_update_yet(cluster, redis):
    """A process delivers an update; its client, moved to a process that has not read that entry
    yet (it lags, or lost Redis for a moment), resumes after it there: neither `earliest` and the
    whole history again, nor that update once more when the lagging process reads it."""
    c = cluster()
    subs = [c.subscribe(k) for k in range(2)]
    a, b = c.holder(0), c.holder(1)
    assert {a, b} == {0, 1}
    before = [published(c.port, f"before {i}") for i in range(3)]
    read(subs, lambda: all(len(s.events) == 3 for s in subs), 5, "the first updates")

    # Process b loses Redis (its connections closed by Redis): until it reconnects (after 200 ms or
    # so), it reads nothing.
    addresses = redis_clients_of(c.processes[b], redis[0])
    assert len(addresses) == 2, addresses
    for address in addresses:
        subprocess.run([REDIS_CLI, "-p", str(redis[0].port), "CLIENT", "KILL", "ADDR", address], check=True,
                       capture_output=True, timeout=5)
    c.processes[b].wait_for_log(LOST)
    # An update through process a (one through b is refused: 503), on subs[0]'s stream.
    for _ in range(10):
        r = publish(c.port, "x")
        if r.status == 200:
            break
        assert r.status == 503, r.describe()
    x = r.text
    read([subs[0]], lambda: len(subs[0].events) == 4, 2, "the update on process a")
    assert ids(subs[0])[-1] == x
    # Process a killed: subs[0] resumes on b, which has not read x yet.
    c.kill(a)
    subs[0].wait(lambda s: s.ended or s.eof, 2, "the end of the killed process's stream")
    again = c.subscribe(0, {"Last-Event-ID": x})
    c.processes[b].assert_logged(r" info stream \d+ opened: producer=hub uri=\S*&client=0 last-event-id=")
    assert again.header("Last-Event-ID") == x, again.describe()
    c.processes[b].wait_for_log(BACK, timeout=10)
    y = published(c.port, "y")
    read([again, subs[1]], lambda: ids(again)[-1:] == [y] and ids(subs[1])[-1:] == [y], 5, "the next update")
    assert ids(again) == [y], again.describe()  # nothing twice
    assert ids(subs[1]) == before + [x, y]
    for s in [*subs, again]:
        s.close()


# ----------------------------------------------------------------------------------------------
# Start errors


def start_with(paths, workdir: Path, url: str) -> subprocess.CompletedProcess:
    sock = workdir / "fastsse.sock"
    return subprocess.run([str(paths.binary), "--listen", f"unix:{sock}", "--engine", url], capture_output=True,
                          text=True, timeout=20, stdin=subprocess.DEVNULL)


def test_a_redis_that_cannot_be_used_at_start_is_one_line_and_exit_2(paths, workdir):
    secured = RedisServer(workdir, name="redis-password", args=["--requirepass", "the-right-one"]).start()
    try:
        refused = f"redis://127.0.0.1:{free_port()}"
        cases = {
            "refused": (refused, r"refused"),
            "unknown host": ("redis://no-such-host.invalid:6379", r"no-such-host\.invalid"),
            "wrong password": (f"redis://:not-the-password@127.0.0.1:{secured.port}", r"AUTH refused: WRONGPASS"),
            "no password": (f"redis://127.0.0.1:{secured.port}", r"NOAUTH"),
        }
        for what, (url, reason) in cases.items():
            r = start_with(paths, workdir, url)
            assert r.returncode == 2, (what, r)
            lines = r.stderr.splitlines()
            assert len(lines) == 1, (what, r.stderr)
            assert lines[0].startswith("fastsse: the Redis engine at redis://"), (what, lines)
            assert re.search(reason, lines[0]), (what, lines)
            assert "not-the-password" not in r.stderr, r.stderr
            assert not (workdir / "fastsse.sock").exists()
        # The right password: it starts, and says where it is connected (without the password).
        p = Fastsse(paths.binary, make_dir(workdir / "right"), f"unix:{workdir / 'fastsse.sock'}",
                    ["--engine", f"redis://:the-right-one@127.0.0.1:{secured.port}"])
        try:
            p.wait_started()
            p.assert_logged(r" info Redis engine: connected to redis://")
            assert "the-right-one" not in p.log()
        finally:
            p.stop()
    finally:
        secured.stop()
