"""Many concurrent streams through nginx: beyond libfcgi's old 1,024-descriptor limit (select()),
all served, all ticking, all freed when their clients leave."""
import re

from fastsse_testlib import ES, HttpStream, allow_descriptors, get, open_many, pump, wait_until

N = 1200


def test_1200_concurrent_streams(make_stack):
    allow_descriptors(N + 500)

    stack = make_stack()
    fs = stack.fastsse
    r = get(stack.port, "/t/no-producer", ES)
    assert r.status == 404
    baseline = fs.settled_fd_count()

    streams: list[HttpStream] = []
    try:
        open_many(stack.port, [f"/t/fast?many={i}" for i in range(N)], streams)
        assert all(s.status == 200 for s in streams)
        assert fs.fd_count() == baseline + N  # one descriptor per stream, all open at once

        # Every stream ticks: each gets at least two events (one every 200 ms).
        pump(streams, lambda: all(len(s.events) >= 2 for s in streams), 30,
             "every stream to receive 2 events")
        for s in streams:
            ids = [e.id for e in s.events]
            assert ids == [str(i) for i in range(1, len(ids) + 1)], ids
        log = fs.log()
        assert len(re.findall(r" info stream \d+ opened: producer=clock uri=/t/fast\?many=", log)) == N
        assert " closed:" not in log
    finally:
        for s in streams:
            s.close()

    # All clients gone: nginx closes each upstream connection and fastsse frees each stream.
    wait_until(lambda: fs.fd_count() == baseline, 15, f"fastsse's descriptors back to {baseline}")
    log = fs.log()
    assert len(re.findall(r" closed: ", log)) == N
    assert len(re.findall(r" info stream \d+ closed: client gone", log)) == N
