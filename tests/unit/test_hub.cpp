// The Mercure hub producer (producers/hub.hpp), as the route drives it: publish() with a request and
// a form body, open() with a StreamStart, over one channel. Who may publish and subscribe (401,
// 403), what is refused (400), what each subscriber receives (topics, private updates), the resume
// headers, and the end of a stream when its token expires. Tokens are signed here with OpenSSL's
// HMAC, apart from the code under test.
#include <doctest/doctest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "../jws.hpp"
#include "../publish_now.hpp"

#include <chrono>
#include <string>
#include <vector>

#include "fastsse/http/request.hpp"
#include "fastsse/producers/hub.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using fastsse::Request;
using fastsse::RequestError;
using fastsse_test::status_of;

namespace {

constexpr const char* pub_key = "publisher-key-of-32-bytes-hs256!";
constexpr const char* sub_key = "subscriber-key-of-32-bytes-hs256";

std::string token(std::string_view claims, std::string_view key, std::string_view alg = "HS256") {
    return fastsse_jws::sign(R"({"alg":")" + std::string(alg) + R"(","typ":"JWT"})", claims, key);
}

std::string publisher(std::string_view topics = R"(["*"])") {
    return token(R"({"mercure":{"publish":)" + std::string(topics) + "}}", pub_key);
}
std::string subscriber(std::string_view topics, std::string_view extra = "") {
    return token(R"({"mercure":{"subscribe":)" + std::string(topics) + "}" + std::string(extra) + "}", sub_key);
}

Request post(std::optional<std::string> bearer) {
    Request r;
    r.method = "POST";
    r.content_type = "application/x-www-form-urlencoded";
    if (bearer) r.authorization = "Bearer " + *bearer;
    return r;
}

struct Hub {
    fastsse::EventLoop loop;
    fastsse::HubProducer hub{loop};
    fastsse::Params params;

    Hub() {
        fastsse::HubSettings s;
        fastsse::hub_settings().set_defaults(s);
        s.publisher_key = pub_key;
        s.subscriber_key = sub_key;
        s.max_selectors = 3;
        hub.configure(s);
    }

    std::string publish(std::string_view body, std::optional<std::string> bearer = publisher()) {
        return fastsse_test::publish_now(hub, post(std::move(bearer)), body).body;
    }

    // A subscriber: its sink, its work and the request its StreamStart points to.
    struct Sub {
        fastsse_test::RecordingSink sink{[] {}};
        Request request;
        std::unique_ptr<fastsse::Subscription> work;
        std::vector<std::string> data() const {
            std::vector<std::string> out;
            for (auto& c : sink.calls)
                if (!c.finished) out.push_back(c.sent.data.value_or(""));
            return out;
        }
    };
    std::unique_ptr<Sub> subscribe(std::string query, std::optional<std::string> bearer = std::nullopt,
                                   std::optional<std::string> last_event_id = std::nullopt) {
        auto s = std::make_unique<Sub>();
        s->request.method = "GET";
        s->request.query = query;
        if (bearer) s->request.authorization = "Bearer " + *bearer;
        s->request.last_event_id = last_event_id;
        fastsse::StreamStart start{{}, s->request.query, params, 3000ms, &s->request};
        s->work = hub.open(s->sink, start);
        return s;
    }
    int subscribe_status(std::string query, std::optional<std::string> bearer = std::nullopt) {
        return status_of([&] { subscribe(std::move(query), std::move(bearer)); });
    }
};

}  // namespace

TEST_CASE("hub: a publish reaches the subscribers whose selectors match its topics") {
    Hub h;
    auto exact = h.subscribe("topic=https://example.com/books/1", subscriber(R"([])"));
    auto any = h.subscribe("topic=*", subscriber(R"([])"));
    auto templated = h.subscribe("topic=https://example.com/books/{id}", subscriber(R"([])"));
    auto pattern = h.subscribe("match_urlpattern=https://example.com/books/:id", subscriber(R"([])"));
    auto other = h.subscribe("topic=https://example.com/authors/1&match=urn:x", subscriber(R"([])"));

    auto id = h.publish("topic=https://example.com/books/1&data=hello");
    CHECK(id.starts_with("urn:uuid:"));
    CHECK(id.size() == 45);
    for (auto* s : {exact.get(), any.get(), templated.get(), pattern.get()}) {
        REQUIRE(s->sink.sends() == 1);
        CHECK(s->sink.sent(0).data == "hello");
        CHECK(s->sink.sent(0).id == id);
    }
    CHECK(other->sink.sends() == 0);

    // An alternate topic counts; the id, type and retry given are kept.
    CHECK(h.publish("topic=urn:y&topic=urn:x&data=a%0Ab&id=my-id&type=note&retry=500") == "my-id");
    REQUIRE(other->sink.sends() == 1);
    CHECK(other->sink.sent(0).data == "a\nb");
    CHECK(other->sink.sent(0).event == "note");
    CHECK(other->sink.sent(0).retry_ms == 500);
    CHECK(exact->sink.sends() == 1);
}

TEST_CASE("hub: a private update reaches only subscribers whose token may read one of its topics") {
    Hub h;
    h.params["anonymous"] = "1";
    auto allowed = h.subscribe("topic=*", subscriber(R"(["urn:secret/{x}"])"));
    auto other_grant = h.subscribe("topic=*", subscriber(R"(["urn:public"])"));
    auto anonymous = h.subscribe("topic=*");
    h.publish("topic=urn:secret/1&data=private&private=on");
    h.publish("topic=urn:public&data=public");
    CHECK(allowed->data() == std::vector<std::string>{"private", "public"});
    CHECK(other_grant->data() == std::vector<std::string>{"public"});
    CHECK(anonymous->data() == std::vector<std::string>{"public"});
}

TEST_CASE("hub: who may publish, and what is refused, with nothing published") {
    Hub h;
    auto s = h.subscribe("topic=*", subscriber("[]"));
    auto status = [&](std::string body, std::optional<std::string> bearer = publisher()) {
        return status_of([&] { h.publish(body, bearer); });
    };
    CHECK(status("topic=a&data=x", std::nullopt) == 401);
    CHECK(status("topic=a&data=x", token(R"({"mercure":{"publish":["*"]}})", "another key")) == 401);
    CHECK(status("topic=a&data=x", token(R"({"mercure":{"publish":["*"]}})", pub_key, "none")) == 401);
    CHECK(status("topic=a&data=x", subscriber(R"(["*"])")) == 401);  // signed with the other key
    CHECK(status("topic=a&data=x", publisher(R"(["b"])")) == 403);
    CHECK(status("topic=a&topic=b&data=x", publisher(R"(["a"])")) == 403);  // every topic, alternates too
    CHECK(status("topic=a&data=x", publisher("[]")) == 403);
    CHECK(status("data=x") == 400);
    CHECK(status("topic=a&data=%zz") == 400);
    CHECK(status("topic=a&id=%23frag") == 400);
    CHECK(status("topic=a&id=a%0Ab") == 400);
    CHECK(status("topic=a&id=a%0Db") == 400);
    CHECK(status("topic=a&id=a%00b") == 400);
    CHECK(status("topic=a&id=earliest") == 400);
    CHECK(status("topic=a&type=a%0Ab") == 400);
    CHECK(status("topic=a&retry=soon") == 400);
    // Draft 08's rules, whatever the token: characters (a C1 control, a tab, DEL, a zero-width
    // space, a right-to-left override, bad UTF-8), the wildcard as a topic, the hub's own paths
    // (however spelt), the hub's own event type.
    for (std::string bad : {"topic=a%C2%85b", "topic=a%09b", "topic=a%7Fb", "topic=a%E2%80%8Bb", "topic=%E2%80%AEa",
                     "topic=%FF", "topic=a&topic=b%C0%AF", "topic=*", "topic=a&topic=*",
                     "topic=/.well-known/mercure", "topic=/.well-known/mercure/subscriptions/a/b",
                     "topic=https://other.example/.well-known/mercure/subscriptions/x",
                     "topic=/.well-known/%6Dercure/x", "topic=/a/../.well-known/mercure/x",
                     "topic=/.well-known/./mercure", "topic=a&id=a%C2%9Fb", "topic=a&id=%E2%81%A0",
                     "topic=a&type=a%E2%80%8Fb", "topic=a&type=mercure"}) {
        CAPTURE(bad);
        CHECK(status(bad) == 400);
    }
    // Near them, but fine: other paths, a type that only contains the word, non-ASCII text.
    for (std::string good : {"topic=/.well-known/mercurey", "topic=/.well-known/mercure-other/x", "topic=urn:.well-known:mercure",
                      "topic=https://example.com/caf%C3%A9", "topic=a&type=mercure-ish", "topic=a&id=%E2%9C%93"}) {
        CAPTURE(good);
        CHECK(status(good) == 0);
    }
    auto not_form = post(publisher());
    not_form.content_type = "application/json";
    CHECK(status_of([&] { fastsse_test::publish_now(h.hub, not_form, "topic=a"); }) == 400);
    CHECK(s->sink.sends() == 6);  // the good ones alone
    // A template in the claim covers the topics it matches (0.x).
    CHECK(status("topic=https://example.com/books/1", publisher(R"(["https://example.com/books/{id}"])")) == 0);
    CHECK(s->sink.sends() == 7);
}

TEST_CASE("hub: who may subscribe") {
    Hub h;
    CHECK(h.subscribe_status("topic=*") == 401);
    CHECK(h.subscribe_status("topic=*", token(R"({"mercure":{"subscribe":[]}})", "another key")) == 401);
    CHECK(h.subscribe_status("topic=*", subscriber("[]")) == 0);
    CHECK(h.subscribe_status("", subscriber("[]")) == 400);
    CHECK(h.subscribe_status("topic=a&topic=b&match=c&topic=d", subscriber("[]")) == 400);  // 3 at most here
    CHECK(h.subscribe_status("topic=%zz", subscriber("[]")) == 400);
    CHECK(h.subscribe_status("match=a%E2%80%8Bb", subscriber("[]")) == 400);  // draft 08: no format character
    CHECK(h.subscribe_status("topic=%FF", subscriber("[]")) == 400);            // nor bad UTF-8
    // The cookie and the query parameter carry a token too.
    CHECK(h.subscribe_status("topic=*&authorization=" + subscriber("[]")) == 0);
    h.params["anonymous"] = "1";
    CHECK(h.subscribe_status("topic=*") == 0);
    // Anonymous lets in who has no token, never who has a bad one.
    CHECK(h.subscribe_status("topic=*", token(R"({"mercure":{"subscribe":[]}})", "another key")) == 401);
    CHECK(h.subscribe_status("topic=*", subscriber("[]", R"(,"exp":1000)")) == 401);  // expired in 1970
}

TEST_CASE("hub: a resume replays what came after the id and says where it started") {
    Hub h;
    auto first = h.publish("topic=urn:a&data=1");
    h.publish("topic=urn:b&data=2");
    auto third = h.publish("topic=urn:a&data=3");

    auto after_first = h.subscribe("topic=urn:a", subscriber("[]"), first);
    CHECK(after_first->data() == std::vector<std::string>{"3"});
    using Headers = std::vector<std::pair<std::string, std::string>>;
    CHECK(after_first->sink.headers == Headers{{"Last-Event-ID", first}, {"Mercure-Last-Event-ID", first}});

    // 0.x's and 1.0's query parameters; `earliest` and an unknown id replay everything.
    auto by_query = h.subscribe("topic=urn:a&lastEventID=" + first, subscriber("[]"));
    CHECK(by_query->data() == std::vector<std::string>{"3"});
    auto v1 = h.subscribe("topic=urn:a&last_event_id=earliest", subscriber("[]"));
    CHECK(v1->data() == std::vector<std::string>{"1", "3"});
    CHECK(v1->sink.headers == Headers{{"Last-Event-ID", "earliest"}, {"Mercure-Last-Event-ID", "earliest"}});
    auto unknown = h.subscribe("topic=*", subscriber("[]"), "urn:uuid:nope");
    CHECK(unknown->data() == std::vector<std::string>{"1", "2", "3"});

    // No id given: no replay, no header.
    auto fresh = h.subscribe("topic=*", subscriber("[]"));
    CHECK(fresh->sink.sends() == 0);
    CHECK(fresh->sink.headers.empty());
    (void)third;
}

TEST_CASE("hub: a stream ends when its token expires") {
    Hub h;
    auto exp = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch() + 1s);
    auto s = h.subscribe("topic=*", subscriber("[]", R"(,"exp":)" + std::to_string(exp.count())));
    CHECK(s->sink.finishes() == 0);
    fastsse_test::LoopWaiter waiter(h.loop);
    CHECK(waiter.run_until([&] { return s->sink.finishes() == 1; }, 5s));
}

TEST_CASE("hub: relative URL patterns are taken against the URL the request reached the hub at") {
    Hub h;
    auto open = [&](std::string scheme, std::string host) {
        auto s = std::make_unique<Hub::Sub>();
        s->request.method = "GET";
        s->request.uri = "/.well-known/mercure?match_urlpattern=/books/:id";
        s->request.query = "match_urlpattern=/books/:id";
        s->request.scheme = std::move(scheme);
        s->request.host = std::move(host);
        s->request.authorization = "Bearer " + subscriber("[]");
        fastsse::StreamStart start{{}, s->request.query, h.params, 3000ms, &s->request};
        s->work = h.hub.open(s->sink, start);
        return s;
    };
    auto https = open("https", "example.com");
    auto http_port = open("http", "example.com:8080");
    auto odd_host = open("https", "exa mple.com");  // not a host: the reserved default
    h.publish("topic=https://example.com/books/1&data=a");
    h.publish("topic=http://example.com:8080/books/2&data=b");
    h.publish("topic=http://mercure.invalid/books/3&data=c");
    h.publish("topic=https://example.com/authors/1&data=d");
    CHECK(https->data() == std::vector<std::string>{"a"});
    CHECK(http_port->data() == std::vector<std::string>{"b"});
    CHECK(odd_host->data() == std::vector<std::string>{"c"});
}

TEST_CASE("hub: where each request gets a process of its own (mod_fcgid), it refuses both sides with 503") {
    Hub h;
    fastsse::HubSettings s;
    fastsse::hub_settings().set_defaults(s);
    s.publisher_key = pub_key;
    s.subscriber_key = sub_key;
    s.one_request_per_process = 1;
    h.hub.configure(s);
    CHECK(h.subscribe_status("topic=*", subscriber("[]")) == 503);
    CHECK(status_of([&] { h.publish("topic=urn:x&data=a"); }) == 503);
    fastsse::Request r;
    fastsse::StreamStart start{{}, "topic=*", h.params, 3000ms, &r};
    CHECK_THROWS_AS(h.hub.check(start), RequestError);  // HEAD too
    CHECK(h.hub.subscribers() == 0);
}

TEST_CASE("hub: its locations take cross-origin requests as cors_origins says") {
    Hub h;
    REQUIRE(h.hub.cors() != nullptr);
    CHECK_FALSE(h.hub.cors()->enabled());  // the default
    fastsse::HubSettings s;
    fastsse::hub_settings().set(s, "cors_origins", "https://app.test");
    h.hub.configure(s);
    CHECK(h.hub.cors()->origins() == std::vector<std::string>{"https://app.test"});
}

TEST_CASE("hub: jwt_audience and jwt_issuer, when set, are required of both sides' tokens") {
    Hub h;
    constexpr std::string_view aud = "https://hub.test/.well-known/mercure";
    constexpr std::string_view iss = "https://app.test";
    auto pub = [](std::string_view claims) {
        return token(R"({"mercure":{"publish":["*"]})" + std::string(claims) + "}", pub_key);
    };
    auto sub = [](std::string_view claims) {
        return token(R"({"mercure":{"subscribe":[]})" + std::string(claims) + "}", sub_key);
    };
    auto publish_status = [&](std::string bearer) { return status_of([&] { h.publish("topic=urn:x", bearer); }); };
    const std::string theirs = R"(,"aud":"https://other.test/.well-known/mercure","iss":"https://other.test")";
    const std::string ours = R"(,"aud":")" + std::string(aud) + R"(","iss":")" + std::string(iss) + R"(")";
    const std::string ours_in_array = R"(,"aud":["https://other.test",")" + std::string(aud) + R"("],"iss":")" +
                                      std::string(iss) + R"(")";

    // Not set (the default): whatever the token says of them is not looked at.
    CHECK(publish_status(pub(theirs)) == 0);
    CHECK(h.subscribe_status("topic=*", sub(theirs)) == 0);

    fastsse::HubSettings s;
    fastsse::hub_settings().set_defaults(s);
    s.publisher_key = pub_key;
    s.subscriber_key = sub_key;
    fastsse::hub_settings().set(s, "jwt_audience", std::string(aud));
    fastsse::hub_settings().set(s, "jwt_issuer", std::string(iss));
    h.hub.configure(s);
    for (const auto& claims : {std::string(), theirs, std::string(R"(,"aud":")") + std::string(aud) + "\"",
                               std::string(R"(,"iss":")") + std::string(iss) + "\""}) {
        CAPTURE(claims);
        CHECK(publish_status(pub(claims)) == 401);
        CHECK(h.subscribe_status("topic=*", sub(claims)) == 401);
    }
    CHECK(publish_status(pub(ours)) == 0);
    CHECK(publish_status(pub(ours_in_array)) == 0);
    CHECK(h.subscribe_status("topic=*", sub(ours)) == 0);
    CHECK(h.subscribe_status("topic=*", sub(ours_in_array)) == 0);
}

TEST_CASE("hub: refusals over the token carry RFC 6750's challenge, with draft 08's error codes") {
    using fastsse::BearerError;
    Hub h;
    // The challenge a call's refusal carries: nullopt for none, or for no refusal.
    auto challenge = [](auto fn) -> std::optional<std::pair<int, std::optional<BearerError>>> {
        try {
            fn();
        } catch (const RequestError& e) {
            return std::pair{e.status, e.bearer_challenge};
        }
        return std::nullopt;
    };
    using Expected = std::optional<std::pair<int, std::optional<BearerError>>>;
    auto publish = [&](std::optional<std::string> authorization, std::string body = "topic=urn:a") {
        auto r = post(std::nullopt);
        r.authorization = std::move(authorization);
        return challenge([&] { fastsse_test::publish_now(h.hub, r, body); });
    };
    CHECK(publish(std::nullopt) == Expected{{401, BearerError::none}});
    CHECK(publish("Basic dXNlcjpwYXNz") == Expected{{400, BearerError::invalid_request}});
    CHECK(publish("Bearer") == Expected{{400, BearerError::invalid_request}});
    CHECK(publish("Bearer " + token(R"({"mercure":{"publish":["*"]}})", "another key")) ==
          Expected{{401, BearerError::invalid_token}});
    CHECK(publish("Bearer " + publisher(R"(["urn:b"])")) == Expected{{403, BearerError::insufficient_scope}});
    CHECK(publish("Bearer " + publisher(), "data=no-topic") == Expected{{400, std::nullopt}});  // not the token's
    CHECK(publish("Bearer " + publisher()) == std::nullopt);

    auto subscribe = [&](std::optional<std::string> authorization, std::string query = "topic=*") {
        return challenge([&] {
            Hub::Sub s;
            s.request.method = "GET";
            s.request.query = query;
            s.request.authorization = std::move(authorization);
            fastsse::StreamStart start{{}, s.request.query, h.params, 3000ms, &s.request};
            h.hub.check(start);
        });
    };
    CHECK(subscribe(std::nullopt) == Expected{{401, BearerError::none}});
    CHECK(subscribe("Basic dXNlcjpwYXNz") == Expected{{400, BearerError::invalid_request}});
    CHECK(subscribe("Bearer " + subscriber("[]", R"(,"exp":1000)")) == Expected{{401, BearerError::invalid_token}});
    CHECK(subscribe("Bearer " + subscriber("[]"), "") == Expected{{400, std::nullopt}});  // no topic: not the token's
    CHECK(subscribe("Bearer " + subscriber("[]")) == std::nullopt);
}
