"""Whoever can write to fastsse's socket (the web server's user, any local user when it listens on
TCP, a request forgery that writes raw bytes) sends what libfcgi 2.4.2 cannot take: fastsse refuses
it before libfcgi reads it, answers where the FastCGI spec asks for an answer, and goes on serving.
Each test here crashed, aborted, leaked or spun fastsse before (issue 9)."""
import os
import re
import signal
import socket
import struct
import time

import pytest

from fastsse_testlib import (FCGI_BEGIN_REQUEST, FCGI_END_REQUEST, FCGI_PARAMS, FCGI_RESPONDER, FCGI_STDIN,
                             Fastsse, FcgiRequest, fcgi_pairs)

FCGI_GET_VALUES, FCGI_GET_VALUES_RESULT, FCGI_UNKNOWN_TYPE = 9, 10, 11
BEGIN_BODY = struct.pack("!HB5x", FCGI_RESPONDER, 0)
CLOCK = {"REQUEST_METHOD": "GET", "REQUEST_URI": "/hostile", "QUERY_STRING": "", "HTTP_ACCEPT": "text/event-stream",
         "FASTSSE_PRODUCER": "clock", "FASTSSE_INTERVAL": "50"}


def record(rtype: int, request_id: int, content: bytes = b"", padding: int = 0) -> bytes:
    return struct.pack("!BBHHBx", 1, rtype, request_id, len(content), padding) + content + bytes(padding)


def request_bytes(params: dict, request_id: int = 1) -> bytes:
    return (record(FCGI_BEGIN_REQUEST, request_id, BEGIN_BODY) + record(FCGI_PARAMS, request_id, fcgi_pairs(params))
            + record(FCGI_PARAMS, request_id) + record(FCGI_STDIN, request_id))


def long_length(n: int) -> bytes:
    return struct.pack("!I", n | 0x80000000)


def four_max_conns() -> bytes:
    """FCGI_GET_VALUES naming FCGI_MAX_CONNS four times: libfcgi wrote 68 bytes into a 64-byte stack buffer."""
    return record(FCGI_GET_VALUES, 0, b"\x0e\x00FCGI_MAX_CONNS" * 4)


class Peer:
    """A raw connection to fastsse's socket, reading whatever records come back until it closes."""

    def __init__(self, path: str, data: bytes):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(path)
        self.sock.sendall(data)

    def read_all(self) -> list[tuple[int, int, bytes]]:
        buf = b""
        while chunk := self.sock.recv(65536):
            buf += chunk
        self.sock.close()
        out = []
        while len(buf) >= 8:
            _, rtype, rid, length, padding = struct.unpack("!BBHHBx", buf[:8])
            out.append((rtype, rid, buf[8:8 + length]))
            buf = buf[8 + length + padding:]
        assert buf == b"", buf
        return out


def sock_path(fs: Fastsse) -> str:
    return fs.listen[len("unix:"):]


def assert_still_serving(fs: Fastsse):
    """fastsse is alive and streams a clock to a well-formed request."""
    assert fs.proc.poll() is None, f"fastsse exited ({fs.proc.returncode}); log:\n{fs.log()[-3000:]}"
    r = FcgiRequest(sock_path(fs), CLOCK)
    try:
        r.read_until(lambda r: b"id: 2\n\n" in r.stdout, 3, "two events")
    finally:
        r.close()


def test_get_values_is_answered_by_fastsse_not_libfcgi(fastsse):
    answer = Peer(sock_path(fastsse), four_max_conns() + request_bytes(CLOCK)).read_all()
    # One answer, each known name once, then the connection closed: the request behind it is not served.
    assert answer == [(FCGI_GET_VALUES_RESULT, 0, b"\x0e\x05FCGI_MAX_CONNS15000")], answer
    fastsse.wait_for_log(r" warning refused a connection: a management record \(type 9\)")
    assert_still_serving(fastsse)


def test_record_hidden_in_begin_request_padding(fastsse):
    hidden = four_max_conns()
    begin = struct.pack("!BBHHBx", 1, FCGI_BEGIN_REQUEST, 1, 8, len(hidden)) + BEGIN_BODY
    data = begin + hidden + record(FCGI_PARAMS, 1, fcgi_pairs(CLOCK)) + record(FCGI_PARAMS, 1) + record(FCGI_STDIN, 1)
    assert Peer(sock_path(fastsse), data).read_all() == []
    fastsse.wait_for_log(r" warning refused a connection: FCGI_BEGIN_REQUEST with padding")
    assert_still_serving(fastsse)


@pytest.mark.parametrize("pair", [
    long_length(0x40000000) + long_length(0x40000000) + b"ab",  # past INT_MAX: libfcgi's Malloc assertion
    long_length(0x7ffffff0) + b"\x01ab",                         # just under: a 2 GiB allocation
    b"\x05\x01abcde",                                            # one byte short
], ids=["past-int-max", "2GiB", "one-short"])
def test_param_lengths_past_what_came(fastsse, pair):
    params = fcgi_pairs(CLOCK) + pair
    data = (record(FCGI_BEGIN_REQUEST, 1, BEGIN_BODY) + record(FCGI_PARAMS, 1, params) + record(FCGI_PARAMS, 1)
            + record(FCGI_STDIN, 1))
    assert Peer(sock_path(fastsse), data).read_all() == []
    fastsse.wait_for_log(r" warning refused a connection: a param whose length runs past the params that came")
    assert_still_serving(fastsse)


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M).group(1))


def test_unknown_management_records_leak_nothing(fastsse):
    # libfcgi leaked 48 bytes per record of an unknown type read before a request: 200 connections
    # of 2,000 such records grew fastsse by about 19 MB. Now the first one closes the connection,
    # answered once, and libfcgi reads none of it.
    flood = record(200, 0) * 2000 + request_bytes(CLOCK)
    for _ in range(5):  # warm up the allocator
        Peer(sock_path(fastsse), flood).read_all()
    before = rss_kb(fastsse.pid)
    for _ in range(200):
        answer = Peer(sock_path(fastsse), flood).read_all()
        assert answer == [(FCGI_UNKNOWN_TYPE, 0, b"\xc8" + bytes(7))], answer[:3]
    grown = rss_kb(fastsse.pid) - before
    assert grown < 4096, f"fastsse grew by {grown} kB"
    # 205 refusals in a second or two: a bounded number logged one by one, the rest counted.
    fastsse.wait_for_log(r" warning refused \d+ more connections in the last second \(not logged one by one\)")
    assert len(re.findall(r" refused a connection: ", fastsse.log())) < 100
    assert_still_serving(fastsse)


def test_role_other_than_responder_gets_unknown_role(fastsse):
    data = record(FCGI_BEGIN_REQUEST, 3, struct.pack("!HB5x", 2, 0)) + record(FCGI_PARAMS, 3) + record(FCGI_STDIN, 3)
    answer = Peer(sock_path(fastsse), data).read_all()
    assert answer == [(FCGI_END_REQUEST, 3, b"\0\0\0\0\x03\0\0\0")], answer  # FCGI_UNKNOWN_ROLE
    assert_still_serving(fastsse)


def test_client_values_cannot_forge_log_lines(fastsse):
    forged = "2026-11-30T00:00:00.000 info stream 1 closed: forged"
    query = "lastEventId=5%0A" + forged.replace(" ", "%20") + "%0D%1B[2J"
    r = FcgiRequest(sock_path(fastsse), dict(CLOCK, QUERY_STRING=query, REQUEST_URI="/x?" + query,
                                             HTTP_LAST_EVENT_ID="7\n" + forged + "\x1b[31m"))
    try:
        r.read_until(lambda r: b"id: 8\n\n" in r.stdout, 3, "the first event after id 7")
    finally:
        r.close()
    fastsse.wait_for_log(r" info stream \d+ opened: .*last-event-id=7\\n2026")
    log = fastsse.log()
    assert "\x1b" not in log
    assert not re.search(r"^" + re.escape(forged), log, re.M), log


def test_sigterm_ends_each_stream_with_its_location_retry(fastsse):
    r = FcgiRequest(sock_path(fastsse), dict(CLOCK, FASTSSE_RETRY="9999"))
    try:
        r.read_until(lambda r: b"id: 1\n\n" in r.stdout, 3, "the first event")
        fastsse.signal(signal.SIGTERM)
        r.read_until(lambda r: r.eof, 3, "the end of the stream")
    finally:
        r.close()
    assert r.stdout.endswith(b"\n\nretry: 9999\n\n"), r.stdout[-80:]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(os.environ.get("FASTSSE_SANITIZED") == "1",
                    reason="UBSan's first check of each type opens a pipe to probe memory: with no descriptor "
                           "left it reports a false 'invalid vptr' (this test runs in the normal build)")
def test_out_of_descriptors_pauses_accepting(paths, workdir):
    # 40 descriptors in all: a few connections that never send their head use up the rest. accept()
    # then fails with EMFILE while the connection waits in the backlog, and the socket stays
    # readable: before, fastsse spun at 100% CPU logging millions of lines until the head timeout.
    sock = workdir / "fastsse.sock"
    fs = Fastsse(paths.binary, workdir, f"unix:{sock}", wrapper=("prlimit", "--nofile=40:40", "--"))
    idle = []
    try:
        fs.wait_started()
        fs.wait_for_log(r" warning max_streams 15000 is more than the descriptor limit 40 allows")
        for _ in range(50):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(str(sock))
            idle.append(s)
        fs.wait_for_log(r" warning accept failed: Too many open files")
        cpu_before, wall_before = cpu_seconds(fs.pid), time.monotonic()
        time.sleep(1.5)  # a window to watch it do nothing
        busy = (cpu_seconds(fs.pid) - cpu_before) / (time.monotonic() - wall_before)
        assert busy < 0.3, f"fastsse used {busy:.0%} of a core while out of descriptors"
        assert len(re.findall(r" accept failed", fs.log())) == 1, fs.log()[-2000:]
        for s in idle:
            s.close()
        idle.clear()
        fs.wait_for_log(r" info accepting again")
        assert_still_serving(fs)
    finally:
        for s in idle:
            s.close()
        fs.stop()


def test_head_sent_a_byte_at_a_time_is_refused(fastsse):
    # Each look at a connection copies and checks all it sent so far: a head trickled in byte by
    # byte would cost the loop quadratic work. Web servers send it in one or two writes.
    peer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    peer.connect(sock_path(fastsse))
    try:
        for b in request_bytes(CLOCK)[:150]:
            try:
                peer.send(bytes([b]))
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.002)
        fastsse.wait_for_log(r" warning refused a connection: its request head came in more than 64 pieces")
    finally:
        peer.close()
    assert_still_serving(fastsse)
