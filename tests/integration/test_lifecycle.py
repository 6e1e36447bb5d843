"""A stream's life and the process's end, through nginx: clients that leave (each stream's
descriptor counted), the stream limit, signals. Each test has its own fastsse and nginx. A client
leaving and SIGTERM with streams open, behind every server in front, are in test_front.py."""
import signal
import time

import pytest

from fastsse_testlib import ES, get, wait_until


def settled_fd_count(stack) -> int:
    """fastsse's descriptors once it is serving: one request answered, nothing open."""
    r = get(stack.port, "/t/no-producer", ES)
    assert r.status == 404, r.describe()
    return stack.fastsse.settled_fd_count()


def test_client_disconnect_is_noticed_and_stream_freed(make_stack, client):
    stack = make_stack()
    fs = stack.fastsse
    baseline = settled_fd_count(stack)
    # Idle streams (one event a day): nothing is written to them, so fastsse can only learn that
    # the client left from nginx closing the upstream connection.
    streams = [client(stack, f"/t/idle?client={i}", ES) for i in range(3)]
    for s in streams:
        s.wait_comments(1, timeout=3)
    ids = [fs.stream_id(f"client={i}") for i in range(3)]
    assert fs.fd_count() == baseline + 3  # one descriptor per stream

    streams[1].close()
    wait_until(lambda: fs.fd_count() == baseline + 2, 2, "fastsse to release the stream's descriptor")
    fs.assert_logged(rf" info stream {ids[1]} closed: client gone")
    # The others are untouched.
    assert f"stream {ids[0]} closed" not in fs.log() and f"stream {ids[2]} closed" not in fs.log()

    streams[0].close()
    streams[2].close()
    wait_until(lambda: fs.fd_count() == baseline, 2, f"fastsse's descriptors back to {baseline}")
    for i in (0, 2):
        fs.assert_logged(rf" info stream {ids[i]} closed: client gone \(after [\d.]+ s, 0 events\)")


def test_client_disconnect_from_ticking_stream(make_stack, client):
    stack = make_stack()
    fs = stack.fastsse
    baseline = settled_fd_count(stack)
    s = client(stack, "/t/fast100?who=ticking", ES)
    s.wait_events(2, timeout=3)
    sid = fs.stream_id("who=ticking")
    s.close()
    wait_until(lambda: fs.fd_count() == baseline, 2, f"fastsse's descriptors back to {baseline}")
    fs.assert_logged(rf" info stream {sid} closed: client gone")


def test_over_max_streams_is_503_with_retry_after(make_stack, client):
    stack = make_stack(["--max-streams", "2"])
    fs = stack.fastsse
    a = client(stack, "/t/idle?slot=a", ES)
    b = client(stack, "/t/idle?slot=b", ES)
    a.wait_comments(1, timeout=3)
    b.wait_comments(1, timeout=3)

    r = get(stack.port, "/t/idle?slot=c", ES)
    assert r.status == 503, r.describe()
    assert r.header("Content-Type") == "text/plain; charset=utf-8"
    assert r.header("Retry-After") is not None and r.header("Retry-After").isdigit(), r.headers
    assert "(2)" in r.text, r.text  # names the limit

    # A client leaving frees its slot.
    a.close()
    fs.wait_connections(1)

    def served():
        s = client(stack, "/t/idle?slot=d", ES)
        s.wait_headers(3)
        return s.status == 200

    wait_until(served, 3, "a new stream to be served after one left", poll=0.05)


@pytest.mark.parametrize("signo", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_without_streams_exits_at_once(make_stack, signo):
    stack = make_stack()
    fs = stack.fastsse
    settled_fd_count(stack)
    start = time.monotonic()
    fs.signal(signo)
    assert fs.wait(timeout=2) == 0
    assert time.monotonic() - start < 2.0
    log = fs.log()
    assert f" info received {signal.Signals(signo).name}" in log
    assert " info shutting down: 0 streams open" in log
    assert log.rstrip().endswith(" info stopped")
    assert not (stack.workdir / "fastsse.sock").exists()


def test_sighup_without_a_config_file_is_logged_and_the_streams_go_on(make_stack, client):
    # Started without --config there is nothing to read again: SIGHUP (a terminal's hangup, a
    # `kill -HUP` meant as "reload") must not end fastsse and every stream with it, as its default
    # action would. (Reloads of a file: test_reload.py.)
    stack = make_stack()
    fs = stack.fastsse
    s = client(stack, "/t/fast100?who=hup", ES)
    s.wait_events(2, timeout=3)
    sid = fs.stream_id("who=hup")
    fs.signal(signal.SIGHUP)
    fs.wait_for_log(r" warning SIGHUP: fastsse was started without --config: there is no file to read again",
                    timeout=2)
    seen = len(s.events)
    s.wait_events(seen + 3, timeout=3)
    ids = [int(e.id) for e in s.events]
    assert ids == list(range(1, len(ids) + 1)), ids  # the same stream, no gap, no reconnect
    assert not s.retries, s.items[-5:]
    assert fs.proc.poll() is None
    # A second one: still nothing but its line.
    fs.signal(signal.SIGHUP)
    fs.wait_for_log(r" warning SIGHUP: fastsse was started without --config", timeout=2, count=2)
    s.wait_events(len(s.events) + 2, timeout=3)
    r = get(stack.port, "/t/idle?who=after-hup", ES, method="HEAD")
    assert r.status == 200, r.describe()
    log = fs.log()
    assert log.count("SIGHUP") == 2, log[-2000:]
    assert f"stream {sid} closed" not in log and not s.eof, log[-2000:]
    assert fs.proc.poll() is None
