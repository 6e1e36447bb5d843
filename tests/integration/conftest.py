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
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fastsse_testlib import (NGINX, Fastsse, HttpStream, Nginx, descendants_of, free_port, kill_if_same,  # noqa: E402
                             make_dir)
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
        for attempt in range(3):
            self.nginx = Nginx(paths.source, workdir, upstream, extra_conf=self.nginx_conf)
            try:
                self.nginx.start()
                break
            except AssertionError:
                self.nginx.stop()
                if attempt == 2 or "Address already in use" not in self.nginx.startup_log():
                    raise

    @property
    def port(self) -> int:
        return self.nginx.port

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


def _stop_stacks(stacks, assert_quiet=lambda stack: assert_quiet_nginx(stack.nginx.error_log())):
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
        assert_quiet(stack)


def assert_quiet_nginx(new_errors: str):
    # nginx logs at warn and above: a FastCGI framing mistake ("upstream prematurely closed",
    # "upstream sent invalid header") or a config problem shows up here, even when the client saw
    # a plausible response.
    assert new_errors == "", f"nginx logged warnings or errors:\n{new_errors}"


@pytest.fixture(autouse=True)
def shared_nginx_stays_quiet(request):
    """After each test using the shared stack: nothing new in its nginx error log."""
    if "shared" not in request.fixturenames:
        yield
        return
    stack = request.getfixturevalue("shared")
    before = len(stack.nginx.error_log())
    yield
    assert_quiet_nginx(stack.nginx.error_log()[before:])


@pytest.fixture(scope="session")
def shared(paths):
    """One fastsse + nginx pair for the tests that only read streams (default settings)."""
    stack = Stack(paths, make_dir(paths.work / "shared"))
    yield stack
    stack.stop()


def assert_quiet_apache(lines: list[str]):
    # Apache's warnings and errors, the benign ones left out (apachelib.BENIGN_APACHE): a dispatch
    # error (AH01075), a timeout or a slow shutdown shows up here even when the client saw a
    # plausible response.
    assert lines == [], "Apache logged warnings or errors:\n" + "\n".join(lines)


def _stop_apache_stacks(stacks):
    def quiet(stack):
        if stack.apache is not None:
            assert_quiet_apache(stack.apache.unexpected_lines())
    _stop_stacks(stacks, quiet)


@pytest.fixture(scope="module")
def apache_stack(paths, request):
    """One fastsse behind a real Apache for the tests of a module, in the module's APACHE_MODE
    ("proxy_fcgi" or "fcgid"). Stopped by PID when the module's tests are done."""
    mode = request.module.APACHE_MODE
    stacks = [ApacheStack(paths, make_dir(paths.work / f"apache-{mode}"), mode)]
    yield stacks[0]
    _stop_apache_stacks(stacks)


@pytest.fixture(autouse=True)
def shared_apache_stays_quiet(request):
    """After each test using the module's Apache: nothing new and unexpected in its error log."""
    if "apache_stack" not in request.fixturenames:
        yield
        return
    stack = request.getfixturevalue("apache_stack")
    before = len(stack.apache.apache_lines())
    yield
    assert_quiet_apache(stack.apache.unexpected_lines(before))


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
    _stop_apache_stacks(stacks)


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
