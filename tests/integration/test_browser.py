"""A real browser on the demo page: Debian's chromium, driven by playwright-core (tests/browser/),
loads demo/index.html from a real server in front of a real fastsse, and the test checks what the
page shows and what chromium sent:

- each EventSource gets its named events: `tick` (clock), `ping` (JSON), a command's `stdout`
  lines and `exit` event, a shared command's lines, the access log's tail;
- /events/bounded ends after five ticks with `retry: 2000`; chromium reconnects by itself, sends
  Last-Event-ID (seen on chromium's requests and in fastsse's log) and the page shows ids 1, 2, 3...
  each once, in order, over three connections;
- no console error; a screenshot of the page is left in the test's folder under the build tree.

The server in front is the test's parameter (conftest.FRONTS). Needs node, chromium and `npm ci` run in
$FASTSSE_BROWSER_DIR (CTest's browser.npm_ci fixture does it): a missing one FAILS, never skips.
"""
from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import FRONTS
from fastsse_testlib import _stat_fields, children_of, descendants_of, kill_if_same, make_dir

BOUNDED_IDS = 12           # ids 1..12: three connections of /events/bounded (five ticks each), two reconnects
COUNT_LINES = 10           # the page asks /events/count?lines=10
BOUNDED_RETRY_MS = 2000    # nginx/fastsse-locations.conf: FASTSSE_RETRY 2000 for /events/bounded
PAGE_TIMEOUT_MS = 40000    # the page normally has everything after ~16 s (the bounded reconnects)
NODE_TIMEOUT = 70          # s: the browser script, launch and screenshot included
SCRIPT = Path(__file__).resolve().parents[1] / "browser" / "demo_page.mjs"


# ----------------------------------------------------------------------------------------------
# The servers in front of fastsse, the test's parameter: conftest.Front, which starts a fastsse with
# demo/fastsse.toml's commands behind each, serving demo/index.html at / and the /events/* URLs of
# the shipped locations.


@pytest.fixture(params=FRONTS)
def front_name(request) -> str:
    return request.param


# ----------------------------------------------------------------------------------------------
# Running the browser, and stopping everything it started


@contextmanager
def adopting_orphans():
    """While inside, this process is a child subreaper: a chromium process that outlives its parent
    (the zygote's children when the browser exits, or the whole browser when node is killed)
    becomes our child, so that it is found, killed by its PID and reaped, rather than left to init."""
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_CHILD_SUBREAPER = 36
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    try:
        yield
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def stop_adopted(known: set[int], timeout: float = 10.0) -> list[str]:
    """Kills (by PID, start time checked) and reaps every child of ours not in `known`, and anything
    below it; returns what was found ("pid comm state")."""
    found = []
    deadline = time.monotonic() + timeout
    while True:
        adopted = [(pid, start) for pid, start in children_of(os.getpid()) if pid not in known]
        if not adopted:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"browser processes left that could not be reaped: {adopted}")
        for pid, start in adopted:
            fields = _stat_fields(pid)
            found.append(f"{pid} {_comm(pid)} {fields[0] if fields else '?'}")
            for below, below_start in reversed(descendants_of(pid)):
                kill_if_same(below, below_start)  # they become our children: reaped next round
            kill_if_same(pid, start)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


def stop_node(proc: subprocess.Popen):
    """node runs in a session of its own: its process group gets SIGTERM (playwright then closes
    the browser), SIGKILL as a last resort."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def run_node_script(argv: list[str], workdir: Path, env: dict, timeout: float) -> tuple[bytes, str, int]:
    """Runs a browser script (node, in a session of its own) to its end or `timeout`, then stops it
    and whatever browser it left behind; returns its stdout, its log (stderr, in workdir) and its
    exit status."""
    log_path = workdir / "node.log"
    known = {pid for pid, _ in children_of(os.getpid())}  # fastsse, nginx: not the browser's
    started = time.monotonic()
    with adopting_orphans():
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                                    cwd=workdir, env=env, start_new_session=True)
        known.add(proc.pid)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the browser script took more than {timeout} s; its log:\n"
                        f"{log_path.read_text(errors='replace')[-4000:]}")
        finally:
            stop_node(proc)
            adopted = stop_adopted(known - {proc.pid})
    elapsed = time.monotonic() - started
    log_text = log_path.read_text(errors="replace")
    print(f"browser script: {elapsed:.1f} s, exit {proc.returncode}; its log ({log_path}):\n{log_text}")
    if adopted:
        print(f"browser processes adopted after node exited, killed and reaped: {adopted}")
    return out, log_text, proc.returncode


def browser_tools() -> tuple[str, Path, str]:
    """node, the folder where npm ci installed playwright-core, chromium; a missing one fails."""
    node = os.environ.get("FASTSSE_NODE") or shutil.which("node")
    if not node:
        pytest.fail("node not found: install Node.js >= 18 (.ci/install-deps installs Debian's where there is none)")
    modules = os.environ.get("FASTSSE_BROWSER_DIR")
    if not modules:
        pytest.fail("FASTSSE_BROWSER_DIR is not set: run through ctest (its browser.npm_ci fixture installs "
                    "playwright-core in the build folder), or point it at a folder where `npm ci` was run")
    if not (Path(modules) / "node_modules" / "playwright-core" / "package.json").is_file():
        pytest.fail(f"playwright-core is not installed in {modules}: run `npm ci --no-audit --no-fund` there "
                    "(ctest -R browser.npm_ci)")
    chromium = os.environ.get("FASTSSE_CHROMIUM", "/usr/bin/chromium")
    if not os.access(chromium, os.X_OK):
        pytest.fail(f"chromium not found at {chromium}: install Debian's chromium (apt-get install chromium)")
    return node, Path(modules), chromium


def run_browser(url: str, workdir: Path, tools: tuple[str, Path, str]) -> dict:
    node, modules, chromium = tools
    screenshot = workdir / "demo-page.png"
    argv = [node, str(SCRIPT), "--url", url, "--screenshot", str(screenshot),
            "--profile", str(make_dir(workdir / "chromium-profile")), "--modules", str(modules),
            "--chromium", chromium, "--bounded-ids", str(BOUNDED_IDS), "--count-lines", str(COUNT_LINES),
            "--timeout-ms", str(PAGE_TIMEOUT_MS)]
    env = dict(os.environ, TMPDIR=str(make_dir(workdir / "tmp")))  # anything chromium leaves stays here
    out, log_text, status = run_node_script(argv, workdir, env, NODE_TIMEOUT)
    lines = out.decode(errors="replace").strip().splitlines()
    assert lines, f"the browser script printed nothing (exit {status}); its log:\n{log_text[-4000:]}"
    result = json.loads(lines[-1])
    (workdir / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    assert result["error"] is None, f"the browser script failed: {result['error']}\nits log:\n{log_text[-4000:]}"
    assert status == 0, f"the browser script exited {status}"
    return result


# ----------------------------------------------------------------------------------------------
# The test


def ids_of(items) -> list[str]:
    return [i["id"] for i in items]


def test_demo_page(front_name, make_front, paths, workdir):
    tools = browser_tools()  # first: a missing one fails at once
    site = make_front(front_name)
    r = run_browser(f"http://127.0.0.1:{site.port}/", workdir, tools)
    print(f"screenshot: {Path(r['screenshot']).resolve()}")
    print(f"result: {(workdir / 'result.json').resolve()}")
    boxes = r["boxes"]
    assert r["ok"], f"the page did not show everything within {PAGE_TIMEOUT_MS} ms; missing: {r['waiting_for']}"
    assert r["page_status"] == 200
    assert r["console_errors"] == [] and r["page_errors"] == [], (r["console_errors"], r["page_errors"])

    # Named events, each in its box.
    clock = [int(i) for i in r["clock_ids_seen"]]
    assert clock == list(range(clock[0], clock[0] + len(clock))), f"tick ids shown: {clock}"
    assert re.fullmatch(r"\d\d:\d\d:\d\d", boxes["clock"]["out"]), boxes["clock"]

    ping = boxes["ping"]["items"]
    assert [int(i) for i in ids_of(ping)] == list(range(1, len(ping) + 1)), ping
    for item in ping:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)", item["text"]), item

    count = [i["text"] for i in boxes["count"]["items"]]
    first_run = count[:COUNT_LINES + 2]
    assert first_run[:COUNT_LINES] == [f"line {n} of {COUNT_LINES}" for n in range(1, COUNT_LINES + 1)], count
    assert first_run[COUNT_LINES] == f"stderr: counted to {COUNT_LINES}", count
    assert re.fullmatch(r"exit: code 0, \d+ ms, exit", first_run[COUNT_LINES + 1]), count
    count_ids = ids_of(boxes["count"]["items"][:COUNT_LINES + 2])
    assert count_ids == [str(n) for n in range(1, COUNT_LINES + 2)] + [None], f"command event ids: {count_ids}"

    vmstat = boxes["vmstat"]["items"]
    assert len(vmstat) >= 3 and any("swpd" in i["text"] for i in vmstat), vmstat
    assert all(re.fullmatch(r"\d+\.\d+", i["id"]) for i in vmstat), f"shared run ids: {ids_of(vmstat)}"

    access = [i["text"] for i in boxes["access-log"]["items"]]
    assert any('"GET / HTTP/1.1" 200' in line for line in access), access

    # /events/bounded: ids 1..n, each once, in order, five to a connection, across the reconnects.
    bounded = boxes["bounded"]
    ticks = [i for i in bounded["items"] if not i["separator"]]
    ids = [int(i["id"]) for i in ticks]
    assert ids == list(range(1, len(ids) + 1)) and len(ids) >= BOUNDED_IDS, f"bounded ids shown: {ids}"
    assert [i["connection"] for i in ticks] == [(n - 1) // 5 + 1 for n in ids], ticks
    connections = bounded["connections"]  # as the page counted its open events
    assert connections >= (BOUNDED_IDS - 1) // 5 + 1 and (len(ids) - 1) // 5 + 1 in (connections, connections - 1), \
        f"{connections} connections for ids {ids}"
    seps = [i["text"] for i in bounded["items"] if i["separator"]]
    assert seps == [f"\u21bb reconnected, Last-Event-ID: {5 * (c - 1)}" for c in range(2, connections + 1)], seps

    # What chromium sent: one request per connection, Last-Event-ID from the second on, and the
    # reconnect after the server's retry: hint rather than the browser's default (3 s).
    requests = [q for q in r["requests"] if q["path"] == "/events/bounded"]
    assert len(requests) >= connections, requests
    assert [q["last_event_id"] for q in requests[:connections]] == \
        [None] + [str(5 * c) for c in range(1, connections)], requests
    for q in requests[:connections]:
        assert q["status"] == 200 and q["content_type"].startswith("text/event-stream"), q
        assert q["accept"] == "text/event-stream", q
    for ended, again in zip(requests, requests[1:connections]):
        assert ended["finished_ms"] is not None, f"the server did not end {ended}"
        gap = again["sent_ms"] - ended["finished_ms"]
        print(f"reconnect after {gap} ms (retry: {BOUNDED_RETRY_MS})")
        assert BOUNDED_RETRY_MS - 300 <= gap < 3000 - 100, f"reconnected {gap} ms after the end: {ended} {again}"
    for path in ("/events/clock", "/events/ping", "/events/vmstat", "/events/access-log"):
        opened = [q for q in r["requests"] if q["path"] == path]
        assert len(opened) == 1 and opened[0]["status"] == 200, (path, opened)

    # What fastsse was asked: the same Last-Event-ID, through the server in front.
    opened = re.findall(r" stream \d+ opened: producer=clock uri=/events/bounded(?: last-event-id=(\S+))?$",
                        site.fastsse.log(), re.M)
    assert opened[:connections] == [""] + [str(5 * c) for c in range(1, connections)], opened

    shot = Path(r["screenshot"])
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10000, shot
    assert paths.work in shot.parents or workdir in shot.parents, shot
