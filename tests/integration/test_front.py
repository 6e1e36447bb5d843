"""What every stream must do whichever web server is in front of fastsse: one suite, run behind
each of conftest.FRONTS in turn (nginx, Apache's mod_proxy_fcgi, Apache's mod_fcgid), each made
from the configs the repository ships. The stream headers and wire format, events passed on one
by one, ids and Last-Event-ID, a bounded stream's end, the shipped locations, fastsse's own short
answers (404, 405, 406, 500, HEAD), a client leaving, and SIGTERM.

What concerns one server alone is in test_http.py, test_stream.py, test_lifecycle.py (nginx:
buffering, Accept parsing, heartbeats...), test_apache_proxy_fcgi.py and test_apache_fcgid.py."""
import json
import re
import signal
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from fastsse_testlib import (ES, NOT_ACCEPTABLE, Comment, Retry, assert_count3_complete, assert_events_one_by_one,
                             assert_plain_error, get)

# Repeats of each short answer: Apache's mod_proxy_fcgi used to turn about one in five of them into
# a 503 (fastsse answered and closed before Apache had sent the end of the request).
REPEATS = 40


# ----------------------------------------------------------------------------------------------
# A stream's headers and bytes


def test_stream_headers_and_wire_format(front, client, tag):
    # The Apache of the tests compresses everything (SetOutputFilter BROTLI_COMPRESS;DEFLATE): the
    # mode's file must keep streams out of it.
    s = client(front, f"/events/clock?{tag}", {**ES, "Accept-Encoding": "gzip, br"})
    s.wait_headers()
    assert s.status == 200, s.describe()
    assert s.header("Content-Type") == "text/event-stream; charset=utf-8"
    assert s.header("Cache-Control") == "no-cache"
    assert s.header("Content-Encoding") is None, s.headers
    if front.name == "nginx":
        # fastsse's X-Accel-Buffering: no is for nginx alone: nginx consumes it.
        assert "x-accel-buffering" not in s.header_names()
    # A stream has no length: it goes chunked.
    assert s.header("Content-Length") is None
    assert s.header("Transfer-Encoding") == "chunked"

    s.wait_events(1, timeout=3)
    # The opening comment comes first, then the first event, byte for byte as the spec writes them.
    assert isinstance(s.items[0], Comment) and s.items[0].text == "fastsse stream open", s.items
    assert re.match(rb": fastsse stream open\n\nevent: tick\ndata: \d+\nid: 1\n\n", bytes(s.body)), bytes(s.body)


@pytest.mark.fronts("apache-proxy-fcgi", "apache-fcgid")
def test_the_rest_of_the_site_is_compressed(front):
    # The other half of test_stream_headers_and_wire_format: compression is really on.
    r = get(front.port, "/index.html", {"Accept-Encoding": "gzip"})
    assert r.status == 200, r.describe()
    assert r.header("Content-Encoding") == "gzip", r.headers
    assert r.header("Content-Type").startswith("text/html"), r.headers


def test_opening_comment_arrives_at_once(front, client, tag):
    # One event a day: the headers and the opening comment cannot be waiting for one.
    s = client(front, f"{front.t('heartbeat')}?{tag}", ES)
    [opening] = s.wait_comments(1, timeout=3)
    assert opening.text == "fastsse stream open"
    assert opening.time - s.sent_at < 2.0
    assert s.events == [] and not s.ended
    # Nothing else but the heartbeats (one a second) that may have followed.
    assert s.body.startswith(b": fastsse stream open\n\n"), bytes(s.body)
    assert all(c.text == "heartbeat" for c in s.comments[1:]), s.items


def test_events_arrive_one_by_one_unbuffered(front, client, tag):
    # One event every 200 ms. Buffered by the server in front, they would arrive in batches (nginx:
    # one, or none for 46 s; Apache: about 4 KB, 90 events, or under mod_fcgid 64 KB); passed on at
    # once, each arrives on its own, about 200 ms after the one before.
    assert_events_one_by_one(client(front, f"{front.t('fast')}?{tag}", ES), interval=0.2)


# ----------------------------------------------------------------------------------------------
# Ids, resumption, and the end of a bounded stream


def test_ids_continue_after_last_event_id_header(front, client, tag):
    s = client(front, f"{front.t('fast100')}?{tag}", {**ES, "Last-Event-ID": "41"})
    assert [e.id for e in s.wait_events(3, timeout=3)] == ["42", "43", "44"]
    # The server passed the header on (HTTP_LAST_EVENT_ID).
    line = front.fastsse.wait_for_log(r" opened: .*" + re.escape(tag) + ".*")[0].group(0)
    assert "last-event-id=41" in line, line


def test_ids_continue_after_last_event_id_query(front, client, tag):
    # What EventSource polyfills send when they cannot set headers; it reaches fastsse as QUERY_STRING.
    s = client(front, f"{front.t('fast100')}?lastEventId=9&{tag}", ES)
    assert [e.id for e in s.wait_events(3, timeout=3)] == ["10", "11", "12"]


def test_last_event_id_header_wins_over_query(front, client, tag):
    s = client(front, f"{front.t('fast100')}?lastEventId=9&{tag}", {**ES, "Last-Event-ID": "100"})
    assert [e.id for e in s.wait_events(2, timeout=3)] == ["101", "102"]


def test_count_ends_stream_with_retry_and_end_of_response(front, client, tag):
    s = client(front, f"{front.t('count3')}?{tag}", ES)
    s.wait_end(timeout=5)
    assert_count3_complete(s)
    assert not s.eof  # the server keeps the client's connection
    # Only this test opens count3 streams: its "finished" line is this stream's, even under mod_fcgid
    # (where each process numbers its own streams).
    stream = front.fastsse.stream_id(tag)
    front.fastsse.wait_for_log(rf" info stream {stream} closed: finished \(after [\d.]+ s, 3 events\)", timeout=2)


def test_empty_event_name_sends_unnamed_message_events(front, client, tag):
    # FASTSSE_EVENT "" (an empty param: `fastcgi_param ... "";`, `SetEnv ... ""`): no event: line,
    # so a browser fires its plain "message" event.
    s = client(front, f"{front.t('unnamed')}?{tag}", ES)
    events = s.wait_events(2, timeout=3)
    assert [e.type for e in events] == ["message", "message"]
    assert b"event:" not in bytes(s.body)
    assert all(set(json.loads(e.data)) == {"time"} for e in events)


# ----------------------------------------------------------------------------------------------
# The shipped locations (nginx/fastsse-locations.conf, apache/fastsse-locations.conf)


def test_mdn_ping_location_sends_iso8601_json(front, client, tag):
    # /events/ping: MDN's ssedemo.php, one ping a second.
    s = client(front, f"/events/ping?{tag}", ES)
    [event] = s.wait_events(1, timeout=3)
    assert event.type == "ping"
    assert event.id == "1"
    payload = json.loads(event.data)
    assert list(payload) == ["time"]
    t = datetime.fromisoformat(payload["time"])
    assert t.tzinfo is not None
    assert abs((t - datetime.now(timezone.utc)).total_seconds()) < 5


def test_command_location(front, client, tag):
    # /events/count with demo/fastsse.toml's command: FASTSSE_COMMAND and the query reach fastsse,
    # and the command runs (as www-data under mod_fcgid).
    s = client(front, f"/events/count?lines=2&{tag}", ES)
    s.wait_end(timeout=6)
    assert [(e.type, e.data) for e in s.events if e.type == "stdout"] == [("stdout", "line 1 of 2"),
                                                                          ("stdout", "line 2 of 2")]
    [exit_event] = [e for e in s.events if e.type == "exit"]
    assert json.loads(exit_event.data)["code"] == 0, exit_event
    assert isinstance(s.items[-1], Retry)


# ----------------------------------------------------------------------------------------------
# fastsse's own answers instead of a stream, passed on as they are


def test_not_acceptable_for_html(front):
    for _ in range(REPEATS):
        r = get(front.port, "/events/clock", {"Accept": "text/html"})
        assert_plain_error(r, 406)
        assert r.text == NOT_ACCEPTABLE


def test_location_without_producer_is_404(front):
    # Under Apache, any URL under /events/ goes to fastsse: this one has no location of its own.
    for _ in range(REPEATS):
        r = get(front.port, front.t("no-producer"), ES)
        assert_plain_error(r, 404)
        assert "FASTSSE_PRODUCER" in r.text


def test_unknown_producer_is_404(front):
    r = get(front.port, front.t("unknown-producer"), ES)
    assert_plain_error(r, 404)
    assert "no_such_producer" in r.text


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_other_methods_are_405_with_allow(front, method):
    for _ in range(REPEATS if method == "POST" else 1):
        r = get(front.port, "/events/clock", ES, method=method, body=b"x=1")
        assert_plain_error(r, 405)
        assert r.header("Allow") == "GET, HEAD"
        assert method in r.text


def test_head_gives_headers_and_no_body(front):
    for _ in range(REPEATS):
        # Connection: close, so that anything after the headers would be read (and fail the test).
        r = get(front.port, "/events/clock", ES, method="HEAD")
        assert r.status == 200, r.describe()
        assert r.header("Content-Type") == "text/event-stream; charset=utf-8"
        assert r.header("Cache-Control") == "no-cache"
        if front.name == "nginx":
            assert "x-accel-buffering" not in r.header_names()
        assert r.eof and bytes(r.raw_body) == b""


@pytest.mark.parametrize("location, param, value", [
    ("bad-interval", "FASTSSE_INTERVAL", "soon"),
    ("bad-heartbeat", "FASTSSE_HEARTBEAT", "0"),
])
def test_bad_param_value_is_500_naming_it(front, location, param, value):
    r = get(front.port, front.t(location), ES)
    assert_plain_error(r, 500)
    assert param in r.text, r.text
    assert value in r.text, r.text


def test_unknown_param_is_500_naming_it(front):
    r = get(front.port, front.t("unknown-param"), ES)
    assert_plain_error(r, 500)
    assert "FASTSSE_INTERVL" in r.text, r.text


# ----------------------------------------------------------------------------------------------
# A stream's end: the client leaving, fastsse stopping. Each test has a front of its own, so that
# fastsse's connections are surely the test's.


def test_client_disconnect_is_noticed_and_stream_freed(front, make_front, client):
    private = make_front(front.name)
    fs = private.fastsse
    s = client(private, f"{private.t('heartbeat')}?who=leaver", ES)
    s.wait_comments(1, timeout=3)
    assert len(fs.connection_fds()) == 1
    s.close()
    left = time.monotonic()
    # nginx closes its connection to fastsse as soon as the client's closes. Apache learns that the
    # client left only when a write to it fails: here the second heartbeat after it left (the first
    # still goes out); then it closes its connection to fastsse. Either way fastsse notices at once
    # and lets the stream's connection go.
    fs.wait_connections(0, timeout=5)
    print(f"client left -> fastsse let its connection go: {time.monotonic() - left:.2f} s (heartbeat every 1 s)")
    sid = fs.stream_id("who=leaver")
    fs.wait_for_log(rf" info stream {sid} closed: client gone \(after [\d.]+ s, 0 events\)", timeout=1)


# Under mod_fcgid, Apache starts and stops fastsse itself (test_apache_fcgid.py).
@pytest.mark.fronts("nginx", "apache-proxy-fcgi")
def test_sigterm_ends_every_stream_with_retry_then_exits_0(front, make_front, client):
    private = make_front(front.name, ["--retry", "1500"])
    fs = private.fastsse
    ticking = [client(private, f"{private.t('fast')}?n={i}", ES) for i in range(3)]
    idle = client(private, f"{private.t('idle')}?n=idle", ES)
    for s in ticking:
        s.wait_events(1, timeout=3)
    idle.wait_comments(1, timeout=3)
    fs.wait_connections(4)

    start = time.monotonic()
    fs.signal(signal.SIGTERM)
    for s in ticking + [idle]:
        s.wait_end(timeout=2)
        # The last thing on each stream is the retry hint, then the end of the response (the server
        # turns fastsse's FCGI_END_REQUEST into the chunked terminator).
        assert isinstance(s.items[-1], Retry) and s.items[-1].ms == 1500, s.items[-3:]
        assert bytes(s.body).endswith(b"\n\nretry: 1500\n\n"), bytes(s.body[-80:])
        assert s.raw_body.endswith(b"0\r\n\r\n")
    status = fs.wait(timeout=max(0.1, start + 2.0 - time.monotonic()))
    elapsed = time.monotonic() - start
    assert status == 0, fs.log()
    assert elapsed < 2.0

    log = fs.log()
    assert " info received SIGTERM" in log
    assert " info shutting down: 4 streams open" in log
    assert log.count(" closed: finished") == 4, log
    assert log.rstrip().endswith(" info stopped"), log[-500:]
    # The unix socket it made is removed again.
    assert fs.listen.startswith("unix:") and not Path(fs.listen[len("unix:"):]).exists(), fs.listen
