"""FastCGI as fastsse writes it, read directly (Python plays the web server): the CGI headers
and the records framing a response, which nginx would hide from a browser."""
import re
import signal

import pytest

from fastsse_testlib import FCGI_END_REQUEST, FCGI_STDOUT, FcgiRequest, Timeout

STREAM_HEADERS = (b"Status: 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
                  b"Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n\r\n")


@pytest.fixture
def fcgi(fastsse):
    opened = []

    def request(params: dict, request_id: int = 1, send_stdin: bool = True) -> FcgiRequest:
        base = {"REQUEST_METHOD": "GET", "REQUEST_URI": "/wire", "QUERY_STRING": "",
                "HTTP_ACCEPT": "text/event-stream"}
        r = FcgiRequest(fastsse.listen[len("unix:"):], {**base, **params}, request_id, send_stdin)
        opened.append(r)
        return r

    yield request
    for r in opened:
        r.close()


def assert_complete(r: FcgiRequest):
    """Ends as the spec says: an empty FCGI_STDOUT, then FCGI_END_REQUEST (complete, status 0),
    all records for our request id, then the connection closed (no FCGI_KEEP_CONN)."""
    r.read_until(lambda r: r.eof, 3, "fastsse to close the connection")
    types = [rec.type for rec in r.records]
    assert types[-2:] == [FCGI_STDOUT, FCGI_END_REQUEST], r.records[-3:]
    assert r.records[-2].content == b""
    assert r.records[-1].content == bytes(8), r.records[-1]  # appStatus 0, FCGI_REQUEST_COMPLETE
    assert all(rec.request_id == r.request_id for rec in r.records)
    assert types.count(FCGI_END_REQUEST) == 1


def test_bounded_stream_records(fcgi):
    r = fcgi({"FASTSSE_PRODUCER": "clock", "FASTSSE_INTERVAL": "50", "FASTSSE_COUNT": "2",
              "FASTSSE_RETRY": "900"}, request_id=7)
    assert_complete(r)
    body = r.stdout
    assert body.startswith(STREAM_HEADERS + b": fastsse stream open\n\n"), body
    assert re.fullmatch(rb"event: tick\ndata: \d+\nid: 1\n\nevent: tick\ndata: \d+\nid: 2\n\nretry: 900\n\n",
                        body[len(STREAM_HEADERS) + len(b": fastsse stream open\n\n"):]), body


def test_error_response_records(fcgi):
    r = fcgi({})  # no FASTSSE_PRODUCER
    assert_complete(r)
    assert re.fullmatch(rb"Status: 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n[^\n]+\n",
                        r.stdout), r.stdout


def test_head_records(fcgi):
    r = fcgi({"REQUEST_METHOD": "HEAD", "FASTSSE_PRODUCER": "clock"})
    assert_complete(r)
    assert r.stdout == STREAM_HEADERS


@pytest.mark.parametrize("params", [{}, {"REQUEST_METHOD": "HEAD", "FASTSSE_PRODUCER": "clock"}],
                         ids=["404", "HEAD"])
def test_short_answer_waits_for_the_end_of_stdin(fcgi, params):
    # Apache's mod_proxy_fcgi writes the empty FCGI_STDIN record after the params, in a write of its
    # own. Had fastsse answered and closed before it, that write would fail and Apache would answer
    # 503 instead (one request in five did, before fastsse waited).
    r = fcgi(params, send_stdin=False)
    with pytest.raises(Timeout):
        r.read_until(lambda r: r.records or r.eof, 0.3, "an answer before the request was whole")
    r.send_stdin()
    assert_complete(r)


def test_open_stream_records_arrive_as_produced(fcgi, fastsse):
    # Each event leaves in its own write while the request is still open: no END_REQUEST yet.
    r = fcgi({"FASTSSE_PRODUCER": "clock", "FASTSSE_INTERVAL": "100"})
    r.read_until(lambda r: r.stdout.count(b"\n\nevent: tick") >= 3, 3, "3 events")
    assert FCGI_END_REQUEST not in [rec.type for rec in r.records]
    event_records = [rec for rec in r.records if rec.type == FCGI_STDOUT and rec.content.startswith(b"event:")]
    assert len(event_records) >= 2
    r.close()
    fastsse.wait_connections(0)
    fastsse.assert_logged(r" closed: client gone")


def test_sigterm_records(fcgi, fastsse):
    r = fcgi({"FASTSSE_PRODUCER": "clock", "FASTSSE_INTERVAL": "100"})
    r.read_until(lambda r: b"id: 1\n\n" in r.stdout, 3, "the first event")
    fastsse.signal(signal.SIGTERM)
    assert_complete(r)
    assert r.stdout.endswith(b"\n\nretry: 3000\n\n"), r.stdout[-60:]  # the default retry setting
    assert fastsse.wait(timeout=2) == 0
