"""Shared commands through nginx: one process for every viewer of the same argv, the last lines
replayed to late joiners and after Last-Event-ID, the run kept `linger` seconds after its last
viewer left, and a new run once one has ended.

The commands wait for a file ("go-TAG" in the module's directory) before they print more, so the
test decides what has been printed when a client joins. Each test uses its own TAG, and so its own
argv and its own run."""
from __future__ import annotations

import re
from datetime import datetime

import pytest

from conftest import stays_quiet
from commandlib import (CMD_NGINX_CONF, CommandStack, PATH_ENV, cmd_path, descendants, of_type, proc_state, script,
                        wait_exit, wait_gone, write_config)
from fastsse_testlib import ES, HttpStream, Retry, get, make_dir, pump

LINGER = 1


class Shared(CommandStack):
    def go(self, tag: str):
        (self.dir / f"go-{tag}").touch()


@pytest.fixture(scope="module")
def sh(paths, make_module_stack) -> Shared:
    d = make_dir(paths.work / "shared-cmd")
    feed = script(d, "feed.sh", r"""
i=0
while [ $i -lt 10 ]; do i=$((i+1)); echo "line $i"; done
while [ ! -e "go-$1" ]; do sleep 0.02; done
while [ $i -lt 15 ]; do i=$((i+1)); echo "line $i"; done
exec sleep 300
""")
    finite = script(d, "finite.sh", r"""
echo "first $$"
while [ ! -e "go-$1" ]; do sleep 0.02; done
echo last
exit 4
""")
    up = script(d, "up.sh", 'echo "$$"\nexec sleep 300\n')
    tag = {"tag": {"pattern": "[a-z0-9]+"}}
    config = write_config(d / "fastsse.toml", {
        # Viewers of one run do not count against max_running: runs do.
        "feed": {"argv": [feed, "{tag}"], "cwd": str(d), "env": PATH_ENV, "shared": True, "replay": 4,
                 "max_running": 1, "params": tag},
        "finite": {"argv": [finite, "{tag}"], "cwd": str(d), "env": PATH_ENV, "shared": True, "retry": 2500,
                   "params": tag},
        "lingerer": {"argv": [up, "{tag}"], "env": PATH_ENV, "shared": True, "linger": LINGER, "params": tag},
    })
    return Shared(make_module_stack(d, ["--config", str(config)], nginx_conf=CMD_NGINX_CONF), d)


@pytest.fixture(autouse=True)
def nginx_stays_quiet(sh):
    with stays_quiet(sh.stack):
        yield


def run_and_line(event_id: str) -> tuple[str, int]:
    m = re.fullmatch(r"(\d+)\.(\d+)", event_id)
    assert m, f"not a shared run's id <run>.<line>: {event_id!r}"
    return m.group(1), int(m.group(2))


def lines_of(stream: HttpStream) -> list[tuple[str, int, str]]:
    """(run, line number, data) of each stdout event."""
    return [(*run_and_line(e.id), e.data) for e in of_type(stream, "stdout")]


def log_time(line_match: re.Match) -> datetime:
    return datetime.fromisoformat(line_match.group(0).split(" ", 1)[0].strip())


def test_one_process_for_all_viewers_replay_and_last_event_id(sh, client):
    before = len(sh.started("feed"))
    a = client(sh.stack, cmd_path("feed", "tag=a"), ES)
    a.wait_events(10, timeout=3)
    run = run_and_line(a.events[0].id)[0]
    assert lines_of(a) == [(run, n, f"line {n}") for n in range(1, 11)]

    # A late joiner first gets the last `replay` = 4 lines; a reconnect with Last-Event-ID gets
    # exactly the lines after it (from the ring); an id of another run gets the ring.
    b = client(sh.stack, cmd_path("feed", "tag=a&who=b"), ES)
    c = client(sh.stack, cmd_path("feed", "tag=a&who=c"), dict(ES, **{"Last-Event-ID": f"{run}.8"}))
    d = client(sh.stack, cmd_path("feed", "tag=a&who=d"), dict(ES, **{"Last-Event-ID": "12345.3"}))
    e = client(sh.stack, cmd_path("feed", f"tag=a&who=e&lastEventId={run}.9"), ES)  # as polyfills send it
    for s, n in ((b, 4), (c, 2), (d, 4), (e, 1)):
        s.wait_events(n, timeout=3)
    assert [n for _, n, _ in lines_of(b)] == [7, 8, 9, 10]
    assert [n for _, n, _ in lines_of(c)] == [9, 10]
    assert [n for _, n, _ in lines_of(d)] == [7, 8, 9, 10]
    assert [n for _, n, _ in lines_of(e)] == [10]

    # Then the same live lines, with the same ids, to every viewer.
    sh.go("a")
    viewers = [a, b, c, d, e]
    pump(viewers, lambda: all(len(s.events) and s.events[-1].id == f"{run}.15" for s in viewers), 3,
         "every viewer to get line 15")
    first = {"a": 1, "b": 7, "c": 9, "d": 7, "e": 10}
    for name, s in zip("abcde", viewers):
        assert lines_of(s) == [(run, n, f"line {n}") for n in range(first[name], 16)], name

    # One process for all of them.
    started = sh.started("feed")
    assert len(started) == before + 1
    assert descendants(sh.fs.pid) == [started[-1]]

    # A second run of the same command (another argv) is over its max_running = 1.
    r = get(sh.port, cmd_path("feed", "tag=other"), ES)
    assert r.status == 503, r.describe()
    assert len(sh.started("feed")) == before + 1

    # A reconnect after the ring's lines went by (replay = 4 holds 12..15) resumes exactly.
    a.close()
    a2 = client(sh.stack, cmd_path("feed", "tag=a&who=a2"), dict(ES, **{"Last-Event-ID": f"{run}.13"}))
    a2.wait_events(2, timeout=3)
    assert lines_of(a2) == [(run, 14, "line 14"), (run, 15, "line 15")]
    assert len(sh.started("feed")) == before + 1


def test_shared_run_exit_reaches_every_viewer_then_a_new_run_starts(sh, client):
    before = len(sh.started("finite"))
    x = client(sh.stack, cmd_path("finite", "tag=b&who=x"), ES)
    y = client(sh.stack, cmd_path("finite", "tag=b&who=y"), ES)
    x.wait_events(1, timeout=3)
    y.wait_events(1, timeout=3)
    pid = sh.started("finite")[-1]
    sh.go("b")
    for s in (x, y):
        info = wait_exit(s, timeout=3)
        assert info["code"] == 4 and info["signal"] is None and info["reason"] == "exit", info
        s.wait_end(2)
        assert isinstance(s.items[-1], Retry) and s.items[-1].ms == 2500
        assert [d for _, _, d in lines_of(s)] == [f"first {pid}", "last"]
    assert lines_of(x) == lines_of(y)  # same ids
    assert len(sh.started("finite")) == before + 1
    sh.fs.wait_for_log(rf" info command finite \(pid {pid}\) exited: ")

    # The run is over: the next viewer starts a new one (and gets no replay of the old run).
    (sh.dir / "go-b").unlink()
    z = client(sh.stack, cmd_path("finite", "tag=b&who=z"), ES)
    z.wait_events(1, timeout=3)
    assert len(sh.started("finite")) == before + 2
    new_pid = sh.started("finite")[-1]
    assert new_pid != pid
    run_old = lines_of(x)[0][0]
    assert [(n, d) for _, n, d in lines_of(z)] == [(1, f"first {new_pid}")]
    assert lines_of(z)[0][0] != run_old


def test_run_lingers_after_the_last_viewer_then_stops(sh, client):
    before = len(sh.started("lingerer"))
    x = client(sh.stack, cmd_path("lingerer", "tag=c&who=x"), ES)
    y = client(sh.stack, cmd_path("lingerer", "tag=c&who=y"), ES)
    pid = int(x.wait_events(1, timeout=3)[0].data)
    assert int(y.wait_events(1, timeout=3)[0].data) == pid
    assert x.events[0].id == y.events[0].id
    assert sh.started("lingerer")[before:] == [pid]

    x.close()
    y.close()
    for who in ("x", "y"):
        sid = sh.fs.stream_id(f"tag=c&who={who}")
        sh.fs.wait_for_log(rf" info stream {sid} closed: client gone", timeout=2)
    # Back within the linger time: the same run (its line replayed), nothing new started.
    z = client(sh.stack, cmd_path("lingerer", "tag=c&who=z"), ES)
    assert z.wait_events(1, timeout=3)[0].id == x.events[0].id
    assert sh.started("lingerer")[before:] == [pid]
    assert proc_state(pid) not in (None, "Z")

    z.close()
    z_id = sh.fs.stream_id("tag=c&who=z")
    left = sh.fs.wait_for_log(rf"^\S+ info stream {z_id} closed: client gone", timeout=2)[0]
    stopped = sh.fs.wait_for_log(rf"^\S+ info command lingerer \(pid {pid}\) stopped: no one is watching",
                                 timeout=LINGER + 2)[0]
    waited = (log_time(stopped) - log_time(left)).total_seconds()
    assert waited >= LINGER - 0.005, f"stopped {waited:.3f} s after the last viewer left, linger = {LINGER}"
    wait_gone([pid], 2, "the lingering command")

    # A new viewer now starts a new run.
    w = client(sh.stack, cmd_path("lingerer", "tag=c&who=w"), ES)
    new_pid = int(w.wait_events(1, timeout=3)[0].data)
    assert new_pid != pid and sh.started("lingerer")[before:] == [pid, new_pid]
    assert run_and_line(w.events[0].id)[0] != run_and_line(x.events[0].id)[0]
