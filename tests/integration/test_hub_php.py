"""A real PHP publisher for the Mercure hub behind nginx: php-cli runs mercure_publish.php, which
publishes with Debian's php-symfony-mercure (Hub, Update, StaticTokenProvider; no Composer, no curl
extension) or with a plain file_get_contents POST, as the README shows both; subscribers opened
before receive the update with the id PHP printed. A private update with the subscriber's token in
the `mercureAuthorization` cookie reaches only the subscriber whose token allows its topic, and a
publisher token that does not cover the topic makes the PHP side fail (403) with nothing published.

php-cli or the component missing FAILS (never skips): .ci/install-deps installs both."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import test_hub as hublib  # its helpers only (`import`, not `from`: its tests are not collected twice)
from fastsse_testlib import make_dir

SCRIPT = Path(__file__).resolve().parent / "mercure_publish.php"
AUTOLOADER = Path("/usr/share/php/Symfony/Component/Mercure/autoload.php")  # php-symfony-mercure


@pytest.fixture(scope="module")
def hub(paths, make_module_stack):
    """fastsse behind nginx with the keys in its environment; the same keys as test_hub.py."""
    return hublib.with_keys(lambda: make_module_stack(make_dir(paths.work / "hub-php")))


topic = hublib.topic  # the fixture: a topic prefix unique to the test


def php_publish(hub, mode, topics, *options, key=hublib.PUBLISHER_KEY) -> subprocess.CompletedProcess:
    php = shutil.which("php")
    if not php:
        pytest.fail("php not found: install php-cli (.ci/install-deps)")
    if not AUTOLOADER.is_file():
        pytest.fail(f"{AUTOLOADER} missing: install php-symfony-mercure (.ci/install-deps)")
    argv = [php, str(SCRIPT), f"http://127.0.0.1:{hub.port}{hublib.HUB}", mode, *topics, *options]
    # The key in PHP's environment, as a PHP application holds its MERCURE_JWT_SECRET.
    env = dict(os.environ, MERCURE_PUBLISHER_JWT_KEY=key)
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)


def php_published(hub, mode, topics, *options) -> str:
    r = php_publish(hub, mode, topics, *options)
    assert r.returncode == 0, f"php exited {r.returncode}: {r.stderr}"
    return r.stdout.strip()


@pytest.mark.parametrize("mode", ["symfony", "plain"])
def test_php_publishes_and_a_subscriber_receives(hub, client, topic, mode):
    book = f"{topic}/books/1"
    s = hublib.subscribe(client, hub, hublib.topics_query(f"{topic}/books/{{id}}"), hublib.subscriber_token())
    update_id = php_published(hub, mode, [book, f"{topic}/alt"], "--data=Dune\nFrank Herbert")
    assert hublib.UUID_ID.fullmatch(update_id), update_id
    [event] = s.wait_events(1)
    assert (event.id, event.type, event.data) == (update_id, "message", "Dune\nFrank Herbert")

    # The Update's own id and type are what the subscriber gets.
    assert php_published(hub, mode, [book], "--data={\"stock\":3}", "--id=book-1-v2", "--type=stock") == "book-1-v2"
    event = s.wait_events(2)[1]
    assert (event.id, event.type, event.data) == ("book-1-v2", "stock", '{"stock":3}')


@pytest.mark.parametrize("mode", ["symfony", "plain"])
def test_php_private_update_reaches_only_the_cookie_that_allows_it(hub, client, topic, mode):
    mine, theirs = f"{topic}/users/1/notifications", f"{topic}/users/2/notifications"
    query = hublib.topics_query(f"{topic}/users/{{id}}/notifications")
    # As a browser's EventSource sends it: the token in the mercureAuthorization cookie.
    allowed = hublib.subscribe(client, hub, query, headers={
        "Cookie": f"session=abc; mercureAuthorization={hublib.subscriber_token([mine])}"})
    other_user = hublib.subscribe(client, hub, query, headers={
        "Cookie": f"mercureAuthorization={hublib.subscriber_token([theirs])}"})

    private_id = php_published(hub, mode, [mine], "--data=for user 1 only", "--private")
    public_id = php_published(hub, mode, [mine], "--data=for everyone")
    assert [(e.id, e.data) for e in allowed.wait_events(2)] == \
        [(private_id, "for user 1 only"), (public_id, "for everyone")]
    # The public one came after the private one: had the private one been sent, it would be first.
    assert [e.id for e in other_user.wait_events(1)] == [public_id]


def test_php_publisher_without_the_claim_is_refused_and_publishes_nothing(hub, client, topic):
    s = hublib.subscribe(client, hub, hublib.topics_query(f"{topic}/{{+rest}}"), hublib.subscriber_token())
    for mode in ("symfony", "plain"):
        r = php_publish(hub, mode, [f"{topic}/a"], "--data=no", f"--publish={topic}/b")
        assert r.returncode == 1 and "403" in r.stderr, (mode, r.returncode, r.stderr)
        r = php_publish(hub, mode, [f"{topic}/a"], "--data=no", key="not-the-publisher-key-at-all!!!!")
        assert r.returncode == 1 and "401" in r.stderr, (mode, r.returncode, r.stderr)
    ok_id = php_published(hub, "symfony", [f"{topic}/b"], "--data=yes", f"--publish={topic}/b")
    assert [e.id for e in s.wait_events(1)] == [ok_id]
