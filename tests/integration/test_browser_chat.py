"""The demo's chat, as demo/run serves it: demo/chat.html and demo/chat.php (with its nginx location,
demo/chat-locations.conf, as it is) behind the same nginx as fastsse's hub, chat.php under a php-fpm
pool of the test's own with the keys in its environment (as demo/run writes it). In chromium
(tests/browser/chat_page.mjs), two tabs subscribe, each sends a message through the page's form,
and both tabs show both messages, as text, with the ids chat.php got from the hub. Without a
browser: chat.php's GET sets the subscriber cookie, a form posted without JavaScript gets 303 back
to the page, and bad messages get 400 with nothing published.

Needs node, chromium, `npm ci` in $FASTSSE_BROWSER_DIR, php-fpm and php-symfony-mercure: a missing one
FAILS, never skips."""
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest

import test_browser as browserlib
import test_hub as hublib
from fastsse_testlib import get, make_dir

SOURCE = Path(__file__).resolve().parents[2]
SCRIPT = SOURCE / "tests" / "browser" / "chat_page.mjs"
NODE_TIMEOUT = 60
TOPIC = "https://fastsse.example/demo/chat"  # demo/chat.php's TOPIC


def php_fpm() -> str:
    found = shutil.which("php-fpm8.2") or next(iter(sorted(Path("/usr/sbin").glob("php-fpm[0-9]*"))), None)
    if not found:
        pytest.fail("php-fpm not found: install php-fpm (.ci/install-deps)")
    return str(found)


@pytest.fixture(scope="module")
def chat(paths, make_module_stack):
    """nginx with fastsse's locations and the demo's chat; php-fpm behind /chat.php. Yields the stack."""
    work = make_dir(paths.work / "demo-chat")
    www = make_dir(work / "www")
    for name in ("chat.html", "chat.php"):
        shutil.copyfile(SOURCE / "demo" / name, www / name)
    sock = work / "php-chat.sock"
    fpm_conf = work / "php-fpm.conf"
    fpm_conf.write_text(f"""[global]
pid = {work}/php-fpm.pid
error_log = {work}/php-fpm.log
daemonize = no

[chat]
listen = {sock}
listen.mode = 0666
pm = static
pm.max_children = 2
clear_env = yes
catch_workers_output = yes
env[MERCURE_PUBLISHER_JWT_KEY] = "{hublib.PUBLISHER_KEY}"
env[MERCURE_SUBSCRIBER_JWT_KEY] = "{hublib.SUBSCRIBER_KEY}"
env[MERCURE_URL] = http://127.0.0.1:PORT/.well-known/mercure
""")
    locations = (SOURCE / "demo" / "chat-locations.conf").read_text()
    locations = locations.replace("unix:/run/php/fastsse-demo-chat.sock", f"unix:{sock}")
    locations = locations.replace("location = /chat.php {", f"location = /chat.php {{\n    root {www};")
    assert f"unix:{sock}" in locations and f"root {www};" in locations
    nginx_conf = f"location = /chat.html {{ root {www}; }}\n{locations}"

    stack = hublib.with_keys(lambda: make_module_stack(work, nginx_conf=nginx_conf))
    fpm_conf.write_text(fpm_conf.read_text().replace("PORT", str(stack.port)))
    # As root (the tests' workers are root too: the build folder may be private): -R allows it.
    fpm = subprocess.Popen([php_fpm(), "--fpm-config", str(fpm_conf), "--nodaemonize", "-R"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(work / "php-fpm.stderr", "wb"))
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert fpm.poll() is None, f"php-fpm exited {fpm.returncode}: {(work / 'php-fpm.stderr').read_text()}"
            assert time.monotonic() < deadline, "php-fpm did not create its socket within 10 s"
            time.sleep(0.05)
        yield stack
    finally:
        fpm.terminate()
        try:
            fpm.wait(timeout=10)
        except subprocess.TimeoutExpired:
            fpm.kill()
            fpm.wait()


def chat_post(chat, fields, headers=None):
    h = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
    return get(chat.port, "/chat.php", h, method="POST", body=urlencode(fields).encode())


def test_chat_php_without_a_browser(chat, client):
    r = get(chat.port, "/chat.php", {})
    assert r.status == 204, r.describe()
    cookie = r.header("Set-Cookie")
    assert cookie.startswith("mercureAuthorization=") and "path=/.well-known/mercure" in cookie \
        and "HttpOnly" in cookie and "SameSite=Strict" in cookie, cookie
    token = cookie.split(";")[0].split("=", 1)[1]
    s = hublib.subscribe(client, chat, hublib.topics_query(TOPIC), headers={"Cookie": f"mercureAuthorization={token}"})

    for bad in ({"name": "x", "message": ""}, {"name": "x" * 41, "message": "m"}, {"message": "m" * 501}):
        r = chat_post(chat, bad)
        assert r.status == 400, (bad, r.describe())
    r = chat_post(chat, {"name": "No JS", "message": "posted as a plain form"}, {"Accept": "text/html"})
    assert r.status == 303 and r.header("Location") == "chat.html", r.describe()
    r = chat_post(chat, {"message": "from curl"})
    assert r.status == 200 and hublib.UUID_ID.fullmatch(r.text.strip()), r.describe()
    events = s.wait_events(2)
    assert [(json.loads(e.data)["name"], json.loads(e.data)["message"]) for e in events] == \
        [("No JS", "posted as a plain form"), ("anonymous", "from curl")]
    assert events[1].id == r.text.strip()


def test_two_tabs_show_each_others_messages(chat, workdir):
    node, modules, chromium = browserlib.browser_tools()
    screenshot = workdir / "chat.png"
    argv = [node, str(SCRIPT), "--url", f"http://127.0.0.1:{chat.port}/chat.html", "--modules", str(modules),
            "--chromium", chromium, "--screenshot", str(screenshot)]
    env = dict(os.environ, TMPDIR=str(make_dir(workdir / "tmp")))
    out, _, _ = browserlib.run_node_script(argv, workdir, env, NODE_TIMEOUT)
    r = json.loads(out.decode().strip().splitlines()[-1])
    (workdir / "result.json").write_text(json.dumps(r, indent=2) + "\n")
    assert r["error"] is None and r["ok"], r["error"]
    assert r["console_errors"] == [] and r["page_errors"] == [], (r["console_errors"], r["page_errors"])
    want = [("Ann", "hello from tab 0 <b>not bold</b>"), ("Bob", "and from tab 1")]  # as text, not HTML
    for tab in r["tabs"]:
        assert [(m["name"], m["message"]) for m in tab["messages"]] == want, r["tabs"]
        assert all(hublib.UUID_ID.fullmatch(m["id"]) for m in tab["messages"]), tab
        assert tab["input_left"] == "", tab  # the form was cleared after chat.php took the message
    assert r["tabs"][0]["messages"] == r["tabs"][1]["messages"]
    assert screenshot.is_file()
