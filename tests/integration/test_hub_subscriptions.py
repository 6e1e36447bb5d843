"""Mercure's "Active Subscriptions" (hub_subscriptions = 1) through a real front: nginx with the
shipped locations (location = /.well-known/mercure, and the subscription API's two), and Apache's
mod_proxy_fcgi with apache/'s files (its Location takes the API's paths, AllowEncodedSlashes
NoDecode lets their %2F through). A subscriber of the subscription events sees another come and go,
with its token's payload; the API lists them, by topic and one by one, to a token allowed to read
them, and answers 401/403 to others. Without the setting (the default, behind nginx): no event is
published and the API answers 404.

Every test uses topics of its own (the hub is one for the module)."""
import json
from urllib.parse import quote

import pytest

from apachelib import ApacheStack
import test_hub as hublib  # its helpers only (`import`, not `from`: its tests are not collected twice)
from fastsse_testlib import ES, assert_plain_error, get, make_dir, wait_until

HUB, UUID_ID, jwt, published = hublib.HUB, hublib.UUID_ID, hublib.jwt, hublib.published

API = HUB + "/subscriptions"
EVENTS = HUB + "/subscriptions/{topic}/{subscriber}"  # draft 07's template of their topics


def subscriber_token(topics, payload=None) -> str:
    mercure = {"subscribe": list(topics)}
    if payload is not None:
        mercure["payload"] = payload
    return jwt({"mercure": mercure}, hublib.SUBSCRIBER_KEY)


def enc(s: str) -> str:
    """RFC 6570's encoding of a variable, as the hub writes it: all but the unreserved bytes."""
    return quote(s, safe="-._~")


class Hub:
    def __init__(self, stack):
        self.stack = stack
        self.port = stack.port
        self.fastsse = stack.fastsse


@pytest.fixture(scope="module", params=hublib.HUB_FRONTS)
def hub(paths, make_module_stack, request):
    """fastsse with hub_subscriptions = 1 behind the front. Apache notices a client that left only
    when it writes to it, twice (see the README): a heartbeat a second makes that a second or two."""
    args = ["--hub-subscriptions", "1", "--heartbeat", "1"]
    workdir = make_dir(paths.work / f"hub-subscriptions-{request.param}")
    if request.param == "nginx":
        yield Hub(hublib.with_keys(lambda: make_module_stack(workdir, args)))
        return
    apache = hublib.with_keys(lambda: ApacheStack(paths, workdir, "proxy_fcgi", fastsse_args=args))
    yield Hub(apache)
    complaints = apache.complaints()
    apache.stop()
    assert complaints == [], complaints


@pytest.fixture(scope="module")
def hub_off(paths, make_module_stack):
    """fastsse as shipped (hub_subscriptions unset), behind nginx."""
    return Hub(hublib.with_keys(lambda: make_module_stack(make_dir(paths.work / "hub-subscriptions-off"))))


@pytest.fixture
def topic(request) -> str:
    return "https://example.com/" + request.node.name.replace("[", "-").replace("]", "")


def subscribe(client, hub, query, token):
    s = client(hub, f"{HUB}?{query}", {**ES, "Authorization": f"Bearer {token}"})
    s.wait_comments(1)
    assert s.status == 200, s.describe()
    return s


def documents(s):
    """The subscription events a stream got, parsed."""
    return [json.loads(e.data) for e in s.events]


def wait_document(s, what, predicate, timeout=5.0):
    s.wait(lambda s: any(predicate(d) for d in documents(s)), timeout, what)
    return next(d for d in documents(s) if predicate(d))


def api(hub, path, token=None):
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return get(hub.port, path, headers)


def test_a_watcher_sees_a_subscriber_come_and_go_with_its_payload(hub, client, topic):
    watcher = subscribe(client, hub, "topic=" + quote(EVENTS, safe=""), subscriber_token([EVENTS]))
    mine = wait_document(watcher, "its own coming", lambda d: d["topic"] == EVENTS)
    assert UUID_ID.fullmatch(mine["subscriber"]), mine

    payload = {"name": "Ann", "groups": ["a", "b"]}
    ann = subscribe(client, hub, "topic=" + quote(topic, safe=""), subscriber_token([], payload))
    came = wait_document(watcher, "Ann's coming", lambda d: d["topic"] == topic and d["active"])
    ann_id = came["subscriber"]
    assert UUID_ID.fullmatch(ann_id) and ann_id != mine["subscriber"], came
    assert came == {
        "@context": "https://mercure.rocks/",
        "id": f"{HUB}/subscriptions/{enc(topic)}/{enc(ann_id)}",
        "type": "Subscription",
        "topic": topic,
        "subscriber": ann_id,
        "active": True,
        "payload": payload,
    }
    event = next(e for e in watcher.events if json.loads(e.data) == came)
    assert UUID_ID.fullmatch(event.id), event  # an update id of its own, for Last-Event-ID

    ann.close()  # the client leaves: nginx closes fastsse's connection
    went = wait_document(watcher, "Ann's going", lambda d: d["topic"] == topic and not d["active"])
    assert went == {**came, "active": False}

    # A subscriber whose token does not cover the events' topics gets none of them: they are private.
    outsider = subscribe(client, hub, "topic=" + quote(EVENTS, safe="") + "&topic=" + quote(topic + "/marker", safe=""),
                         subscriber_token([topic + "/marker"]))
    subscribe(client, hub, "topic=" + quote(topic + "/bob", safe=""), subscriber_token([])).close()
    wait_document(watcher, "Bob's going", lambda d: d["topic"] == topic + "/bob" and not d["active"])
    marker = published(hub, [("topic", topic + "/marker"), ("data", "{}")])
    outsider.wait(lambda s: s.events, 5, "the marker")
    assert [e.id for e in outsider.events] == [marker]


def test_1_0_subscriptions_have_their_own_topics_and_the_mercure_event_type(hub, client, topic):
    pattern = HUB + "/subscriptions/exact/:match/:subscriber"
    watcher = subscribe(client, hub, "match_urlpattern=" + quote(pattern, safe=""), subscriber_token(["*"]))
    subscribe(client, hub, "match=" + quote(topic, safe=""), subscriber_token([], {"x": 1})).close()
    went = wait_document(watcher, "the 1.0 subscriber's going", lambda d: d["match"] == topic and not d["active"])
    assert went["type"] == "subscription" and went["match_type"] == "exact" and went["payload"] == {"x": 1}
    assert went["id"] == f"{HUB}/subscriptions/exact/{enc(topic)}/{enc(went['subscriber'])}"
    assert {e.type for e in watcher.events} == {"mercure"}


def test_the_api_lists_subscriptions_to_whom_may_read_them(hub, client, topic):
    reader = subscriber_token(["*"])
    ann = subscribe(client, hub, "topic=" + quote(topic, safe=""), subscriber_token([], {"name": "Ann"}))
    bob = subscribe(client, hub, "topic=" + quote(topic, safe=""), subscriber_token([]))

    r = api(hub, API, reader)
    assert r.status == 200, r.describe()
    assert r.header("Content-Type") == "application/ld+json", r.describe()
    assert 'rel="mercure"' in (r.header("Link") or ""), r.describe()
    doc = json.loads(r.text)
    assert doc["@context"] == "https://mercure.rocks/" and doc["type"] == "Subscriptions" and doc["id"] == API
    assert UUID_ID.fullmatch(doc["lastEventID"]), doc  # Bob's coming, or later
    ours = [s for s in doc["subscriptions"] if s.get("topic") == topic]
    assert [s.get("payload") for s in ours] == [{"name": "Ann"}, None], ours

    by_topic = json.loads(api(hub, f"{API}/{enc(topic)}", reader).text)
    assert by_topic["id"] == f"{API}/{enc(topic)}"
    assert by_topic["subscriptions"] == ours
    one_path = ours[0]["id"]
    one = api(hub, one_path, reader)
    assert one.status == 200, one.describe()
    assert json.loads(one.text) == {**ours[0], "@context": "https://mercure.rocks/",
                                    "lastEventID": json.loads(one.text)["lastEventID"]}

    # A token that covers only that subscription reads it, and nothing else.
    narrow = subscriber_token([one_path])
    assert api(hub, one_path, narrow).status == 200
    assert_plain_error(api(hub, API, narrow), 403)
    assert_plain_error(api(hub, API), 401)
    assert_plain_error(api(hub, API, jwt({"mercure": {"subscribe": ["*"]}}, "not-the-key")), 401)
    assert_plain_error(api(hub, f"{API}/{enc(topic)}/{enc('urn:uuid:nobody')}", reader), 404)

    ann.close()  # fastsse hears of it at once; the API follows as soon as the stream is gone
    wait_until(lambda: api(hub, one_path, reader).status == 404, 5, "Ann's subscription gone from the API")
    assert_plain_error(api(hub, one_path, reader), 404)
    bob.close()


def test_off_by_default_nothing_is_published_and_the_api_is_404(hub_off, client, topic):
    watcher = subscribe(client, hub_off, "topic=" + quote(EVENTS, safe="") + "&topic=" + quote(topic, safe=""),
                        subscriber_token(["*"]))
    subscribe(client, hub_off, "topic=" + quote(topic + "/ann", safe=""), subscriber_token([], {"a": 1})).close()
    # An update published after Ann came and went is the first the watcher gets.
    marker = published(hub_off, [("topic", topic), ("data", "marker")])
    watcher.wait(lambda s: s.events, 5, "the marker")
    assert [e.id for e in watcher.events] == [marker]
    for path in (API, f"{API}/{enc(topic)}"):
        assert_plain_error(api(hub_off, path, subscriber_token(["*"])), 404)
