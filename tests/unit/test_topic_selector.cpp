// Mercure topic selectors: `*`, exact topics, RFC 6570 URI templates (0.x `topic=`), and URL
// patterns (1.0 `match_urlpattern=`), compiled once and matched against topics; SelectorSet.
#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <vector>

#include "fastsse/hub/topic_selector.hpp"

using fastsse::SelectorError;
using fastsse::SelectorSet;
using fastsse::SelectorSyntax;
using fastsse::TopicSelector;

namespace {

bool matches(std::string_view selector, std::string_view topic, SelectorSyntax syntax = SelectorSyntax::topic) {
    return TopicSelector(selector, syntax).matches(topic);
}

bool pattern(std::string_view selector, std::string_view topic, std::string_view hub = fastsse::default_hub_url) {
    return TopicSelector(selector, SelectorSyntax::urlpattern, hub).matches(topic);
}

}  // namespace

TEST_CASE("`*` matches every topic, in every syntax") {
    for (auto syntax : {SelectorSyntax::topic, SelectorSyntax::exact, SelectorSyntax::urlpattern}) {
        TopicSelector s("*", syntax);
        CHECK(s.is_wildcard());
        CHECK(s.matches("https://example.com/books/1"));
        CHECK(s.matches(""));
        CHECK(s.matches("*"));
        CHECK(s.matches("not a URL at all"));
    }
    CHECK_FALSE(TopicSelector("**").is_wildcard());
    CHECK_FALSE(matches("**", "anything"));
}

TEST_CASE("exact selectors compare bytes") {
    for (auto syntax : {SelectorSyntax::topic, SelectorSyntax::exact}) {
        CHECK(matches("foo", "foo", syntax));
        CHECK_FALSE(matches("foo", "bar", syntax));
        CHECK_FALSE(matches("foo", "FOO", syntax));
        CHECK_FALSE(matches("foo", "foo ", syntax));
        CHECK_FALSE(matches("foo", "fo", syntax));
        CHECK(matches("https://example.com/books/1", "https://example.com/books/1", syntax));
        CHECK_FALSE(matches("https://example.com/books/1", "https://EXAMPLE.com/books/1", syntax));
        CHECK(matches("", "", syntax));
    }
    SUBCASE("match= never reads a template") {
        TopicSelector s("https://example.com/{foo}/bar", SelectorSyntax::exact);
        CHECK_FALSE(s.is_template());
        CHECK_FALSE(s.matches("https://example.com/foo/bar"));
        CHECK(s.matches("https://example.com/{foo}/bar"));
    }
}

TEST_CASE("URI templates: simple expressions {var}") {
    TopicSelector s("https://example.com/books/{id}");
    CHECK(s.is_template());
    CHECK(s.matches("https://example.com/books/1"));
    CHECK(s.matches("https://example.com/books/a-b.c_d~e"));
    CHECK(s.matches("https://example.com/books/a%20b"));
    CHECK(s.matches("https://example.com/books/a,b"));
    CHECK(s.matches("https://example.com/books/{id}"));  // the selector itself (step 2 of the spec)
    // An expression may expand to nothing, as in Mercure's hub (its regexp makes each optional).
    CHECK(s.matches("https://example.com/books/"));
    CHECK_FALSE(s.matches("https://example.com/books/1/reviews"));
    CHECK_FALSE(s.matches("https://example.com/books/a b"));
    CHECK_FALSE(s.matches("https://example.com/books/%zz"));
    CHECK_FALSE(s.matches("https://example.com/books/a=b"));
    CHECK_FALSE(s.matches("https://example.com/authors/1"));
    CHECK_FALSE(s.matches("https://example.com/books"));
    CHECK_FALSE(s.matches("http://example.com/books/1"));
    CHECK_FALSE(s.matches("https://example.com/books/1?x"));

    CHECK(matches("https://example.com/{fistname}/{lastname}", "https://example.com/kevin/dunglas"));
    CHECK_FALSE(matches("https://example.com/{foo}/bar", "https://example.com/foo/bar/baz"));
    CHECK(matches("https://example.com/{foo}/bar", "https://example.com/foo/bar"));
    CHECK(matches("{a}{b}", "xy"));
    CHECK(matches("/x/{a,b}", "/x/1,2"));
    CHECK_FALSE(matches("/x/{a,b}", "/x/1=2"));
    CHECK(matches("/x/{a*}", "/x/k=v,k2=v2"));  // explode: name=value pairs
    CHECK(matches("/x/{a:3}", "/x/abcdef"));     // the prefix length does not bound a match (as Mercure)
}

TEST_CASE("URI templates: reserved {+var} and fragment {#var}") {
    CHECK(matches("https://example.com/{+path}", "https://example.com/a/b/c?d=e&f#g"));
    CHECK(matches("https://example.com/{+path}", "https://example.com/"));
    CHECK_FALSE(matches("https://example.com/{+path}", "https://example.com/a b"));
    CHECK_FALSE(matches("https://example.com/{+path}", "https://example.com/a{b}"));
    CHECK(matches("{+base}/books/{id}", "https://example.com/books/1"));

    CHECK(matches("https://example.com/page{#section}", "https://example.com/page#intro"));
    CHECK(matches("https://example.com/page{#section}", "https://example.com/page#a/b"));
    CHECK(matches("https://example.com/page{#section}", "https://example.com/page"));
    CHECK_FALSE(matches("https://example.com/page{#section}", "https://example.com/page/intro"));
}

TEST_CASE("URI templates: label {.var} and path segments {/var}") {
    CHECK(matches("https://example.com/file{.ext}", "https://example.com/file.json"));
    CHECK(matches("https://example.com/file{.ext}", "https://example.com/file.tar.gz"));
    CHECK_FALSE(matches("https://example.com/file{.ext}", "https://example.com/file.x/y"));
    CHECK_FALSE(matches("https://example.com/file{.ext}", "https://example.com/filejson"));

    CHECK(matches("https://example.com{/a}", "https://example.com/x"));
    CHECK_FALSE(matches("https://example.com{/a}", "https://example.com/x/y"));
    CHECK(matches("https://example.com{/a,b}", "https://example.com/x/y"));
    CHECK(matches("https://example.com{/a,b}", "https://example.com/x"));
    CHECK_FALSE(matches("https://example.com{/a,b}", "https://example.com/x/y/z"));
    CHECK(matches("https://example.com{/a*}", "https://example.com/x/y/z"));
    CHECK(matches("https://example.com{/a,b*}", "https://example.com/x/y/z/w"));
    CHECK_FALSE(matches("https://example.com{/a*}", "https://example.com/x/y z"));
    CHECK(matches("https://example.com{/a}/books", "https://example.com/x/books"));
}

TEST_CASE("URI templates: parameters {;var}, query {?var} and continuation {&var}") {
    CHECK(matches("/m{;x,y}", "/m;x=1;y=2"));
    CHECK(matches("/m{;x,y}", "/m;x"));
    CHECK_FALSE(matches("/m{;x,y}", "/m;x=1;y=2;z=3"));
    CHECK(matches("/m{;x*}", "/m;x=1;y=2;z=3"));

    CHECK(matches("https://example.com/search{?q,lang}", "https://example.com/search?q=a&lang=fr"));
    CHECK(matches("https://example.com/search{?q,lang}", "https://example.com/search?q=a"));
    CHECK(matches("https://example.com/search{?q,lang}", "https://example.com/search"));
    CHECK_FALSE(matches("https://example.com/search{?q,lang}", "https://example.com/search?q=a&lang=fr&x=1"));
    CHECK_FALSE(matches("https://example.com/search{?q,lang}", "https://example.com/search&q=a"));
    CHECK(matches("https://example.com/search{?q*}", "https://example.com/search?a=1&b=2&c=3"));
    CHECK_FALSE(matches("https://example.com/search{?q}", "https://example.com/search?q=a/b"));

    CHECK(matches("https://example.com/s?fixed=1{&x}", "https://example.com/s?fixed=1&x=2"));
    CHECK(matches("https://example.com/s?fixed=1{&x,y}", "https://example.com/s?fixed=1&x=2&y=3"));
    CHECK_FALSE(matches("https://example.com/s?fixed=1{&x}", "https://example.com/s?fixed=1&x=2&y=3"));
}

TEST_CASE("URI templates: a selector that is not one matches by equality alone") {
    for (const char* text : {"https://example.com/{id", "https://example.com/{}", "https://example.com/{=x}",
                             "https://example.com/{x:0}", "https://example.com/{x:10000}", "https://example.com/{x y}",
                             "https://example.com/a b/{x}", "https://example.com/{x}}", "https://example.com/{.x.}",
                             "https://example.com/{x|y}", "https://example.com/%zz/{x}", "{x*:3}"}) {
        CAPTURE(text);
        TopicSelector s(text);
        CHECK_FALSE(s.is_template());
        CHECK(s.matches(text));
        CHECK_FALSE(s.matches("https://example.com/1"));
    }
    CHECK(TopicSelector("https://example.com/{x:9999}").is_template());
    CHECK(TopicSelector("https://example.com/{x.y,z%41}").is_template());
    CHECK(TopicSelector("https://example.com/caf\xc3\xa9/{x}").is_template());
    CHECK(matches("https://example.com/caf\xc3\xa9/{x}", "https://example.com/caf\xc3\xa9/1"));
    CHECK_FALSE(TopicSelector("https://example.com/\xc3/{x}").is_template());  // not UTF-8
}

TEST_CASE("URL patterns (match_urlpattern=)") {
    SUBCASE("named groups") {
        CHECK(pattern("https://example.com/books/:id", "https://example.com/books/123"));
        CHECK_FALSE(pattern("https://example.com/books/:id", "https://example.com/authors/123"));
        CHECK_FALSE(pattern("https://example.com/books/:id", "https://example.com/books/"));
        CHECK_FALSE(pattern("https://example.com/books/:id", "https://example.com/books/1/2"));
        CHECK(pattern("https://example.com/users/:uid/posts/:pid", "https://example.com/users/42/posts/99"));
        CHECK_FALSE(pattern("https://example.com/users/:uid/posts/:pid", "https://example.com/users/42"));
        CHECK(pattern("https://example.com/books/:id.json", "https://example.com/books/1.json"));
    }
    SUBCASE("wildcards") {
        CHECK(pattern("https://example.com/*", "https://example.com/a/b/c"));
        CHECK(pattern("https://example.com/*", "https://example.com"));
        CHECK(pattern("https://example.com/books/*", "https://example.com/books/"));
        CHECK_FALSE(pattern("https://example.com/books/*", "https://example.com/books"));
        CHECK(pattern("*://example.com/books/:id", "http://example.com/books/1"));
        CHECK(pattern("*://example.com/books/:id", "wss://example.com/books/1"));
        CHECK(pattern("https://:sub.example.com/*", "https://a.example.com/x"));
        CHECK_FALSE(pattern("https://:sub.example.com/*", "https://a.b.example.com/x"));
        CHECK(pattern("https://*.example.com/*", "https://a.b.example.com/x"));
    }
    SUBCASE("the URL's other parts: search and hash are wildcards unless given, the port is the default") {
        CHECK(pattern("https://example.com/books/:id", "https://example.com/books/1?x=1#top"));
        CHECK(pattern("https://example.com/books/:id", "https://example.com:443/books/1"));
        CHECK_FALSE(pattern("https://example.com/books/:id", "https://example.com:8443/books/1"));
        CHECK(pattern("https://example.com:8443/books/:id", "https://example.com:8443/books/1"));
        CHECK(pattern("https://example.com:*/books/:id", "https://example.com:8443/books/1"));
        CHECK(pattern("https://example.com/books?lang=:l", "https://example.com/books?lang=fr"));
        // Outside the host and the path a group stops at nothing (URL Pattern's segment wildcard there).
        CHECK(pattern("https://example.com/books?lang=:l", "https://example.com/books?lang=fr&x"));
        CHECK_FALSE(pattern("https://example.com/books?lang=:l", "https://example.com/books"));
        CHECK(pattern("https://example.com/books#:part", "https://example.com/books#intro"));
        CHECK(pattern("https://example.com/books\\:id", "https://example.com/books:id"));  // escaped: text
        CHECK_FALSE(pattern("https://example.com/books\\:id", "https://example.com/books1"));
        CHECK(pattern("mailto:*", "mailto:a@example.com"));
        CHECK_FALSE(pattern("mailto:*", "https://example.com/"));
    }
    SUBCASE("case: hosts and schemes are not case-sensitive, the rest is") {
        CHECK(pattern("https://example.com/books/:id", "https://EXAMPLE.com/books/123"));
        CHECK(pattern("HTTPS://Example.COM/books/:id", "https://example.com/books/123"));
        CHECK_FALSE(pattern("https://example.com/books/:id", "https://example.com/BOOKS/123"));
    }
    SUBCASE("relative patterns and topics are taken against the hub's URL") {
        CHECK(pattern("/.well-known/mercure/subscriptions/exact/:match/:subscriber",
                      "/.well-known/mercure/subscriptions/exact/foo/bar"));
        CHECK(pattern("/books/:id", "/books/123"));
        CHECK_FALSE(pattern("/books/:id", "/authors/123"));
        CHECK_FALSE(pattern("/books/:id", "https://example.com/books/123"));
        CHECK_FALSE(pattern("https://example.com/books/:id", "/books/123"));

        auto hub = "https://hub.example.com/.well-known/mercure";
        CHECK(pattern("/books/:id", "https://hub.example.com/books/123", hub));
        CHECK(pattern("https://hub.example.com/books/:id", "/books/123", hub));
        CHECK_FALSE(pattern("/books/:id", "https://other.example.com/books/123", hub));
        // A relative path replaces the last segment of the hub's path (RFC 3986, 5.2.3).
        CHECK(pattern("/.well-known/:x", "subscriptions", hub));
        CHECK_FALSE(pattern("/.well-known/mercure/:x", "subscriptions", hub));
    }
    SUBCASE("a topic that is not a URL matches no pattern") {
        CHECK_FALSE(pattern("https://example.com/*", "not a url"));
        CHECK_FALSE(pattern("https://example.com/*", "https://example.com:99999/"));
        CHECK_FALSE(pattern("https://example.com/*", "https://example.com:x/"));
    }
    SUBCASE("what the subset refuses, with a reason") {
        CHECK_THROWS_WITH_AS(TopicSelector("https://example.com/books/(\\d+)", SelectorSyntax::urlpattern),
                             "regexp groups '(...)' in URL patterns are not supported", SelectorError);
        CHECK_THROWS_WITH_AS(TopicSelector("{unclosed", SelectorSyntax::urlpattern),
                             "groups '{...}' in URL patterns are not supported", SelectorError);
        CHECK_THROWS_WITH_AS(TopicSelector("/books/:id?", SelectorSyntax::urlpattern),
                             "the URL pattern's modifier '?' after a group is not supported", SelectorError);
        CHECK_THROWS_AS(TopicSelector("/books/:id+", SelectorSyntax::urlpattern), SelectorError);
        CHECK_THROWS_AS(TopicSelector("/books/**", SelectorSyntax::urlpattern), SelectorError);
        CHECK_THROWS_AS(TopicSelector("books/:id", SelectorSyntax::urlpattern), SelectorError);
        CHECK_THROWS_AS(TopicSelector("", SelectorSyntax::urlpattern), SelectorError);
        CHECK_THROWS_AS(TopicSelector("https://user@example.com/", SelectorSyntax::urlpattern), SelectorError);
        CHECK_THROWS_AS(TopicSelector("/a\\", SelectorSyntax::urlpattern), SelectorError);
        CHECK_THROWS_WITH_AS(TopicSelector("/a", SelectorSyntax::urlpattern, "not-absolute"),
                             "the hub's URL is not an absolute URL", SelectorError);
        // Valid: the syntaxes a URL pattern shares with a template do not make it one.
        CHECK_NOTHROW(TopicSelector("https://example.com/books/:id", SelectorSyntax::urlpattern));
        CHECK_NOTHROW(TopicSelector("*://example.com/books/:id", SelectorSyntax::urlpattern));
    }
}

TEST_CASE("SelectorSet: any selector against the canonical topic or an alternate") {
    SelectorSet set;
    CHECK(set.empty());
    CHECK_FALSE(set.matches_any(std::vector<std::string>{"https://example.com/books/1"}));
    set.add(TopicSelector("https://example.com/books/{id}"));
    set.add(TopicSelector("https://example.com/authors/:id", SelectorSyntax::urlpattern));
    CHECK(set.size() == 2);

    using Topics = std::vector<std::string>;
    CHECK(set.matches_any(Topics{"https://example.com/books/1"}));
    CHECK(set.matches_any(Topics{"https://example.com/authors/1"}));
    // The canonical topic misses, an alternate matches.
    CHECK(set.matches_any(Topics{"https://example.com/reviews/9", "https://example.com/books/1"}));
    CHECK(set.matches_any(std::vector<std::string_view>{"https://example.com/reviews/9", "https://example.com/authors/2"}));
    CHECK_FALSE(set.matches_any(Topics{"https://example.com/reviews/9", "https://example.com/users/1"}));
    CHECK_FALSE(set.matches_any(Topics{}));
}

TEST_CASE("bounds: long selectors and pathological inputs") {
    std::string long_selector(fastsse::max_selector_bytes + 1, 'a');
    for (auto syntax : {SelectorSyntax::topic, SelectorSyntax::exact, SelectorSyntax::urlpattern})
        CHECK_THROWS_WITH_AS(TopicSelector(long_selector, syntax), "the topic selector is longer than 2048 bytes",
                             SelectorError);
    CHECK_NOTHROW(TopicSelector(std::string(fastsse::max_selector_bytes, 'a')));

    std::string many;
    for (size_t i = 0; i <= fastsse::max_selector_expressions; ++i) many += "{a}";
    CHECK_THROWS_WITH_AS(TopicSelector{many}, "the URI template has more than 32 expressions", SelectorError);
    many.resize(many.size() - 3);
    TopicSelector most(many);
    CHECK(most.is_template());

    std::string pat = "/";
    for (size_t i = 0; i <= fastsse::max_selector_expressions; ++i) pat += ":a/";
    CHECK_THROWS_WITH_AS(TopicSelector(pat, SelectorSyntax::urlpattern), "the URL pattern has more than 32 groups",
                         SelectorError);

    auto took = [](auto&& f) {
        auto start = std::chrono::steady_clock::now();
        f();
        return std::chrono::steady_clock::now() - start;
    };
    using namespace std::chrono_literals;
    SUBCASE("32 ambiguous expressions over a long topic: answered, in bounded time") {
        std::string topic(1000, 'a');
        CHECK(took([&] { CHECK(most.matches(topic)); }) < 2s);
        topic += '!';  // no expression takes '!': every split must be tried, and none matches
        CHECK(took([&] { CHECK_FALSE(most.matches(topic)); }) < 2s);
    }
    SUBCASE("a crafted template past the step bound: no match, at once") {
        // {a} then 2000 literal a's: each byte of a long run of a's keeps up to 2000 states alive.
        std::string crafted = "{a}" + std::string(2000, 'a');
        TopicSelector s(crafted);
        std::string topic(200000, 'a');
        CHECK(took([&] { CHECK_FALSE(s.matches(topic)); }) < 2s);
        TopicSelector shorter("{a}" + std::string(500, 'a'));
        CHECK(shorter.matches(std::string(505, 'a')));  // short enough to be decided within the bound
    }
    SUBCASE("real selectors on long topics: the bound grows with the topic") {
        std::string id(1 << 21, '7');
        CHECK(took([&] { CHECK(TopicSelector("https://example.com/books/{id}").matches("https://example.com/books/" + id)); }) < 2s);
        CHECK(TopicSelector("https://example.com/{+path}{?q*}").matches("https://example.com/" + id + "/x?q=1&r=2"));
        CHECK(pattern("https://example.com/*", "https://example.com/" + id));
        CHECK(pattern("https://example.com/books/:id", "https://example.com/books/" + id));
    }
    SUBCASE("URL patterns of many wildcards") {
        std::string stars = "https://example.com/";
        for (int i = 0; i < 16; ++i) stars += "*a";
        TopicSelector s(stars, SelectorSyntax::urlpattern);
        std::string topic = "https://example.com/" + std::string(100000, 'a') + "b";
        CHECK(took([&] { CHECK_FALSE(s.matches(topic)); }) < 2s);
        CHECK(s.matches("https://example.com/" + std::string(40, 'a')));
    }
}

TEST_CASE("selectors move") {
    TopicSelector a("https://example.com/{id}");
    TopicSelector b = std::move(a);
    CHECK(b.matches("https://example.com/1"));
    CHECK(b.text() == "https://example.com/{id}");
    CHECK(b.syntax() == SelectorSyntax::topic);
}

TEST_CASE("identifier_problem: draft 08's characters for topics, matchers, ids and types") {
    using fastsse::identifier_problem;
    for (std::string good : {"", "https://example.com/books/1", "caf\xC3\xA9", "\xE2\x9C\x93", "a b", "\xF0\x9F\x98\x80"})
        CHECK_FALSE(identifier_problem(good));
    using namespace std::string_literals;
    for (const std::string& bad : std::vector<std::string>{"a\0b"s, "a\tb", "a\nb", "a\x7F", "\xC2\x85", "\xC2\x9F",  // C0, DEL, C1
                            "\xC2\xAD", "\xE2\x80\x8B", "\xE2\x80\xAE", "\xEF\xBB\xBF", "\xF3\xA0\x80\x81",  // Cf
                            "\xFF", "\xC0\xAF", "\xE2\x80", "\xED\xA0\x80"}) {  // not UTF-8: bad byte, overlong, cut, surrogate
        CAPTURE(bad);
        CHECK(identifier_problem(bad));
    }
}

TEST_CASE("in_hub_namespace: the hub's path and below, however spelt, any scheme or host") {
    using fastsse::in_hub_namespace;
    std::string_view hub = "https://example.com/.well-known/mercure";
    for (std::string_view inside : {"/.well-known/mercure", "/.well-known/mercure/", "/.well-known/mercure/subscriptions/a/b",
                        "https://other.example/.well-known/mercure/x", "http://example.com:8080/.well-known/mercure",
                        "/.well-known/%6Dercure/x", "/.well-known/%6dercure", "/x/../.well-known/mercure/y",
                        "/.well-known/./mercure", "mercure/x", "//evil.example/.well-known/mercure"}) {
        CAPTURE(inside);
        CHECK(in_hub_namespace(inside, hub));
    }
    for (std::string_view outside : {"/.well-known/mercurey", "/.well-known/mercure-x/y", "/books/1", "urn:.well-known:mercure",
                         "https://example.com/.well-known/%2Fmercure", "/.well-known/mercure%2Fx", "*", ""}) {
        CAPTURE(outside);
        CHECK_FALSE(in_hub_namespace(outside, hub));
    }
    CHECK(in_hub_namespace("/hub/x", "https://example.com/hub"));
    CHECK_FALSE(in_hub_namespace("/anything", "https://example.com/"));  // a hub at the root reserves nothing
}
