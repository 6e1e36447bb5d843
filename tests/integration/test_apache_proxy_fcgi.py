"""fastsse behind Apache's mod_proxy_fcgi (apache/fastsse-proxy-fcgi.conf): fastsse runs on its
own and Apache passes it each request under /events/. The checks every server in front must pass
are in test_front.py (SIGTERM ending the streams through Apache among them); here, what is
particular to this mode."""
from fastsse_testlib import ES

APACHE_MODE = "proxy_fcgi"


def test_one_fastsse_process_serves_every_stream(make_apache_stack, client):
    stack = make_apache_stack(APACHE_MODE)
    streams = [client(stack, f"/events/t/idle?n={i}", ES) for i in range(20)]
    for s in streams:
        s.wait_comments(1, timeout=3)
    # One process, one connection per stream: the opposite of mod_fcgid.
    assert len(stack.fastsse.connection_fds()) == 20
