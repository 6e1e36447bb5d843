"""Fixtures for fastsse's integration tests.

Environment (set by CTest, see tests/CMakeLists.txt):
  FASTSSE_BIN         the fastsse binary under test (required)
  FASTSSE_SOURCE_DIR  the repository (default: two levels up from this file)
  FASTSSE_WORK_DIR    where configs, sockets and logs go (default: integration/ beside the binary)
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fastsse_testlib import (NGINX, Fastsse, HttpStream, Nginx, descendants_of, free_port, kill_if_same,  # noqa: E402
                             make_dir, start_on_free_port)
from apachelib import ApacheStack  # noqa: E402


@dataclass
class Paths:
    binary: Path
    source: Path
    work: Path


def _paths() -> Paths:
    binary = os.environ.get("FASTSSE_BIN")
    if not binary:
        raise pytest.UsageError("FASTSSE_BIN is not set: run through ctest, or set it to the fastsse binary")
    source = Path(os.environ.get("FASTSSE_SOURCE_DIR") or Path(__file__).resolve().parents[2])
    work = Path(os.environ.get("FASTSSE_WORK_DIR") or Path(binary).resolve().parent / "integration")
    return Paths(Path(binary).resolve(), source.resolve(), work.resolve())


@pytest.fixture(scope="session")
def paths():
    p = _paths()
    # Missing parts are a failure, never a skip: a suite that skips everything proves nothing.
    if not os.access(p.binary, os.X_OK):
        pytest.fail(f"fastsse binary not found or not executable: {p.binary}")
    if not os.access(NGINX, os.X_OK):
        pytest.fail(f"nginx not found at {NGINX}: install Debian's nginx (apt-get install nginx-light)")
    if not (p.source / "nginx" / "nginx.conf").is_file():
        pytest.fail(f"not the fastsse repository: {p.source}")
    p.work.mkdir(parents=True, exist_ok=True)
    p.work.chmod(0o755)
    # A unix socket path has at most 107 bytes, and the build folder may be deep (CI clones into
    # a path we do not choose). Tests see the work folder through a short link in /tmp; the files
    # stay in the build folder for whoever reads a failure.
    short = Path(tempfile.mkdtemp(prefix="fsse-", dir="/tmp"))
    short.chmod(0o755)
    (short / "w").symlink_to(p.work, target_is_directory=True)
    yield Paths(p.binary, p.source, short / "w")
    (short / "w").unlink()
    short.rmdir()


def _short_name(nodename: str) -> str:
    """A directory name for the test: short, since a unix socket path has at most 107 bytes."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", nodename).strip("-")
    if len(name) <= 30:
        return name
    return name[:23] + "-" + hashlib.sha1(nodename.encode()).hexdigest()[:6]


@pytest.fixture
def workdir(paths, request) -> Path:
    return make_dir(paths.work / _short_name(request.node.name))


@pytest.fixture
def fastsse(paths, workdir):
    """fastsse alone on a unix socket in the test's folder, for tests that play the web server."""
    fs = Fastsse(paths.binary, workdir, f"unix:{workdir / 'fastsse.sock'}")
    try:
        fs.wait_started()
        yield fs
    finally:
        fs.stop()


class Stack:
    """fastsse behind nginx, as users run them."""

    def __init__(self, paths: Paths, workdir: Path, args=(), listen: str = "unix", name: str = "fastsse",
                 nginx_conf: str = ""):
        self.paths = paths
        self.nginx_conf = nginx_conf  # extra server-block directives and locations (Nginx.extra_conf)
        self.workdir = workdir
        self.fastsse: Optional[Fastsse] = None
        self.nginx: Optional[Nginx] = None
        self.inherited: Optional[socket.socket] = None
        try:
            self._start(args, listen, name)
        except BaseException:
            self.stop()  # a half-started stack leaves nothing running
            raise

    def _start(self, args, listen, name):
        workdir, paths = self.workdir, self.paths
        stdin = None
        if listen == "unix":
            sock = workdir / "fastsse.sock"
            if len(str(sock)) > 100:
                raise AssertionError(f"unix socket path too long ({len(str(sock))} bytes): {sock}")
            flag, upstream = f"unix:{sock}", f"unix:{sock}"
        elif listen == "tcp":
            flag = upstream = None  # a free port, chosen below
        elif listen == "config":
            # The args name a --config file whose listen is unix:<workdir>/fastsse.sock.
            flag, upstream = None, f"unix:{workdir / 'fastsse.sock'}"
        elif listen == "fd0":
            # As spawn-fcgi does: the listening socket is made by the parent and given as fd 0.
            sock = workdir / "inherited.sock"
            self.inherited = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.inherited.bind(str(sock))
            os.chmod(sock, 0o666)
            self.inherited.listen(128)
            flag, upstream, stdin = None, f"unix:{sock}", self.inherited.fileno()
        else:
            raise ValueError(listen)
        # A port found free may be taken by someone else before the server binds it: try another.
        for attempt in range(3):
            if listen == "tcp":
                flag = upstream = f"127.0.0.1:{free_port()}"
            self.fastsse = Fastsse(paths.binary, workdir, flag, args, stdin=stdin, name=name)
            try:
                self.fastsse.wait_started()
                break
            except AssertionError:
                if listen != "tcp" or attempt == 2 or "Address already in use" not in self.fastsse.log():
                    raise
                self.fastsse.stop()
        if self.inherited is not None:
            self.inherited.close()  # fastsse holds it now
        self.nginx = start_on_free_port(lambda: Nginx(paths.source, workdir, upstream, extra_conf=self.nginx_conf))

    @property
    def port(self) -> int:
        return self.nginx.port

    server_name = "nginx"

    def complaints(self) -> list[str]:
        """nginx's warnings and errors so far (it logs at warn and above): a FastCGI framing mistake
        ("upstream prematurely closed", "upstream sent invalid header") or a config problem shows up
        here, even when the client saw a plausible response."""
        return self.nginx.error_log().splitlines() if self.nginx is not None else []

    def stop(self):
        errors = []
        # fastsse's children (commands) and theirs: fastsse stops them itself; any it left behind
        # (a test failed, fastsse had to be killed) are stopped here, each by its PID.
        leftovers = descendants_of(self.fastsse.pid) if self.fastsse and self.fastsse.proc.poll() is None else []
        for part in (self.fastsse, self.nginx):
            if part is None:
                continue
            try:
                part.stop()
            except Exception as e:  # keep stopping the rest
                errors.append(e)
        for pid, starttime in leftovers:
            kill_if_same(pid, starttime)
        if self.inherited is not None:
            self.inherited.close()
        if errors:
            raise errors[0]


@pytest.fixture
def make_stack(paths, workdir):
    """Starts a private fastsse + nginx pair; both are stopped by PID when the test ends.
    nginx_conf: extra server-block directives and locations (see Nginx.extra_conf)."""
    stacks = []

    def make(args=(), listen="unix", nginx_conf="") -> Stack:
        wd = workdir if not stacks else make_dir(workdir / f"stack{len(stacks)}")
        stack = Stack(paths, wd, args, listen, nginx_conf=nginx_conf)
        stacks.append(stack)
        return stack

    yield make
    _stop_stacks(stacks)


@pytest.fixture(scope="module")
def make_module_stack(paths):
    """As make_stack, for a stack that the tests of one module share. The caller makes the
    directory (and writes what fastsse's config needs there) first."""
    stacks = []

    def make(workdir: Path, args=(), listen="unix", nginx_conf="") -> Stack:
        stack = Stack(paths, workdir, args, listen, nginx_conf=nginx_conf)
        stacks.append(stack)
        return stack

    yield make
    _stop_stacks(stacks)


def _stop_stacks(stacks):
    """Stops every stack (the last started first), even when one fails to stop; then checks that
    each web server's error log stayed quiet."""
    errors = []
    for stack in reversed(stacks):
        try:
            stack.stop()
        except Exception as e:
            errors.append(e)
    if errors:
        raise errors[0]
    for stack in stacks:
        assert_quiet(stack, stack.complaints())


def assert_quiet(stack, complaints: list[str]):
    assert complaints == [], f"{stack.server_name} logged warnings or errors:\n" + "\n".join(complaints)


@contextmanager
def stays_quiet(stack):
    """Around a test on a stack that outlives it (Stack, ApacheStack, Front): nothing new in the web
    server's error log."""
    before = len(stack.complaints())
    yield
    assert_quiet(stack, stack.complaints()[before:])


@pytest.fixture(autouse=True)
def shared_web_server_stays_quiet(request):
    """After each test using the session's nginx (shared) or a module's front: nothing new in its
    error log."""
    names = [name for name in ("shared", "front") if name in request.fixturenames]
    if not names:
        yield
        return
    with stays_quiet(request.getfixturevalue(names[0])):
        yield


@pytest.fixture(scope="session")
def shared(paths):
    """One fastsse + nginx pair for the tests that only read streams (default settings)."""
    stack = Stack(paths, make_dir(paths.work / "shared"))
    yield stack
    stack.stop()


@pytest.fixture
def make_apache_stack(paths, workdir):
    """Starts a private fastsse behind Apache (ApacheStack(paths, dir, mode, **kwargs)); stopped by
    PID when the test ends."""
    stacks = []

    def make(mode: str, **kwargs) -> ApacheStack:
        wd = workdir if not stacks else make_dir(workdir / f"stack{len(stacks)}")
        stack = ApacheStack(paths, wd, mode, **kwargs)
        stacks.append(stack)
        return stack

    yield make
    _stop_stacks(stacks)


# ----------------------------------------------------------------------------------------------
# The web servers in front of fastsse, as the suite's parameter


# The sanitizer build (FASTSSE_SANITIZED) runs them behind nginx alone, as before they were one
# suite: under mod_fcgid, fastsse runs with Apache's environment, not the sanitizer's options, and
# would report to Apache's error log, where no one reads it.
FRONTS = ("nginx",) if os.environ.get("FASTSSE_SANITIZED") else ("nginx", "apache-proxy-fcgi", "apache-fcgid")
APACHE_MODES = {"apache-proxy-fcgi": "proxy_fcgi", "apache-fcgid": "fcgid"}


def demo_config(paths: Paths, workdir: Path, access_log: Path) -> Path:
    """demo/fastsse.toml, its access-log command tailing the test server's own access log."""
    text = (paths.source / "demo" / "fastsse.toml").read_text()
    old = "/var/log/nginx/fastsse-access.log"
    assert old in text, f"demo/fastsse.toml no longer tails {old}: update {__file__}"
    config = workdir / "fastsse.toml"
    config.write_text(text.replace(old, str(access_log)))
    return config


class Front:
    """fastsse behind one of the web servers users put in front of it (FRONTS), each made from the
    configs the repository ships (nginx/, apache/ in either FastCGI mode): demo/fastsse.toml's
    commands, the demo page at /, the shipped /events/ locations, and the test-only ones
    (fastsse_testlib.TEST_LOCATIONS) at t(name). .fastsse reads fastsse's log and connections
    either way: a Fastsse, or under mod_fcgid a FcgidFastsse (the processes Apache started)."""

    def __init__(self, paths: Paths, workdir: Path, name: str, fastsse_args=()):
        self.name = name
        if name == "nginx":
            # The test nginx lives in workdir/nginx, its logs in logs/ there.
            access_log = workdir / "nginx" / "logs" / "fastsse-access.log"
            config = demo_config(paths, workdir, access_log)
            self.stack = Stack(paths, workdir, ["--config", str(config), *fastsse_args])
            try:
                assert access_log.is_file(), f"nginx does not log to {access_log}: update {__file__}"
                # The demo page instead of the placeholder (nginx reads it at each request).
                shutil.copyfile(paths.source / "demo" / "index.html", self.stack.nginx.dir / "www" / "index.html")
            except BaseException:
                self.stack.stop()
                raise
            self.prefix = "/t/"
        elif name in APACHE_MODES:
            self.stack = ApacheStack(paths, workdir, APACHE_MODES[name], fastsse_args=fastsse_args)
            self.prefix = "/events/t/"  # the mode's file sends /events/ to fastsse
        else:
            raise ValueError(f"front {name!r}: expected one of {FRONTS}")

    def t(self, name: str) -> str:
        """The path of a test-only location (fastsse_testlib.TEST_LOCATIONS)."""
        return self.prefix + name

    @property
    def port(self) -> int:
        return self.stack.port

    @property
    def fastsse(self):
        return self.stack.fastsse

    @property
    def server_name(self) -> str:
        return self.stack.server_name

    def complaints(self) -> list[str]:
        return self.stack.complaints()

    def stop(self):
        self.stack.stop()


@pytest.fixture
def make_front(paths, workdir):
    """Starts a private Front (make_front(name, fastsse_args)); stopped by PID when the test ends,
    its web server's error log checked quiet."""
    fronts = []

    def make(name: str, fastsse_args=()) -> Front:
        wd = workdir if not fronts else make_dir(workdir / f"front{len(fronts)}")
        front = Front(paths, wd, name, fastsse_args)
        fronts.append(front)
        return front

    yield make
    _stop_stacks(fronts)


def pytest_configure(config):
    config.addinivalue_line("markers", "fronts(*names): run the test behind these of FRONTS only")


def pytest_collection_modifyitems(config, items):
    """A test marked fronts(...) concerns some of the servers in front alone: behind the others it is
    left out (deselected, not skipped). A marker, rather than a parametrize of its own, keeps the
    test in its front's group: pytest runs a module's tests one front after the other, and a test
    parametrized apart would start and stop a front in the middle of another's tests."""
    keep, drop = [], []
    for item in items:
        marker = item.get_closest_marker("fronts")
        callspec = getattr(item, "callspec", None)
        if marker and callspec and callspec.params.get("front") not in marker.args:
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="module", params=FRONTS)
def front(paths, request) -> Front:
    """A Front that the tests of a module share, one for each of FRONTS in turn (pytest runs the
    module's tests behind one before it starts the next): Apache is slow to start."""
    shared_front = Front(paths, make_dir(paths.work / request.param), request.param)
    yield shared_front
    _stop_stacks([shared_front])


@pytest.fixture
def client():
    """Opens streams (HttpStream) that are closed when the test ends, failed or not."""
    opened = []

    def open_stream(stack: Stack, path: str, headers: Optional[dict] = None, method: str = "GET",
                    body: bytes = b"") -> HttpStream:
        s = HttpStream(stack.port, path, headers, method=method, body=body)
        opened.append(s)
        return s

    yield open_stream
    for s in opened:
        s.close()


@pytest.fixture
def tag(request) -> str:
    """A query value unique to the test, to find its streams in a shared fastsse's log."""
    return "t=" + re.sub(r"[^A-Za-z0-9]+", "_", request.node.name)
