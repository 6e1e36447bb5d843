"""The fastsse process: command line, config file, and the three ways to get a listening socket
(unix socket, TCP, inherited on fd 0 as from spawn-fcgi), each serving a stream through nginx."""
import re
import signal
import socket
import subprocess

import pytest

from fastsse_testlib import ES, Retry, assert_no_sanitizer_report


def run(paths, *args, stdin=subprocess.DEVNULL, timeout=5.0) -> subprocess.CompletedProcess:
    # subprocess.run kills the process (by its PID) if it outlives the timeout.
    r = subprocess.run([str(paths.binary), *args], stdin=stdin, capture_output=True, text=True, timeout=timeout)
    assert_no_sanitizer_report(r.stderr, f"fastsse {' '.join(args)}")
    return r


def assert_usage_error(r: subprocess.CompletedProcess, *mentions: str):
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastsse: "), r.stderr
    for m in mentions:
        assert m in lines[0], (m, lines[0])
    assert r.stdout == ""


def test_help_lists_flags_and_params(paths):
    r = run(paths, "--help")
    assert r.returncode == 0, r.stderr
    for flag in ("--listen", "--config", "--heartbeat", "--retry", "--max-streams", "--socket-mode"):
        assert flag in r.stdout, flag
    # The per-location params, from the same tables the server checks them against.
    for param in ("FASTSSE_HEARTBEAT", "FASTSSE_RETRY", "FASTSSE_INTERVAL", "FASTSSE_FORMAT", "FASTSSE_COUNT"):
        assert param in r.stdout, param
    assert r.stderr == ""


def test_version(paths):
    r = run(paths, "--version")
    assert r.returncode == 0
    assert re.fullmatch(r"fastsse \d+\.\d+\.\d+\n", r.stdout), r.stdout


@pytest.mark.parametrize("args, mention", [
    (["--no-such-flag"], "--no-such-flag"),
    (["--listen"], "--listen"),
    (["--max-streams", "0"], "--max-streams"),
    (["--heartbeat", "soon"], "--heartbeat"),
    (["--retry", "-1"], "--retry"),
    (["--log-level", "chatty"], "--log-level"),
    (["--socket-mode", "999"], "--socket-mode"),
])
def test_bad_flag_is_one_line_and_exit_2(paths, args, mention):
    assert_usage_error(run(paths, *args), mention)


@pytest.mark.parametrize("value", ["nohost", "unix:"])
def test_bad_listen_value_is_a_usage_error(paths, value):
    # A --listen that is neither unix:PATH nor HOST:PORT is a bad flag value like any other.
    assert_usage_error(run(paths, "--listen", value), "--listen")


@pytest.mark.parametrize("lines, bad_line, mention", [
    (['log_level = "info"', "heartbeat = 5", "hartbeat = 5"], 3, "hartbeat"),      # unknown key
    (["# limits", "max_streams = 0"], 2, "max_streams"),                           # out of range
    (['heartbeat = "soon"'], 1, "heartbeat"),                                      # not a number
    (["retry = 100", "heartbeat = true"], 2, "heartbeat"),                         # wrong TOML type
    (['socket_mode = "999"'], 1, "socket_mode"),                                   # not octal
    (["retry = 100", "", "heartbeat = "], 3, ""),                                  # TOML syntax error
])
def test_bad_config_file_names_file_and_line(paths, workdir, lines, bad_line, mention):
    config = workdir / "fastsse.toml"
    config.write_text("\n".join(lines) + "\n")
    assert_usage_error(run(paths, "--config", str(config)), f"{config}:{bad_line}", mention)


def test_missing_config_file(paths, workdir):
    missing = workdir / "missing.toml"
    assert_usage_error(run(paths, "--config", str(missing)), str(missing))


def test_no_listen_and_fd0_not_a_socket(paths):
    # stdin is /dev/null: a clear usage error rather than libfcgi failing on a file.
    assert_usage_error(run(paths), "no --listen given, no socket from systemd, and fd 0 is not a listening socket")


def test_no_listen_and_fd0_a_socket_that_does_not_listen(paths):
    a, b = socket.socketpair()
    try:
        r = run(paths, stdin=a.fileno())
    finally:
        a.close()
        b.close()
    assert_usage_error(r, "fd 0 is not a listening socket")


def test_inherited_listening_socket_serves_through_nginx(make_stack, client):
    stack = make_stack(listen="fd0")
    fs = stack.fastsse
    fs.wait_for_log(r" info listening on inherited fd 0")
    s = client(stack, "/t/fast100?via=fd0", ES)
    assert [e.id for e in s.wait_events(3, timeout=3)] == ["1", "2", "3"]
    fs.stream_id("via=fd0")
    s.close()
    fs.wait_connections(0)
    assert fs.stop() == 0
    # Not made by fastsse, so not removed by it either: the socket file belongs to whoever made it.
    assert (stack.workdir / "inherited.sock").exists()


def test_tcp_listen_serves_through_nginx(make_stack, client):
    stack = make_stack(listen="tcp")
    fs = stack.fastsse
    fs.wait_for_log(rf" info listening on {re.escape(fs.listen)}$")
    s = client(stack, "/t/fast100?via=tcp", ES)
    assert [e.id for e in s.wait_events(3, timeout=3)] == ["1", "2", "3"]
    sid = fs.stream_id("via=tcp")
    # Over TCP too, a client that leaves is noticed at once (nginx's FIN, no write needed).
    s.close()
    fs.wait_connections(0)
    fs.assert_logged(rf" info stream {sid} closed: client gone")
    assert fs.stop() == 0


def test_config_file_settings_apply_and_flags_win(make_stack, client, workdir):
    config = workdir / "fastsse.toml"
    config.write_text(
        "# fastsse settings for this test\n"
        f'listen = "unix:{workdir / "fastsse.sock"}"\n'
        'socket_mode = "0666"\n'
        "heartbeat = 1\n"
        "retry = 777\n"
    )
    stack = make_stack(["--config", str(config), "--retry", "555"], listen="config")
    fs = stack.fastsse
    fs.wait_for_log(rf" info listening on unix:{re.escape(str(workdir / 'fastsse.sock'))}$")
    # /t/idle sets no FASTSSE_HEARTBEAT: the config's heartbeat = 1 applies (default 15 s).
    s = client(stack, "/t/idle?via=config", ES)
    s.wait_comments(1, timeout=4, text="heartbeat")
    # The flag's --retry 555 wins over the config's retry = 777.
    fs.signal(signal.SIGTERM)
    s.wait_end(timeout=2)
    assert isinstance(s.items[-1], Retry) and s.items[-1].ms == 555, s.items
    assert fs.wait(timeout=2) == 0


def test_debug_log_times_each_clock_fan_out(make_stack, client):
    stack = make_stack(["--log-level", "debug"])
    fs = stack.fastsse
    streams = [client(stack, f"/t/fast100?viewer={i}", ES) for i in range(3)]
    for s in streams:
        s.wait_events(2, timeout=3)
    # Every viewer of the same clock is one fan-out: one line a tick, with how long it took.
    fs.wait_for_log(r" debug clock 100 ms, event 'tick': sent to 3 streams in \d+\.\d ms$", count=2)
    for s in streams:
        s.close()
    assert fs.stop() == 0
    # At the default level, nothing of the kind.
    quiet = make_stack()
    s = client(quiet, "/t/fast100?viewer=quiet", ES)
    s.wait_events(3, timeout=3)
    assert " debug " not in quiet.fastsse.log()
