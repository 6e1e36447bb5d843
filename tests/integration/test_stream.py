"""What a stream carries, through nginx: events one by one as produced, ids and resumption,
the clock's formats, bounded streams and heartbeats."""
import json
import time
from datetime import datetime, timezone

import pytest

from fastsse_testlib import Retry, assert_count3_complete

ES = {"Accept": "text/event-stream"}


@pytest.mark.parametrize("path", [
    "/t/fast",                # fastsse_params as shipped: fastcgi_buffering off
    "/t/nginx-buffering-on",  # the same without it: fastsse's X-Accel-Buffering: no must do
])
def test_events_arrive_one_by_one_unbuffered(shared, client, tag, path):
    # One event every 200 ms. Buffered by nginx, they would arrive in a batch (or not at all for
    # 46 s); passed on at once, each arrives on its own, about 200 ms after the one before.
    s = client(shared, f"{path}?{tag}", ES)
    events = s.wait_events(6, timeout=5)
    gaps = [b.time - a.time for a, b in zip(events, events[1:])]
    assert all(g > 0.05 for g in gaps), f"events arrived batched: gaps {gaps}"
    assert 0.1 < sum(gaps) / len(gaps) < 0.4, f"gaps {gaps} are not about the 200 ms interval"
    # Each event came in a read of its own, before the next one was produced.
    assert len({e.time for e in events}) == len(events)


def test_ids_count_from_one(shared, client, tag):
    s = client(shared, f"/t/fast100?{tag}", ES)
    events = s.wait_events(3, timeout=3)
    assert [e.id for e in events] == ["1", "2", "3"]
    assert all(e.type == "tick" for e in events)
    # Unix seconds, now.
    for e in events:
        assert abs(int(e.data) - time.time()) < 5, e


def test_ids_continue_after_last_event_id_header(shared, client, tag):
    s = client(shared, f"/t/fast100?{tag}", {**ES, "Last-Event-ID": "41"})
    assert [e.id for e in s.wait_events(3, timeout=3)] == ["42", "43", "44"]
    assert "last-event-id=41" in shared.fastsse.wait_for_log(r" opened: .*" + tag + ".*")[0].group(0)


def test_ids_continue_after_last_event_id_query(shared, client, tag):
    # What EventSource polyfills send when they cannot set headers.
    s = client(shared, f"/t/fast100?lastEventId=9&{tag}", ES)
    assert [e.id for e in s.wait_events(3, timeout=3)] == ["10", "11", "12"]


def test_last_event_id_header_wins_over_query(shared, client, tag):
    s = client(shared, f"/t/fast100?lastEventId=9&{tag}", {**ES, "Last-Event-ID": "100"})
    assert [e.id for e in s.wait_events(2, timeout=3)] == ["101", "102"]


def test_mdn_ping_location_sends_iso8601_json(shared, client, tag):
    # nginx/fastsse-locations.conf's /events/ping: MDN's ssedemo.php, one ping a second.
    s = client(shared, f"/events/ping?{tag}", ES)
    [event] = s.wait_events(1, timeout=3)
    assert event.type == "ping"
    assert event.id == "1"
    payload = json.loads(event.data)
    assert list(payload) == ["time"]
    t = datetime.fromisoformat(payload["time"])
    assert t.tzinfo is not None
    assert abs((t - datetime.now(timezone.utc)).total_seconds()) < 5


@pytest.mark.parametrize("path, event_type, scale", [("/t/unix_ms", "now", 1e3), ("/t/unix_us", "tick", 1e6)])
def test_clock_formats_and_event_name(shared, client, tag, path, event_type, scale):
    s = client(shared, f"{path}?{tag}", ES)
    events = s.wait_events(2, timeout=3)
    for e in events:
        assert e.type == event_type
        assert e.data.isdigit(), e
        assert abs(int(e.data) / scale - time.time()) < 5, e
    assert int(events[1].data) > int(events[0].data)


def test_empty_event_name_sends_unnamed_message_events(shared, client, tag):
    # FASTSSE_EVENT "": no event: line, so a browser fires its plain "message" event.
    s = client(shared, f"/t/unnamed?{tag}", ES)
    events = s.wait_events(2, timeout=3)
    assert [e.type for e in events] == ["message", "message"]
    assert b"event:" not in bytes(s.body)
    assert all(set(json.loads(e.data)) == {"time"} for e in events)


def test_count_ends_stream_with_retry_hint(shared, client, tag):
    s = client(shared, f"/t/count3?{tag}", ES)
    s.wait_end(timeout=5)
    assert_count3_complete(s)
    assert not s.eof  # nginx keeps the connection
    stream = shared.fastsse.stream_id(tag)
    shared.fastsse.wait_for_log(rf" info stream {stream} closed: finished \(after [\d.]+ s, 3 events\)", timeout=2)


def test_bounded_location_resumes_where_it_stopped(shared, client, tag):
    # nginx/fastsse-locations.conf's /events/bounded: 5 ticks (1 s apart), then retry: 2000.
    # A reconnecting browser sends the last id; resume from an id near the end to keep this short.
    s = client(shared, f"/events/bounded?{tag}", {**ES, "Last-Event-ID": "20"})
    s.wait_end(timeout=8)
    assert [e.id for e in s.events] == ["21", "22", "23", "24", "25"]
    assert [r.ms for r in s.retries] == [2000]
    assert isinstance(s.items[-1], Retry)


def test_heartbeats_on_an_idle_stream(shared, client, tag):
    # One event a day (at 00:00 UTC); FASTSSE_HEARTBEAT 1: a comment about every second keeps the line alive.
    s = client(shared, f"/t/heartbeat?{tag}", ES)
    beats = s.wait_comments(3, timeout=6, text="heartbeat")
    assert s.events == []
    assert not s.ended
    assert s.body.startswith(b": fastsse stream open\n\n: heartbeat\n\n")
    opened = s.comments[0].time
    # The first after a second without output, then about one a second.
    assert 0.8 < beats[0].time - opened < 2.5, beats
    gaps = [b.time - a.time for a, b in zip(beats, beats[1:])]
    assert all(0.5 < g < 2.5 for g in gaps), gaps


def test_no_heartbeat_while_events_flow(shared, client, tag):
    # FASTSSE_HEARTBEAT 1 with an event every 200 ms: the stream is never a second without output,
    # so it carries events only.
    s = client(shared, f"/t/busy-heartbeat?{tag}", ES)
    s.wait_events(12, timeout=5)
    assert [c.text for c in s.comments] == ["fastsse stream open"]
