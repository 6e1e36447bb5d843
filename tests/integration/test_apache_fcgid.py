"""fastsse started by Apache itself through mod_fcgid (apache/fastsse-fcgid.conf). The checks every
server in front must pass are in test_front.py; here, what is particular to this mode: fastsse gets
its listening socket on fd 0, each open stream holds a fastsse process of its own (mod_fcgid sends
a process one request at a time), a request beyond MaxProcesses waits for one to come free, and
stopping Apache leaves no fastsse process (nor any of its commands) behind."""
import time

import pytest

from fastsse_testlib import ES, Timeout, alive, descendants_of, wait_until

APACHE_MODE = "fcgid"


def test_each_stream_holds_a_process_and_a_full_pool_makes_requests_wait(make_apache_stack, client):
    stack = make_apache_stack(APACHE_MODE, fcgid_max_processes=2)
    fs = stack.fastsse
    a = client(stack, "/events/t/fast?slot=a", ES)
    b = client(stack, "/events/t/fast?slot=b", ES)
    a.wait_events(1, timeout=5)
    b.wait_events(1, timeout=5)
    # fastsse listens on the socket mod_fcgid gives it.
    fs.wait_for_log(r" info listening on inherited fd 0$", count=2)
    # Two streams, two processes, one connection each.
    assert sorted(fs.connections().values()) == [1, 1], fs.connections()
    pool = fs.pids()

    # A third request finds no free process and may not start one: it waits, unanswered (mod_fcgid
    # looks for a free process every second, and gives up with a 503 after 64 s).
    c = client(stack, "/events/t/fast?slot=c", ES)
    with pytest.raises(Timeout):
        c.wait_headers(2.5)
    assert c.status is None

    # A stream ending frees its process, which takes the waiting request (a, ticking every 200 ms,
    # is noticed gone at Apache's next writes).
    a.close()
    left = time.monotonic()
    c.wait_events(1, timeout=5)
    print(f"a stream left -> the waiting request was served {time.monotonic() - left:.2f} s later")
    assert fs.pids() == pool, "mod_fcgid started a process beyond MaxProcesses"
    wait_until(lambda: sorted(fs.connections().values()) == [1, 1], 2, "two processes with a stream each")
    b.wait_events(len(b.events) + 1, timeout=2)  # the other stream was never disturbed


def test_stopping_apache_leaves_no_fastsse_behind(make_apache_stack, client):
    stack = make_apache_stack(APACHE_MODE)
    fs = stack.fastsse
    ticking = client(stack, "/events/t/fast?who=ticking", ES)
    counting = client(stack, "/events/count?lines=99&who=counting", ES)  # a command: sh, and its sleep
    ticking.wait_events(1, timeout=5)
    counting.wait_events(1, timeout=5)
    pids = fs.pids()
    assert len(pids) == 2, fs.connections()
    # Everything Apache started, down to the command's processes.
    started = descendants_of(stack.apache.pid)
    assert {pid for pid, _ in started} >= set(pids)
    assert any(pid not in pids for pid, _ in descendants_of(pids[0]) + descendants_of(pids[1])), \
        "the command's processes are not running"

    start = time.monotonic()
    killed = stack.stop()
    took = time.monotonic() - start
    print(f"Apache stopped {took:.2f} s after SIGTERM, with 2 streams open")
    assert killed == [], f"processes Apache started outlived it (killed by the test): {killed}"
    still = [pid for pid, starttime in started if alive(pid, starttime)]
    assert still == [], f"still running after Apache stopped: {still}"
    assert fs.pids() == []
