"""A FastCGI connection whose request never completes (a local process that connects and stalls,
a TCP health check that connects and waits, a web server that dies mid-request) must cost fastsse
one descriptor, not its ability to take new streams or to stop on SIGTERM."""
import os
import signal
import socket
import time

from fastsse_testlib import ES, get, wait_until


def settled_fd_count(stack) -> int:
    r = get(stack.port, "/t/no-producer", ES)
    assert r.status == 404, r.describe()
    return stack.fastsse.settled_fd_count()


def stall(stack, baseline: int, listen: str) -> socket.socket:
    """Connects straight to fastsse and sends 3 bytes of an 8-byte FastCGI record header."""
    if listen == "unix":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(stack.workdir / "fastsse.sock"))
    else:
        host, port = stack.fastsse.listen.rsplit(":", 1)
        s = socket.create_connection((host, int(port)))
    s.sendall(b"\x01\x01\x00")
    # fastsse has accepted it (one more descriptor) and waits for the rest of the record.
    wait_until(lambda: len(stack.fastsse.connection_fds()) == 1 and stack.fastsse.fd_count() == baseline + 1, 2,
               "fastsse to accept the stalled connection")
    return s


def test_stalled_request_does_not_block_new_streams(make_stack, client):
    stack = make_stack(listen="tcp")
    baseline = settled_fd_count(stack)
    stalled = stall(stack, baseline, "tcp")
    try:
        s = client(stack, "/t/fast100?after=stall", ES)
        s.wait_events(1, timeout=2)
    finally:
        stalled.close()


def test_sigterm_exits_while_a_request_is_incomplete(make_stack):
    stack = make_stack()
    fs = stack.fastsse
    baseline = settled_fd_count(stack)
    stalled = stall(stack, baseline, "unix")
    try:
        start = time.monotonic()
        fs.signal(signal.SIGTERM)
        fs.wait_for_log(r" info received SIGTERM", timeout=2)
        try:
            wait_until(lambda: fs.proc.poll() is not None, 2.0, "fastsse to exit within 2 s of SIGTERM")
        except AssertionError as e:
            threads = {tid: open(f"/proc/{fs.pid}/task/{tid}/wchan").read()
                       for tid in os.listdir(f"/proc/{fs.pid}/task")}
            raise AssertionError(f"{e}; fastsse's threads are waiting in {threads}; log:\n{fs.log()}") from None
        assert fs.proc.returncode == 0
        assert time.monotonic() - start < 2.5
        assert fs.log().rstrip().endswith(" info stopped")
    finally:
        stalled.close()


def test_stalled_connection_is_dropped_after_the_head_timeout(make_stack):
    stack = make_stack()
    baseline = settled_fd_count(stack)
    stalled = stall(stack, baseline, "unix")
    try:
        # Acceptor::head_timeout is 5 s; the stale check runs every second.
        stack.fastsse.wait_for_log(r"warning refused a connection: it sent no complete request in 5 s", timeout=8)
        wait_until(lambda: stack.fastsse.fd_count() == baseline, 2, "the stalled connection's descriptor to be freed")
        stalled.settimeout(2)
        try:
            closed = stalled.recv(1) == b""
        except ConnectionResetError:  # closed with our 3 bytes unread: a reset, just as final
            closed = True
        assert closed, "fastsse should have closed the stalled connection"
    finally:
        stalled.close()
