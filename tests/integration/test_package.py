"""The Debian package: `cpack -G DEB` from the build folder, lintian, and the package installed with
apt serving a stream through nginx from its own files.

The package is built from the build folder under test (its binary, stripped). Installing it needs
root (CI runs as root); the test then leaves the machine as it found it: a fastsse that was not
installed before is purged again, one that was stays (replaced by this build's package). There is
no systemd to start units here (CI runs in a container): the installed fastsse is started by the
test with the installed config, as fastsse.service would start it, on a socket in the test's folder.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest

from fastsse_testlib import ES, Fastsse, HttpStream, Nginx, make_dir, start_on_free_port

INSTALLED_BIN = Path("/usr/bin/fastsse")
INSTALLED_CONFIG = Path("/etc/fastsse/fastsse.toml")
INSTALLED_SHARE = Path("/usr/share/fastsse")
UNITS = Path("/lib/systemd/system")
# What the postinst's `deb-systemd-helper enable fastsse.socket` makes, with or without systemd.
ENABLED_LINK = Path("/etc/systemd/system/sockets.target.wants/fastsse.socket")
SYSTEMD_ANALYZE = Path("/usr/bin/systemd-analyze")
# apt waits for a lock another apt holds (someone else's install) instead of failing at once.
APT = ["apt-get", "-o", "DPkg::Lock::Timeout=120", "-y", "-q"]


def run(argv, timeout=120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, **kwargs)


def version_of(binary: Path) -> str:
    r = run([binary, "--version"], timeout=10)
    m = re.fullmatch(r"fastsse (\S+)\n", r.stdout)
    assert r.returncode == 0 and m, r
    return m.group(1)


@pytest.fixture(scope="module")
def deb(paths) -> Path:
    """The package, made by cpack in a folder of the test's own under the build folder."""
    build = paths.binary.parent
    if not (build / "CPackConfig.cmake").is_file():
        pytest.fail(f"{build} has no CPackConfig.cmake (FASTSSE_BIN should be a CMake build folder's fastsse)")
    out = make_dir(paths.work / "deb")
    r = run(["cpack", "-G", "DEB", "-B", out], cwd=build, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    debs = sorted(out.glob("*.deb"))
    assert [d.name for d in debs] == [f"fastsse_{version_of(paths.binary)}_amd64.deb"], r.stdout
    return debs[0]


def deb_field(deb: Path, field: str) -> str:
    r = run(["dpkg-deb", "--field", deb, field], timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_lintian_reports_no_error(deb):
    r = run(["lintian", deb], timeout=120)
    lines = r.stdout.splitlines()
    for line in lines:
        if line.startswith("W: "):
            warnings.warn(f"lintian: {line}")
    errors = [line for line in lines if line.startswith("E: ")]
    assert errors == [], "\n".join(lines)
    # lintian itself ran (it exits 0 when it finds nothing, 2 when it finds errors, 1 when it fails).
    assert r.returncode in (0, 2), r.stdout + r.stderr


def test_control_has_the_conffile_and_the_libraries(deb):
    r = run(["dpkg-deb", "--info", deb, "conffiles"], timeout=30)
    assert r.returncode == 0 and r.stdout.split() == [str(INSTALLED_CONFIG)], r
    # dpkg-shlibdeps found the libraries the binary links, each with its package's version.
    depends = deb_field(deb, "Depends")
    for package in ("libc6", "libfcgi0ldbl", "libsystemd0", "libhiredis0.14", "libssl3", "libstdc++6"):
        assert re.search(rf"(^|, ){re.escape(package)}( \(>= [^)]+\))?(,|$)", depends), depends
    assert deb_field(deb, "Package") == "fastsse"
    assert deb_field(deb, "Architecture") == "amd64"


def test_package_holds_the_files_with_their_modes(deb, paths):
    r = run(["dpkg-deb", "--contents", deb], timeout=30)
    assert r.returncode == 0, r.stderr
    entries = {}
    for line in r.stdout.splitlines():
        mode, owner, _size, _date, _time, name = line.split(None, 5)
        entries[name.removeprefix(".")] = (mode, owner)
    assert all(owner == "root/root" for _mode, owner in entries.values()), r.stdout
    dirs = [name for name in entries if name.endswith("/")]
    assert all(entries[d][0] == "drwxr-xr-x" for d in dirs), r.stdout
    files = {name: mode for name, (mode, _owner) in entries.items() if not name.endswith("/")}
    assert files.pop(str(INSTALLED_BIN)) == "-rwxr-xr-x"
    assert set(files.values()) == {"-rw-r--r--"}, r.stdout
    expected = [str(INSTALLED_CONFIG), "/usr/share/doc/fastsse/copyright", "/usr/share/doc/fastsse/changelog.gz",
                "/usr/share/doc/fastsse/README.md", "/usr/share/man/man1/fastsse.1.gz",
                "/usr/share/fastsse/demo/index.html"]
    expected += [f"{UNITS}/{unit}" for unit in ("fastsse.service", "fastsse.socket", "fastsse@.service",
                                                "fastsse@.socket")]
    # Every file the README tells users to copy or include.
    for kind in ("nginx", "apache"):
        expected += [f"{INSTALLED_SHARE}/{kind}/{f.name}" for f in (paths.source / kind).iterdir()]
    assert sorted(set(expected) - set(files)) == []
    # The binary is stripped (lintian's unstripped-binary-or-object): no symbol table left.
    extract = make_dir(paths.work / "deb-contents")
    r = run(["dpkg-deb", "--extract", deb, extract], timeout=60)
    assert r.returncode == 0, r.stderr
    r = run(["file", "--brief", extract / "usr/bin/fastsse"], timeout=30)
    assert ", stripped" in r.stdout, r.stdout
    shutil.rmtree(extract)


def dpkg_status(package: str) -> str:
    r = run(["dpkg-query", "--show", "--showformat=${Status}", package], timeout=30)
    return r.stdout if r.returncode == 0 else ""


@pytest.fixture(scope="module")
def installed(deb):
    """The package installed with apt, as a user installs it; purged afterwards unless fastsse was
    installed before the test."""
    if os.geteuid() != 0:
        pytest.skip("installing the package needs root (CI runs as root): `sudo ctest -R test_package`")
    was_installed = dpkg_status("fastsse") == "install ok installed"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    r = run([*APT, "install", deb], env=env, timeout=300)
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        assert dpkg_status("fastsse") == "install ok installed"
        yield
    finally:
        if not was_installed:
            r = run([*APT, "purge", "fastsse"], env=env, timeout=300)
            assert r.returncode == 0, r.stdout + r.stderr
            # Everything the package and its scripts put in place is gone: the binary, the conffile,
            # the socket's enable link.
            assert dpkg_status("fastsse") == ""
            left = [p for p in (INSTALLED_BIN, INSTALLED_CONFIG, INSTALLED_SHARE, ENABLED_LINK)
                    if p.exists() or p.is_symlink()]
            assert left == [], f"left after the purge: {left}"


def test_installed_package_enables_the_socket(installed):
    # The postinst enabled fastsse.socket the Debian way (deb-systemd-helper), which works without a
    # running systemd; fastsse.service is started by the socket, not enabled.
    assert ENABLED_LINK.is_symlink() and os.readlink(ENABLED_LINK) == f"{UNITS}/fastsse.socket"
    assert not Path("/etc/systemd/system/multi-user.target.wants/fastsse.service").exists()
    service = (UNITS / "fastsse.service").read_text()
    assert f"ExecStart={INSTALLED_BIN} --config {INSTALLED_CONFIG}\n" in service
    assert "Documentation=file:///usr/share/doc/fastsse/README.md\n" in service
    assert version_of(INSTALLED_BIN) == version_of(Path(os.environ["FASTSSE_BIN"]))


def test_installed_units_pass_systemd_analyze_verify(installed, workdir):
    if not SYSTEMD_ANALYZE.exists():
        pytest.skip(f"no {SYSTEMD_ANALYZE} here")
    # A template is verified as one of its instances.
    units = [UNITS / "fastsse.socket", UNITS / "fastsse.service"]
    for kind in ("service", "socket"):
        shutil.copyfile(UNITS / f"fastsse@.{kind}", workdir / f"fastsse@1.{kind}")
        units.append(workdir / f"fastsse@1.{kind}")
    r = run([SYSTEMD_ANALYZE, "verify", *units], timeout=60)
    # verify exits 0 even for unknown keys or bad values: any line about our units is a failure.
    ours = [line for line in (r.stdout + r.stderr).splitlines() if "fastsse" in line]
    assert r.returncode == 0 and ours == [], r.stdout + r.stderr


def installed_nginx(workdir: Path, upstream: str) -> Nginx:
    """nginx configured from the installed snippets: the repository's test nginx (fastsse_testlib.Nginx)
    made from /usr/share/fastsse/nginx instead of the sources, which includes the installed
    fastsse-locations.conf where it is; only fastsse_params is a copy, with the test's socket."""
    nginx = Nginx(INSTALLED_SHARE, workdir, upstream)
    conf = nginx.conf_path.read_text()
    assert "include fastsse-locations.conf;" in conf
    nginx.conf_path.write_text(conf.replace("include fastsse-locations.conf;",
                                            f"include {INSTALLED_SHARE}/nginx/fastsse-locations.conf;"))
    (nginx.dir / "fastsse-locations.conf").unlink()
    return nginx


def test_installed_fastsse_serves_a_stream_through_nginx(installed, workdir):
    sock = workdir / "fastsse.sock"
    # The installed binary and config, as fastsse.service runs them; the socket is the test's own.
    fs = Fastsse(INSTALLED_BIN, workdir, f"unix:{sock}", ["--config", str(INSTALLED_CONFIG)])
    nginx = None
    stream = None
    try:
        fs.wait_started()
        nginx = start_on_free_port(lambda: installed_nginx(workdir, f"unix:{sock}"))
        stream = HttpStream(nginx.port, "/events/clock?via=package", ES)
        stream.wait_headers()
        assert stream.status == 200, stream.describe()
        events = stream.wait_events(2, timeout=5)
        assert [e.type for e in events] == ["tick", "tick"]
        assert int(events[1].id) == int(events[0].id) + 1
        fs.assert_logged(r" info stream \d+ opened: producer=clock uri=/events/clock\?via=package")
        assert nginx.error_log() == ""
    finally:
        if stream is not None:
            stream.close()
        if nginx is not None:
            nginx.stop()
        fs.stop()
