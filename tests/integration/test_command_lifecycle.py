"""Commands over fastsse's whole life: declarations it refuses to start with, a thousand clients
that connect and leave (nothing may pile up), and SIGTERM with commands running. Each stack is
private to its test."""
from __future__ import annotations

import re
import signal
import subprocess
import threading
import time

import pytest

from commandlib import (CMD_NGINX_CONF, PATH_ENV, cmd_path, descendants, proc_state, script, started_lines,
                        thread_count, write_config)
from fastsse_testlib import (ES, FcgiRequest, HttpStream, Retry, _stat_fields, assert_no_sanitizer_report, get,
                             kill_if_same, wait_until)


def run_fastsse(paths, *args, timeout=2.0) -> subprocess.CompletedProcess:
    # subprocess.run kills the process (by its PID) if it outlives the timeout.
    r = subprocess.run([str(paths.binary), *args], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=timeout)
    assert_no_sanitizer_report(r.stderr, f"fastsse {' '.join(args)}")
    return r


# ----------------------------------------------------------------------------------------------
# Declarations refused at start


def _config_cases(workdir):
    not_executable = workdir / "not-executable.sh"
    not_executable.write_text("#!/bin/sh\necho hi\n")
    not_executable.chmod(0o644)
    # (config lines, the lines the message may name, what it must mention)
    return {
        "not-executable": (["# a script without its x bit", "[commands.x]", f'argv = ["{not_executable}"]'],
                           {2, 3}, ["commands.x", "cannot execute", str(not_executable)]),
        "not-in-path": (["[commands.x]", 'argv = ["no-such-program-fastsse-test"]'],
                        {1, 2}, ["commands.x", "no-such-program-fastsse-test", "not found in PATH"]),
        "directory": (["[commands.x]", f'argv = ["{workdir}"]'],
                      {1, 2}, ["commands.x", str(workdir)]),
        "empty-argv": (["[commands.x]", "argv = []"], {1, 2}, ["commands.x", "argv"]),
        "no-argv": (["[commands.x]", "cwd = \"/\""], {1}, ["commands.x", "argv"]),
        "bad-pattern": (["[commands.x]", 'argv = ["/bin/echo", "{p}"]', "", "[commands.x.params.p]",
                         'pattern = "([a-z"'],
                        {1, 4, 5}, ["params.p", "([a-z", "not a valid POSIX extended regex"]),
        "param-not-in-argv": (["[commands.x]", 'argv = ["/bin/echo", "hello"]', "[commands.x.params.p]",
                               'pattern = "[a-z]+"'],
                              {1, 3, 4}, ["params.p", "not used in argv"]),
        "placeholder-without-param": (["[commands.x]", 'argv = ["/bin/echo", "{q}"]'],
                                      {1, 2}, ["commands.x", "{q}"]),
        "unknown-key": (["[commands.x]", 'argv = ["/bin/echo"]', 'colour = "red"'], {3}, ["colour"]),
        "unknown-key-bool": (["[commands.x]", 'argv = ["/bin/echo"]', "colour = true"], {3}, ["colour"]),
        "unknown-param-key": (["[commands.x]", 'argv = ["/bin/echo", "{p}"]', "[commands.x.params.p]",
                               'patern = "[a-z]+"'], {4}, ["patern"]),
        "pattern-and-values": (["[commands.x]", 'argv = ["/bin/echo", "{p}"]', "[commands.x.params.p]",
                                'pattern = "[a-z]+"', 'values = ["a"]'], {1, 3, 4, 5}, ["params.p"]),
        "time-limit-negative": (["[commands.x]", 'argv = ["/bin/echo"]', "time_limit = -1"], {3}, ["time_limit"]),
        "max-line-too-small": (["[commands.x]", 'argv = ["/bin/echo"]', "max_line = 10"], {3}, ["max_line"]),
        "event-name-newline": (["[commands.x]", 'argv = ["/bin/echo"]', 'stdout_event = "a\\nb"'],
                               {1, 3}, ["stdout_event"]),
        "argv-not-array": (["[commands.x]", 'argv = "/bin/echo"'], {2}, ["argv"]),
        "default-not-allowed": (["[commands.x]", 'argv = ["/bin/echo", "{n}"]', "[commands.x.params.n]",
                                 'pattern = "[0-9]+"', 'default = "ten"'], {1, 3, 5}, ["params.n", "default"]),
    }


CONFIG_CASES = ["not-executable", "not-in-path", "directory", "empty-argv", "no-argv", "bad-pattern",
                "param-not-in-argv", "placeholder-without-param", "unknown-key", "unknown-key-bool",
                "unknown-param-key", "pattern-and-values", "time-limit-negative", "max-line-too-small",
                "event-name-newline", "argv-not-array", "default-not-allowed"]


@pytest.mark.parametrize("case", CONFIG_CASES)
def test_bad_command_declaration_is_one_line_and_exit_2(paths, workdir, case):
    lines, allowed_lines, mentions = _config_cases(workdir)[case]
    config = workdir / "fastsse.toml"
    config.write_text("\n".join(lines) + "\n")
    # A --listen too: were the declaration accepted, fastsse would start serving (and be killed,
    # by its PID, when the timeout of run_fastsse passes: the test fails with TimeoutExpired).
    try:
        r = run_fastsse(paths, "--config", str(config), "--listen", f"unix:{workdir / 'fastsse.sock'}")
    except subprocess.TimeoutExpired as e:
        err = (e.stderr or b"").decode(errors="replace")
        pytest.fail(f"fastsse accepted the declaration and started serving:\n{config.read_text()}\n{err[-500:]}",
                    pytrace=False)
    assert r.returncode == 2, (r.returncode, r.stderr[-500:])
    out = r.stderr.splitlines()
    assert len(out) == 1, r.stderr
    m = re.fullmatch(rf"fastsse: {re.escape(str(config))}:(\d+): (.+)", out[0])
    assert m, out[0]
    assert int(m.group(1)) in allowed_lines, (out[0], allowed_lines)
    for mention in mentions:
        assert mention in m.group(2), (mention, out[0])
    assert r.stdout == ""


# ----------------------------------------------------------------------------------------------
# Many clients


CYCLES = 1000
PARALLEL = 4


def test_1000_connect_then_abort_cycles_leave_nothing_behind(make_stack, workdir):
    up = script(workdir, "up.sh", 'echo "$$"\nexec sleep 300\n')
    config = write_config(workdir / "fastsse.toml", {
        # Room for the runs of clients just gone that fastsse has not yet seen leave.
        "up": {"argv": [up], "env": PATH_ENV, "max_running": 64},
    })
    stack = make_stack(["--config", str(config)], nginx_conf=CMD_NGINX_CONF)
    fs = stack.fastsse
    r = get(stack.port, "/t/no-producer", ES)
    assert r.status == 404
    # One run first: the guardian's pipe, made with the first command, stays for fastsse's lifetime.
    s = HttpStream(stack.port, cmd_path("up", "cycle=first"), ES)
    s.wait_events(1, timeout=10)
    s.close()
    wait_until(lambda: descendants(fs.pid) == [], 5, "the first run to be reaped")
    fds_before = fs.settled_fd_count()
    threads_before = thread_count(fs.pid)
    assert descendants(fs.pid) == []

    errors: list[str] = []
    pids: list[int] = []

    def client(k: int):
        try:
            for i in range(k, CYCLES, PARALLEL):
                s = HttpStream(stack.port, cmd_path("up", f"cycle={i}"), ES)
                try:
                    pids.append(int(s.wait_events(1, timeout=10)[0].data))  # the command runs
                finally:
                    s.close()
        except Exception as e:  # reported below, with the others
            errors.append(f"client {k}: {e}")

    threads = [threading.Thread(target=client, args=(k,)) for k in range(PARALLEL)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    elapsed = time.monotonic() - start
    assert not any(t.is_alive() for t in threads), "clients still running after 60 s"
    assert errors == [], errors[:5]
    assert len(set(pids)) == CYCLES

    # Every run ended and reaped: no child, no zombie, no descriptor, no thread left.
    def settled():
        return not descendants(fs.pid) and not fs.connection_fds()

    try:
        wait_until(settled, 5, "fastsse to have no child and no connection left")
    finally:
        left = [(p, proc_state(p)) for p in descendants(fs.pid)]
        print(f"{CYCLES} cycles in {elapsed:.1f} s; descendants left: {left}")
    assert all(proc_state(p) is None for p in pids)
    wait_until(lambda: fs.fd_count() == fds_before, 2, f"fastsse's descriptors back to {fds_before}")
    fds_after, threads_after = fs.fd_count(), thread_count(fs.pid)
    (workdir / "cycles.txt").write_text(
        f"cycles={CYCLES} parallel={PARALLEL} seconds={elapsed:.2f} fds_before={fds_before} fds_after={fds_after} "
        f"threads_before={threads_before} threads_after={threads_after} children_after={len(descendants(fs.pid))}\n")
    assert threads_after == threads_before

    log = fs.log()
    assert len(started_lines(log, "up")) == CYCLES + 1  # the first run too
    assert len(re.findall(r" info command up \(pid \d+\) stopped: no one is watching", log)) == CYCLES + 1
    assert len(re.findall(r" info stream \d+ closed: client gone", log)) == CYCLES + 1
    assert not re.search(r"^\S+ (warning|error|critical) ", log, re.M), log[-2000:]


# ----------------------------------------------------------------------------------------------
# SIGTERM


def test_sigterm_with_command_streams_stops_and_reaps_all_then_exits_0(make_stack, workdir):
    tree = script(workdir, "tree.sh", 'sleep 300 &\necho "$$ $!"\nwait\n')
    stubborn = script(workdir, "stubborn.sh", "trap '' TERM\nsleep 300 &\necho \"$$ $!\"\nwait\n")
    config = write_config(workdir / "fastsse.toml", {
        "tree": {"argv": [tree], "env": PATH_ENV},
        # Ignores SIGTERM, and its grace is longer than a shutdown may take: killed all the same.
        "stubborn": {"argv": [stubborn], "env": PATH_ENV, "grace": 5000},
        "shared": {"argv": [tree], "env": PATH_ENV, "shared": True, "linger": 30},
    })
    stack = make_stack(["--config", str(config), "--retry", "1500"], nginx_conf=CMD_NGINX_CONF)
    fs = stack.fastsse
    streams = [HttpStream(stack.port, cmd_path(name, f"n={i}"), ES)
               for i, name in enumerate(["tree", "tree", "stubborn", "shared", "shared"])]
    try:
        pids = set()
        for s in streams:
            pids.update(map(int, s.wait_events(1, timeout=3)[0].data.split()))
        assert len(pids) == 8  # two processes for each of the four runs (the shared one runs once)
        assert set(descendants(fs.pid)) == pids

        start = time.monotonic()
        fs.signal(signal.SIGTERM)
        for s in streams:
            s.wait_end(timeout=2)
            assert isinstance(s.items[-1], Retry) and s.items[-1].ms == 1500, s.items[-3:]
        status = fs.wait(timeout=max(0.1, start + 2.0 - time.monotonic()))
        elapsed = time.monotonic() - start
    finally:
        for s in streams:
            s.close()
    assert status == 0, fs.log()[-2000:]
    assert elapsed < 2.0
    # Each command and what it started: stopped and reaped before fastsse exited.
    assert {p: proc_state(p) for p in pids} == {p: None for p in pids}
    log = fs.log()
    assert " info received SIGTERM" in log
    assert re.search(r"^\S+ info stopped$", log, re.M), log[-1000:]


def test_sigterm_ends_a_lingering_shared_run_with_the_others(make_stack, workdir):
    # A shared run whose viewers left lingers (here 30 s) for new ones. A shutdown ends it with the
    # streams' runs, before fastsse says "stopped": not from a destructor after it.
    up = script(workdir, "up.sh", 'echo "$$"\nexec sleep 300\n')
    config = write_config(workdir / "fastsse.toml", {
        "shared": {"argv": [up], "env": PATH_ENV, "shared": True, "linger": 30},
    })
    stack = make_stack(["--config", str(config)], nginx_conf=CMD_NGINX_CONF)
    fs = stack.fastsse
    s = HttpStream(stack.port, cmd_path("shared"), ES)
    try:
        pid = int(s.wait_events(1, timeout=3)[0].data)
    finally:
        s.close()
    fs.wait_connections(0)  # the stream is over
    assert proc_state(pid) not in (None, "Z")  # lingering

    start = time.monotonic()
    fs.signal(signal.SIGTERM)
    assert fs.wait(timeout=2) == 0
    assert time.monotonic() - start < 2.0
    assert proc_state(pid) is None
    log = fs.log()
    assert re.search(rf" info command shared \(pid {pid}\) stopped: ", log), log[-1000:]
    assert log.rstrip().endswith(" info stopped"), log[-1000:]


# ----------------------------------------------------------------------------------------------
# SIGKILL


def test_sigkill_of_fastsse_kills_every_command_and_its_group(make_stack, workdir):
    # fastsse cannot act on SIGKILL: its guardian (a process of its own, told of each group) kills
    # the groups when fastsse's end of their pipe closes. Outside systemd too: here nothing else
    # would, the commands are in process groups of their own.
    tree = script(workdir, "tree.sh", 'sleep 1000 &\necho "$$ $!"\nwait\n')
    config = write_config(workdir / "fastsse.toml", {
        "tree": {"argv": [tree], "env": PATH_ENV},
        "shared": {"argv": [tree], "env": PATH_ENV, "shared": True},
    })
    stack = make_stack(["--config", str(config)], nginx_conf=CMD_NGINX_CONF)
    fs = stack.fastsse
    # Straight on fastsse's socket: nginx would log the upstream that vanished.
    requests = [FcgiRequest(str(workdir / "fastsse.sock"), {
        "REQUEST_METHOD": "GET", "REQUEST_URI": cmd_path(name), "QUERY_STRING": f"cmd={name}",
        "HTTP_ACCEPT": "text/event-stream", "FASTSSE_PRODUCER": "command", "FASTSSE_COMMAND": name})
        for name in ("tree", "shared")]
    pids = {}
    try:
        for r in requests:
            r.read_until(lambda r: re.search(rb"data: \d+ \d+\n", r.stdout), 3, "the command's pids")
            for p in map(int, re.search(rb"data: (\d+) (\d+)\n", r.stdout).groups()):
                pids[p] = _stat_fields(p)[19]  # start time: the cleanup below kills these processes only
        assert len(pids) == 4  # each command and its sleep
        assert set(descendants(fs.pid)) == set(pids)

        fs.proc.kill()
        fs.wait(timeout=2)
        # Dead: gone, or a zombie (of init's, which here may never reap it).
        wait_until(lambda: all(proc_state(p) in (None, "Z") for p in pids), 3,
                   "every command and its group member to be killed")
        guardian = int(re.search(r" started the guardian of the commands \(pid (\d+)\)", fs.log()).group(1))
        wait_until(lambda: proc_state(guardian) in (None, "Z"), 3, "the guardian to exit")
        assert re.search(rf" warning guardian: fastsse \(pid {fs.pid}\) ended without stopping its commands: "
                         r"killed 2 process group\(s\)$", fs.log(), re.M), fs.log()[-2000:]
    finally:
        for r in requests:
            r.close()
        for p, start in pids.items():  # what a failure left running
            kill_if_same(p, start)
