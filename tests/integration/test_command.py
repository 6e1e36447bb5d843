"""The command producer through nginx: a declared command's stdout and stderr as events, its exit,
its limits, its parameters, and its process group ended and reaped when the client leaves.

One fastsse + nginx for the module, with every command declared in its config file; the commands
are small /bin/sh scripts (or files given to cat) written into the module's directory."""
from __future__ import annotations

import json
import os
import re
import statistics
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from conftest import stays_quiet
from commandlib import (CMD_NGINX_CONF, CommandStack, PATH_ENV, cmd_path, descendants, of_type, proc_state, script,
                        wait_exit, wait_gone, write_config)
from fastsse_testlib import (ES, FCGI_END_REQUEST, FcgiRequest, Retry, _stat_fields, children_of, get, make_dir,
                             wait_until)

MAX_LINE = 100
OUTPUT_LIMIT = 10000

# What the long-line command prints (cat of a file): lines around max_line = 100 bytes.
LONG_LINES = [
    "0123456789" * 25,            # 250 bytes: pieces of 100, 100, 50
    "b" * MAX_LINE,               # exactly max_line: one event
    "c" * (MAX_LINE - 1),         # one byte short
    "x" + "é" * 120,              # 241 bytes of two-byte characters: never cut inside one
    "€𝄞" * 60,                    # 3- and 4-byte characters
    "".join(f"{i:05d}," for i in range(2000)),  # 12,000 bytes: nothing lost, in order
    "short",
]

# What the UTF-8 command prints: the raw bytes, and the text expected for each line.
UTF8_LINES = [
    (b"ok \xff\xfe end", "ok \ufffd\ufffd end"),
    ("héllo wörld € 𝄞 日本語".encode(), "héllo wörld € 𝄞 日本語"),
    (b"bad \xc3\x28 seq", "bad \ufffd( seq"),               # a lead byte without its continuation
    (b"overlong \xc0\xaf", "overlong \ufffd\ufffd"),         # an overlong '/'
    (b"surrogate \xed\xa0\x80", "surrogate \ufffd\ufffd\ufffd"),
    (b"truncated \xe2\x82", "truncated \ufffd\ufffd"),       # a sequence cut short by the line end
]


class Cmd(CommandStack):
    def wait_no_children(self, timeout: float = 5.0):
        """No command left running from an earlier test (their groups get up to `grace` to go)."""
        wait_until(lambda: not children_of(self.fs.pid), timeout, "fastsse to have no child processes")


@pytest.fixture(scope="module")
def cmd(paths, make_module_stack) -> Cmd:
    d = make_dir(paths.work / "cmd")
    # The scripts. Small sleeps separate lines whose order the test checks.
    order = script(d, "order.sh", r"""
echo out1
sleep 0.1
echo err1 >&2
sleep 0.1
printf 'out2 crlf\r\n'
sleep 0.1
echo err2 >&2
sleep 0.1
echo out3
""")
    partial = script(d, "partial.sh", r"""
printf 'Password: '
sleep 1.2
echo ok
printf 'no newline at the end'
""")
    (d / "long.txt").write_bytes("".join(line + "\n" for line in LONG_LINES).encode())
    (d / "utf8.txt").write_bytes(b"".join(raw + b"\n" for raw, _ in UTF8_LINES))
    exit3 = script(d, "exit3.sh", r"""
sleep 300 &
echo "background $!"
exit 3
""")
    selfkill = script(d, "selfkill.sh", r"""
echo before
kill -9 $$
echo after
""")
    stubborn = script(d, "stubborn.sh", r"""
trap '' TERM
sleep 300 &
echo "$!"
wait
""")
    up = script(d, "up.sh", r"""
echo "$$"
exec sleep 300
""")
    args = script(d, "args.sh", r"""
echo "$$" >> "$RUNLOG"
echo "argc=$#"
for a in "$@"; do printf 'arg=[%s]\n' "$a"; done
""")
    # A child, and an orphan: a grandchild whose parent (sh -c) has exited.
    tree = script(d, "tree.sh", r"""
sleep 300 &
orphan=$(sh -c 'sleep 300 >/dev/null 2>&1 & echo $!')
echo "$$ $! $orphan"
wait
""")
    tree_stubborn = script(d, "tree_stubborn.sh", r"""
echo "$$"
sh -c 'trap "" TERM; echo "$$"; exec sleep 300' &
wait
""")
    slowstop = script(d, "slowstop.sh", r"""
trap '' TERM
echo "$$"
exec sleep 300
""")
    runlog = str(d / "runs.log")
    commands = {
        "order": {"argv": [order], "env": PATH_ENV},
        "named": {"argv": [order], "env": PATH_ENV, "stdout_event": "out", "stderr_event": "err"},
        "partial": {"argv": [partial], "env": PATH_ENV},
        # quiet at its longest: under load cat may stall mid-line, and a quiet-time flush would
        # (rightly) cut a piece early; this command checks cutting at max_line alone.
        "long": {"argv": ["cat", str(d / "long.txt")], "max_line": MAX_LINE, "quiet": 60000},
        "utf8": {"argv": ["cat", str(d / "utf8.txt")]},
        "exit3": {"argv": [exit3], "env": PATH_ENV, "retry": 4321},
        "selfkill": {"argv": [selfkill], "env": PATH_ENV, "retry": 1000},
        "timeout": {"argv": ["sleep", "30"], "time_limit": 1, "retry": 1500},
        "stubborn": {"argv": [stubborn], "env": PATH_ENV, "time_limit": 1, "grace": 300},
        "yes": {"argv": ["yes"], "output_limit": OUTPUT_LIMIT},
        "one": {"argv": [up], "env": PATH_ENV, "max_running": 1},
        "slowstop": {"argv": [slowstop], "env": PATH_ENV, "max_running": 1, "grace": 1500},
        "args": {"argv": [args, "{v}", "{w}", "{x}"], "env": dict(PATH_ENV, RUNLOG=runlog), "params": {
            "v": {"pattern": "[A-Za-z0-9 ._-]+"},
            "w": {"values": ["alpha", "beta"], "default": "alpha"},
            "x": {"pattern": "-?[0-9]+", "default": "0", "allow_leading_dash": True},
        }},
        "raw": {"argv": [args, "{s}"], "env": dict(PATH_ENV, RUNLOG=runlog), "params": {
            "s": {"pattern": ".*", "max_length": 200},
        }},
        "envcheck": {"argv": ["sleep", "300"], "cwd": str(d), "env": {"FOO": "bar baz"},
                     "pass_env": ["FASTSSE_CMD_TEST_PASSED", "FASTSSE_CMD_TEST_NOT_SET"]},
        "tree": {"argv": [tree], "env": PATH_ENV},
        "tree_stubborn": {"argv": [tree_stubborn], "env": PATH_ENV, "grace": 300},
        "up": {"argv": [up], "env": PATH_ENV, "max_running": 50},
    }
    config = write_config(d / "fastsse.toml", commands)
    os.environ["FASTSSE_CMD_TEST_PASSED"] = "yes"  # for pass_env: fastsse inherits the tests' environment
    os.environ.pop("FASTSSE_CMD_TEST_NOT_SET", None)
    try:
        stack = make_module_stack(d, ["--config", str(config)], nginx_conf=CMD_NGINX_CONF)
    finally:
        del os.environ["FASTSSE_CMD_TEST_PASSED"]
    return Cmd(stack, d)


@pytest.fixture(autouse=True)
def nginx_stays_quiet(cmd):
    with stays_quiet(cmd.stack):
        yield


def run_to_exit(cmd, client, path, timeout=5.0):
    s = client(cmd.stack, path, ES)
    info = wait_exit(s, timeout)
    s.wait_end(timeout)
    return s, info


# ----------------------------------------------------------------------------------------------
# Lines


def test_stdout_and_stderr_lines_in_order_ids_count_lines(cmd, client):
    s, info = run_to_exit(cmd, client, cmd_path("order"))
    assert s.header("Content-Type").startswith("text/event-stream"), s.headers
    lines = [(e.type, e.data, e.id) for e in s.events if e.type != "exit"]
    assert lines == [("stdout", "out1", "1"), ("stderr", "err1", "2"), ("stdout", "out2 crlf", "3"),
                     ("stderr", "err2", "4"), ("stdout", "out3", "5")]
    # The \r before \n is dropped, not passed on (it would end a line for the browser).
    assert b"\r" not in bytes(s.body)
    assert info["code"] == 0 and info["signal"] is None and info["reason"] == "exit", info


def test_event_names_from_the_declaration(cmd, client):
    s, _ = run_to_exit(cmd, client, cmd_path("named"))
    assert [(e.type, e.data) for e in s.events if e.type != "exit"] == [
        ("out", "out1"), ("err", "err1"), ("out", "out2 crlf"), ("err", "err2"), ("out", "out3")]


def test_partial_line_is_sent_after_the_quiet_time(cmd, client):
    s = client(cmd.stack, cmd_path("partial"), ES)
    # The prompt has no newline; the command goes on 1.2 s later. It comes as an event of its own
    # (after quiet = 200 ms), before the command writes anything else.
    first = s.wait_events(1, timeout=3)[0]
    assert (first.type, first.data, first.id) == ("stdout", "Password: ", "1")
    info = wait_exit(s, timeout=5)
    events = [(e.type, e.data, e.id) for e in s.events]
    assert events[:3] == [("stdout", "Password: ", "1"), ("stdout", "ok", "2"),
                          ("stdout", "no newline at the end", "3")], events
    ok = s.events[1]
    assert ok.time - first.time >= 0.5, f"the partial line came only {ok.time - first.time:.3f} s before the next"
    assert info["code"] == 0, info


def test_long_lines_arrive_in_pieces_of_max_line(cmd, client):
    s, info = run_to_exit(cmd, client, cmd_path("long"))
    assert info["code"] == 0, info
    pieces = [e for e in s.events if e.type == "stdout"]
    texts = [e.data for e in pieces]
    # A line is cut only when it is longer than max_line: one of exactly max_line is one event
    # (and no empty event follows it).
    assert texts[:5] == ["0123456789" * 10, "0123456789" * 10, "0123456789" * 5, "b" * MAX_LINE,
                         "c" * (MAX_LINE - 1)], [t[:12] + f"...({len(t)})" for t in texts[:6]]
    assert [e.id for e in pieces] == [str(i) for i in range(1, len(pieces) + 1)]  # each piece counts
    for e in pieces:
        size = len(e.data.encode())
        assert 0 < size <= MAX_LINE, (size, e.data[:40])
        assert "\ufffd" not in e.data, f"a piece was cut inside a character: {e.data!r}"
    # Nothing lost, nothing added: the pieces of each line join back into it, in order.
    rebuilt, i = [], 0
    for line in LONG_LINES:
        got = ""
        while len(got) < len(line) and i < len(texts):
            got += texts[i]
            i += 1
        rebuilt.append(got)
    assert rebuilt == LONG_LINES
    assert i == len(texts), f"extra events after the last line: {texts[i:]}"


def test_invalid_utf8_becomes_replacement_character(cmd, client):
    s, info = run_to_exit(cmd, client, cmd_path("utf8"))
    assert info["code"] == 0, info
    # fastsse itself sends valid UTF-8: decoded strictly (the client's decoder would hide bad bytes).
    body = bytes(s.body).decode("utf-8", errors="strict")
    assert [e.data for e in of_type(s, "stdout")] == [text for _, text in UTF8_LINES]
    for _, text in UTF8_LINES:
        assert f"data: {text}\n" in body


# ----------------------------------------------------------------------------------------------
# The end of a run


def test_exit_code_then_retry_and_end(cmd, client):
    s, info = run_to_exit(cmd, client, cmd_path("exit3"))
    assert info["code"] == 3 and info["signal"] is None and info["reason"] == "exit", info
    assert isinstance(info["duration_ms"], int) and 0 <= info["duration_ms"] < 5000, info
    assert set(info) == {"code", "signal", "duration_ms", "reason"}, info
    # The exit event, then the retry hint, then the end of the response.
    assert s.events[-1].type == "exit"
    assert isinstance(s.items[-1], Retry) and s.items[-1].ms == 4321, s.items[-3:]
    assert bytes(s.body).endswith(b"\n\nretry: 4321\n\n"), bytes(s.body[-120:])
    assert s.raw_body.endswith(b"0\r\n\r\n")
    pid = cmd.started("exit3")[-1]
    cmd.fs.wait_for_log(rf" info command exit3 \(pid {pid}\) exited: " + re.escape(json.dumps(info)))
    # What it left running in its group goes with it, and is reaped.
    background = int(of_type(s, "stdout")[0].data.split()[1])
    wait_gone([pid, background], 2, "the command and its background sleep")


def test_killed_by_signal(cmd, client):
    s, info = run_to_exit(cmd, client, cmd_path("selfkill"))
    assert [(e.type, e.data) for e in s.events[:-1]] == [("stdout", "before")]
    assert info["code"] is None and info["signal"] == 9 and info["reason"] == "exit", info
    assert isinstance(s.items[-1], Retry) and s.items[-1].ms == 1000, s.items[-3:]


def test_time_limit_ends_the_run(cmd, client):
    s = client(cmd.stack, cmd_path("timeout"), ES)
    s.wait_headers(3)
    start = s.headers_at
    info = wait_exit(s, timeout=1 + 2 + 2)
    # SIGTERM at 1 s (sleep dies of it at once; SIGKILL would come 2 s, the grace, later).
    assert info["reason"] == "timeout" and info["code"] is None and info["signal"] == 15, info
    assert info["duration_ms"] >= 1000, info
    assert s.events[-1].time - start < 1 + 2 + 1, "the exit event came later than time_limit + grace"
    s.wait_end(2)
    assert isinstance(s.items[-1], Retry) and s.items[-1].ms == 1500
    pid = cmd.started("timeout")[-1]
    cmd.fs.wait_for_log(rf" info command timeout \(pid {pid}\) stopped: timeout")


def test_time_limit_sigkill_after_grace(cmd, client):
    # A command that ignores SIGTERM (and so does its child): SIGKILL to the group after grace.
    s = client(cmd.stack, cmd_path("stubborn"), ES)
    child = int(s.wait_events(1, timeout=3)[0].data)
    info = wait_exit(s, timeout=1 + 0.3 + 3)
    assert info["reason"] == "timeout" and info["code"] is None and info["signal"] == 9, info
    assert info["duration_ms"] >= 1300, info  # not before time_limit + grace
    pid = cmd.started("stubborn")[-1]
    cmd.fs.wait_for_log(rf" info process group {pid} killed after its grace period")
    wait_gone([pid, child], 2, "the stubborn command and its child")


def test_output_limit_ends_the_run(cmd, client):
    s, info = run_to_exit(cmd, client, cmd_path("yes"), timeout=10)
    assert info["reason"] == "limit" and info["code"] is None and info["signal"] == 15, info
    lines = of_type(s, "stdout")
    assert lines and all(e.data == "y" for e in lines)
    sent = sum(len(e.data) + 1 for e in lines)  # bytes of output passed on, newlines counted
    # The line that passes the limit is the last one sent: nothing more after it.
    assert OUTPUT_LIMIT < sent <= OUTPUT_LIMIT + 2, f"{sent} bytes of output sent for output_limit = {OUTPUT_LIMIT}"
    pid = cmd.started("yes")[-1]
    cmd.fs.wait_for_log(rf" info command yes \(pid {pid}\) stopped: limit")


# ----------------------------------------------------------------------------------------------
# Limits and parameters


def test_max_running_503_then_served_after_the_client_left(cmd, client):
    cmd.wait_no_children()
    first = client(cmd.stack, cmd_path("one", "client=1"), ES)
    first.wait_events(1, timeout=3)
    assert len(cmd.started("one")) == 1

    r = get(cmd.port, cmd_path("one", "client=2"), ES)
    assert r.status == 503, r.describe()
    assert r.header("Content-Type") == "text/plain; charset=utf-8"
    assert (r.header("Retry-After") or "").isdigit(), r.headers
    assert "'one'" in r.text and "1" in r.text, r.text
    assert len(cmd.started("one")) == 1  # nothing started for it

    first.close()
    cmd.fs.wait_for_log(r" info command one \(pid \d+\) stopped: no one is watching", timeout=2)

    def served():
        s = client(cmd.stack, cmd_path("one", "client=3"), ES)
        s.wait_headers(3)
        if s.status != 200:
            s.close()
            return False
        s.wait_events(1, timeout=3)
        return s

    wait_until(served, 3, "a new run once the first client left", poll=0.05).close()
    assert len(cmd.started("one")) == 2


def test_max_running_counts_a_run_until_its_process_is_gone(cmd, client):
    # A command that takes its time to stop (here: ignores SIGTERM, so it goes at SIGKILL, grace =
    # 1.5 s later). Its run is not over while its process lives: max_running = 1 must keep a
    # client that leaves and comes back from having two of them at once.
    cmd.wait_no_children()
    first = client(cmd.stack, cmd_path("slowstop", "client=1"), ES)
    pid = int(first.wait_events(1, timeout=3)[0].data)
    first.close()
    cmd.fs.wait_for_log(rf" info command slowstop \(pid {pid}\) stopped: no one is watching", timeout=2)

    again = client(cmd.stack, cmd_path("slowstop", "client=2"), ES)
    again.wait_headers(3)
    if again.status == 200:
        second = int(again.wait_events(1, timeout=3)[0].data)
        alive = [p for p in (pid, second) if proc_state(p) not in (None, "Z")]
        assert len(alive) <= 1, f"max_running = 1, yet {len(alive)} processes of the command run at once: {alive}"
    else:
        assert again.status == 503, again.describe()
    again.close()
    wait_gone([pid], 3, "the first run's process")
    # Once it is gone, a new run starts.
    third = client(cmd.stack, cmd_path("slowstop", "client=3"), ES)
    third.wait_events(1, timeout=3)
    third.close()


ATTACKS = [
    # (query, message): each refused before anything starts
    ("v=" + quote("; rm -rf /", safe=""), "Parameter 'v' does not match its pattern."),
    ("v=" + quote("$(id)", safe=""), "Parameter 'v' does not match its pattern."),
    ("v=" + quote("`id`", safe=""), "Parameter 'v' does not match its pattern."),
    ("v=" + quote("a && b", safe=""), "Parameter 'v' does not match its pattern."),
    ("v=a%0Ab", "Parameter 'v' does not match its pattern."),             # newline
    ("v=a%0Db", "Parameter 'v' does not match its pattern."),             # carriage return
    ("v=a%00b", "Parameter 'v' contains a NUL byte."),
    ("v=--option", "Parameter 'v' must not start with '-'."),
    ("v=-rf", "Parameter 'v' must not start with '-'."),
    # As long as nginx passes on (its FastCGI params record is at most 64 KB: beyond, nginx answers
    # 500 itself); 100 KB goes to fastsse directly, below.
    ("v=" + "a" * 30_000, "Parameter 'v' is longer than 256 bytes."),
    ("v=" + "a" * 257, "Parameter 'v' is longer than 256 bytes."),
    ("v=", "Parameter 'v' does not match its pattern."),                  # empty
    ("v=" + quote("../../etc/passwd", safe=""), "Parameter 'v' does not match its pattern."),
    ("v=ok&w=gamma", "Parameter 'w' is not one of the allowed values."),
    ("v=ok&w=" + quote("alpha; id", safe=""), "Parameter 'w' is not one of the allowed values."),
    ("v=ok&x=1e3", "Parameter 'x' does not match its pattern."),
    ("w=beta", "Missing parameter 'v'."),
    ("", "Missing parameter 'v'."),
]


@pytest.mark.parametrize("query, message", ATTACKS,
                         ids=["semicolon", "dollar-paren", "backticks", "and-and", "newline", "cr", "nul",
                              "double-dash", "dash", "30KB", "257B", "empty", "dot-dot", "not-a-value",
                              "value-injection", "x-pattern", "missing", "missing-all"])
def test_bad_parameter_is_400_and_starts_nothing(cmd, query, message):
    cmd.wait_no_children()
    runlog = cmd.dir / "runs.log"
    runs_before = runlog.read_text() if runlog.exists() else ""
    started_before = len(cmd.started("args"))

    r = get(cmd.port, cmd_path("args", query), ES)
    assert r.status == 400, r.describe()
    assert r.header("Content-Type") == "text/plain; charset=utf-8", r.headers
    assert r.text == message + "\n"
    cmd.fs.wait_for_log(r" info stream \d+ refused: 400 Bad Request: " + re.escape(message))

    # Nothing was started: no log line, no child of fastsse, and the script never ran.
    assert len(cmd.started("args")) == started_before
    assert children_of(cmd.fs.pid) == []
    assert (runlog.read_text() if runlog.exists() else "") == runs_before


def test_100kb_parameter_is_400_and_starts_nothing(cmd):
    # nginx cannot pass a 100 KB query on (see above): sent to fastsse's socket as nginx would.
    cmd.wait_no_children()
    started_before = len(cmd.started("args"))
    query = "cmd=args&v=" + "a" * 100_000
    r = FcgiRequest(str(cmd.dir / "fastsse.sock"), {
        "REQUEST_METHOD": "GET", "REQUEST_URI": "/t/cmd?cmd=args&v=...", "QUERY_STRING": query,
        "HTTP_ACCEPT": "text/event-stream", "FASTSSE_PRODUCER": "command", "FASTSSE_COMMAND": "args"})
    try:
        r.read_until(lambda r: any(rec.type == FCGI_END_REQUEST for rec in r.records), 5, "the end of the request")
    finally:
        r.close()
    assert r.stdout.startswith(b"Status: 400"), r.stdout[:200]
    assert r.stdout.endswith(b"\r\n\r\nParameter 'v' is longer than 256 bytes.\n"), r.stdout[-200:]
    assert len(cmd.started("args")) == started_before
    assert children_of(cmd.fs.pid) == []


def test_unknown_command_is_404(cmd):
    r = get(cmd.port, cmd_path("no-such-command"), ES)
    assert r.status == 404, r.describe()
    assert r.text == "No command named 'no-such-command'.\n"


@pytest.mark.parametrize("query, status", [("cmd=no-such-command", 404), ("cmd=args&v=%3Bid", 400),
                                           ("cmd=args", 400), ("cmd=args&v=ok", 200)],
                         ids=["unknown-command", "bad-param", "missing-param", "good"])
def test_head_answers_as_get_would_and_starts_nothing(cmd, query, status):
    cmd.wait_no_children()
    started_before = len(cmd.started("args"))
    r = get(cmd.port, "/t/cmd?" + query, ES, method="HEAD")
    assert r.status == status, r.describe()
    assert len(cmd.started("args")) == started_before
    assert children_of(cmd.fs.pid) == []


def test_parameter_value_is_exactly_one_argv_element(cmd, client):
    s, info = run_to_exit(cmd, client, cmd_path("args", "v=hello+world.%20two&x=-5"))
    assert info["code"] == 0, info
    assert [e.data for e in of_type(s, "stdout")] == ["argc=3", "arg=[hello world. two]", "arg=[alpha]", "arg=[-5]"]

    # No shell: what a shell would expand reaches the program as it was sent, in one element.
    redirected = cmd.dir / "redirected"
    value = f"$(id); echo `id` | * && '\"' > {redirected}"
    s, info = run_to_exit(cmd, client, cmd_path("raw", "s=" + quote(value, safe="")))
    assert [e.data for e in of_type(s, "stdout")] == ["argc=1", f"arg=[{value}]"]
    assert not redirected.exists()


def test_child_process_group_descriptors_environment(cmd, client):
    s = client(cmd.stack, cmd_path("envcheck"), ES)
    s.wait_comments(1, timeout=3)  # the opening comment: the command was started before it
    pid = cmd.started("envcheck")[-1]
    # posix_spawn returns as soon as the child calls execve: wait for the new program to be in place.
    wait_until(lambda: Path(f"/proc/{pid}/cmdline").read_bytes().endswith(b"/sleep\0" + b"300\0")
               and Path(f"/proc/{pid}/environ").read_bytes(), 2, "the command to be running sleep")
    fields = _stat_fields(pid)
    assert fields is not None, f"pid {pid} is not running"
    assert int(fields[1]) == cmd.fs.pid      # fastsse's child
    assert int(fields[2]) == pid             # in a process group of its own
    assert int(fields[3]) != pid             # but not a session leader

    def open_fds():
        out = {}
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                out[int(fd)] = os.readlink(f"/proc/{pid}/fd/{fd}")
            except FileNotFoundError:  # closed while we looked
                pass
        return out

    # Nothing inherited from fastsse (sockets, epoll...). The dynamic loader holds a descriptor of
    # its own for a moment while sleep starts: wait for sleep to be asleep.
    try:
        wait_until(lambda: proc_state(pid) == "S" and sorted(open_fds()) == [0, 1, 2], 2,
                   "the command to hold descriptors 0, 1 and 2 only")
    finally:
        print(f"descriptors of the command: {open_fds()}")
    fds = open_fds()
    assert fds[0] == "/dev/null"
    assert fds[1].startswith("pipe:") and fds[2].startswith("pipe:") and fds[1] != fds[2], fds
    environ = sorted(Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")[:-1])
    assert environ == [b"FASTSSE_CMD_TEST_PASSED=yes", b"FOO=bar baz"]
    assert os.readlink(f"/proc/{pid}/cwd") == str(cmd.dir.resolve())
    status = dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                  if ":\t" in line)
    # fastsse blocks SIGTERM/SIGCHLD and ignores SIGPIPE; its children get the defaults back.
    assert int(status["SigBlk"], 16) == 0, status["SigBlk"]
    # (glibc's posix_spawn leaves its two internal signals, 32 and 33, ignored: only 1..31 count.)
    assert int(status["SigIgn"], 16) & 0x7FFFFFFF == 0, status["SigIgn"]
    s.close()
    wait_gone([pid], 2, "the command")


# ----------------------------------------------------------------------------------------------
# The client leaves


def test_disconnect_kills_and_reaps_the_process_group(cmd, client):
    cmd.wait_no_children()
    s = client(cmd.stack, cmd_path("tree"), ES)
    leader, child, orphan = map(int, s.wait_events(1, timeout=3)[0].data.split())
    assert cmd.started("tree")[-1] == leader
    for pid in (child, orphan):
        assert proc_state(pid) not in (None, "Z")
        assert int(_stat_fields(pid)[2]) == leader  # in the command's group
    # fastsse is a child subreaper: the orphan is its child now (not init's), for it to reap.
    assert int(_stat_fields(orphan)[1]) == cmd.fs.pid
    assert set(descendants(cmd.fs.pid)) == {leader, child, orphan}

    s.close()
    start = time.monotonic()
    wait_gone([leader, child, orphan], 2, "the command, its child and the orphan")
    cmd.fs.wait_for_log(rf" info command tree \(pid {leader}\) stopped: no one is watching", timeout=1)
    assert time.monotonic() - start < 2
    assert descendants(cmd.fs.pid) == []
    # Stopped because no one watches: the exit is not reported to anyone (nor logged as one).
    assert f"command tree (pid {leader}) exited" not in cmd.fs.log()


def test_disconnect_sigkill_after_grace_for_what_ignores_sigterm(cmd, client):
    cmd.wait_no_children()
    s = client(cmd.stack, cmd_path("tree_stubborn"), ES)
    # The leader's pid, then its child's, printed once the child ignores SIGTERM.
    leader, stubborn = (int(e.data) for e in s.wait_events(2, timeout=3))
    s.close()
    # The shell dies of SIGTERM; its child ignores it and is killed grace = 300 ms later.
    wait_gone([leader], 2, "the command")
    wait_gone([stubborn], 2, "its child that ignores SIGTERM")
    cmd.fs.wait_for_log(rf" info process group {leader} killed after its grace period", timeout=1)
    assert descendants(cmd.fs.pid) == []


def test_disconnect_to_reaped_latency(cmd, client):
    """20 samples of the time from the client closing its connection to the command being reaped
    (gone from /proc), each within 2 s; the figures are written to latency.json."""
    cmd.wait_no_children()
    samples = []
    for i in range(20):
        s = client(cmd.stack, cmd_path("up", f"sample={i}"), ES)
        pid = int(s.wait_events(1, timeout=3)[0].data)
        assert proc_state(pid) not in (None, "Z")
        s.close()
        start = time.monotonic()
        samples.append(wait_gone([pid], 2, "the command", poll=0.0001) - start)
    ms = sorted(round(x * 1000, 2) for x in samples)
    result = {"samples_ms": ms, "median_ms": statistics.median(ms), "max_ms": max(ms)}
    (cmd.dir / "latency.json").write_text(json.dumps(result) + "\n")
    print("disconnect to reaped:", result)
    assert max(samples) < 2
