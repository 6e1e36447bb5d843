"""SIGHUP reloads the config file without dropping a stream: 1,000 streams through nginx tick on
through a reload with a changed command, a bad file (one error line, file:line, the old settings
kept) and a removed command; new settings apply to new runs, streams and requests only."""
from __future__ import annotations

import re
import signal

from commandlib import CMD_NGINX_CONF, PATH_ENV, cmd_path, of_type, proc_state, script, started_lines, write_config
from fastsse_testlib import ES, HttpStream, allow_descriptors, get, make_dir, open_many, pump, wait_until
from test_hub import FORM, HUB, jwt
from test_metrics import scrape, value

N = 1000


def reloaded(fs, count: int, timeout: float = 5):
    """Sends SIGHUP and waits for the count-th reload's last line (applied or refused)."""
    fs.signal(signal.SIGHUP)
    fs.wait_for_log(r" (info SIGHUP: reloaded|error SIGHUP: not reloaded)", timeout, count=count)


def ticking(streams: list[HttpStream], more: int, what: str):
    """Every stream gets `more` events beyond what it had, its ids still 1, 2, 3...: the same
    response, nothing lost, no reconnection."""
    want = {id(s): len(s.events) + more for s in streams}
    pump(streams, lambda: all(len(s.events) >= want[id(s)] for s in streams), 30, what)
    for s in streams:
        ids = [int(e.id) for e in s.events]
        assert ids == list(range(1, len(ids) + 1)), (what, ids[-10:])
        assert not s.retries and not s.eof, (what, s.describe())


def first_line(stream: HttpStream, timeout: float = 5) -> str:
    stream.wait(lambda s: of_type(s, "stdout"), timeout, "the command's first line")
    return of_type(stream, "stdout")[0].data


def test_1000_streams_tick_through_reloads_of_a_changed_command_a_bad_file_and_a_removed_one(
        paths, workdir, make_stack, client):
    allow_descriptors(N + 500)
    d = make_dir(workdir / "cmd")
    says = script(d, "says.sh", 'echo "$1 $$"\nexec sleep 300\n')
    config = d / "fastsse.toml"

    def declare(commands: dict, settings: dict | None = None):
        write_config(config, {name: {"argv": [says, word], "env": PATH_ENV} for name, word in commands.items()},
                     settings)

    declare({"version": "one"})
    stack = make_stack(["--config", str(config)], nginx_conf=CMD_NGINX_CONF)
    fs = stack.fastsse

    old_run = client(stack, cmd_path("version"), ES)
    assert first_line(old_run).startswith("one ")
    old_pid = started_lines(fs.log(), "version")[0]

    streams: list[HttpStream] = []
    try:
        open_many(stack.port, [f"/t/fast?reload={i}" for i in range(N)], streams)
        ticking(streams, 2, "every stream to tick before any reload")

        # 1. The command changes and one is added: new runs get the new declaration, the run going
        # on keeps its own. hub_history only a restart changes: the log says so.
        declare({"version": "two", "extra": "three"}, {"hub_history": 5})
        reloaded(fs, 1)
        assert value(scrape(stack.port), "fastsse_config_reloads_total", result="applied") == 1
        log = fs.log()
        assert " info commands: added [extra], changed [version], removed []: for new runs; 1 running go on" in log
        assert re.search(r" warning SIGHUP: hub_history changed, but only a restart applies it", log), log[-2000:]
        ticking(streams, 2, "every stream to tick after reload 1")
        new_run = client(stack, cmd_path("version"), ES)
        assert first_line(new_run).startswith("two ")
        assert first_line(client(stack, cmd_path("extra"), ES)).startswith("three ")
        assert proc_state(old_pid) not in (None, "Z"), "the run going on was stopped by the reload"
        assert not old_run.eof and of_type(old_run, "stdout")[0].data.startswith("one ")

        # 2. A bad file: one line names it, file:line; nothing changes.
        # (Before the tables: a key after them would be the last command's.)
        config.write_text("hub_history = 5\nmax_streams = \"many\"\n" + config.read_text().split("\n", 1)[1])
        bad_line = 2
        reloaded(fs, 2)
        errors = [line for line in fs.log().splitlines() if " error " in line]
        assert len(errors) == 1, errors
        assert f"{config}:{bad_line}: max_streams: " in errors[0], errors
        page = scrape(stack.port)  # what an alert watches
        assert value(page, "fastsse_config_reloads_total", result="refused") == 1
        assert value(page, "fastsse_config_last_reload_successful") == 0
        ticking(streams, 2, "every stream to tick after the bad file")
        assert first_line(client(stack, cmd_path("version"), ES)).startswith("two "), "the old settings were not kept"

        # 3. The command is removed: new requests for it get 404; its runs go on.
        declare({"extra": "three"})
        reloaded(fs, 3)
        assert get(stack.port, cmd_path("version"), ES).status == 404
        page = scrape(stack.port)
        assert value(page, "fastsse_config_reloads_total", result="applied") == 2
        assert value(page, "fastsse_config_last_reload_successful") == 1
        ticking(streams, 2, "every stream to tick after reload 3")
        for s in (old_run, new_run):
            assert not s.eof, s.describe()
        assert proc_state(old_pid) not in (None, "Z")

        log = fs.log()
        # Only the metrics pages, each a whole answer on a stream of its own, were closed.
        closed = set(re.findall(r" info stream (\d+) closed: ", log))
        assert closed == set(re.findall(r" info stream (\d+) answered \(\d+ bytes\): metrics ", log)), \
            "a stream was closed by a reload"
        assert len(re.findall(r" info stream \d+ opened: producer=clock uri=/t/fast\?reload=", log)) == N
    finally:
        for s in streams:
            s.close()


def test_keys_and_limits_apply_to_new_requests_and_streams(workdir, make_stack, client):
    config = workdir / "fastsse.toml"
    old_key, new_key = "the-publisher-key-before-the-reload", "the-publisher-key-after-the-reload"
    config.write_text(f'publisher_jwt_key = "{old_key}"\nmax_streams = 10\n')
    stack = make_stack(["--config", str(config)])
    fs = stack.fastsse

    def publish(key: str, data: str):
        token = jwt({"mercure": {"publish": ["*"]}}, key)
        return get(stack.port, HUB, {**FORM, "Authorization": f"Bearer {token}"}, method="POST",
                   body=f"topic=https://example.com/reload&data={data}".encode())

    subscriber = client(stack, "/t/hub-anonymous?topic=https://example.com/reload", ES)
    subscriber.wait(lambda s: s.comments, 5, "the subscription to open")
    idle = [client(stack, f"/t/idle?n={i}", ES) for i in range(2)]
    for s in idle:
        s.wait_headers()
        assert s.status == 200
    assert publish(old_key, "before").status == 200

    config.write_text(f'publisher_jwt_key = "{new_key}"\nmax_streams = 3\n')
    reloaded(fs, 1)
    # The key: the old one is refused from now on, the new one publishes, to the subscriber that
    # was open before the reload.
    r = publish(old_key, "with-the-old-key")
    assert r.status == 401, r.describe()
    assert publish(new_key, "after").status == 200
    subscriber.wait(lambda s: len(s.events) >= 2, 5, "the update published with the new key")
    assert [e.data for e in subscriber.events] == ["before", "after"]
    # max_streams: three are open; a fourth is refused, the three go on.
    r = get(stack.port, "/t/idle?n=refused", ES)
    assert r.status == 503 and "Too many open streams (3)" in r.text, r.describe()
    for s in [subscriber, *idle]:
        assert not s.eof, s.describe()
    wait_until(lambda: " closed" not in fs.log(), 1, "no stream closed")


def test_a_file_that_became_unreadable_changes_nothing(workdir, make_stack, client):
    config = workdir / "fastsse.toml"
    config.write_text("max_streams = 5\n")
    stack = make_stack(["--config", str(config)])
    fs = stack.fastsse
    s = client(stack, "/t/fast?who=missing-file", ES)
    s.wait_events(2, timeout=3)
    config.unlink()
    reloaded(fs, 1)
    assert re.search(rf" error SIGHUP: not reloaded, the settings stay as they were: {re.escape(str(config))}: ",
                     fs.log()), fs.log()[-2000:]
    s.wait_events(len(s.events) + 2, timeout=3)
    assert not s.eof and fs.proc.poll() is None
