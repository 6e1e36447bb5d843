"""What every stream through Apache must do, in either FastCGI mode: the checks of test_http.py,
test_stream.py and test_lifecycle.py that concern the web server in front. A test module imports
these tests (`from apache_common import *`) and sets APACHE_MODE; the apache_stack fixture
(conftest.py) is then a fastsse behind an Apache of that mode, made from apache/."""
import json
import re
import time

from fastsse_testlib import Comment, Retry, assert_count3_complete, get, wait_until

ES = {"Accept": "text/event-stream"}
NOT_ACCEPTABLE = 'You must send a request with "Accept: text/event-stream".\n'
# Repeats of each short answer: Apache's mod_proxy_fcgi used to turn about one in five of them into
# a 503 (fastsse answered and closed before Apache had sent the end of the request).
REPEATS = 40


def assert_plain_error(r, status: int):
    assert r.status == status, r.describe()
    assert r.header("Content-Type") == "text/plain; charset=utf-8", r.describe()
    # One line of reason, nothing else: no HTML error page of Apache's, no second line.
    assert r.text.endswith("\n") and r.text.count("\n") == 1, r.describe()
    assert "<" not in r.text, r.describe()


def test_stream_headers_and_wire_format(apache_stack, client, tag):
    # Apache compresses everything in the test config (SetOutputFilter BROTLI_COMPRESS;DEFLATE):
    # the mode's file must keep streams out of it.
    s = client(apache_stack, f"/events/clock?{tag}", {**ES, "Accept-Encoding": "gzip, br"})
    s.wait_headers()
    assert s.status == 200, s.describe()
    assert s.header("Content-Type") == "text/event-stream; charset=utf-8"
    assert s.header("Cache-Control") == "no-cache"
    assert s.header("Content-Encoding") is None, s.headers
    assert s.header("Content-Length") is None
    assert s.header("Transfer-Encoding") == "chunked"

    s.wait_events(1, timeout=3)
    assert isinstance(s.items[0], Comment) and s.items[0].text == "fastsse stream open", s.items
    assert re.match(rb": fastsse stream open\n\nevent: tick\ndata: \d+\nid: 1\n\n", bytes(s.body)), bytes(s.body)


def test_the_rest_of_the_site_is_compressed(apache_stack):
    # The other half of test_stream_headers_and_wire_format: compression is really on.
    r = get(apache_stack.port, "/index.html", {"Accept-Encoding": "gzip"})
    assert r.status == 200, r.describe()
    assert r.header("Content-Encoding") == "gzip", r.headers
    assert r.header("Content-Type").startswith("text/html"), r.headers


def test_opening_comment_arrives_at_once(apache_stack, client, tag):
    # One event a day: the headers and the opening comment cannot be waiting for one.
    s = client(apache_stack, f"/events/t/idle?{tag}", ES)
    [opening] = s.wait_comments(1, timeout=3)
    assert opening.text == "fastsse stream open"
    assert opening.time - s.sent_at < 2.0
    assert s.events == []


def test_events_arrive_one_by_one_unbuffered(apache_stack, client, tag):
    # One event every 200 ms. Buffered by Apache, they would come in batches of about 4 KB (90
    # events, 18 s) or, under mod_fcgid, 64 KB; passed on at once, each arrives on its own.
    s = client(apache_stack, f"/events/t/fast?{tag}", ES)
    events = s.wait_events(6, timeout=5)
    gaps = [b.time - a.time for a, b in zip(events, events[1:])]
    assert all(g > 0.05 for g in gaps), f"events arrived batched: gaps {gaps}"
    assert 0.1 < sum(gaps) / len(gaps) < 0.4, f"gaps {gaps} are not about the 200 ms interval"
    assert len({e.time for e in events}) == len(events)


def test_ids_continue_after_last_event_id_header(apache_stack, client, tag):
    s = client(apache_stack, f"/events/t/fast100?{tag}", {**ES, "Last-Event-ID": "41"})
    assert [e.id for e in s.wait_events(3, timeout=3)] == ["42", "43", "44"]
    # Apache passed the header as HTTP_LAST_EVENT_ID.
    line = apache_stack.fastsse.wait_for_log(r" opened: .*" + re.escape(tag) + ".*")[0].group(0)
    assert "last-event-id=41" in line, line


def test_ids_continue_after_last_event_id_query(apache_stack, client, tag):
    # What EventSource polyfills send; Apache passes the query string as QUERY_STRING.
    s = client(apache_stack, f"/events/t/fast100?lastEventId=9&{tag}", ES)
    assert [e.id for e in s.wait_events(3, timeout=3)] == ["10", "11", "12"]


def test_count_ends_stream_with_retry_and_end_of_response(apache_stack, client, tag):
    s = client(apache_stack, f"/events/t/count3?{tag}", ES)
    s.wait_end(timeout=5)
    assert_count3_complete(s)


def test_empty_setenv_value_is_passed(apache_stack, client, tag):
    # SetEnv FASTSSE_EVENT "": an empty param, so unnamed "message" events.
    s = client(apache_stack, f"/events/t/unnamed?{tag}", ES)
    assert [e.type for e in s.wait_events(2, timeout=3)] == ["message", "message"]
    assert b"event:" not in bytes(s.body)


def test_ping_location(apache_stack, client, tag):
    # apache/fastsse-locations.conf's /events/ping: MDN's ssedemo.php.
    s = client(apache_stack, f"/events/ping?{tag}", ES)
    [event] = s.wait_events(1, timeout=3)
    assert event.type == "ping" and event.id == "1"
    assert list(json.loads(event.data)) == ["time"]


def test_command_location(apache_stack, client, tag):
    # apache/fastsse-locations.conf's /events/count with demo/fastsse.toml's command: FASTSSE_COMMAND
    # and the query reach fastsse, and the command runs (as www-data under mod_fcgid).
    s = client(apache_stack, f"/events/count?lines=2&{tag}", ES)
    s.wait_end(timeout=6)
    assert [(e.type, e.data) for e in s.events if e.type == "stdout"] == [("stdout", "line 1 of 2"),
                                                                          ("stdout", "line 2 of 2")]
    [exit_event] = [e for e in s.events if e.type == "exit"]
    assert json.loads(exit_event.data)["code"] == 0, exit_event
    assert isinstance(s.items[-1], Retry)


def test_not_acceptable_for_html(apache_stack):
    for _ in range(REPEATS):
        r = get(apache_stack.port, "/events/clock", {"Accept": "text/html"})
        assert_plain_error(r, 406)
        assert r.text == NOT_ACCEPTABLE


def test_location_without_producer_is_404(apache_stack):
    # Any URL under /events/ goes to fastsse; one with no location of its own has no producer.
    for _ in range(REPEATS):
        r = get(apache_stack.port, "/events/t/none", ES)
        assert_plain_error(r, 404)
        assert "FASTSSE_PRODUCER" in r.text


def test_unknown_producer_is_404(apache_stack):
    r = get(apache_stack.port, "/events/t/unknown-producer", ES)
    assert_plain_error(r, 404)
    assert "no_such_producer" in r.text


def test_post_is_405_with_allow(apache_stack):
    for _ in range(REPEATS):
        r = get(apache_stack.port, "/events/clock", ES, method="POST", body=b"x=1")
        assert_plain_error(r, 405)
        assert r.header("Allow") == "GET, HEAD"


def test_head_gives_headers_and_no_body(apache_stack):
    for _ in range(REPEATS):
        r = get(apache_stack.port, "/events/clock", ES, method="HEAD")
        assert r.status == 200, r.describe()
        assert r.header("Content-Type") == "text/event-stream; charset=utf-8"
        assert r.header("Cache-Control") == "no-cache"
        assert r.eof and bytes(r.raw_body) == b""


def test_bad_param_value_is_500_naming_it(apache_stack):
    r = get(apache_stack.port, "/events/t/bad-interval", ES)
    assert_plain_error(r, 500)
    assert "FASTSSE_INTERVAL" in r.text and "soon" in r.text, r.text


def test_client_disconnect_is_noticed_and_stream_freed(request, make_apache_stack, client):
    # A stack of its own: one stream, so the log line and the connection are surely this one's.
    stack = make_apache_stack(request.module.APACHE_MODE)
    fs = stack.fastsse
    s = client(stack, "/events/t/idle?who=leaver", ES)
    s.wait_comments(2, timeout=4)  # the opening comment and a heartbeat
    sid = fs.stream_id("who=leaver")
    assert len(fs.connection_fds()) == 1
    s.close()
    left = time.monotonic()
    # Apache learns that the client left only when a write to it fails: here the second heartbeat
    # after it left (the first still goes out). Then it closes its connection to fastsse, which
    # notices at once and frees the stream.
    fs.wait_for_log(rf" info stream {sid} closed: client gone \(after [\d.]+ s, 0 events\)", timeout=5)
    noticed = time.monotonic() - left
    wait_until(lambda: fs.connection_fds() == [], 2, "fastsse to release the stream's connection")
    print(f"client left -> fastsse closed the stream: {noticed:.2f} s (heartbeat every 1 s)")


__all__ = [name for name in dir() if name.startswith("test_")]
