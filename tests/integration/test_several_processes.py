"""Several fastsse processes behind one nginx, as nginx/fastsse-upstream.conf ships them: new streams
go to the process holding the fewest (least_conn), and when one process is killed its clients come
back through nginx to another, resuming after their Last-Event-ID, while new requests never see the
dead one. (The clock's ids come from the request, so any process resumes any clock stream; the hub's
channels need a shared engine for the same.)"""
from __future__ import annotations

import re
import signal

from fastsse_testlib import ES, Fastsse, HttpStream, Nginx, start_on_free_port, start_processes


def upstream_conf(source, sockets) -> str:
    """nginx/fastsse-upstream.conf with its server lines pointing at these sockets, their parameters
    kept."""
    text = (source / "nginx/fastsse-upstream.conf").read_text()

    def servers(m):
        return "".join(f"    server unix:{s}{m.group(2)};\n" for s in sockets)

    text, n = re.subn(r"(    server unix:/run/fastsse-\d+\.sock([^;\n]*);\n)+", servers, text)
    assert n == 1, "nginx/fastsse-upstream.conf no longer lists /run/fastsse-N.sock servers: update this test"
    return text


def streams_of(process: Fastsse) -> set[int]:
    """Which of the test's streams (?n=N) this process opened."""
    return {int(m) for m in re.findall(r" info stream \d+ opened: producer=clock uri=/events/clock\?n=(\d+)",
                                       process.log())}


def open_stream(nginx: Nginx, n: int, streams: list, headers=None) -> HttpStream:
    s = HttpStream(nginx.port, f"/events/clock?n={n}", headers or ES)
    streams.append(s)
    return s


def test_streams_spread_over_processes_and_move_when_one_is_killed(paths, workdir):
    sockets = [workdir / f"fastsse-{i}.sock" for i in (1, 2)]
    processes, streams, nginx = [], [], None
    try:
        start_processes(paths.binary, workdir, sockets, processes)
        nginx = start_on_free_port(lambda: Nginx(paths.source, workdir, "fastsse",
                                                 http_conf=upstream_conf(paths.source, sockets)))

        # least_conn, counted across nginx's two workers: four long streams, two on each process.
        for n in range(4):
            open_stream(nginx, n, streams).wait_events(1)
        held = [streams_of(p) for p in processes]
        assert sorted(len(h) for h in held) == [2, 2], held
        assert held[0] | held[1] == {0, 1, 2, 3}
        # Once one process's clients leave, the next two streams both go there (round-robin would
        # split them).
        emptied = processes[0]
        for n in sorted(held[0]):
            streams[n].close()
        emptied.wait_for_log(r" info stream \d+ closed: client gone", count=2)
        for n in (4, 5):
            open_stream(nginx, n, streams).wait_events(1)
        assert streams_of(emptied) == held[0] | {4, 5}
        held = [{4, 5}, held[1]]  # what each holds now

        # One process dies without a word: its clients' responses end, the others' go on.
        killed, survivor = processes
        killed.signal(signal.SIGKILL)
        assert killed.wait(timeout=5) == -signal.SIGKILL
        for n in sorted(held[0]):
            streams[n].wait_end()
        for n in sorted(held[1]):
            before = len(streams[n].events)
            streams[n].wait_events(before + 1, timeout=3)
            assert not streams[n].ended

        # They come back, as EventSource does, with the last id they saw: the survivor resumes them.
        for n in sorted(held[0]):
            last = streams[n].events[-1].id
            again = open_stream(nginx, n, streams, {**ES, "Last-Event-ID": last})
            first = again.wait_events(1)[0]
            assert again.status == 200, again.describe()
            assert int(first.id) == int(last) + 1, (last, first)
        assert streams_of(survivor) == held[1] | held[0]

        # New requests go to the survivor only; nginx noted the dead one's refusals, nothing worse.
        for n in range(6, 10):
            assert open_stream(nginx, n, streams).wait_events(1)[0].data
        assert streams_of(survivor) == held[1] | held[0] | set(range(6, 10))
        complaints = [line for line in nginx.error_log().splitlines() if "[alert]" in line or "[emerg]" in line]
        assert complaints == []
    finally:
        for s in streams:
            s.close()
        if nginx is not None:
            nginx.stop()
        for p in processes:
            p.stop()
