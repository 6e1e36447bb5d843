"""The Mercure hub in a real browser: Debian's chromium (playwright-core, tests/browser/hub_page.mjs)
opens tests/browser/hub_page.html from the same nginx as the hub, whose
`new EventSource('/.well-known/mercure?topic=...', {withCredentials: true})` carries the
`mercureAuthorization` cookie of its browser context; then the real PHP publisher
(mercure_publish.php with php-symfony-mercure) publishes, and the page shows the update, with
PHP's id. Two users' browsers: a private update reaches only the one whose cookie allows its topic;
the public update after it reaches both.

Needs node, chromium, `npm ci` in $FASTSSE_BROWSER_DIR (CTest's browser.npm_ci fixture), php-cli and
php-symfony-mercure: a missing one FAILS, never skips."""
import json
import os
import shutil
from pathlib import Path

import pytest

import test_browser as browserlib  # its helpers only: the browser tools and stopping what they start
import test_hub as hublib
from fastsse_testlib import make_dir

SOURCE = Path(__file__).resolve().parents[1]
SCRIPT = SOURCE / "browser" / "hub_page.mjs"
PAGE = SOURCE / "browser" / "hub_page.html"
PUBLISHER = SOURCE / "integration" / "mercure_publish.php"
NODE_TIMEOUT = 60


@pytest.fixture(scope="module")
def hub(paths, make_module_stack):
    # The page on the hub's own origin, as a Symfony application serves its pages.
    page = f"location = /hub-page.html {{ default_type text/html; alias {PAGE}; }}\n"
    return hublib.with_keys(lambda: make_module_stack(make_dir(paths.work / "hub-browser"), nginx_conf=page))


def run_browser(spec: dict, workdir: Path) -> dict:
    node, modules, chromium = browserlib.browser_tools()
    php = shutil.which("php")
    if not php:
        pytest.fail("php not found: install php-cli (.ci/install-deps)")
    spec["publishes"] = [[php, str(PUBLISHER), *argv] for argv in spec["publishes"]]
    spec_path = workdir / "spec.json"
    spec_path.write_text(json.dumps(spec, indent=2))
    argv = [node, str(SCRIPT), "--spec", str(spec_path), "--modules", str(modules), "--chromium", chromium]
    env = dict(os.environ, TMPDIR=str(make_dir(workdir / "tmp")), MERCURE_PUBLISHER_JWT_KEY=hublib.PUBLISHER_KEY)
    out, log_text, _ = browserlib.run_node_script(argv, workdir, env, NODE_TIMEOUT)
    lines = out.decode(errors="replace").strip().splitlines()
    assert lines, f"the browser script printed nothing; its log:\n{log_text[-4000:]}"
    result = json.loads(lines[-1])
    (workdir / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    assert result["error"] is None, f"the browser script failed: {result['error']}"
    return result


def test_browser_receives_what_php_publishes_private_only_with_its_cookie(hub, workdir, request):
    topic = "https://example.com/" + request.node.name
    mine, theirs = f"{topic}/users/1", f"{topic}/users/2"
    query = hublib.topics_query(f"{topic}/users/{{id}}")
    hub_url = f"http://127.0.0.1:{hub.port}{hublib.HUB}"
    spec = {
        "origin": f"http://127.0.0.1:{hub.port}",
        "page": "/hub-page.html",
        "subscribers": [
            {"name": "user1", "cookie": hublib.subscriber_token([mine]), "query": query},
            {"name": "user2", "cookie": hublib.subscriber_token([theirs]), "query": query},
        ],
        "publishes": [
            [hub_url, "symfony", mine, "--data=for user 1 only", "--private"],
            [hub_url, "symfony", mine, "--data={\"stock\":3}", "--type=stock"],
        ],
        "expect": {"user1": 2, "user2": 1},
    }
    r = run_browser(spec, workdir)
    assert r["ok"], f"missing: {r['waiting_for']}; pages: {r['pages']}"
    assert r["console_errors"] == [] and r["page_errors"] == [], (r["console_errors"], r["page_errors"])
    private_id, public_id = r["published"]
    assert hublib.UUID_ID.fullmatch(private_id) and hublib.UUID_ID.fullmatch(public_id), r["published"]
    assert r["pages"]["user1"]["events"] == [
        {"type": "message", "id": private_id, "data": "for user 1 only"},
        {"type": "stock", "id": public_id, "data": '{"stock":3}'}]
    # The public one came after the private one: had the private one reached user 2, it would be first.
    assert r["pages"]["user2"]["events"] == [{"type": "stock", "id": public_id, "data": '{"stock":3}'}]
    # What chromium sent: the cookie, on the EventSource's one request, answered 200.
    for name, token in (("user1", spec["subscribers"][0]["cookie"]), ("user2", spec["subscribers"][1]["cookie"])):
        [req] = r["pages"][name]["requests"]
        assert req["status"] == 200 and req["cookie"] == f"mercureAuthorization={token}", (name, req)
