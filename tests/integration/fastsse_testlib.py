"""Test harness for fastsse's integration tests: real processes, real sockets, no mocks.

- Fastsse: starts the real binary with its stderr captured to a file; wait_for_log() polls it.
- Nginx: a real Debian nginx, its configuration generated from the repository's nginx/ files (the
  ones users copy) with test-only ports, paths and locations substituted.
- HttpStream: a raw HTTP/1.1 client that decodes chunked transfer encoding incrementally and parses
  the event stream by the WHATWG rules, recording when each event and comment arrived.

Every process is stopped by its PID: SIGTERM, a wait, SIGKILL only as a last resort.
Standard library only (Debian's /usr/bin/python3).
"""
from __future__ import annotations

import codecs
import os
import re
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

NGINX = os.environ.get("FASTSSE_NGINX", "/usr/sbin/nginx")


# ----------------------------------------------------------------------------------------------
# Waiting on conditions


class Timeout(AssertionError):
    pass


def wait_until(predicate: Callable[[], object], timeout: float, what: str, poll: float = 0.02):
    """Polls predicate until it returns a true value (returned) or the deadline passes (Timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise Timeout(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_accepting(proc: subprocess.Popen, port: int, name: str, startup_log: Callable[[], str],
                   timeout: float):
    """Waits until a web server just started accepts connections on 127.0.0.1:port; fails at once
    when it exited instead."""
    def ready():
        if proc.poll() is not None:
            raise AssertionError(f"{name} exited ({proc.returncode}) at start:\n{startup_log()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    wait_until(ready, timeout, f"{name} to accept connections on 127.0.0.1:{port}")


def start_on_free_port(make: Callable[[], object], attempts: int = 3):
    """make() builds a web server (Nginx, apachelib.Apache) on a port found free, and start() starts
    it. Someone may take that port before the server binds it: then it is stopped, and built again
    on another."""
    for attempt in range(attempts):
        server = make()
        try:
            server.start()
            return server
        except AssertionError:
            server.stop()
            if attempt == attempts - 1 or "Address already in use" not in server.startup_log():
                raise


class RedisServer:
    """A redis-server of the test's own (Debian's), on 127.0.0.1, without persistence: its data goes
    with it. start() on a free port (or the port given: a Redis started again where its clients
    look), stop() by PID. .url is what fastsse's --engine takes. args: more of redis-server's
    options (--requirepass secret)."""

    BINARY = "/usr/bin/redis-server"

    def __init__(self, workdir: Path, port: Optional[int] = None, name: str = "redis", args=()):
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.name = name
        self.args = list(args)
        self.log_path = self.workdir / f"{name}.log"
        self.proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> "RedisServer":
        argv = [self.BINARY, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--logfile", str(self.log_path), "--dir", str(self.workdir), *self.args]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, cwd=self.workdir, start_new_session=True)
        self.pid = self.proc.pid
        wait_accepting(self.proc, self.port, self.name, self.startup_log, timeout)
        return self

    def startup_log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self):
        """SIGKILL: gone at once, with its data."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def signal(self, signo: int):
        self.proc.send_signal(signo)

    def stop(self):
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)  # a test may have stopped it
            stop_process(self.proc)


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def stop_process(proc: subprocess.Popen, timeout: float = 5.0) -> Optional[int]:
    """SIGTERM, wait, then SIGKILL as a last resort; returns the exit status."""
    if proc.poll() is not None:
        return proc.returncode
    try:
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(timeout=timeout)


def _stat_fields(pid: int) -> Optional[list[str]]:
    """/proc/PID/stat after the command name (which may hold spaces and parentheses)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()


def children_of(pid: int) -> list[tuple[int, str]]:
    """The children of pid, each with its start time, so that a reused PID is never mistaken for it."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields and int(fields[1]) == pid:
                out.append((int(entry), fields[19]))
    return out


def descendants_of(pid: int) -> list[tuple[int, str]]:
    """Every process below pid (children, theirs...; zombies too), each with its start time."""
    parent_of, started = {}, {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields:
                parent_of[int(entry)] = int(fields[1])
                started[int(entry)] = fields[19]
    out, frontier = [], {pid}
    while frontier:
        frontier = {p for p, pp in parent_of.items() if pp in frontier}
        out += sorted((p, started[p]) for p in frontier)
    return out


def kill_if_same(pid: int, starttime: str):
    fields = _stat_fields(pid)
    if fields and fields[19] == starttime:  # a zombie too: SIGKILL is harmless there
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# What AddressSanitizer, LeakSanitizer and UndefinedBehaviorSanitizer write to stderr when they find
# something (the sanitizer build, FASTSSE_SANITIZE): fastsse's log must never hold one.
SANITIZER_REPORT = re.compile(r"^==\d+==ERROR: \w+Sanitizer|: runtime error: |^SUMMARY: \w+Sanitizer", re.M)


def assert_no_sanitizer_report(log: str, who: str):
    m = SANITIZER_REPORT.search(log)
    if m:
        start = log.rfind("\n", 0, max(0, m.start() - 1500)) + 1
        raise AssertionError(f"{who}: a sanitizer report in its log:\n{log[start:start + 6000]}")


def alive(pid: int, starttime: str) -> bool:
    """Whether pid is still the process that started at starttime, and not a zombie."""
    fields = _stat_fields(pid)
    return fields is not None and fields[19] == starttime and fields[0] != "Z"


def make_dir(path: Path) -> Path:
    """A fresh directory that nginx's workers (user nobody) can traverse."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    path.chmod(0o755)
    return path


# ----------------------------------------------------------------------------------------------
# fastsse


class FastsseLog:
    """What tests read of fastsse's log, wherever it is written (its own file, or Apache's error log
    under mod_fcgid) and of its connections: log() and connection_fds() are the subclass's."""

    def log(self) -> str:
        raise NotImplementedError

    def connection_fds(self) -> list:
        raise NotImplementedError

    def _gone(self) -> Optional[str]:
        """Why waiting for a log line is pointless now (the process exited), or None."""
        return None

    def _tail(self) -> str:
        return f"log tail:\n{self.log()[-3000:]}"

    def wait_for_log(self, pattern: str, timeout: float = 5.0, count: int = 1):
        """Waits until the log holds `count` lines matching the regex; returns the matches."""
        rx = re.compile(pattern, re.M)

        def found():
            matches = list(rx.finditer(self.log()))
            if len(matches) >= count:
                return matches
            gone = self._gone()
            if gone:
                raise AssertionError(f"{gone} while waiting for {pattern!r}; {self._tail()}")
            return None

        try:
            return wait_until(found, timeout, f"{count} log line(s) matching {pattern!r}")
        except Timeout as e:
            raise Timeout(f"{e}; {self._tail()}") from None

    def stream_id(self, uri_fragment: str, timeout: float = 5.0) -> int:
        """The id of the stream whose opened line shows a uri containing uri_fragment (under mod_fcgid,
        ids are per process: unique only while one process serves the test's streams)."""
        m = self.wait_for_log(r" info stream (\d+) opened: producer=\S+ uri=\S*" + re.escape(uri_fragment), timeout)
        return int(m[0].group(1))

    def assert_logged(self, pattern: str):
        """The log holds a line matching the regex, now: for a line written before a state the test
        waited for (fastsse flushes each line as it writes it)."""
        m = re.search(pattern, self.log(), re.M)
        assert m, f"no log line matching {pattern!r}; {self._tail()}"
        return m

    def wait_connections(self, n: int, timeout: float = 2.0):
        """Waits until fastsse holds n FastCGI connections. A stream is over for fastsse once it let
        its connection go: a state read in /proc, rather than a line looked for in the log."""
        wait_until(lambda: len(self.connection_fds()) == n, timeout,
                   f"fastsse to hold {n} connection(s) (it holds {len(self.connection_fds())})")


class Fastsse(FastsseLog):
    """One fastsse process. listen: "unix:PATH", "127.0.0.1:PORT" or None (socket inherited on fd 0)."""

    def __init__(self, binary: Path, workdir: Path, listen: Optional[str], args=(), stdin=None, name="fastsse",
                 wrapper=()):
        self.binary = Path(binary)
        self.workdir = Path(workdir)
        self.listen = listen
        self.log_path = self.workdir / f"{name}.log"
        self.out_path = self.workdir / f"{name}.out"
        # wrapper: programs that exec fastsse in the same process (systemd-socket-activate, setpriv).
        argv = [*wrapper, str(self.binary)]
        if listen is not None:
            argv += ["--listen", listen]
            if listen.startswith("unix:"):
                argv += ["--socket-mode", "0666"]
        argv += list(args)
        self.argv = argv
        with open(self.log_path, "wb") as err, open(self.out_path, "wb") as out:
            self.proc = subprocess.Popen(argv, stdin=stdin if stdin is not None else subprocess.DEVNULL,
                                         stdout=out, stderr=err, cwd=self.workdir, start_new_session=True)
        self.pid = self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _gone(self) -> Optional[str]:
        return f"fastsse exited ({self.proc.returncode})" if self.proc.poll() is not None else None

    def wait_started(self, timeout: float = 5.0):
        self.wait_for_log(r" info listening on ", timeout)
        self.listening_sockets = set(self._sockets().values())

    def fd_count(self) -> int:
        return fd_count(self.pid)

    def _sockets(self) -> dict[int, str]:
        out = {}
        for fd in os.listdir(f"/proc/{self.pid}/fd"):
            try:
                link = os.readlink(f"/proc/{self.pid}/fd/{fd}")
            except FileNotFoundError:  # closed while we looked
                continue
            if link.startswith("socket:"):
                out[int(fd)] = link
        return out

    def connection_fds(self) -> list[int]:
        """Descriptors of connections (sockets other than the listening one)."""
        return sorted(fd for fd, inode in self._sockets().items() if inode not in self.listening_sockets)

    def settled_fd_count(self, timeout: float = 2.0) -> int:
        """The descriptor count once no connection is open (one just answered may close a moment later)."""
        wait_until(lambda: not self.connection_fds(), timeout, "fastsse to hold no connection")
        return self.fd_count()

    def signal(self, signo: int):
        self.proc.send_signal(signo)

    def wait(self, timeout: float) -> int:
        status = self.proc.wait(timeout=timeout)
        self.assert_no_sanitizer_report()
        return status

    def stop(self) -> Optional[int]:
        status = stop_process(self.proc)
        self.assert_no_sanitizer_report()
        return status

    def assert_no_sanitizer_report(self):
        """Fails when the sanitizer build's fastsse reported an error or a leak (LeakSanitizer reports
        at exit: call this once the process ended)."""
        assert_no_sanitizer_report(self.log(), f"fastsse (pid {self.pid}, {self.log_path})")


# ----------------------------------------------------------------------------------------------
# nginx

# Test-only event-stream locations, one table for every web server in front of fastsse: each writes
# them in its own syntax (here `location = /t/NAME`, apachelib `<Location "/events/t/NAME">`), so
# that a test reaches the same location behind any of them (conftest.Front.t).
TEST_LOCATIONS: dict[str, dict[str, str]] = {
    "fast": {"FASTSSE_PRODUCER": "clock", "FASTSSE_INTERVAL": "200"},
    "fast100": {"FASTSSE_PRODUCER": "clock", "FASTSSE_INTERVAL": "100"},
    "unix_ms": {"FASTSSE_PRODUCER": "clock", "FASTSSE_INTERVAL": "100", "FASTSSE_FORMAT": "unix_ms",
                "FASTSSE_EVENT": "now"},
    "unix_us": {"FASTSSE_PRODUCER": "clock", "FASTSSE_INTERVAL": "100", "FASTSSE_FORMAT": "unix_us"},
    "unnamed": {"FASTSSE_PRODUCER": "clock", "FASTSSE_INTERVAL": "100", "FASTSSE_EVENT": "",
                "FASTSSE_FORMAT": "json"},
    "count3": {"FASTSSE_PRODUCER": "clock", "FASTSSE_INTERVAL": "100", "FASTSSE_COUNT": "3",
               "FASTSSE_RETRY": "1234"},
    # One event a day, a heartbeat every second. Apache learns that a client left only when it
    # writes to it: this is how soon a departure can be noticed there on a quiet stream.
    "heartbeat": {"FASTSSE_PRODUCER": "clock", "FASTSSE_INTERVAL": "86400000", "FASTSSE_HEARTBEAT": "1"},
    "busy-heartbeat": {"FASTSSE_PRODUCER": "clock", "FASTSSE_INTERVAL": "200", "FASTSSE_HEARTBEAT": "1"},
    # One event a day, the default heartbeat (15 s): nothing is written for the length of a test.
    "idle": {"FASTSSE_PRODUCER": "clock", "FASTSSE_INTERVAL": "86400000"},
    "no-producer": {},
    "unknown-producer": {"FASTSSE_PRODUCER": "no_such_producer"},
    "bad-interval": {"FASTSSE_PRODUCER": "clock", "FASTSSE_INTERVAL": "soon"},
    "bad-heartbeat": {"FASTSSE_PRODUCER": "clock", "FASTSSE_HEARTBEAT": "0"},
    "unknown-param": {"FASTSSE_PRODUCER": "clock", "FASTSSE_INTERVL": "100"},
    # The Mercure hub, for subscribers without a token too (the same hub as /.well-known/mercure).
    "hub-anonymous": {"FASTSSE_PRODUCER": "hub", "FASTSSE_ANONYMOUS": "1"},
}


def config_value(value: str) -> str:
    """A param's value in nginx's and Apache's config: an empty one quoted."""
    return value if value else '""'


def nginx_test_locations() -> str:
    out = ["# Generated by tests/integration: test-only event-stream locations."]
    for name, params in TEST_LOCATIONS.items():
        out += [f"location = /t/{name} {{", "    include fastsse_params;"]
        out += [f"    fastcgi_param {k} {config_value(v)};" for k, v in params.items()]
        out.append("}")
    # nginx alone: /t/fast without fastsse_params' fastcgi_buffering off (fastsse's
    # X-Accel-Buffering: no must do).
    out += ["location = /t/nginx-buffering-on {", "    include fastsse_params_buffered;",
            "    fastcgi_param FASTSSE_PRODUCER clock;", "    fastcgi_param FASTSSE_INTERVAL 200;", "}"]
    return "\n".join(out) + "\n"


TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def _replace_once(text: str, old: str, new: str, where: str) -> str:
    if old not in text:
        raise AssertionError(f"{where} no longer contains {old!r}: update the integration test harness")
    return text.replace(old, new)


class Nginx:
    """A real nginx, configured from the repository's nginx/ files, serving 127.0.0.1:port."""

    def __init__(self, source_dir: Path, workdir: Path, upstream: str, port: Optional[int] = None,
                 extra_conf: str = "", http_conf: str = ""):
        self.source_dir = Path(source_dir)
        # Test-only directives and locations of one test module, added (in the server block) after
        # the TEST_LOCATIONS.
        self.extra_conf = extra_conf
        # Directives for the http { } block (an upstream of several fastsse processes).
        self.http_conf = http_conf
        self.dir = make_dir(Path(workdir) / "nginx")
        self.upstream = upstream  # "unix:/path", "127.0.0.1:PORT" or an upstream's name, as fastcgi_pass takes it
        self.port = port or free_port()
        self.proc: Optional[subprocess.Popen] = None
        self.generate()

    def generate(self):
        src = self.source_dir / "nginx"
        (self.dir / "logs").mkdir()
        www = self.dir / "www"
        www.mkdir()
        (www / "index.html").write_text("<!doctype html><title>fastsse test</title>\n")
        for p in (self.dir, self.dir / "logs", www):
            p.chmod(0o755)

        params = (src / "fastsse_params").read_text()
        params = _replace_once(params, "unix:/run/fastsse.sock", self.upstream, "nginx/fastsse_params")
        (self.dir / "fastsse_params").write_text(params)
        # The same without nginx's fastcgi_buffering off: fastsse's X-Accel-Buffering: no alone.
        buffered = _replace_once(params, "fastcgi_buffering off;", "", "nginx/fastsse_params")
        (self.dir / "fastsse_params_buffered").write_text(buffered)
        shutil.copyfile(src / "fastsse-locations.conf", self.dir / "fastsse-locations.conf")
        (self.dir / "test-locations.conf").write_text(nginx_test_locations() + self.extra_conf)

        conf = (src / "nginx.conf").read_text()
        where = "nginx/nginx.conf"
        conf = _replace_once(conf, "127.0.0.1:8080", f"127.0.0.1:{self.port}", where)
        conf = _replace_once(conf, "/run/nginx-fastsse.pid", str(self.dir / "nginx.pid"), where)
        conf = _replace_once(conf, "/var/log/nginx/", str(self.dir / "logs") + "/", where)
        conf = _replace_once(conf, "/usr/share/fastsse/demo", str(www), where)
        conf = _replace_once(conf, "include fastsse-locations.conf;",
                             "include fastsse-locations.conf;\n        include test-locations.conf;", where)
        temp = "".join(f"    {name}_temp_path {self.dir / 'tmp' / name};\n" for name in TEMP_PATHS)
        conf, n = re.subn(r"^http \{\n", lambda m: m.group(0) + temp + self.http_conf, conf, count=1, flags=re.M)
        if n != 1:
            raise AssertionError(f"{where} has no 'http {{' block: update the integration test harness")
        if os.geteuid() == 0:
            # Started as root, nginx runs its workers as nobody, who cannot reach a build folder
            # under a private home (/root is 0700). Test-only: the workers keep the tests' user.
            conf = "user root root;\n" + conf
        # Anything left pointing outside the test directory would make the test depend on this machine.
        for outside in ("/etc/", "/var/", "/run/", "/usr/share/"):
            if outside in re.sub(r"#.*", "", conf):
                raise AssertionError(f"generated nginx.conf still refers to {outside}:\n{conf}")
        self.conf_path = self.dir / "nginx.conf"
        self.conf_path.write_text(conf)
        (self.dir / "tmp").mkdir()
        (self.dir / "tmp").chmod(0o755)

    def start(self, timeout: float = 5.0):
        argv = [NGINX, "-p", str(self.dir) + "/", "-c", str(self.conf_path),
                "-e", str(self.dir / "logs" / "startup.log"), "-g", "daemon off;"]
        with open(self.dir / "logs" / "nginx.out", "wb") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         cwd=self.dir, start_new_session=True)
        self.pid = self.proc.pid
        wait_accepting(self.proc, self.port, "nginx", self.startup_log, timeout)
        return self

    def startup_log(self) -> str:
        text = ""
        for name in ("startup.log", "nginx.out", "fastsse-error.log"):
            p = self.dir / "logs" / name
            if p.exists():
                text += f"--- {name}\n{p.read_text(errors='replace')}"
        return text

    def error_log(self) -> str:
        p = self.dir / "logs" / "fastsse-error.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        workers = children_of(self.pid)
        stop_process(self.proc)  # SIGTERM: nginx's fast shutdown, long streams included
        # The master waits for its workers; one left over (the master had to be killed) is ours too.
        for pid, starttime in workers:
            kill_if_same(pid, starttime)


# ----------------------------------------------------------------------------------------------
# The event-stream client


@dataclass
class Event:
    type: str
    data: str
    id: str
    time: float


@dataclass
class Comment:
    text: str
    time: float


@dataclass
class Retry:
    ms: int
    time: float


class EventStreamParser:
    """WHATWG HTML "Server-sent events" parsing, fed bytes in arbitrary pieces."""

    _EOL = re.compile(r"\r\n|\r|\n")

    def __init__(self):
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._partial = ""
        self._skip_lf = False  # the last piece ended in CR: a LF that starts the next one is part of it
        self._started = False
        self._data: list[str] = []
        self._type = ""
        self._id_buffer = ""
        self.last_event_id = ""
        self.reconnection_ms: Optional[int] = None
        self.items: list = []  # Event, Comment and Retry records, in order of arrival

    def feed(self, data: bytes, t: float):
        text = self._decoder.decode(data)
        if not text:
            return
        if not self._started:
            self._started = True
            if text.startswith("\ufeff"):
                text = text[1:]
        i = 0
        if self._skip_lf:
            self._skip_lf = False
            if text.startswith("\n"):
                i = 1
        while True:
            m = self._EOL.search(text, i)
            if m is None:
                self._partial += text[i:]
                return
            line = self._partial + text[i:m.start()]
            self._partial = ""
            if m.group() == "\r" and m.end() == len(text):
                self._skip_lf = True
            i = m.end()
            self._line(line, t)

    def _line(self, line: str, t: float):
        if line == "":
            self._dispatch(t)
            return
        if line.startswith(":"):
            text = line[1:]
            self.items.append(Comment(text[1:] if text.startswith(" ") else text, t))
            return
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._type = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            if "\0" not in value:
                self._id_buffer = value
        elif name == "retry":
            if value and value.isascii() and value.isdigit():
                self.reconnection_ms = int(value)
                self.items.append(Retry(int(value), t))
        # other fields are ignored

    def _dispatch(self, t: float):
        self.last_event_id = self._id_buffer
        if not self._data:
            self._type = ""
            return
        self.items.append(Event(self._type or "message", "\n".join(self._data), self.last_event_id, t))
        self._data = []
        self._type = ""


class ProtocolError(AssertionError):
    pass


class ChunkedDecoder:
    """Incremental Transfer-Encoding: chunked decoder; `done` once the last chunk and trailers are in."""

    def __init__(self):
        self._buf = bytearray()
        self._state = "size"
        self._remaining = 0
        self.done = False

    def feed(self, data: bytes) -> bytes:
        self._buf += data
        out = bytearray()
        while True:
            if self._state == "size":
                idx = self._buf.find(b"\r\n")
                if idx < 0:
                    if len(self._buf) > 1024:
                        raise ProtocolError(f"chunk size line too long: {bytes(self._buf[:80])!r}")
                    break
                line = bytes(self._buf[:idx]).split(b";")[0].strip()
                del self._buf[:idx + 2]
                try:
                    size = int(line, 16)
                except ValueError:
                    raise ProtocolError(f"bad chunk size line {line!r}") from None
                if size == 0:
                    self._state = "trailer"
                else:
                    self._remaining = size
                    self._state = "data"
            elif self._state == "data":
                if not self._buf:
                    break
                n = min(self._remaining, len(self._buf))
                out += self._buf[:n]
                del self._buf[:n]
                self._remaining -= n
                if self._remaining == 0:
                    self._state = "crlf"
            elif self._state == "crlf":
                if len(self._buf) < 2:
                    break
                if self._buf[:2] != b"\r\n":
                    raise ProtocolError(f"chunk not followed by CRLF: {bytes(self._buf[:20])!r}")
                del self._buf[:2]
                self._state = "size"
            elif self._state == "trailer":
                idx = self._buf.find(b"\r\n")
                if idx < 0:
                    break
                line = self._buf[:idx]
                del self._buf[:idx + 2]
                if not line:
                    self._state = "done"
                    self.done = True
            else:  # done: anything more belongs to a next response
                break
        return bytes(out)


class HttpStream:
    """One HTTP/1.1 request over a raw socket, its response parsed incrementally.

    Works blocking (wait_* methods) or driven by a selector (fileno(), on_readable())."""

    def __init__(self, port: int, path: str, headers: Optional[dict] = None, method: str = "GET",
                 body: bytes = b"", host: str = "127.0.0.1", connect_timeout: float = 5.0):
        self.method = method
        self.path = path
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        if body or method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(body)}")
        request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        self.sock = socket.create_connection((host, port), timeout=connect_timeout)
        self.sock.sendall(request)
        self.sent_at = time.monotonic()

        self._head = bytearray()
        self.status: Optional[int] = None
        self.reason = ""
        self.headers: list[tuple[str, str]] = []
        self.headers_at: Optional[float] = None
        self.body = bytearray()       # the decoded body
        self.raw_body = bytearray()   # the body as it came on the wire (chunked framing included)
        self._mode = None             # "chunked", "length" or "eof"
        self._remaining = 0
        self._chunked: Optional[ChunkedDecoder] = None
        self.sse: Optional[EventStreamParser] = None
        self.ended = False            # the response is complete (chunked terminator, length reached...)
        self.ended_at: Optional[float] = None
        self.eof = False              # the server closed the connection
        self.eof_at: Optional[float] = None
        self.reads = 0                # recv() calls that returned body bytes

    # -- incremental parsing

    def fileno(self) -> int:
        return self.sock.fileno()

    def feed(self, data: bytes, t: float):
        if self.status is None:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._head[:end]).decode("latin-1")
            rest = bytes(self._head[end + 4:])
            self._head = bytearray()
            status_line, *header_lines = head.split("\r\n")
            parts = status_line.split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
                raise ProtocolError(f"bad status line {status_line!r}")
            self.status = int(parts[1])
            self.reason = parts[2] if len(parts) > 2 else ""
            for line in header_lines:
                name, _, value = line.partition(":")
                self.headers.append((name.strip(), value.strip()))
            self.headers_at = t
            ctype = (self.header("Content-Type") or "").lower()
            if ctype.startswith("text/event-stream"):
                self.sse = EventStreamParser()
            if self.method == "HEAD" or self.status in (204, 304) or 100 <= self.status < 200:
                self._end(t)
            elif "chunked" in (self.header("Transfer-Encoding") or "").lower():
                self._mode = "chunked"
                self._chunked = ChunkedDecoder()
            elif self.header("Content-Length") is not None:
                self._mode = "length"
                self._remaining = int(self.header("Content-Length"))
                if self._remaining == 0:
                    self._end(t)
            else:
                self._mode = "eof"
            data = rest
            if not data:
                return
        self.raw_body += data
        self.reads += 1
        if self.ended:
            return  # bytes after the end of the response: kept in raw_body for the tests to see
        if self._mode == "chunked":
            payload = self._chunked.feed(data)
            if self._chunked.done:
                self._end(t)
        elif self._mode == "length":
            payload = data[:self._remaining]
            self._remaining -= len(payload)
            if self._remaining == 0:
                self._end(t)
        else:
            payload = data
        if payload:
            self.body += payload
            if self.sse is not None:
                self.sse.feed(payload, t)

    def _end(self, t: float):
        if not self.ended:
            self.ended = True
            self.ended_at = t

    def on_eof(self, t: float):
        self.eof = True
        self.eof_at = t
        if self._mode == "eof":
            self._end(t)

    def _recv(self) -> bool:
        """One recv(), what it brought parsed; False once the server closed (a reset too). The
        socket's own exceptions (timeout, would block) are the caller's."""
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        t = time.monotonic()
        if not data:
            self.on_eof(t)
            return False
        self.feed(data, t)
        return True

    def on_readable(self) -> bool:
        """Reads what is there (socket non-blocking); returns False once the server closed."""
        while True:
            try:
                if not self._recv():
                    return False
            except (BlockingIOError, InterruptedError):
                return True

    def read_some(self, timeout: float) -> bool:
        """One blocking read of up to `timeout` seconds; False on timeout or at EOF."""
        if self.eof:
            return False
        self.sock.settimeout(max(timeout, 0.001))
        try:
            return self._recv()
        except socket.timeout:
            return False

    # -- waiting

    def wait(self, predicate: Callable[["HttpStream"], object], timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while True:
            value = predicate(self)
            if value:
                return value
            now = time.monotonic()
            if now >= deadline or self.eof:
                state = "connection closed" if self.eof else f"timed out after {timeout} s"
                raise Timeout(f"{state} waiting for {what} on {self.method} {self.path}; {self.describe()}")
            self.read_some(deadline - now)

    def wait_headers(self, timeout: float = 5.0) -> "HttpStream":
        self.wait(lambda s: s.status is not None, timeout, "the response headers")
        return self

    def wait_events(self, n: int, timeout: float = 5.0) -> list[Event]:
        self.wait_headers(timeout)
        assert self.sse is not None, f"not an event stream: {self.describe()}"
        self.wait(lambda s: len(s.events) >= n, timeout, f"{n} events")
        return self.events[:n]

    def wait_comments(self, n: int, timeout: float = 5.0, text: Optional[str] = None) -> list[Comment]:
        self.wait_headers(timeout)
        assert self.sse is not None, f"not an event stream: {self.describe()}"
        pick = (lambda s: [c for c in s.comments if text is None or c.text == text])
        self.wait(lambda s: len(pick(s)) >= n, timeout, f"{n} comments" + (f" {text!r}" if text else ""))
        return pick(self)[:n]

    def wait_end(self, timeout: float = 5.0) -> "HttpStream":
        self.wait(lambda s: s.ended, timeout, "the end of the response")
        return self

    # -- results

    def header(self, name: str) -> Optional[str]:
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None

    def header_names(self) -> list[str]:
        return [n.lower() for n, _ in self.headers]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    @property
    def items(self) -> list:
        return self.sse.items if self.sse else []

    @property
    def events(self) -> list[Event]:
        return [i for i in self.items if isinstance(i, Event)]

    @property
    def comments(self) -> list[Comment]:
        return [i for i in self.items if isinstance(i, Comment)]

    @property
    def retries(self) -> list[Retry]:
        return [i for i in self.items if isinstance(i, Retry)]

    def describe(self) -> str:
        return (f"status={self.status} headers={self.headers} ended={self.ended} eof={self.eof} "
                f"items={self.items[-8:]} body[:300]={bytes(self.body[:300])!r}")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


ES = {"Accept": "text/event-stream"}
NOT_ACCEPTABLE = 'You must send a request with "Accept: text/event-stream".\n'


def assert_plain_error(r: HttpStream, status: int):
    """One of fastsse's own answers instead of a stream, whichever server is in front."""
    assert r.status == status, r.describe()
    assert r.header("Content-Type") == "text/plain; charset=utf-8", r.describe()
    # One line of reason, nothing else: no HTML error page of the web server's, no second line.
    assert r.text.endswith("\n") and r.text.count("\n") == 1, r.describe()
    assert "<" not in r.text, r.describe()


def get(port: int, path: str, headers: Optional[dict] = None, method: str = "GET", body: bytes = b"",
        timeout: float = 5.0) -> HttpStream:
    """A complete short response (errors, HEAD): read until the response ends."""
    h = {"Connection": "close"}
    h.update(headers or {})
    s = HttpStream(port, path, h, method=method, body=body)
    try:
        s.wait_end(timeout)
        if h.get("Connection") == "close":
            # Everything after the response would be a protocol error (a body after HEAD, say).
            s.wait(lambda s: s.eof, timeout, "the server to close the connection")
    finally:
        s.close()
    return s


def assert_events_one_by_one(s: HttpStream, n: int = 6, interval: float = 0.2):
    """A stream of one event every `interval` s passes n of them on one by one, each as produced:
    not batched by a buffer on the way (which would deliver several in one read, or none for long)."""
    events = s.wait_events(n, timeout=n * interval + 4)
    gaps = [b.time - a.time for a, b in zip(events, events[1:])]
    assert all(g > interval / 4 for g in gaps), f"events arrived batched: gaps {gaps}"
    assert interval / 2 < sum(gaps) / len(gaps) < interval * 2, f"gaps {gaps} are not about the {interval} s interval"
    # Each event came in a read of its own, before the next one was produced.
    assert len({e.time for e in events}) == len(events)


def assert_count3_complete(s: HttpStream):
    """/t/count3 (FASTSSE_COUNT 3, FASTSSE_RETRY 1234), whichever server is in front: three events,
    the retry hint, then the end of the response (FCGI_END_REQUEST became the chunked terminator)."""
    kinds = [type(i).__name__ for i in s.items]
    assert kinds == ["Comment", "Event", "Event", "Event", "Retry"], s.items
    assert [e.id for e in s.events] == ["1", "2", "3"]
    assert s.retries[0].ms == 1234
    assert bytes(s.body).endswith(b"id: 3\n\nretry: 1234\n\n"), bytes(s.body)
    assert s.raw_body.endswith(b"0\r\n\r\n")


def pump(streams: list[HttpStream], until: Callable[[], bool], timeout: float, what: str):
    """Reads all streams (made non-blocking) with one selector until `until()` or the deadline."""
    sel = selectors.DefaultSelector()
    try:
        for s in streams:
            if not s.eof:
                s.sock.setblocking(False)
                sel.register(s.sock, selectors.EVENT_READ, s)
        deadline = time.monotonic() + timeout
        while not until():
            now = time.monotonic()
            if now >= deadline:
                raise Timeout(f"timed out after {timeout} s waiting for {what}")
            for key, _ in sel.select(min(0.2, deadline - now)):
                if not key.data.on_readable():
                    sel.unregister(key.fileobj)
    finally:
        sel.close()


def allow_descriptors(n: int):
    """Raises this process's descriptor limit to n (within the hard limit), for tests that hold many
    streams."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        assert hard >= n, f"this test needs {n} descriptors, the hard limit is {hard}"
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))


def open_many(port: int, paths: list[str], into: list[HttpStream], headers: Optional[dict] = None, batch: int = 200):
    """Opens a stream on each path, `batch` at a time, each batch open (its opening comment read)
    before the next, so that no listen queue overflows. Each goes into `into` as it is made, for the
    caller to close whatever happens."""
    for first in range(0, len(paths), batch):
        streams = [HttpStream(port, path, headers or ES) for path in paths[first:first + batch]]
        into += streams
        pump(streams, lambda: all(s.sse is not None and s.comments for s in streams), 20,
             f"streams {first}..{first + len(streams) - 1} to open")


def start_processes(binary: Path, workdir: Path, sockets: list[Path], into: list[Fastsse]):
    """One fastsse per socket ("process1"... folders under workdir), each listening before this
    returns; each goes into `into` as it starts, for the caller to stop whatever happens."""
    for i, sock in enumerate(sockets, 1):
        into.append(Fastsse(binary, make_dir(workdir / f"process{i}"), f"unix:{sock}"))
    for p in into:
        p.wait_for_log(r" info listening on ")


# ----------------------------------------------------------------------------------------------
# FastCGI, spoken directly: what nginx hides (END_REQUEST, the CGI headers fastsse writes)

FCGI_BEGIN_REQUEST, FCGI_ABORT_REQUEST, FCGI_END_REQUEST = 1, 2, 3
FCGI_PARAMS, FCGI_STDIN, FCGI_STDOUT, FCGI_STDERR = 4, 5, 6, 7
FCGI_RESPONDER = 1


@dataclass
class Record:
    type: int
    request_id: int
    content: bytes
    time: float


def fcgi_record(rtype: int, request_id: int, content: bytes = b"") -> bytes:
    import struct
    return struct.pack("!BBHHBx", 1, rtype, request_id, len(content), 0) + content


def fcgi_pairs(params: dict) -> bytes:
    import struct
    out = b""
    for name, value in params.items():
        for part in (name.encode(), value.encode()):
            out += bytes([len(part)]) if len(part) < 128 else struct.pack("!I", len(part) | 0x80000000)
        out += name.encode() + value.encode()
    return out


class FcgiRequest:
    """One FastCGI request to fastsse (as nginx sends it: responder role, no keep-alive)."""

    def __init__(self, unix_path: str, params: dict, request_id: int = 1, send_stdin: bool = True):
        import struct
        self.request_id = request_id
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(unix_path)
        begin = struct.pack("!HB5x", FCGI_RESPONDER, 0)
        body = fcgi_pairs(params)
        # Params longer than one record (64 KB) go in several, as the protocol allows.
        records = b"".join(fcgi_record(FCGI_PARAMS, request_id, body[i:i + 65535])
                           for i in range(0, len(body), 65535))
        self.sock.sendall(fcgi_record(FCGI_BEGIN_REQUEST, request_id, begin)
                          + records + fcgi_record(FCGI_PARAMS, request_id)
                          + (fcgi_record(FCGI_STDIN, request_id) if send_stdin else b""))
        self._buf = bytearray()
        self.records: list[Record] = []
        self.eof = False

    def _parse(self, t: float):
        while len(self._buf) >= 8:
            version, rtype, rid, length, padding = self._buf[0], self._buf[1], int.from_bytes(self._buf[2:4], "big"), \
                int.from_bytes(self._buf[4:6], "big"), self._buf[6]
            if version != 1:
                raise ProtocolError(f"FastCGI version {version} in {bytes(self._buf[:8])!r}")
            if len(self._buf) < 8 + length + padding:
                return
            self.records.append(Record(rtype, rid, bytes(self._buf[8:8 + length]), t))
            del self._buf[:8 + length + padding]

    def read_until(self, predicate: Callable[["FcgiRequest"], object], timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while not predicate(self):
            now = time.monotonic()
            if now >= deadline or self.eof:
                raise Timeout(f"{'connection closed' if self.eof else 'timed out'} waiting for {what}; "
                              f"records: {self.records[-6:]}")
            self.sock.settimeout(deadline - now)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not data:
                self.eof = True
                if self._buf:
                    raise ProtocolError(f"connection closed inside a record: {bytes(self._buf)!r}")
                continue
            self._buf += data
            self._parse(time.monotonic())
        return self

    def send_stdin(self):
        """The empty FCGI_STDIN record that ends the request, held back with send_stdin=False (as
        Apache's mod_proxy_fcgi sends it: in a write of its own, after the params)."""
        self.sock.sendall(fcgi_record(FCGI_STDIN, self.request_id))

    @property
    def stdout(self) -> bytes:
        return b"".join(r.content for r in self.records if r.type == FCGI_STDOUT)

    def close(self):
        self.sock.close()
