"""The HTTP face of an event-stream location behind nginx: how fastsse reads Accept, and what a
client's values can do to its log. What every server in front must pass on (stream headers, the
one-line text/plain errors fastsse answers instead of a stream, HEAD) is in test_front.py."""
import re

import pytest

from fastsse_testlib import ES, NOT_ACCEPTABLE, assert_plain_error, get


@pytest.mark.parametrize("accept", [
    "text/event-stream",
    "text/*",
    "*/*",
    None,  # no Accept header at all
    "text/html, */*;q=0.1",
    "application/json, TEXT/EVENT-STREAM;q=0.5",
])
def test_accept_variants_served(shared, client, tag, accept):
    headers = {"Accept": accept} if accept is not None else {}
    s = client(shared, f"/t/idle?{tag}", headers)
    [opening] = s.wait_comments(1, timeout=2)
    assert s.status == 200
    assert s.header("Content-Type") == "text/event-stream; charset=utf-8"
    assert opening.text == "fastsse stream open"


@pytest.mark.parametrize("accept", [
    "text/event-stream;q=0",
    "text/html",
    "application/json",
    # The most specific range decides: text/event-stream refused outright beats */*.
    "text/event-stream;q=0, */*",
])
def test_accept_variants_refused(shared, accept):
    r = get(shared.port, "/t/idle", {"Accept": accept})
    assert_plain_error(r, 406)
    assert r.text == NOT_ACCEPTABLE


def test_client_values_cannot_forge_log_lines(shared, client, tag):
    # lastEventId is percent-decoded from the query; before, it reached the log raw: a line of the
    # client's own and a terminal escape sequence.
    forged = "2026-11-30T00:00:00.000 info stream 1 closed: forged-" + tag
    s = client(shared, f"/events/clock?{tag}&lastEventId=5%0A{forged.replace(' ', '%20')}%0D%1B[2J", ES)
    s.wait_events(1, timeout=3)
    shared.fastsse.wait_for_log(r" info stream \d+ opened: .*" + re.escape(tag) + r".*last-event-id=5\\n2026")
    log = shared.fastsse.log()
    assert "\x1b" not in log
    assert not re.search(r"^" + re.escape(forged), log, re.M)
