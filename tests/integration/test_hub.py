"""The Mercure hub behind every front that can serve one: nginx (location = /.well-known/mercure as
nginx/fastsse-locations.conf ships it) and Apache's mod_proxy_fcgi (apache/'s files), GET to
subscribe and POST to publish, with the keys from the environment as Mercure's own hub reads them
(under Apache, where the test starts fastsse, the same). Under mod_fcgid, where each request gets a
process of its own, the hub cannot work: test_fcgid_hub_says_why_it_cannot_work checks that it says
so (503) instead of answering a publication that reaches no one. Cross-origin requests (CORS) with
the subscriber's cookie too. Publish and receive, topic matching, private updates, who may publish and subscribe
(401, 403, with RFC 6750's Bearer challenge), `aud` and `iss` once jwt_audience and jwt_issuer are set,
what is refused (400, 413) with nothing published, resume after Last-Event-ID with the
response headers, `earliest`, anonymous subscribers, and a token that expires mid-stream.

Tokens are made here with the standard library (hmac, hashlib, base64, json): HS256 as the spec
and symfony/mercure make them.

Every test uses topics of its own (the hub is one for the module), so that what one test publishes
does not reach another's subscribers, history included."""
import base64
import hashlib
import hmac
import json
import os
import re
import time
from urllib.parse import quote, urlencode

import pytest

from apachelib import ApacheStack
from conftest import FRONTS
from fastsse_testlib import (ES, HttpStream, RedisServer, allow_descriptors, assert_plain_error, get, make_dir,
                             open_many, pump)

PUBLISHER_KEY = "publisher-key-for-the-hub-tests!"
SUBSCRIBER_KEY = "subscriber-key-for-the-hub-tests"
HUB = "/.well-known/mercure"
# The origin whose pages may subscribe and publish with their cookies (cors_origins).
APP_ORIGIN = "https://app.example.test"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
MAX_BODY = 1024 * 1024  # fastsse's max_body, by default
UUID_ID = re.compile(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
# The ids the Redis engine gives: its stream entry's, as a fragment (Mercure lets a hub use one).
ENTRY_ID = re.compile(r"#[0-9]+-[0-9]+")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(claims: dict, key: str, alg: str = "HS256", typ: str = "JWT") -> str:
    header = b64url(json.dumps({"alg": alg, "typ": typ}).encode())
    payload = b64url(json.dumps(claims).encode())
    signing_input = f"{header}.{payload}"
    if alg == "none":
        return signing_input + "."
    mac = hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def publisher_token(topics=("*",), key: str = PUBLISHER_KEY) -> str:
    return jwt({"mercure": {"publish": list(topics)}}, key)


def subscriber_token(topics=(), key: str = SUBSCRIBER_KEY, **claims) -> str:
    return jwt({"mercure": {"subscribe": list(topics)}, **claims}, key)


# The fronts that can serve a hub: mod_fcgid cannot (one process per request; see the README). And
# nginx with the Redis engine: the same behaviour, on both engines.
HUB_FRONTS = [f for f in FRONTS if f != "apache-fcgid"] + ["nginx-redis"]


class Hub:
    """fastsse as a hub behind one front: .port, .fastsse (its log), .name, .anonymous (the path of
    fastsse_testlib.TEST_LOCATIONS' hub-anonymous, FASTSSE_ANONYMOUS 1, behind this front), .ids
    (the form of the ids it makes up: its engine's)."""

    def __init__(self, name, stack, anonymous, ids=UUID_ID):
        self.name, self.stack, self.anonymous, self.ids = name, stack, anonymous, ids
        self.port = stack.port
        self.fastsse = stack.fastsse


def with_keys(make):
    """make()'s result, fastsse started inside it with the tests' keys in its environment (as Mercure's
    hub takes them), the test process's own environment as it was after."""
    saved = {k: os.environ.get(k) for k in ("MERCURE_PUBLISHER_JWT_KEY", "MERCURE_SUBSCRIBER_JWT_KEY")}
    os.environ["MERCURE_PUBLISHER_JWT_KEY"] = PUBLISHER_KEY
    os.environ["MERCURE_SUBSCRIBER_JWT_KEY"] = SUBSCRIBER_KEY
    try:
        return make()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module", params=HUB_FRONTS)
def hub(paths, make_module_stack, request):
    """fastsse behind the front, its keys from the environment."""
    args = ["--cors-origins", APP_ORIGIN]
    workdir = make_dir(paths.work / f"hub-{request.param}")
    apache = redis = None
    if request.param == "nginx":
        hub = Hub("nginx", with_keys(lambda: make_module_stack(workdir, args)), "/t/hub-anonymous")
    elif request.param == "nginx-redis":
        redis = RedisServer(workdir).start()
        stack = with_keys(lambda: make_module_stack(workdir, [*args, "--engine", redis.url]))
        hub = Hub("nginx-redis", stack, "/t/hub-anonymous", ENTRY_ID)
    else:
        apache = with_keys(lambda: ApacheStack(paths, workdir, "proxy_fcgi", fastsse_args=args))
        hub = Hub(request.param, apache, "/events/t/hub-anonymous")
    yield hub
    if redis is not None:
        hub.stack.stop()  # before its Redis: a fastsse that lost it would only wait for it
        redis.stop()
    if apache is not None:
        complaints = apache.complaints()  # AH01075 (a dispatch error), AH01146 (a shared worker's parameters)...
        apache.stop()
        assert complaints == [], complaints


@pytest.fixture
def topic(request) -> str:
    """A topic prefix unique to the test."""
    return "https://example.com/" + re.sub(r"[^A-Za-z0-9]+", "-", request.node.name)


def publish(hub, fields, token=None, headers=None):
    """POSTs the form (a list of pairs, or bytes as they are) to the hub; the whole answer."""
    body = fields if isinstance(fields, bytes) else urlencode(fields).encode()
    h = dict(FORM)
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    h.update(headers or {})
    return get(hub.port, HUB, h, method="POST", body=body)


def published(hub, fields, token=None) -> str:
    r = publish(hub, fields, token or publisher_token())
    assert r.status == 200, r.describe()
    assert r.header("Content-Type") == "text/plain; charset=utf-8", r.describe()
    return r.text


def subscribe(client, hub, query, token=None, headers=None, path=HUB):
    """Opens a subscription and waits until it is open (the opening comment came)."""
    h = dict(ES)
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    h.update(headers or {})
    s = client(hub, f"{path}?{query}", h)
    s.wait_comments(1)
    assert s.status == 200, s.describe()
    return s


def topics_query(*selectors, name="topic") -> str:
    return "&".join(f"{name}={quote(t, safe='')}" for t in selectors)


def test_publish_reaches_a_subscriber_opened_before(hub, client, topic):
    s = subscribe(client, hub, topics_query(topic), subscriber_token())
    assert s.header("Content-Type") == "text/event-stream; charset=utf-8"
    assert s.header("Last-Event-ID") is None  # no resume point given
    update_id = published(hub, [("topic", topic), ("data", "hello\nworld")])
    assert hub.ids.fullmatch(update_id), update_id
    [event] = s.wait_events(1)
    assert (event.id, event.data, event.type) == (update_id, "hello\nworld", "message")

    # A given id, type and retry are kept.
    assert published(hub, [("topic", topic), ("data", "x"), ("id", "my-id-1"), ("type", "note"),
                           ("retry", "1500")]) == "my-id-1"
    event = s.wait_events(2)[1]
    assert (event.id, event.type, event.data) == ("my-id-1", "note", "x")
    assert s.sse.reconnection_ms == 1500


def test_topic_matching(hub, client, topic):
    book = f"{topic}/books/1"
    token = subscriber_token()
    exact = subscribe(client, hub, topics_query(book), token)
    wildcard = subscribe(client, hub, topics_query("*"), token)
    template = subscribe(client, hub, topics_query(f"{topic}/books/{{id}}"), token)
    pattern = subscribe(client, hub, topics_query(f"{topic}/books/:id", name="match_urlpattern"), token)
    v1_exact = subscribe(client, hub, topics_query(book, name="match"), token)
    other = subscribe(client, hub, topics_query(f"{topic}/authors/{{id}}", f"{topic}/books"), token)
    alternate = subscribe(client, hub, topics_query(f"{topic}/alt"), token)

    update_id = published(hub, [("topic", book), ("topic", f"{topic}/alt"), ("data", "b1")])
    for s in (exact, wildcard, template, pattern, v1_exact, alternate):
        s.wait(lambda s: any(e.id == update_id for e in s.events), 5, f"update {update_id}")
    # A relative URL pattern is taken against the URL the hub was reached at (nginx's $scheme, the
    # Host header): http://127.0.0.1:PORT here.
    path = re.sub(r"^https://example\.com", "", topic)
    relative = subscribe(client, hub, topics_query(f"{path}/local/:id", name="match_urlpattern"), token)
    local_id = published(hub, [("topic", f"https://example.com{path}/local/1"), ("topic",
                                f"http://127.0.0.1:{hub.port}{path}/local/2"), ("data", "l")])
    assert [e.id for e in relative.wait_events(1)] == [local_id]
    # The others' topics come next: by then, `other` would have had the first one.
    author_id = published(hub, [("topic", f"{topic}/authors/7"), ("data", "a7")])
    [event] = other.wait_events(1)
    assert event.id == author_id, other.events


def test_private_update_reaches_only_authorized_subscribers(hub, client, topic):
    secret = f"{topic}/secret/1"
    allowed = subscribe(client, hub, topics_query(f"{topic}/{{+rest}}"), subscriber_token([f"{topic}/secret/{{id}}"]))
    # The token in the cookie, as a browser's EventSource sends it.
    by_cookie = subscribe(client, hub, topics_query(secret),
                          headers={"Cookie": f"other=1; mercureAuthorization={subscriber_token([secret])}"})
    not_allowed = subscribe(client, hub, topics_query(f"{topic}/{{+rest}}"), subscriber_token([f"{topic}/public"]))
    anonymous = subscribe(client, hub, topics_query(f"{topic}/{{+rest}}"), path=hub.anonymous)

    private_id = published(hub, [("topic", secret), ("data", "psst"), ("private", "on")])
    public_id = published(hub, [("topic", f"{topic}/public"), ("data", "hi")])
    assert [e.id for e in allowed.wait_events(2)] == [private_id, public_id]
    assert [e.data for e in by_cookie.wait_events(1)] == ["psst"]
    # The public one came after the private one: had the private one been sent, it would be first.
    assert [e.id for e in not_allowed.wait_events(1)] == [public_id]
    assert [e.id for e in anonymous.wait_events(1)] == [public_id]


def test_who_may_publish_and_bad_publications_publish_nothing(hub, client, topic):
    s = subscribe(client, hub, topics_query("*"), subscriber_token(["*"]))
    good = [("topic", topic), ("data", "x")]
    refusals = [
        (401, good, None),
        (401, good, publisher_token(key="not the publisher key")),
        (401, good, jwt({"mercure": {"publish": ["*"]}}, PUBLISHER_KEY, alg="none")),
        (401, good, subscriber_token(["*"])),  # signed with the subscribers' key
        (403, good, publisher_token([f"{topic}/other"])),
        (403, [("topic", topic), ("topic", f"{topic}/alt")], publisher_token([topic])),
        (400, [("data", "no topic")], publisher_token()),
        (400, b"topic=a&data=%zz", publisher_token()),
        (400, [("topic", topic), ("id", "#fragment")], publisher_token()),
        (400, [("topic", topic), ("id", "a\nb")], publisher_token()),
        (400, [("topic", topic), ("id", "a\rb")], publisher_token()),
        (400, [("topic", topic), ("id", "a\0b")], publisher_token()),
        (400, [("topic", topic), ("type", "a\nb")], publisher_token()),
        (413, [("topic", topic), ("data", "x" * (MAX_BODY + 1024))], publisher_token()),
    ]
    for status, fields, token in refusals:
        r = publish(hub, fields, token)
        assert r.status == status, (fields if isinstance(fields, bytes) else fields[:2], r.describe())
        assert_plain_error(r, status)
    # The first update this subscriber gets is the one published after all those.
    update_id = published(hub, [("topic", topic), ("data", "the good one")])
    s.wait(lambda s: s.events, 5, "an event")
    assert [e.id for e in s.events] == [update_id]


def test_who_may_subscribe(hub, topic):
    q = topics_query(topic)
    assert_plain_error(get(hub.port, f"{HUB}?{q}", ES), 401)
    assert_plain_error(get(hub.port, f"{HUB}?{q}", {**ES, "Authorization": f"Bearer {subscriber_token(key='nope')}"}),
                       401)
    unsigned = jwt({"sub": "who-may-subscribe"}, SUBSCRIBER_KEY, "none")
    assert_plain_error(get(hub.port, f"{HUB}?{q}&authorization={unsigned}", ES), 401)
    # A token in the query is never logged (the refusal is logged before it is answered).
    assert unsigned not in hub.fastsse.log()
    # Anonymous lets in who brings no token, never who brings a bad one.
    assert_plain_error(get(hub.port, f"{hub.anonymous}?{q}", {**ES, "Authorization": "Bearer x.y.z"}), 401)
    expired = subscriber_token(exp=int(time.time()) - 10)
    assert_plain_error(get(hub.port, f"{hub.anonymous}?{q}", {**ES, "Authorization": f"Bearer {expired}"}), 401)
    # At least one selector, and not too many (hub_max_selectors, 100 by default).
    token = {"Authorization": f"Bearer {subscriber_token()}"}
    assert_plain_error(get(hub.port, HUB, {**ES, **token}), 400)
    # (Short ones: Apache refuses a request line over 8 KB itself, with 414.)
    assert_plain_error(get(hub.port, f"{HUB}?{topics_query(*[f'urn:t:{i}' for i in range(101)])}", {**ES, **token}),
                       400)
    # HEAD answers as GET would, subscribing nothing.
    assert get(hub.port, f"{HUB}?{q}", {**ES, **token}, method="HEAD").status == 200
    assert get(hub.port, f"{HUB}?{q}", ES, method="HEAD").status == 401
    # Other methods: 405, POST named among those allowed; the clock still takes GET and HEAD only.
    r = get(hub.port, HUB, method="PUT", body=b"x")
    assert_plain_error(r, 405)
    assert r.header("Allow") == "GET, HEAD, POST, OPTIONS"
    r = get(hub.port, "/events/clock", FORM, method="POST", body=b"topic=a")
    assert_plain_error(r, 405)
    assert r.header("Allow") == "GET, HEAD"


def test_resume_after_last_event_id_with_the_headers(hub, client, topic):
    first = published(hub, [("topic", topic), ("data", "1")])
    published(hub, [("topic", f"{topic}/elsewhere"), ("data", "not mine")])
    second = published(hub, [("topic", topic), ("data", "2")])
    third = published(hub, [("topic", topic), ("data", "3")])
    token = subscriber_token()

    s = subscribe(client, hub, topics_query(topic), token, {"Last-Event-ID": first})
    assert [e.data for e in s.wait_events(2)] == ["2", "3"]
    assert s.header("Last-Event-ID") == first
    assert s.header("Mercure-Last-Event-ID") == first
    # Live updates follow the replay, nothing lost or repeated.
    fourth = published(hub, [("topic", topic), ("data", "4")])
    assert [e.id for e in s.wait_events(3)] == [second, third, fourth]

    # 0.x's query parameter, and 1.0's.
    s = subscribe(client, hub, f"{topics_query(topic)}&lastEventID={quote(third)}", token)
    assert [e.id for e in s.wait_events(1)] == [fourth]
    assert s.header("Last-Event-ID") == third
    s = subscribe(client, hub, f"{topics_query(topic)}&last_event_id={quote(second)}", token)
    assert [e.id for e in s.wait_events(2)] == [third, fourth]

    # `earliest`, or an id the hub does not know: everything it has, and the answer says `earliest`.
    for given in ("earliest", "urn:uuid:00000000-0000-4000-8000-000000000000"):
        s = subscribe(client, hub, topics_query(topic), token, {"Last-Event-ID": given})
        assert [e.data for e in s.wait_events(4)] == ["1", "2", "3", "4"]
        assert s.header("Last-Event-ID") == "earliest"
        assert s.header("Mercure-Last-Event-ID") == "earliest"


def test_keys_and_query_tokens_never_reach_the_log(hub, client, topic):
    s = subscribe(client, hub, f"{topics_query(topic)}&authorization={subscriber_token()}")
    hub.fastsse.wait_for_log(r"stream \d+ opened: producer=hub uri=\S*authorization=REDACTED")
    log = hub.fastsse.log()
    assert subscriber_token() not in log
    assert PUBLISHER_KEY not in log and SUBSCRIBER_KEY not in log
    s.close()


def test_anonymous_location_lets_in_subscribers_without_a_token(hub, client, topic):
    assert_plain_error(get(hub.port, f"{HUB}?{topics_query(topic)}", ES), 401)
    s = subscribe(client, hub, topics_query(topic), path=hub.anonymous)
    update_id = published(hub, [("topic", topic), ("data", "for everyone")])
    assert [e.id for e in s.wait_events(1)] == [update_id]


def test_a_token_that_expires_ends_the_stream(hub, client, topic):
    s = subscribe(client, hub, topics_query(topic), subscriber_token(exp=int(time.time()) + 2))
    update_id = published(hub, [("topic", topic), ("data", "before")])
    assert [e.id for e in s.wait_events(1)] == [update_id]
    s.wait_end(timeout=5)
    assert s.ended


def test_1000_subscribers_of_one_topic_receive_the_same_update(hub, topic):
    if not hub.name.startswith("nginx"):
        # Apache's mod_proxy_fcgi holds a worker thread per stream: its MaxRequestWorkers bound them.
        pytest.skip("1,000 streams at once need nginx in front")
    n = 1000
    allow_descriptors(n + 500)
    headers = {**ES, "Authorization": f"Bearer {subscriber_token()}"}
    streams: list[HttpStream] = []
    try:
        open_many(hub.port, [f"{HUB}?{topics_query(topic)}&n={i}" for i in range(n)], streams, headers)
        assert all(s.status == 200 for s in streams)
        update_id = published(hub, [("topic", topic), ("data", "to all")])
        pump(streams, lambda: all(s.events for s in streams), 20, "every subscriber to receive the update")
        assert all([(e.id, e.data) for e in s.events] == [(update_id, "to all")] for s in streams)
    finally:
        for s in streams:
            s.close()


def form_of_size(topic: str, size: int) -> bytes:
    """A publication whose form body is exactly `size` bytes."""
    start = urlencode([("topic", topic), ("data", "")]).encode()
    return start + b"d" * (size - len(start))


def test_a_publication_up_to_max_body_is_taken_and_one_over_is_413(hub, client, topic):
    s = subscribe(client, hub, topics_query(topic), subscriber_token())
    # Nearly 1 MiB: more than a unix socket's queue holds, so fastsse reads it as it comes; and four
    # times stream_buffer, which bounds what waits behind it, not the update itself.
    body = form_of_size(topic, MAX_BODY - 1024)
    assert len(body) == MAX_BODY - 1024
    r = publish(hub, body, publisher_token())
    assert r.status == 200, r.describe()
    assert hub.ids.fullmatch(r.text), r.describe()
    [event] = s.wait_events(1, timeout=20)
    assert (event.id, len(event.data)) == (r.text, len(body) - len(form_of_size(topic, 0)))
    assert set(event.data) == {"d"}
    # Over it: fastsse's own 413 (nginx lets the hub location take more, see fastsse-locations.conf).
    r = publish(hub, form_of_size(topic, MAX_BODY + 1024), publisher_token())
    assert r.status == 413, r.describe()
    assert_plain_error(r, 413)
    assert "1048576 bytes" in r.text, r.describe()
    # And the hub goes on, to the same subscriber.
    after = published(hub, [("topic", topic), ("data", "after")])
    assert hub.ids.fullmatch(after)
    assert (s.wait_events(2)[1].id, s.wait_events(2)[1].data) == (after, "after")


# ----------------------------------------------------------------------------------------------
# How a refusal over the token is told (RFC 6750 section 3, Mercure draft 08 "Error Responses"), and
# the token's aud and iss (jwt_audience, jwt_issuer)

BARE_CHALLENGE = 'Bearer realm="fastsse"'


def challenge(error: str) -> str:
    return f'{BARE_CHALLENGE}, error="{error}"'


def test_refusals_over_the_token_carry_the_bearer_challenge(hub, topic):
    q = f"{HUB}?{topics_query(topic)}"
    bad = subscriber_token(key="not the subscriber key")
    cases = [
        # No token: the challenge without an error code.
        (get(hub.port, q, ES), 401, BARE_CHALLENGE),
        (get(hub.port, q, ES, method="HEAD"), 401, BARE_CHALLENGE),
        (publish(hub, [("topic", topic)]), 401, BARE_CHALLENGE),
        # A token, refused.
        (get(hub.port, q, {**ES, "Authorization": f"Bearer {bad}"}), 401, challenge("invalid_token")),
        (get(hub.port, q, {**ES, "Cookie": f"mercureAuthorization={bad}"}), 401, challenge("invalid_token")),
        (get(hub.port, f"{hub.anonymous}?{topics_query(topic)}", {**ES, "Authorization": f"Bearer {bad}"}), 401,
         challenge("invalid_token")),
        (publish(hub, [("topic", topic)], publisher_token(key="not the publisher key")), 401,
         challenge("invalid_token")),
        # A token presented other than as "Bearer <token>".
        (get(hub.port, q, {**ES, "Authorization": "Basic dXNlcjpwYXNz"}), 400, challenge("invalid_request")),
        (publish(hub, [("topic", topic)], headers={"Authorization": "Bearer a b"}), 400,
         challenge("invalid_request")),
        # A valid token that does not cover the topic.
        (publish(hub, [("topic", topic)], publisher_token([f"{topic}/other"])), 403, challenge("insufficient_scope")),
    ]
    for r, status, expected in cases:
        assert r.status == status, r.describe()
        if r.method != "HEAD":
            assert_plain_error(r, status)
        assert r.header("WWW-Authenticate") == expected, r.describe()
    # Refusals that are not about the token have none.
    for r in (publish(hub, [("data", "no topic")], publisher_token()),
              get(hub.port, HUB, {**ES, "Authorization": f"Bearer {subscriber_token()}"})):
        assert_plain_error(r, 400)
        assert r.header("WWW-Authenticate") is None, r.describe()


AUDIENCE = "https://hub.example.test/.well-known/mercure"
ISSUER = "https://app.example.test"


def access_token(actions: list[str], topics: list[str], key: str, **claims) -> str:
    """A draft 08 access token (typ at+jwt) granting `actions` on exact `topics`."""
    detail = {"type": "https://mercure.rocks/authorization-detail", "actions": actions,
              "topics": [{"match": t} for t in topics]}
    return jwt({"exp": int(time.time()) + 600, "authorization_details": [detail], **claims}, key, typ="at+jwt")


def test_aud_and_iss_are_required_once_set(make_stack, client, topic):
    """A hub with jwt_audience (a flag) and jwt_issuer (MERCURE_TRUSTED_ISSUERS, as Mercure's): a
    token must hold both, publisher's and subscriber's alike; draft 08's access tokens do."""
    saved = os.environ.get("MERCURE_TRUSTED_ISSUERS")
    os.environ["MERCURE_TRUSTED_ISSUERS"] = ISSUER
    try:
        stack = make_stack(["--publisher-jwt-key", PUBLISHER_KEY, "--subscriber-jwt-key", SUBSCRIBER_KEY,
                            "--jwt-audience", AUDIENCE])
    finally:
        if saved is None:
            os.environ.pop("MERCURE_TRUSTED_ISSUERS")
        else:
            os.environ["MERCURE_TRUSTED_ISSUERS"] = saved
    secret = f"{topic}/secret"
    ours = {"aud": AUDIENCE, "iss": ISSUER}
    s = client(stack, f"{HUB}?{topics_query(secret, name='match')}",
               {**ES, "Authorization": f"Bearer {access_token(['subscribe'], [secret], SUBSCRIBER_KEY, **ours)}"})
    s.wait_comments(1)
    assert s.status == 200, s.describe()

    refused = [
        publisher_token(),  # 0.x: neither claim
        access_token(["publish"], [secret], PUBLISHER_KEY),
        access_token(["publish"], [secret], PUBLISHER_KEY, aud=AUDIENCE),
        access_token(["publish"], [secret], PUBLISHER_KEY, iss=ISSUER),
        access_token(["publish"], [secret], PUBLISHER_KEY, aud="https://other.example.test/.well-known/mercure",
                     iss=ISSUER),
        access_token(["publish"], [secret], PUBLISHER_KEY, aud=AUDIENCE, iss="https://other.example.test"),
    ]
    for token in refused:
        r = get(stack.port, HUB, {**FORM, "Authorization": f"Bearer {token}"}, method="POST",
                body=urlencode([("topic", secret), ("data", "no")]).encode())
        assert_plain_error(r, 401)
        assert r.header("WWW-Authenticate") == challenge("invalid_token"), r.describe()
        r = get(stack.port, f"{HUB}?{topics_query(secret)}", {**ES, "Authorization": f"Bearer {token}"})
        assert_plain_error(r, 401)

    # `aud` as an array holding ours is enough.
    token = access_token(["publish"], [secret], PUBLISHER_KEY, aud=["https://other.example.test", AUDIENCE],
                         iss=ISSUER)
    r = get(stack.port, HUB, {**FORM, "Authorization": f"Bearer {token}"}, method="POST",
            body=urlencode([("topic", secret), ("data", "yes"), ("private", "on")]).encode())
    assert r.status == 200, r.describe()
    [event] = s.wait_events(1)
    assert (event.id, event.data) == (r.text, "yes")


# ----------------------------------------------------------------------------------------------
# Cross-origin requests (cors_origins): a page of APP_ORIGIN subscribes with its cookie, publishes


def test_preflight_from_an_allowed_origin_says_what_may_follow(hub):
    r = get(hub.port, HUB, {"Origin": APP_ORIGIN, "Access-Control-Request-Method": "POST",
                            "Access-Control-Request-Headers": "authorization,content-type"}, method="OPTIONS")
    assert r.status == 204, r.describe()
    assert r.header("Access-Control-Allow-Origin") == APP_ORIGIN
    assert r.header("Access-Control-Allow-Credentials") == "true"
    assert r.header("Access-Control-Allow-Methods") == "GET, POST, OPTIONS"
    assert r.header("Access-Control-Allow-Headers") == "Authorization, Cache-Control, Last-Event-ID, Content-Type"
    assert r.header("Access-Control-Max-Age") == "86400"
    assert "origin" in r.header("Vary").lower()
    assert r.text == ""


def test_preflight_from_another_origin_gets_no_cors_header(hub):
    r = get(hub.port, HUB, {"Origin": "https://evil.example.test", "Access-Control-Request-Method": "GET"},
            method="OPTIONS")
    assert r.status == 204, r.describe()
    assert not [n for n in r.header_names() if n.startswith("access-control-")], r.headers
    # Nor from an origin that merely starts like the allowed one, or its http:// twin.
    for origin in (APP_ORIGIN + ".evil.test", APP_ORIGIN.replace("https:", "http:"), "null"):
        r = get(hub.port, HUB, {"Origin": origin, "Access-Control-Request-Method": "GET"}, method="OPTIONS")
        assert r.header("Access-Control-Allow-Origin") is None, (origin, r.headers)


def test_a_page_of_an_allowed_origin_subscribes_with_its_cookie(hub, client, topic):
    secret = f"{topic}/secret"
    s = subscribe(client, hub, topics_query(secret),
                  headers={"Origin": APP_ORIGIN, "Cookie": f"mercureAuthorization={subscriber_token([secret])}"})
    assert s.header("Access-Control-Allow-Origin") == APP_ORIGIN
    assert s.header("Access-Control-Allow-Credentials") == "true"
    assert "origin" in s.header("Vary").lower()
    assert s.header("Content-Type") == "text/event-stream; charset=utf-8"
    r = publish(hub, [("topic", secret), ("data", "psst"), ("private", "on")], publisher_token(),
                {"Origin": APP_ORIGIN})
    assert r.status == 200, r.describe()
    assert r.header("Access-Control-Allow-Origin") == APP_ORIGIN
    assert [e.data for e in s.wait_events(1)] == ["psst"]
    # Another origin's page is answered (CORS is the browser's to enforce) without leave to read.
    other = subscribe(client, hub, topics_query(secret), subscriber_token([secret]),
                      {"Origin": "https://evil.example.test"})
    assert other.header("Access-Control-Allow-Origin") is None


def test_refusals_carry_the_cors_headers_too(hub, topic):
    # A page may then read why it was refused.
    r = get(hub.port, f"{HUB}?{topics_query(topic)}", {**ES, "Origin": APP_ORIGIN})
    assert_plain_error(r, 401)
    assert r.header("Access-Control-Allow-Origin") == APP_ORIGIN
    r = publish(hub, [("topic", topic), ("data", "x")], None, {"Origin": APP_ORIGIN})
    assert_plain_error(r, 401)
    assert r.header("Access-Control-Allow-Credentials") == "true"


def test_options_elsewhere_stays_a_405(hub):
    r = get(hub.port, "/events/clock", {"Origin": APP_ORIGIN, "Access-Control-Request-Method": "GET"},
            method="OPTIONS")
    assert_plain_error(r, 405)
    assert r.header("Allow") == "GET, HEAD"
    assert r.header("Access-Control-Allow-Origin") is None


# ----------------------------------------------------------------------------------------------
# mod_fcgid: each request gets a process of its own, so a hub cannot work there


@pytest.mark.skipif("apache-fcgid" not in FRONTS, reason="Apache runs in the plain build's tests only")
def test_fcgid_hub_says_why_it_cannot_work(paths, workdir):
    stack = ApacheStack(paths, workdir, "fcgid")
    try:
        token = {"Authorization": f"Bearer {subscriber_token()}"}
        for r in (get(stack.port, f"{HUB}?topic=*", {**ES, **token}),
                  get(stack.port, HUB, {**FORM, "Authorization": f"Bearer {publisher_token()}"}, method="POST",
                      body=b"topic=urn%3Ax&data=lost")):
            assert_plain_error(r, 503)
            assert "each request gets a fastsse process of its own" in r.text, r.describe()
        # The clock is served as ever.
        assert get(stack.port, "/events/clock", ES, method="HEAD").status == 200
        assert stack.complaints() == []
    finally:
        stack.stop()
