"""What a stream carries, through nginx: events passed on one by one with nginx's own buffering on,
ids, the clock's formats, bounded streams and heartbeats. What every server in front must pass
on (events one by one, Last-Event-ID, the end of a bounded stream...) is in test_front.py."""
import time

import pytest

from fastsse_testlib import ES, Retry, assert_events_one_by_one


def test_events_arrive_one_by_one_with_nginx_buffering_on(shared, client, tag):
    # /t/fast without fastsse_params' fastcgi_buffering off (test_front.py has it as shipped):
    # fastsse's X-Accel-Buffering: no must do. One event every 200 ms. Buffered by nginx, they would
    # arrive in a batch (or not at all for 46 s); passed on at once, each arrives on its own, about
    # 200 ms after the one before.
    assert_events_one_by_one(client(shared, f"/t/nginx-buffering-on?{tag}", ES), interval=0.2)


def test_ids_count_from_one(shared, client, tag):
    s = client(shared, f"/t/fast100?{tag}", ES)
    events = s.wait_events(3, timeout=3)
    assert [e.id for e in events] == ["1", "2", "3"]
    assert all(e.type == "tick" for e in events)
    # Unix seconds, now.
    for e in events:
        assert abs(int(e.data) - time.time()) < 5, e


@pytest.mark.parametrize("path, event_type, scale", [("/t/unix_ms", "now", 1e3), ("/t/unix_us", "tick", 1e6)])
def test_clock_formats_and_event_name(shared, client, tag, path, event_type, scale):
    s = client(shared, f"{path}?{tag}", ES)
    events = s.wait_events(2, timeout=3)
    for e in events:
        assert e.type == event_type
        assert e.data.isdigit(), e
        assert abs(int(e.data) / scale - time.time()) < 5, e
    assert int(events[1].data) > int(events[0].data)


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
