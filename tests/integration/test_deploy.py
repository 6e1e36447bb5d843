"""Deployment: `cmake --install` and the systemd units, run the way systemd runs them.

There is no systemd to start units here (CI runs in a container): the units are checked with
`systemd-analyze verify`, and the service is played by the same parts systemd would use: the
socket is made and passed by `systemd-socket-activate` (LISTEN_FDS), fastsse runs as an
unprivileged user (setpriv, as DynamicUser= would), and its readiness notifications (Type=notify)
go to a NOTIFY_SOCKET of the test's own.
"""
from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from fastsse_testlib import ES, Fastsse, HttpStream, Nginx, wait_until

SOCKET_ACTIVATE = "/usr/bin/systemd-socket-activate"
SYSTEMD_ANALYZE = "/usr/bin/systemd-analyze"
UNPRIVILEGED = "nobody"


@pytest.fixture(scope="module")
def prefix(paths):
    """fastsse installed by `cmake --install` into a prefix of its own. It is under /tmp, reachable by
    the unprivileged user (the build folder may be under a private home)."""
    build = paths.binary.parent
    if not (build / "cmake_install.cmake").is_file():
        pytest.fail(f"{build} is not a CMake build folder (FASTSSE_BIN should be its fastsse)")
    top = Path(tempfile.mkdtemp(prefix="fsse-inst-", dir="/tmp"))
    top.chmod(0o755)
    prefix = top / "p"
    r = subprocess.run(["cmake", "--install", str(build), "--prefix", str(prefix)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    yield prefix
    shutil.rmtree(top)


def test_install_puts_binary_docs_examples_and_units_in_place(prefix, paths):
    share = prefix / "share/fastsse"
    expected = [
        "bin/fastsse",
        "share/doc/fastsse/README.md",
        "share/doc/fastsse/copyright",
        "share/doc/fastsse/changelog.gz",
        "share/man/man1/fastsse.1.gz",
        "share/fastsse/nginx/nginx.conf",
        "share/fastsse/nginx/fastsse_params",
        "share/fastsse/nginx/fastsse-locations.conf",
        "share/doc/fastsse/examples/demo/fastsse.toml",
        "share/fastsse/demo/index.html",
        "lib/systemd/system/fastsse.service",
        "lib/systemd/system/fastsse.socket",
        "lib/systemd/system/fastsse@.service",
        "lib/systemd/system/fastsse@.socket",
        "share/fastsse/nginx/fastsse-upstream.conf",
        "etc/fastsse/fastsse.toml",
    ]
    missing = [f for f in expected if not (prefix / f).is_file()]
    assert missing == []
    # Every file users are told to copy or include from nginx/ and apache/ is installed, beside the
    # demo page (not under the docs, which an admin may leave out with dpkg's path-exclude).
    for kind in ("nginx", "apache"):
        for f in (paths.source / kind).iterdir():
            assert (share / kind / f.name).read_bytes() == f.read_bytes(), f"{kind}/{f.name}"
    assert os.access(prefix / "bin/fastsse", os.X_OK)
    r = subprocess.run([prefix / "bin/fastsse", "--version"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and re.fullmatch(r"fastsse \d+\.\d+\.\d+\n", r.stdout), r
    # The units name this install's paths, not the ones CMake was configured with.
    service = (prefix / "lib/systemd/system/fastsse.service").read_text()
    assert f"ExecStart={prefix}/bin/fastsse --config {prefix}/etc/fastsse/fastsse.toml\n" in service
    assert "ExecReload=/bin/kill -HUP $MAINPID\n" in service  # systemctl reload
    assert "@" not in re.sub(r"#.*", "", service), "a placeholder was left in the unit"
    socket_unit = (prefix / "lib/systemd/system/fastsse.socket").read_text()
    assert "ListenStream=/run/fastsse.sock\n" in socket_unit
    assert f"file://{prefix}/share/doc/fastsse/README.md" in socket_unit
    # The template for several processes: the same service, each instance on its own socket, the
    # sockets nginx/fastsse-upstream.conf lists.
    template = (prefix / "lib/systemd/system/fastsse@.service").read_text()
    assert template.replace("fastsse@%i.socket", "fastsse.socket").replace(" (process %i)", "").replace(
        ', "Running several processes"', "") == service
    assert "ListenStream=/run/fastsse-%i.sock\n" in (prefix / "lib/systemd/system/fastsse@.socket").read_text()
    upstream = (share / "nginx/fastsse-upstream.conf").read_text()
    assert re.search(r"server unix:/run/fastsse-1\.sock[ ;]", upstream) and re.search(r"server unix:/run/fastsse-2\.sock[ ;]", upstream)


def test_units_pass_systemd_analyze_verify(prefix, workdir):
    units = prefix / "lib/systemd/system"
    # A template is verified as one of its instances.
    for kind in ("service", "socket"):
        shutil.copyfile(units / f"fastsse@.{kind}", workdir / f"fastsse@1.{kind}")
    r = subprocess.run([SYSTEMD_ANALYZE, "verify", str(units / "fastsse.socket"), str(units / "fastsse.service"),
                        str(workdir / "fastsse@1.socket"), str(workdir / "fastsse@1.service")],
                       capture_output=True, text=True, timeout=60)
    # verify exits 0 even for unknown keys or bad values: any line about our units is a failure.
    ours = [line for line in (r.stdout + r.stderr).splitlines() if "fastsse" in line]
    assert r.returncode == 0 and ours == [], r.stdout + r.stderr


def test_units_that_verify_reports_are_noticed(prefix, workdir):
    # The check above can fail: a misspelt key in a copy of the unit is reported.
    bad = workdir / "fastsse-bad.service"
    bad.write_text((prefix / "lib/systemd/system/fastsse.service").read_text().replace("KillMode=", "KilMode="))
    r = subprocess.run([SYSTEMD_ANALYZE, "verify", str(bad)], capture_output=True, text=True, timeout=60)
    assert "KilMode" in r.stdout + r.stderr


def test_reinstall_keeps_the_admins_config(prefix, paths):
    config = prefix / "etc/fastsse/fastsse.toml"
    original = config.read_text()
    config.write_text(original + "\nheartbeat = 20  # the admin's\n")
    try:
        r = subprocess.run(["cmake", "--install", str(paths.binary.parent), "--prefix", str(prefix)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "heartbeat = 20  # the admin's" in config.read_text()
        assert f"Kept (the admin's): {config}" in r.stdout
    finally:
        config.write_text(original)


def test_installed_config_is_valid(prefix, workdir):
    # The config the service starts with is accepted as it is (only the socket comes from elsewhere).
    sock = workdir / "check.sock"
    fs = Fastsse(prefix / "bin/fastsse", workdir, f"unix:{sock}",
                 ["--config", str(prefix / "etc/fastsse/fastsse.toml")])
    try:
        fs.wait_started()
    finally:
        assert fs.stop() == 0


class Notifications:
    """The NOTIFY_SOCKET systemd gives a Type=notify service: sd_notify datagrams arrive here."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        os.chmod(path, 0o666)  # the service does not run as the test's user
        self.sock.setblocking(False)
        self.received: list[str] = []

    def poll(self) -> list[str]:
        while True:
            try:
                self.received += self.sock.recv(4096).decode().split("\n")
            except BlockingIOError:
                return self.received

    def close(self):
        self.sock.close()


@pytest.fixture
def runtime():
    """A directory for the sockets, reachable by the unprivileged user."""
    d = Path(tempfile.mkdtemp(prefix="fsse-run-", dir="/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d)


def socket_activated(prefix: Path, workdir: Path, runtime: Path, listen_streams: list[Path], notify: Path,
                     name="fastsse") -> Fastsse:
    """fastsse as fastsse.service runs it: socket from systemd, an unprivileged user, Type=notify."""
    user = pwd.getpwnam(UNPRIVILEGED)
    wrapper = [SOCKET_ACTIVATE]
    for path in listen_streams:
        wrapper += ["-l", str(path)]
    wrapper += ["-E", f"NOTIFY_SOCKET={notify}",
                "setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", "--"]
    return Fastsse(prefix / "bin/fastsse", workdir, None, ["--config", str(prefix / "etc/fastsse/fastsse.toml")],
                   name=name, wrapper=wrapper)


def uid_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^Uid:\t(\d+)", status, re.M).group(1))


def test_socket_activated_service_as_unprivileged_user_behind_nginx(paths, prefix, workdir, runtime):
    if os.geteuid() != 0:
        pytest.fail("this test plays systemd: it must run as root (CI does)")
    sock = runtime / "fastsse.sock"
    notify = Notifications(runtime / "notify.sock")
    fs = socket_activated(prefix, workdir, runtime, [sock], notify.path)
    nginx = None
    streams = []
    try:
        wait_until(sock.exists, 5, "systemd-socket-activate to make the socket")
        nginx = Nginx(paths.source, workdir, f"unix:{sock}")
        nginx.start()
        # As with systemd, fastsse starts on the first connection; the request waits in the backlog.
        streams.append(HttpStream(nginx.port, "/events/clock?via=systemd", ES))
        fs.wait_for_log(r" info listening on the socket passed by systemd \(fd 3\)$")
        s = streams[0]
        s.wait_headers()
        assert s.status == 200, s.describe()
        assert len(s.wait_events(2, timeout=4)) == 2
        assert uid_of(fs.pid) == pwd.getpwnam(UNPRIVILEGED).pw_uid
        wait_until(lambda: "READY=1" in notify.poll(), 5, "READY=1 on NOTIFY_SOCKET")
        assert "STOPPING=1" not in notify.poll()
        # systemctl reload (ExecReload): the installed file is read again, as the unprivileged user,
        # and the stream goes on.
        fs.signal(signal.SIGHUP)
        fs.wait_for_log(r" info SIGHUP: reloaded " + re.escape(str(prefix / "etc/fastsse/fastsse.toml")))
        s.wait_events(len(s.events) + 2, timeout=4)
        fs.signal(signal.SIGTERM)
        assert fs.wait(timeout=3) == 0
        s.wait_end(timeout=3)
        assert s.retries, "the stream ended without a retry: hint"
        assert "STOPPING=1" in notify.poll()
        # The socket belongs to systemd (fastsse.socket): fastsse leaves it for the next start.
        assert sock.exists()
    finally:
        for s in streams:
            s.close()
        fs.stop()
        if nginx is not None:
            nginx.stop()
        notify.close()


def test_two_sockets_from_systemd_is_a_usage_error(prefix, workdir, runtime):
    a, b = runtime / "a.sock", runtime / "b.sock"
    notify = Notifications(runtime / "notify.sock")
    fs = socket_activated(prefix, workdir, runtime, [a, b], notify.path)
    try:
        wait_until(lambda: a.exists() and b.exists(), 5, "systemd-socket-activate to make the sockets")
        with socket.socket(socket.AF_UNIX) as c:
            c.connect(str(a))  # fastsse starts on the first connection
            assert fs.wait(timeout=5) == 2
        assert "fastsse: systemd passed 2 sockets (LISTEN_FDS); fastsse listens on one" in fs.log()
        assert "READY=1" not in notify.poll()
    finally:
        fs.stop()
        notify.close()
