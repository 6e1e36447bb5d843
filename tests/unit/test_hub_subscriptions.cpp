// Mercure's "Active Subscriptions": the pure parts (hub/subscriptions.hpp: topics, their encoding,
// the JSON documents, the API's paths) against the drafts' own examples, and the hub producer with
// hub_subscriptions on and off: who hears of a subscriber coming and going, with its payload, and
// what the subscription API answers whom. JSON is compared parsed (nlohmann), so that the order of
// members does not matter, but every member and value does.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "../jws.hpp"

#include <chrono>
#include <string>
#include <vector>

#include "fastsse/http/request.hpp"
#include "fastsse/hub/subscriptions.hpp"
#include "fastsse/producers/hub.hpp"
#include "support.hpp"

using namespace std::literals;
using fastsse::Request;
using fastsse::RequestError;
using fastsse_test::status_of;
using json = nlohmann::json;
namespace hub = fastsse::hub;

namespace {

constexpr std::string_view spec_subscriber = "urn:uuid:bb3de268-05b0-4c65-b44e-8f9acefc29d6";

}  // namespace

TEST_CASE("subscriptions: a variable is percent-encoded once, all but the unreserved bytes") {
    CHECK(hub::encode_variable("https://example.com/{selector}") == "https%3A%2F%2Fexample.com%2F%7Bselector%7D");
    CHECK(hub::encode_variable(spec_subscriber) == "urn%3Auuid%3Abb3de268-05b0-4c65-b44e-8f9acefc29d6");
    CHECK(hub::encode_variable("AZaz09-._~") == "AZaz09-._~");
    // Never twice: a '%' already there is a byte like any other (draft 08: "MUST NOT double-encode").
    CHECK(hub::encode_variable("a%2Fb c+d") == "a%252Fb%20c%2Bd");
    CHECK(hub::encode_variable("\xC3\xA9\x00/"sv) == "%C3%A9%00%2F");
    CHECK(hub::encode_variable("") == "");

    for (std::string raw : {"https://example.com/{selector}", "a%2Fb c+d", "\xff\x01 /?#[]@!$&'()*+,;="}) {
        auto decoded = hub::decode_segment(hub::encode_variable(raw));
        REQUIRE(decoded);
        CHECK(*decoded == raw);
    }
    CHECK(hub::decode_segment("a%3ab+c") == "a:b+c");  // lowercase hex; '+' is not a space in a path
    CHECK_FALSE(hub::decode_segment("a%"));
    CHECK_FALSE(hub::decode_segment("a%3"));
    CHECK_FALSE(hub::decode_segment("%zz"));
}

TEST_CASE("subscriptions: the topics and documents of the drafts' examples") {
    hub::SubscriptionView v0;
    v0.form = hub::DocumentForm::v0;
    v0.match = "https://example.com/{selector}";
    v0.subscriber = spec_subscriber;
    v0.payload = R"({"foo":"bar"})";
    auto topic = "/.well-known/mercure/subscriptions/https%3A%2F%2Fexample.com%2F%7Bselector%7D/"
                 "urn%3Auuid%3Abb3de268-05b0-4c65-b44e-8f9acefc29d6";
    CHECK(hub::subscription_topic(v0) == topic);
    // Draft 07, "Subscription Events", its example.
    CHECK(json::parse(hub::subscription_json(v0)) == json{{"id", topic},
                                                         {"type", "Subscription"},
                                                         {"topic", "https://example.com/{selector}"},
                                                         {"subscriber", spec_subscriber},
                                                         {"active", true},
                                                         {"payload", {{"foo", "bar"}}}});
    // A top-level document has the context; the API's answer for it alone, the cursor.
    auto top = json::parse(hub::subscription_json(v0, true, "urn:uuid:5e94"));
    CHECK(top["@context"] == "https://mercure.rocks/");
    CHECK(top["lastEventID"] == "urn:uuid:5e94");
    v0.active = false;
    v0.payload.reset();
    auto gone = json::parse(hub::subscription_json(v0));
    CHECK(gone["active"] == false);
    CHECK_FALSE(gone.contains("payload"));

    // Draft 08, "Subscription Events", its example.
    hub::SubscriptionView v1;
    v1.form = hub::DocumentForm::v1;
    v1.match_type = "urlpattern";
    v1.match = "https://example.com/:selector";
    v1.subscriber = spec_subscriber;
    v1.payload = R"({"foo":"bar"})";
    auto topic1 = "/.well-known/mercure/subscriptions/urlpattern/https%3A%2F%2Fexample.com%2F%3Aselector/"
                  "urn%3Auuid%3Abb3de268-05b0-4c65-b44e-8f9acefc29d6";
    CHECK(hub::subscription_topic(v1) == topic1);
    CHECK(json::parse(hub::subscription_json(v1, true, "ignored")) ==
          json{{"id", topic1},
               {"type", "subscription"},
               {"match_type", "urlpattern"},
               {"match", "https://example.com/:selector"},
               {"subscriber", spec_subscriber},
               {"active", true},
               {"payload", {{"foo", "bar"}}}});

    // What the client sent is escaped as JSON, whatever it holds; bytes that are not UTF-8 too.
    v0.match = "a\"b\\c\n\xff";
    auto odd = json::parse(hub::subscription_json(v0));
    CHECK(odd["topic"] == "a\"b\\c\n\xEF\xBF\xBD");
}

TEST_CASE("subscriptions: collections in both forms") {
    std::vector<std::string> docs{R"({"id":"a"})", R"({"id":"b"})"};
    auto v0 = json::parse(hub::collection_json(hub::DocumentForm::v0, "/.well-known/mercure/subscriptions", "earliest",
                                               docs, false));
    CHECK(v0 == json{{"@context", "https://mercure.rocks/"},
                     {"id", "/.well-known/mercure/subscriptions"},
                     {"type", "Subscriptions"},
                     {"lastEventID", "earliest"},
                     {"subscriptions", {{{"id", "a"}}, {{"id", "b"}}}}});
    auto v1 = json::parse(hub::collection_json(hub::DocumentForm::v1, "/x", "id-1", {}, true));
    CHECK(v1 == json{{"id", "/x"}, {"type", "subscriptions"}, {"truncated", true}, {"subscriptions", json::array()}});
}

TEST_CASE("subscriptions: the API's paths") {
    using Kind = hub::ApiQuery::Kind;
    CHECK(hub::is_api_path("/.well-known/mercure/subscriptions"));
    CHECK(hub::is_api_path("/.well-known/mercure/subscriptions/x"));
    CHECK_FALSE(hub::is_api_path("/.well-known/mercure"));
    CHECK_FALSE(hub::is_api_path("/.well-known/mercure/subscriptionsx"));
    CHECK_FALSE(hub::is_api_path("/.well-known/mercure/other"));

    auto all = hub::parse_api_path("/.well-known/mercure/subscriptions");
    REQUIRE(all);
    CHECK(all->kind == Kind::all);
    auto topic = hub::parse_api_path("/.well-known/mercure/subscriptions/https%3A%2F%2Fexample.com%2F%7Bselector%7D");
    REQUIRE(topic);
    CHECK(topic->kind == Kind::topic);
    CHECK(topic->match == "https://example.com/{selector}");
    auto one = hub::parse_api_path("/.well-known/mercure/subscriptions/urn%3Ax/urn%3Auuid%3A1");
    REQUIRE(one);
    CHECK(one->kind == Kind::one_v0);
    CHECK(one->match == "urn:x");
    CHECK(one->subscriber == "urn:uuid:1");
    auto match = hub::parse_api_path("/.well-known/mercure/subscriptions/urlpattern/%2Fbooks%2F%3Aid");
    REQUIRE(match);
    CHECK(match->kind == Kind::match);
    CHECK(match->match_type == "urlpattern");
    CHECK(match->match == "/books/:id");
    auto one1 = hub::parse_api_path("/.well-known/mercure/subscriptions/exact/urn%3Ax/s");
    REQUIRE(one1);
    CHECK(one1->kind == Kind::one_v1);
    CHECK(one1->match_type == "exact");
    CHECK(one1->subscriber == "s");

    for (auto bad : {"/.well-known/mercure/subscriptions/", "/.well-known/mercure/subscriptions//x",
                     "/.well-known/mercure/subscriptions/a/b/c", "/.well-known/mercure/subscriptions/exact/a/b/c",
                     "/.well-known/mercure/subscriptions/%zz", "/.well-known/mercure/other"})
        CHECK_MESSAGE(!hub::parse_api_path(bad), bad);
}

namespace {

constexpr const char* sub_key = "subscriber-key-of-32-bytes-hs256";
constexpr std::string_view events_template = "/.well-known/mercure/subscriptions/{topic}/{subscriber}";

std::string token(std::string_view claims, std::string_view header = R"({"alg":"HS256","typ":"JWT"})") {
    return fastsse_jws::sign(header, claims, sub_key);
}
// A 0.x token: subscribe selectors, and a payload when given.
std::string subscriber(std::string_view topics, std::string_view payload = "") {
    std::string mercure = R"({"subscribe":)" + std::string(topics);
    if (!payload.empty()) mercure += R"(,"payload":)" + std::string(payload);
    return token(R"({"mercure":)" + mercure + "}}");
}

struct Hub {
    fastsse::EventLoop loop;
    fastsse::HubProducer hub{loop};
    fastsse::Params params;

    explicit Hub(bool subscriptions = true) {
        fastsse::HubSettings s;
        fastsse::hub_settings().set_defaults(s);
        s.subscriber_key = sub_key;
        s.subscriptions = subscriptions ? 1 : 0;
        hub.configure(s);
    }

    struct Sub {
        fastsse_test::RecordingSink sink{[] {}};
        Request request;
        std::unique_ptr<fastsse::Subscription> work;
        // The subscription events it got, parsed, with their SSE event type.
        std::vector<std::pair<std::string, json>> events() const {
            std::vector<std::pair<std::string, json>> out;
            for (auto& c : sink.calls)
                if (!c.finished) out.emplace_back(c.sent.event, json::parse(c.sent.data.value_or("null")));
            return out;
        }
    };
    std::unique_ptr<Sub> subscribe(std::string query, std::optional<std::string> bearer) {
        auto s = std::make_unique<Sub>();
        s->request.method = "GET";
        s->request.uri = "/.well-known/mercure?" + query;
        s->request.query = query;
        if (bearer) s->request.authorization = "Bearer " + *bearer;
        fastsse::StreamStart start{{}, s->request.query, params, 3000ms, &s->request};
        s->work = hub.open(s->sink, start);
        return s;
    }

    // The API's answer to a GET of `path` with `bearer`.
    fastsse::Answer get(std::string path, std::optional<std::string> bearer, std::string method = "GET") {
        Request r;
        r.method = method;
        r.uri = path;
        r.scheme = "https";
        r.host = "example.com";
        if (bearer) r.authorization = "Bearer " + *bearer;
        auto answer = hub.answer(r);
        REQUIRE(answer);
        return *answer;
    }
    int get_status(std::string path, std::optional<std::string> bearer, std::string method = "GET") {
        return status_of([&] { get(path, bearer, method); });
    }
};

// The watcher of every subscription event, as draft 07's example authorizes one.
std::string watcher_token() { return subscriber(R"(["/.well-known/mercure/subscriptions/{topic}/{subscriber}"])"); }
std::string watcher_query() { return "topic=" + hub::encode_variable(events_template); }

}  // namespace

TEST_CASE("hub_subscriptions: a subscriber's coming and going, one private update per selector, with its payload") {
    Hub h;
    auto watcher = h.subscribe(watcher_query(), watcher_token());
    // It hears of itself first: it joined before its event went out.
    REQUIRE(watcher->events().size() == 1);
    CHECK(watcher->events()[0].second["topic"] == events_template);
    auto watcher_id = watcher->events()[0].second["subscriber"].get<std::string>();
    CHECK(watcher_id.starts_with("urn:uuid:"));

    // A subscriber whose token does not cover the events hears nothing of them (they are private);
    // the watcher hears of it.
    auto outsider = h.subscribe(watcher_query(), subscriber(R"(["urn:other"])"));
    REQUIRE(watcher->events().size() == 2);
    watcher->sink.calls.clear();

    auto ann = h.subscribe("topic=urn:a&topic=https%3A%2F%2Fexample.com%2Fbooks%2F%7Bid%7D",
                           subscriber(R"([])", R"({"name":"Ann","groups":[1,2]})"));
    auto events = watcher->events();
    REQUIRE(events.size() == 2);
    auto first = events[0].second, second = events[1].second;
    CHECK(events[0].first == "");  // draft 07: no event type
    auto ann_id = first["subscriber"].get<std::string>();
    CHECK(ann_id.starts_with("urn:uuid:"));
    CHECK(ann_id != watcher_id);
    CHECK(first == json{{"@context", "https://mercure.rocks/"},
                        {"id", "/.well-known/mercure/subscriptions/urn%3Aa/" + hub::encode_variable(ann_id)},
                        {"type", "Subscription"},
                        {"topic", "urn:a"},
                        {"subscriber", ann_id},
                        {"active", true},
                        {"payload", {{"name", "Ann"}, {"groups", {1, 2}}}}});
    CHECK(second["topic"] == "https://example.com/books/{id}");
    CHECK(second["subscriber"] == ann_id);  // one id for all of a subscriber's subscriptions
    CHECK(second["payload"]["name"] == "Ann");
    // The update's SSE id is a fresh one, not the document's id.
    CHECK(watcher->sink.sent(0).id->starts_with("urn:uuid:"));

    ann.reset();  // the client left
    events = watcher->events();
    REQUIRE(events.size() == 4);
    CHECK(events[2].second["active"] == false);
    CHECK(events[2].second["topic"] == "urn:a");
    CHECK(events[2].second["payload"]["name"] == "Ann");
    CHECK(events[3].second["active"] == false);
    CHECK(events[3].second["topic"] == "https://example.com/books/{id}");

    CHECK(outsider->sink.sends() == 0);
}

TEST_CASE("hub_subscriptions: 1.0 subscriptions, their topics, the `mercure` event type, a payload per matcher") {
    Hub h;
    auto watcher = h.subscribe("match_urlpattern=/.well-known/mercure/subscriptions/:type/:match/:subscriber",
                               subscriber(R"(["*"])"));
    watcher->sink.calls.clear();
    auto v1_token = token(R"({"exp":9999999999,"authorization_details":[)"
                          R"({"type":"https://mercure.rocks/authorization-detail","actions":["subscribe"],)"
                          R"("topics":[{"match":"urn:b"}],"payload":{"which":"b"}},)"
                          R"({"type":"https://mercure.rocks/authorization-detail","actions":["subscribe"],)"
                          R"("topics":[{"match":"*"}],"payload":{"which":"default"}}]})",
                          R"({"alg":"HS256","typ":"at+jwt"})");
    auto bob = h.subscribe("match=urn:b&match=urn:c", v1_token);
    auto events = watcher->events();
    REQUIRE(events.size() == 2);
    CHECK(events[0].first == "mercure");
    auto bob_id = events[0].second["subscriber"].get<std::string>();
    CHECK(events[0].second == json{{"id", "/.well-known/mercure/subscriptions/exact/urn%3Ab/" + hub::encode_variable(bob_id)},
                                   {"type", "subscription"},
                                   {"match_type", "exact"},
                                   {"match", "urn:b"},
                                   {"subscriber", bob_id},
                                   {"active", true},
                                   {"payload", {{"which", "b"}}}});
    // The first detail whose topics match the matcher wins: "*" for urn:c.
    CHECK(events[1].second["payload"] == json{{"which", "default"}});
}

TEST_CASE("hub_subscriptions: a payload over the bound refuses the token; HEAD announces nothing") {
    Hub h;
    auto watcher = h.subscribe(watcher_query(), watcher_token());
    watcher->sink.calls.clear();
    std::string big = "\"" + std::string(fastsse::HubProducer::max_payload_bytes, 'x') + "\"";
    CHECK(status_of([&] { h.subscribe("topic=urn:a", subscriber("[]", big)); }) == 401);
    std::string fits = "\"" + std::string(fastsse::HubProducer::max_payload_bytes - 2, 'x') + "\"";
    { auto ok = h.subscribe("topic=urn:a", subscriber("[]", fits)); }
    CHECK(watcher->sink.sends() == 2);  // came and went

    // check() is what HEAD runs: it subscribes nobody, so nobody comes or goes.
    watcher->sink.calls.clear();
    Request r;
    r.method = "HEAD";
    r.query = "topic=urn:a";
    r.authorization = "Bearer " + subscriber("[]");
    fastsse::StreamStart start{{}, r.query, h.params, 3000ms, &r};
    h.hub.check(start);
    CHECK(watcher->sink.sends() == 0);
}

TEST_CASE("hub_subscriptions off: nothing published, no API, no payload bound") {
    Hub h(false);
    auto watcher = h.subscribe(watcher_query(), watcher_token());
    std::string big = "\"" + std::string(fastsse::HubProducer::max_payload_bytes + 100, 'x') + "\"";
    { auto other = h.subscribe("topic=urn:a", subscriber("[]", big)); }
    CHECK(watcher->sink.sends() == 0);
    CHECK(h.get_status("/.well-known/mercure/subscriptions", subscriber(R"(["*"])")) == 404);
    // Other paths are streams, as before.
    Request r;
    r.uri = "/.well-known/mercure?topic=x";
    CHECK_FALSE(h.hub.answer(r));
}

TEST_CASE("hub_subscriptions: the API, who may read it, and what it answers") {
    Hub h;
    auto ann = h.subscribe("topic=urn:a&match_urlpattern=/books/:id", subscriber("[]", R"({"name":"Ann"})"));
    auto bob = h.subscribe("topic=urn:a", subscriber("[]"));
    auto all_paths = subscriber(R"(["/.well-known/mercure/subscriptions{/topic}{/subscriber}", )"
                                R"("/.well-known/mercure/subscriptions/{type}/{match}/{subscriber}"])");

    const std::string api = "/.well-known/mercure/subscriptions";
    CHECK(h.get_status(api, std::nullopt) == 401);
    CHECK(h.get_status(api, "not.a.token") == 401);
    CHECK(h.get_status(api, subscriber(R"(["urn:a"])")) == 403);
    CHECK(h.get_status(api, subscriber(R"(["/.well-known/mercure/subscriptions/{topic}"])")) == 403);
    CHECK(h.get_status(api, all_paths, "POST") == 405);

    auto answer = h.get(api + "?ignored=1", all_paths);
    CHECK(answer.content_type == "application/ld+json");
    auto doc = json::parse(answer.body);
    CHECK(doc["@context"] == "https://mercure.rocks/");
    CHECK(doc["id"] == api);
    CHECK(doc["type"] == "Subscriptions");
    REQUIRE(doc["subscriptions"].size() == 3);
    CHECK(doc["subscriptions"][0]["topic"] == "urn:a");
    CHECK(doc["subscriptions"][0]["payload"] == json{{"name", "Ann"}});
    CHECK(doc["subscriptions"][1]["match"] == "/books/:id");
    CHECK(doc["subscriptions"][1]["match_type"] == "urlpattern");
    CHECK(doc["subscriptions"][2]["topic"] == "urn:a");
    CHECK_FALSE(doc["subscriptions"][2].contains("payload"));
    // The last update the hub sent: Bob's coming.
    auto last = doc["lastEventID"].get<std::string>();
    CHECK(last.starts_with("urn:uuid:"));
    bool linked = false;
    for (auto& [name, value] : answer.headers)
        if (name == "Link") {
            linked = true;
            CHECK(value == "<https://example.com/.well-known/mercure>; rel=\"mercure\"; last-event-id=\"" + last +
                               "\"; type=\"mercure\"; content-type=\"application/json\"");
        }
    CHECK(linked);

    // By topic, and one subscription.
    auto by_topic = json::parse(h.get(api + "/urn%3Aa", all_paths).body);
    CHECK(by_topic["subscriptions"].size() == 2);
    auto ann_id = by_topic["subscriptions"][0]["subscriber"].get<std::string>();
    auto one_path = api + "/urn%3Aa/" + hub::encode_variable(ann_id);
    auto one = json::parse(h.get(one_path, all_paths).body);
    CHECK(one["id"] == one_path);
    CHECK(one["active"] == true);
    CHECK(one["lastEventID"] == last);
    CHECK(one["@context"] == "https://mercure.rocks/");
    // 1.0's forms: the collection of a matcher, one subscription, as application/json.
    auto by_match = h.get(api + "/urlpattern/%2Fbooks%2F%3Aid", all_paths);
    CHECK(by_match.content_type == "application/json");
    CHECK(json::parse(by_match.body)["subscriptions"].size() == 1);
    auto one_v1 = json::parse(h.get(api + "/urlpattern/%2Fbooks%2F%3Aid/" + hub::encode_variable(ann_id), all_paths).body);
    CHECK(one_v1["type"] == "subscription");
    CHECK_FALSE(one_v1.contains("lastEventID"));

    CHECK(h.get_status(api + "/urn%3Aa/urn%3Auuid%3Anobody", all_paths) == 404);
    CHECK(h.get_status(api + "/urn%3Aa/x/y/z", subscriber(R"(["*"])")) == 404);
    // A token that covers one subscription reads that one only.
    CHECK(h.get_status(one_path, subscriber("[\"" + one_path + "\"]")) == 0);
    CHECK(h.get_status(api + "/urn%3Aa", subscriber("[\"" + one_path + "\"]")) == 403);

    // Gone: the API no longer lists it.
    ann.reset();
    CHECK(h.get_status(one_path, all_paths) == 404);
    CHECK(json::parse(h.get(api, all_paths).body)["subscriptions"].size() == 1);
}
