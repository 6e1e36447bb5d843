"""The command producer against hostile or awkward input, through nginx: a flood of refused requests
must not stall the event loop (an unrelated clock stream keeps ticking), a line completed after its
quiet-time flush gives no extra event, and at a command's exit its stdout and stderr tails are not
sent one pipe after the other.

One fastsse + nginx for the module. Commands that must wait for the test poll for a file
("go-TAG" in the module's directory), each test with its own TAG."""
from __future__ import annotations

import re
import selectors
import signal
import socket
import time

import pytest

from conftest import stays_quiet
from commandlib import CMD_NGINX_CONF, CommandStack, PATH_ENV, cmd_path, of_type, proc_state, script, wait_exit, \
    write_config
from fastsse_testlib import ES, HttpStream, _stat_fields, get, make_dir, wait_until

# The README's ping-host pattern with a larger bound: each compile of it takes milliseconds.
HOG_PATTERN = "[a-z0-9][a-z0-9.-]{0,1000}"
# Fails the pattern at its slash, after the matcher went through the name.
REFUSED_QUERY = "host=" + "example." * 30 + "org%2Fetc"


class Hostile(CommandStack):
    def go(self, tag: str):
        (self.dir / f"go-{tag}").touch()


@pytest.fixture(scope="module")
def hc(paths, make_module_stack) -> Hostile:
    d = make_dir(paths.work / "hostile-cmd")
    wait_go = 'while [ ! -e "go-$1" ]; do sleep 0.02; done\n'
    progress = script(d, "progress.sh", r"""
printf 'progress 10%%'
""" + wait_go + r"""
printf '\n'
printf 'x\r'
while [ ! -e "go-$1-cr" ]; do sleep 0.02; done
printf '\n\n'
echo done
""")
    alternate = script(d, "alternate.sh", r"""
echo "ready $$"
""" + wait_go + r"""
for i in 1 2 3 4 5 6; do echo "out$i"; echo "err$i" >&2; done
""")
    tag = {"tag": {"pattern": "[a-z0-9]+"}}
    config = write_config(d / "fastsse.toml", {
        "hog": {"argv": ["/bin/echo", "{host}"], "params": {"host": {"pattern": HOG_PATTERN, "max_length": 1001}}},
        "progress": {"argv": [progress, "{tag}"], "cwd": str(d), "env": PATH_ENV, "params": tag},
        "alternate": {"argv": [alternate, "{tag}"], "cwd": str(d), "env": PATH_ENV, "params": tag},
    })
    return Hostile(make_module_stack(d, ["--config", str(config)], nginx_conf=CMD_NGINX_CONF), d)


@pytest.fixture(autouse=True)
def nginx_stays_quiet(hc):
    with stays_quiet(hc.stack):
        yield


def cpu_seconds(pid: int) -> float:
    fields = _stat_fields(pid)  # from the state letter on: utime and stime are the 12th and 13th
    return (int(fields[11]) + int(fields[12])) / 100.0


class Hammer:
    """Connections that each send `batch` pipelined requests, read as many status lines, and start
    again (on a new connection when nginx closed the old one)."""

    STATUS = re.compile(rb"HTTP/1\.1 (\d{3}) ")

    def __init__(self, port: int, path: str, connections: int, batch: int = 10):
        self.port = port
        self.request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
        self.batch = batch
        self.statuses: dict[int, int] = {}
        self.conns = [self._open() for _ in range(connections)]

    def _open(self) -> dict:
        sock = socket.create_connection(("127.0.0.1", self.port))
        sock.sendall(self.request * self.batch)
        sock.setblocking(False)
        return {"sock": sock, "buf": b"", "seen": 0}

    def register(self, sel: selectors.BaseSelector):
        for c in self.conns:
            sel.register(c["sock"], selectors.EVENT_READ, self)
        self.sel = sel

    def on_readable(self, key, more: bool):
        c = next(c for c in self.conns if c["sock"] is key.fileobj)
        try:
            data = c["sock"].recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except ConnectionResetError:
            data = b""
        c["buf"] += data
        found = [int(m) for m in self.STATUS.findall(c["buf"])]
        for code in found[c["seen"]:]:
            self.statuses[code] = self.statuses.get(code, 0) + 1
        c["seen"] = len(found)
        if data and c["seen"] < self.batch:
            return
        # A batch answered, or the connection closed: the next batch, while the hammering lasts.
        self.sel.unregister(c["sock"])
        if not data or not more:
            c["sock"].close()
            if not more:
                self.conns.remove(c)
                return
            c.update(self._open())
        else:
            c["buf"], c["seen"] = b"", 0
            c["sock"].setblocking(True)
            c["sock"].sendall(self.request * self.batch)
            c["sock"].setblocking(False)
        self.sel.register(c["sock"], selectors.EVENT_READ, self)

    def close(self):
        for c in self.conns:
            c["sock"].close()


def test_refused_requests_do_not_stall_the_loop(hc, client, capsys):
    # The parameter is refused (400) by its pattern, the loop must spend microseconds on it: a clock
    # stream in the same fastsse goes on ticking every 100 ms while 30 connections hammer it.
    refused = get(hc.port, cmd_path("hog", REFUSED_QUERY))
    assert refused.status == 400 and "does not match its pattern" in refused.text, refused.describe()

    clock = client(hc.stack, "/t/fast100", ES)
    clock.wait_events(2, timeout=5)
    clock.sock.setblocking(False)
    hammer = Hammer(hc.port, cmd_path("hog", REFUSED_QUERY), connections=30)
    cpu_before = cpu_seconds(hc.fs.pid)
    sel = selectors.DefaultSelector()
    sel.register(clock.sock, selectors.EVENT_READ, clock)
    hammer.register(sel)
    started = time.monotonic()
    seconds = 4.0
    try:
        while hammer.conns:
            more = time.monotonic() - started < seconds
            for key, _ in sel.select(0.5):
                if key.data is clock:
                    assert clock.on_readable(), f"the clock stream ended: {clock.describe()}"
                else:
                    hammer.on_readable(key, more)
            if time.monotonic() - started > seconds + 10:
                raise AssertionError(f"the hammering did not end: {hammer.statuses}")
    finally:
        sel.close()
        hammer.close()
    ended = time.monotonic()
    cpu = cpu_seconds(hc.fs.pid) - cpu_before
    refusals = hammer.statuses.get(400, 0)

    ticks = [e.time for e in clock.events if started <= e.time <= ended]
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    with capsys.disabled():  # the figures, for the record, whether the test passes or not
        print(f"\n{refusals} refused requests in {ended - started:.1f} s ({hammer.statuses}); fastsse CPU "
              f"{cpu:.2f} s, {cpu / max(refusals, 1) * 1e6:.0f} us per refused request (10 ms ticks); "
              f"clock: {len(ticks)} ticks, largest gap {max(gaps, default=0) * 1000:.0f} ms")
    assert len(ticks) >= 20, ticks
    # A 100 ms clock; a generous bound, far below the seconds an unbounded cost per request gives.
    assert max(gaps) < 0.6, gaps
    assert set(hammer.statuses) == {400}, hammer.statuses
    assert refusals >= 1000, "the hammering did not happen"


def test_a_line_completed_after_its_quiet_flush_gives_no_extra_event(hc, client):
    # A progress line without its newline is sent after `quiet`; the newline that later completes
    # it is no line of its own. The same for "x\r" (the CR of a CRLF is not data).
    s = client(hc.stack, cmd_path("progress", "tag=progress"), ES)
    first = s.wait_events(1, timeout=5)[0]
    assert (first.type, first.data, first.id) == ("stdout", "progress 10%", "1")
    hc.go("progress")
    second = s.wait_events(2, timeout=5)[1]
    assert (second.type, second.data) == ("stdout", "x"), s.describe()
    hc.go("progress-cr")
    wait_exit(s)
    lines = [(e.data, e.id) for e in of_type(s, "stdout", "stderr")]
    # After "x": its CRLF's LF (nothing), then an empty line of the command's own, then "done".
    assert lines == [("progress 10%", "1"), ("x", "2"), ("", "3"), ("done", "4")], s.describe()
    assert b"\r" not in bytes(s.body)


def test_lines_left_in_both_pipes_at_the_exit_alternate(hc, client):
    # fastsse is stopped while the command writes its stdout and stderr lines alternately and exits:
    # when it goes on, both pipes are full and the exit is pending. The true order across two pipes
    # is lost; what fastsse can do is not put all of one pipe's lines behind the other's.
    s = client(hc.stack, cmd_path("alternate", "tag=alt"), ES)
    first = s.wait_events(1, timeout=5)[0]
    pid = int(first.data.split()[1])
    hc.fs.signal(signal.SIGSTOP)
    try:
        hc.go("alt")
        wait_until(lambda: proc_state(pid) == "Z", 10, "the command to exit (unreaped: fastsse is stopped)",
                   poll=0.005)
    finally:
        hc.fs.signal(signal.SIGCONT)
    info = wait_exit(s)
    assert info["code"] == 0, info
    lines = [(e.type, e.data) for e in of_type(s, "stdout", "stderr")]
    expected = [pair for i in range(1, 7) for pair in (("stdout", f"out{i}"), ("stderr", f"err{i}"))]
    assert lines[1:] == expected, s.describe()
