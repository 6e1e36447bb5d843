"""fastsse behind Apache's mod_proxy_fcgi (apache/fastsse-proxy-fcgi.conf): fastsse runs on its
own and Apache passes it each request under /events/. The checks every front must pass are in
apache_common.py; here, what is particular to this mode."""
from apache_common import *  # noqa: F401,F403 (the shared tests)
from apache_common import ES

APACHE_MODE = "proxy_fcgi"


def test_fastsse_sigterm_ends_streams_through_apache(make_apache_stack, client):
    stack = make_apache_stack(APACHE_MODE, fastsse_args=["--retry", "1500"])
    streams = [client(stack, f"/events/t/fast?n={i}", ES) for i in range(3)]
    for s in streams:
        s.wait_events(1, timeout=3)
    stack.fastsse.signal(15)
    # Each client gets the retry: hint, then the end of its response (Apache turns fastsse's
    # FCGI_END_REQUEST into the chunked terminator), and fastsse exits 0.
    for s in streams:
        s.wait_end(timeout=3)
        assert [r.ms for r in s.retries] == [1500], s.items[-3:]
        assert s.raw_body.endswith(b"0\r\n\r\n")
    assert stack.fastsse.wait(timeout=3) == 0


def test_one_fastsse_process_serves_every_stream(make_apache_stack, client):
    stack = make_apache_stack(APACHE_MODE)
    streams = [client(stack, f"/events/t/idle?n={i}", ES) for i in range(20)]
    for s in streams:
        s.wait_comments(1, timeout=3)
    # One process, one connection per stream: the opposite of mod_fcgid.
    assert len(stack.fastsse.connection_fds()) == 20
