"""The HTTP face of an event-stream location, through nginx: stream headers, content negotiation,
and the one-line text/plain errors fastsse answers instead of a stream."""
import re

import pytest

from fastsse_testlib import Comment, get

NOT_ACCEPTABLE = 'You must send a request with "Accept: text/event-stream".\n'


def assert_plain_error(r, status: int):
    assert r.status == status, r.describe()
    assert r.header("Content-Type") == "text/plain; charset=utf-8", r.describe()
    # One line of reason, nothing else: no HTML error page, no second line.
    assert r.text.endswith("\n") and r.text.count("\n") == 1, r.describe()
    assert "<" not in r.text, r.describe()


def test_stream_headers_and_wire_format(shared, client, tag):
    s = client(shared, f"/events/clock?{tag}", {"Accept": "text/event-stream"})
    s.wait_headers()
    assert s.status == 200, s.describe()
    assert s.header("Content-Type") == "text/event-stream; charset=utf-8"
    assert s.header("Cache-Control") == "no-cache"
    # fastsse's X-Accel-Buffering: no is for nginx alone: nginx consumes it.
    assert "x-accel-buffering" not in s.header_names()
    # A stream has no length: nginx sends it chunked.
    assert s.header("Content-Length") is None
    assert s.header("Transfer-Encoding") == "chunked"

    s.wait_events(1, timeout=3)
    # The opening comment comes first, then the first event, byte for byte as the spec writes them.
    assert isinstance(s.items[0], Comment) and s.items[0].text == "fastsse stream open", s.items
    assert re.match(rb": fastsse stream open\n\nevent: tick\ndata: \d+\nid: 1\n\n", bytes(s.body)), bytes(s.body)


def test_opening_comment_arrives_before_any_event(shared, client, tag):
    # One event a day: the opening comment cannot be waiting for one.
    s = client(shared, f"/t/idle?{tag}", {"Accept": "text/event-stream"})
    [opening] = s.wait_comments(1, timeout=2)
    assert opening.text == "fastsse stream open"
    assert opening.time - s.sent_at < 2.0
    assert s.events == [] and not s.ended
    assert bytes(s.body) == b": fastsse stream open\n\n"


def test_not_acceptable_for_html(shared):
    r = get(shared.port, "/events/clock", {"Accept": "text/html"})
    assert_plain_error(r, 406)
    assert r.text == NOT_ACCEPTABLE


@pytest.mark.parametrize("accept", [
    "text/event-stream",
    "text/*",
    "*/*",
    None,  # no Accept header at all
    "text/html, */*;q=0.1",
    "application/json, TEXT/EVENT-STREAM;q=0.5",
])
def test_accept_variants_served(shared, client, tag, accept):
    headers = {"Accept": accept} if accept is not None else {}
    s = client(shared, f"/t/idle?{tag}", headers)
    [opening] = s.wait_comments(1, timeout=2)
    assert s.status == 200
    assert s.header("Content-Type") == "text/event-stream; charset=utf-8"
    assert opening.text == "fastsse stream open"


@pytest.mark.parametrize("accept", [
    "text/event-stream;q=0",
    "text/html",
    "application/json",
    # The most specific range decides: text/event-stream refused outright beats */*.
    "text/event-stream;q=0, */*",
])
def test_accept_variants_refused(shared, accept):
    r = get(shared.port, "/t/idle", {"Accept": accept})
    assert_plain_error(r, 406)
    assert r.text == NOT_ACCEPTABLE


def test_no_producer_is_404(shared):
    r = get(shared.port, "/t/no-producer", {"Accept": "text/event-stream"})
    assert_plain_error(r, 404)
    assert "FASTSSE_PRODUCER" in r.text


def test_unknown_producer_is_404(shared):
    r = get(shared.port, "/t/unknown-producer", {"Accept": "text/event-stream"})
    assert_plain_error(r, 404)
    assert "no_such_producer" in r.text


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_other_methods_are_405_with_allow(shared, method):
    r = get(shared.port, "/events/clock", {"Accept": "text/event-stream"}, method=method, body=b"x=1")
    assert_plain_error(r, 405)
    assert r.header("Allow") == "GET, HEAD"
    assert method in r.text


def test_head_gives_headers_and_no_body(shared):
    # Connection: close, so that anything after the headers would be read (and fail the test).
    r = get(shared.port, "/events/clock", {"Accept": "text/event-stream"}, method="HEAD")
    assert r.status == 200, r.describe()
    assert r.header("Content-Type") == "text/event-stream; charset=utf-8"
    assert r.header("Cache-Control") == "no-cache"
    assert "x-accel-buffering" not in r.header_names()
    assert r.eof and bytes(r.raw_body) == b""


@pytest.mark.parametrize("path, param, value", [
    ("/t/bad-interval", "FASTSSE_INTERVAL", "soon"),
    ("/t/bad-heartbeat", "FASTSSE_HEARTBEAT", "0"),
])
def test_bad_param_value_is_500_naming_it(shared, path, param, value):
    r = get(shared.port, path, {"Accept": "text/event-stream"})
    assert_plain_error(r, 500)
    assert param in r.text, r.text
    assert value in r.text, r.text


def test_unknown_param_is_500_naming_it(shared):
    r = get(shared.port, "/t/unknown-param", {"Accept": "text/event-stream"})
    assert_plain_error(r, 500)
    assert "FASTSSE_INTERVL" in r.text, r.text


def test_client_values_cannot_forge_log_lines(shared, client, tag):
    # lastEventId is percent-decoded from the query; before, it reached the log raw: a line of the
    # client's own and a terminal escape sequence.
    forged = "2026-11-30T00:00:00.000 info stream 1 closed: forged-" + tag
    s = client(shared, f"/events/clock?{tag}&lastEventId=5%0A{forged.replace(' ', '%20')}%0D%1B[2J",
               {"Accept": "text/event-stream"})
    s.wait_events(1, timeout=3)
    shared.fastsse.wait_for_log(r" info stream \d+ opened: .*" + re.escape(tag) + r".*last-event-id=5\\n2026")
    log = shared.fastsse.log()
    assert "\x1b" not in log
    assert not re.search(r"^" + re.escape(forged), log, re.M)
