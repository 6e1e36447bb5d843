"""The metrics page (README, "Metrics") behind nginx as nginx/fastsse-locations.conf ships it
(location = /fastsse/metrics), and behind Apache's mod_proxy_fcgi as apache/ ships it: Prometheus's
own checker (`promtool check metrics`, Debian's prometheus package) passes the page, and the values
move as streams open and close, events go out, a client leaves, a slow client is dropped, requests
are refused and the hub takes a publish. The shipped nginx location answers only this machine's
loopback addresses 127.0.0.1 and ::1 (a request from 127.0.0.2 gets 403), and only GET and HEAD
(405). Several processes: each at its own URL (nginx/fastsse-metrics-per-process.conf)."""
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from apachelib import ApacheStack
from conftest import Stack
from fastsse_testlib import (ES, HttpStream, Nginx, get, make_dir, start_on_free_port, start_processes,
                             wait_until)
from test_hub import publisher_token, with_keys

METRICS = "/fastsse/metrics"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(page: str) -> dict:
    """{(name, ((label, value), ...)): value} of every sample on the page."""
    out = {}
    for line in page.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        labels = tuple(sorted(LABEL.findall(m.group(2) or "")))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def publish(port: int, topic: str, data: str, token=None):
    from urllib.parse import urlencode
    body = urlencode([("topic", topic), ("data", data)]).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return get(port, "/.well-known/mercure", headers, method="POST", body=body, timeout=20)


def scrape(port: int, path: str = METRICS) -> dict:
    r = get(port, path)
    assert r.status == 200, r.describe()
    assert r.header("Content-Type") == CONTENT_TYPE, r.describe()
    return parse(r.text)


def promtool_check(page: str):
    """Prometheus's own reading of the page: its parser, and its lint (names, units, HELP)."""
    assert os.access(PROMTOOL, os.X_OK), "promtool not found: install Debian's prometheus package"
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=page.encode(), capture_output=True, timeout=30)
    assert p.returncode == 0 and not p.stdout.strip() and not p.stderr.strip(), \
        f"promtool check metrics: {p.returncode}\n{p.stdout.decode()}{p.stderr.decode()}\n--- page\n{page}"


def request_from(source: str, port: int, method: str, path: str) -> int:
    """The status of a request sent from `source` (a loopback address of this machine)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        head = b""
        while b"\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                break
            head += chunk
    return int(head.split(b" ", 2)[1])


@pytest.fixture(scope="module")
def stack(paths, make_module_stack):
    """fastsse behind nginx as shipped, the hub's keys in its environment; a small stream_buffer so
    that a client that reads nothing is dropped soon."""
    workdir = make_dir(paths.work / "metrics")
    return with_keys(lambda: make_module_stack(workdir, ["--stream-buffer", "65536"]))


def test_the_page_is_prometheus_text_that_promtool_passes(stack):
    r = get(stack.port, METRICS)
    assert r.status == 200, r.describe()
    assert r.header("Content-Type") == CONTENT_TYPE
    promtool_check(r.text)
    samples = parse(r.text)
    # Every producer from the start, at zero; the process's own figures from /proc.
    for producer in ("clock", "command", "hub"):
        assert ("fastsse_streams_open", (("producer", producer),)) in samples
    assert value(samples, "process_open_fds") > 0
    assert value(samples, "process_max_fds") >= value(samples, "process_open_fds")
    assert value(samples, "process_resident_memory_bytes") > 1_000_000
    assert abs(value(samples, "process_start_time_seconds") - time.time()) < 3600
    assert value(samples, "fastsse_build_info", version="0.1.0") == 1
    # HEAD: the same head, no body.
    h = get(stack.port, METRICS, method="HEAD")
    assert h.status == 200 and h.header("Content-Type") == CONTENT_TYPE and h.body == b"", h.describe()


def test_post_is_405_with_allow(stack):
    r = get(stack.port, METRICS, method="POST", body=b"x=1", headers={"Content-Type": "text/plain"})
    assert r.status == 405, r.describe()
    assert r.header("Allow") == "GET, HEAD"


def test_only_this_machine_may_read_it(paths, workdir):
    # A stack of its own: nginx logs each refusal as an error, which the module's stack must not.
    own = Stack(paths, workdir)
    try:
        assert request_from("127.0.0.1", own.port, "GET", METRICS) == 200
        # Another loopback address is another source, as a remote one would be: the shipped location
        # allows 127.0.0.1 and ::1 alone.
        assert request_from("127.0.0.2", own.port, "GET", METRICS) == 403
        # The streams themselves are for anyone.
        assert request_from("127.0.0.2", own.port, "HEAD", "/events/clock") == 200
        complaints = own.complaints()
        assert len(complaints) == 1 and "access forbidden by rule, client: 127.0.0.2" in complaints[0], complaints
    finally:
        own.stop()


def test_values_move_as_streams_open_send_and_leave(stack):
    before = scrape(stack.port)
    streams = [HttpStream(stack.port, "/t/fast", ES) for _ in range(3)]
    try:
        for s in streams:
            s.wait_events(2)
        during = scrape(stack.port)
        assert value(during, "fastsse_streams_open", producer="clock") == \
            value(before, "fastsse_streams_open", producer="clock") + 3
        assert value(during, "fastsse_streams_opened_total", producer="clock") == \
            value(before, "fastsse_streams_opened_total", producer="clock") + 3
        assert value(during, "fastsse_events_written_total") >= value(before, "fastsse_events_written_total") + 6
        assert value(during, "fastsse_written_bytes_total") > value(before, "fastsse_written_bytes_total") + 6 * 20
        ticks = value(during, "fastsse_fanout_seconds_count", source="clock")
        assert ticks > value(before, "fastsse_fanout_seconds_count", source="clock")
        assert value(during, "fastsse_fanout_seconds_bucket", source="clock", le="+Inf") == ticks
        # One client leaves: counted as such, within the moment nginx takes to tell fastsse.
        streams[0].close()
        def left():
            now = scrape(stack.port)
            return (value(now, "fastsse_streams_closed_total", producer="clock", reason="client_left") ==
                    value(before, "fastsse_streams_closed_total", producer="clock", reason="client_left") + 1 and
                    now)
        after = wait_until(left, 5, "the client's departure counted")
        assert value(after, "fastsse_streams_open", producer="clock") == \
            value(before, "fastsse_streams_open", producer="clock") + 2
    finally:
        for s in streams:
            s.close()
    wait_until(lambda: value(scrape(stack.port), "fastsse_streams_open", producer="clock") ==
               value(before, "fastsse_streams_open", producer="clock"), 5, "the streams counted closed")


def test_a_finished_stream_and_refusals_are_counted(stack):
    before = scrape(stack.port)
    s = HttpStream(stack.port, "/t/count3", ES)
    s.wait_end()
    r = get(stack.port, "/events/clock", {"Accept": "text/html"})
    assert r.status == 406
    r = get(stack.port, "/t/no-producer", ES)
    assert r.status == 404
    r = get(stack.port, "/events/clock", ES, method="DELETE")
    assert r.status == 405
    after = wait_until(lambda: (lambda now: value(now, "fastsse_streams_closed_total", producer="clock",
                                                  reason="finished") > value(before, "fastsse_streams_closed_total",
                                                                             producer="clock", reason="finished")
                                and now)(scrape(stack.port)), 5, "the finished stream counted")
    for status in ("404", "405", "406"):
        assert value(after, "fastsse_requests_refused_total", status=status) == \
            value(before, "fastsse_requests_refused_total", status=status) + 1, status
    promtool_check(get(stack.port, METRICS).text)  # with statuses as labels now


def test_a_slow_client_is_counted_as_dropped_and_a_publish_by_status(stack):
    topic = "https://example.com/metrics/slow"
    before = scrape(stack.port)
    # A subscriber that reads nothing, with a small receive buffer: nginx's and the socket's buffers
    # fill, then fastsse's queue passes stream_buffer (64 KiB here) and the client is dropped.
    slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(("127.0.0.1", stack.port))
    slow.sendall(f"GET /t/hub-anonymous?topic={topic} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 f"Accept: text/event-stream\r\n\r\n".encode())
    try:
        wait_until(lambda: value(scrape(stack.port), "mercure_subscribers_connected") ==
                   value(before, "mercure_subscribers_connected") + 1, 5, "the subscriber counted")
        token = publisher_token()
        big = "x" * 200_000

        def dropped():
            r = publish(stack.port, topic, big, token)
            assert r.status == 200, r.describe()
            now = scrape(stack.port)
            return value(now, "fastsse_streams_closed_total", producer="hub", reason="slow_client") == \
                value(before, "fastsse_streams_closed_total", producer="hub", reason="slow_client") + 1 and now
        after = wait_until(dropped, 30, "the slow client dropped", poll=0.05)
        published = value(after, "fastsse_hub_publishes_total", status="200") - \
            value(before, "fastsse_hub_publishes_total", status="200")
        assert published >= 1
        assert value(after, "mercure_updates_total") - value(before, "mercure_updates_total") == published
        # The hub's subscriber goes with its stream, at the end of the loop's round: a scrape that
        # came in the same round (accepted in the publish's batch) may still see it.
        wait_until(lambda: value(scrape(stack.port), "mercure_subscribers_connected") ==
                   value(before, "mercure_subscribers_connected"), 5, "the subscriber gone")
        assert value(after, "mercure_subscribers_total") == value(before, "mercure_subscribers_total") + 1
        assert value(after, "fastsse_history_entries") > 0
        assert value(after, "fastsse_history_bytes") >= 200_000
        assert value(after, "fastsse_fanout_seconds_count", source="channel") >= \
            value(before, "fastsse_fanout_seconds_count", source="channel") + published
        # A refused publish: counted by its status, not as an update.
        r = publish(stack.port, topic, "no token")
        assert r.status == 401
        last = scrape(stack.port)
        assert value(last, "fastsse_hub_publishes_total", status="401") == \
            value(before, "fastsse_hub_publishes_total", status="401") + 1
        assert value(last, "mercure_updates_total") == value(after, "mercure_updates_total")
    finally:
        slow.close()


def test_behind_apache_proxy_fcgi(paths):
    workdir = make_dir(paths.work / "metrics-apache")
    apache = ApacheStack(paths, workdir, "proxy_fcgi")
    try:
        before = scrape(apache.port)
        s = HttpStream(apache.port, "/events/t/fast", ES)
        try:
            s.wait_events(2)
            r = get(apache.port, METRICS)
            assert r.status == 200, r.describe()
            assert r.header("Content-Type") == CONTENT_TYPE
            promtool_check(r.text)
            during = parse(r.text)
            assert value(during, "fastsse_streams_open", producer="clock") == \
                value(before, "fastsse_streams_open", producer="clock") + 1
            assert value(during, "fastsse_events_written_total") > value(before, "fastsse_events_written_total")
        finally:
            s.close()
        assert get(apache.port, METRICS, method="POST", body=b"x").status == 405
        complaints = apache.complaints()
        assert complaints == [], complaints
    finally:
        apache.stop()


@pytest.mark.parametrize("web_server", ["nginx", "apache"])
def test_several_processes_each_at_its_own_url(paths, workdir, web_server):
    """Several processes as shipped: nginx/fastsse-upstream.conf with
    nginx/fastsse-metrics-per-process.conf, or apache/fastsse-balancer.conf; their sockets the
    test's. /fastsse/metrics/N is process N's page, whichever process the front picks for the
    streams."""
    from test_several_processes import upstream_conf
    from apachelib import Apache
    # Apache's children (www-data, when run as root) must reach the sockets: a folder of their own.
    reach = Path(tempfile.mkdtemp(prefix="fsse-mt-", dir="/tmp"))
    reach.chmod(0o755)
    sockets = [reach / f"fastsse-{i}.sock" for i in (1, 2)]
    processes, streams, server = [], [], None
    try:
        start_processes(paths.binary, workdir, sockets, processes)
        if web_server == "nginx":
            per_process = (paths.source / "nginx/fastsse-metrics-per-process.conf").read_text()
            for i, sock in enumerate(sockets, 1):
                assert f"unix:/run/fastsse-{i}.sock;" in per_process, "update this test"
                per_process = per_process.replace(f"unix:/run/fastsse-{i}.sock;", f"unix:{sock};")
            server = start_on_free_port(lambda: Nginx(paths.source, workdir, "fastsse", extra_conf=per_process,
                                                      http_conf=upstream_conf(paths.source, sockets)))
        else:
            www = make_dir(reach / "www")
            access = reach / "access.log"
            access.touch()
            access.chmod(0o666)
            server = start_on_free_port(lambda: Apache(paths.source, workdir, reach, "balancer", docroot=www,
                                                       access_log=access, upstream=sockets))
        for _ in range(3):
            s = HttpStream(server.port, "/events/clock", ES)
            streams.append(s)
            s.wait_events(1)
        pages = [scrape(server.port, f"{METRICS}/{i}") for i in (1, 2)]
        held = [value(page, "fastsse_streams_open", producer="clock") for page in pages]
        assert sorted(held) == [1, 2], held  # spread by the front; each page is one process's
        for process, page in zip(processes, pages):
            opened = len(re.findall(r" info stream \d+ opened: producer=clock", process.log()))
            assert value(page, "fastsse_streams_opened_total", producer="clock") == opened
        if web_server == "nginx":
            assert request_from("127.0.0.2", server.port, "GET", f"{METRICS}/1") == 403
            complaints = server.error_log().splitlines()
            assert len(complaints) == 1 and "access forbidden by rule" in complaints[0], complaints
        else:
            assert server.unexpected_lines() == []
    finally:
        for s in streams:
            s.close()
        if server is not None:
            server.stop()
        for p in processes:
            p.stop()
        shutil.rmtree(reach, ignore_errors=True)
