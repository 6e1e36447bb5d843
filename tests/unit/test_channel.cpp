// The channel core (include/fastsse/channels/) through the in-process store: fan-out of one
// encoding, the history's bounds, replay after an id, subscribers that leave or join while a
// publish goes on, and what a small room() lets through. No loop: a channel calls its sinks at once.
#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

#include "support.hpp"
#include "fastsse/channels/channel.hpp"
#include "fastsse/channels/memory_store.hpp"
#include "fastsse/sse/event.hpp"

using fastsse::Channel;
using fastsse::ChannelSubscription;
using fastsse::Event;
using fastsse::HistoryLimits;
using fastsse::MemoryStore;

namespace {

using Sink = fastsse_test::ChannelSink;

// The Event views its arguments: use it within the full expression that makes them.
Event line(const std::string& id, const std::string& data) { return Event{"line", data, id, std::nullopt}; }

// Publishes events "e1".."en" with data "data 1".."data n".
void publish_numbered(Channel& channel, int n) {
    for (int i = 1; i <= n; ++i) channel.publish(line("e" + std::to_string(i), "data " + std::to_string(i)));
}

std::vector<std::string> ids(int first, int last) {
    std::vector<std::string> out;
    for (int i = first; i <= last; ++i) out.push_back("e" + std::to_string(i));
    return out;
}

// The ids a new subscriber is replayed after `last_id`.
std::vector<std::string> replayed(Channel& channel, std::string_view last_id = "", size_t room = SIZE_MAX) {
    Sink s;
    s.room_left = room;
    auto sub = channel.subscribe(s, last_id);
    return s.ids();
}

}  // namespace

TEST_CASE("Channel: one encoding, the same bytes to every subscriber") {
    MemoryStore store;
    auto& channel = store.channel("news", HistoryLimits{10});
    Sink a, b, c;
    auto sa = channel.subscribe(a, ""), sb = channel.subscribe(b, ""), sc = channel.subscribe(c, "");
    CHECK(channel.subscribers() == 3);

    Event e{"line", "two\nlines", "1", std::nullopt};
    channel.publish(e);
    for (auto* s : {&a, &b, &c}) {
        REQUIRE(s->calls.size() == 1);
        CHECK(s->calls[0].encoded == fastsse::encode(e));
        CHECK(s->calls[0].sent.event == "line");
        CHECK(s->calls[0].sent.data == "two\nlines");
        CHECK(s->calls[0].sent.id == "1");
    }
    // Not three encodings that happen to be equal: the very same bytes.
    CHECK(a.where[0] == b.where[0]);
    CHECK(a.where[0] == c.where[0]);

    // A late joiner gets the same bytes from the history.
    Sink d;
    auto sd = channel.subscribe(d, "");
    REQUIRE(d.calls.size() == 1);
    CHECK(d.calls[0].encoded == a.calls[0].encoded);
}

TEST_CASE("Channel: an event without an id goes to the subscribers, not into the history") {
    MemoryStore store;
    auto& channel = store.channel("c", HistoryLimits{10});
    Sink a;
    auto sa = channel.subscribe(a, "");
    channel.publish(line("1", "kept"));
    channel.publish(Event{"exit", "gone", std::nullopt, std::nullopt});
    REQUIRE(a.calls.size() == 2);
    CHECK_FALSE(a.calls[1].sent.id);
    CHECK(replayed(channel) == std::vector<std::string>{"1"});
}

TEST_CASE("Channel: a bad name or id throws, and nothing is kept or sent") {
    MemoryStore store;
    auto& channel = store.channel("c", HistoryLimits{10});
    Sink a;
    auto sa = channel.subscribe(a, "");
    CHECK_THROWS_AS(channel.publish(line("1\nevent: forged", "x")), fastsse::EventError);
    CHECK_THROWS_AS(channel.publish(Event{"bad\rname", "x", "2", std::nullopt}), fastsse::EventError);
    CHECK(a.calls.empty());
    CHECK(replayed(channel).empty());
}

TEST_CASE("Channel: the history keeps the newest max_events") {
    MemoryStore store;
    auto& three = store.channel("three", HistoryLimits{3});
    publish_numbered(three, 5);
    CHECK(replayed(three) == ids(3, 5));

    auto& none = store.channel("none", HistoryLimits{0});
    publish_numbered(none, 5);
    CHECK(replayed(none).empty());
    CHECK(replayed(none, "e2").empty());
}

TEST_CASE("Channel: the history keeps no more than max_bytes of encoded events") {
    MemoryStore store;
    // Every event here encodes to the same size.
    auto size = fastsse::encode(line("e1", "data 1")).size();
    struct Case {
        size_t max_bytes;
        std::vector<std::string> kept;
    };
    const Case cases[] = {
        {SIZE_MAX, ids(1, 5)},
        {5 * size, ids(1, 5)},
        {2 * size, ids(4, 5)},
        {2 * size + 1, ids(4, 5)},
        {2 * size - 1, ids(5, 5)},
        {size, ids(5, 5)},
        {size - 1, {}},  // the newest alone is too big: nothing is kept
    };
    int n = 0;
    for (const auto& c : cases) {
        CAPTURE(c.max_bytes);
        auto& channel = store.channel("bytes " + std::to_string(n++), HistoryLimits{100, c.max_bytes});
        publish_numbered(channel, 5);
        CHECK(replayed(channel) == c.kept);
    }

    // Both bounds at once: whichever is passed first.
    auto& both = store.channel("both", HistoryLimits{2, 3 * size});
    publish_numbered(both, 5);
    CHECK(replayed(both) == ids(4, 5));
    auto& bytes_first = store.channel("bytes first", HistoryLimits{4, 3 * size});
    publish_numbered(bytes_first, 5);
    CHECK(replayed(bytes_first) == ids(3, 5));

    // A big event pushes out as many old ones as it takes; later ones are kept again.
    auto& big = store.channel("big", HistoryLimits{100, 3 * size});
    publish_numbered(big, 3);
    big.publish(line("huge", std::string(2 * size, 'x')));
    CHECK(replayed(big) == std::vector<std::string>{"huge"});
    big.publish(line("too big", std::string(3 * size, 'x')));
    CHECK(replayed(big).empty());
    big.publish(line("after", "small"));
    CHECK(replayed(big) == std::vector<std::string>{"after"});
}

TEST_CASE("Channel: replay after an id: the events after it, or all of them when it is unknown") {
    MemoryStore store;
    auto& channel = store.channel("c", HistoryLimits{4});
    publish_numbered(channel, 6);  // keeps e3..e6
    CHECK(replayed(channel, "e3") == ids(4, 6));
    CHECK(replayed(channel, "e5") == ids(6, 6));
    CHECK(replayed(channel, "e6").empty());  // up to date
    CHECK(replayed(channel, "") == ids(3, 6));
    CHECK(replayed(channel, "e2") == ids(3, 6));   // pushed out already
    CHECK(replayed(channel, "e99") == ids(3, 6));  // never given
    CHECK(replayed(channel, "E4") == ids(3, 6));   // ids are compared as they are, nothing more
    CHECK(replayed(channel, "e4 ") == ids(3, 6));

    // After the replay, the live events.
    Sink s;
    auto sub = channel.subscribe(s, "e5");
    channel.publish(line("e7", "data 7"));
    CHECK(s.ids() == ids(6, 7));
}

// Mercure 1.0 ("Reconnection, State Reconciliation, and Event Sourcing"): an id shared by several
// updates in the history resolves to the earliest of them, and every update after it is sent, the
// later ones with the same id too. A client may get an event twice; it never misses one.
TEST_CASE("Channel: an id given twice stands for its oldest event still kept") {
    MemoryStore store;
    auto& channel = store.channel("c", HistoryLimits{3});
    channel.publish(line("same", "1"));
    channel.publish(line("other", "2"));
    channel.publish(line("same", "3"));
    CHECK(replayed(channel, "same") == (std::vector<std::string>{"other", "same"}));
    // The first "same" leaves the history; the second one counts now.
    channel.publish(line("last", "4"));
    CHECK(replayed(channel, "same") == std::vector<std::string>{"last"});
    channel.publish(line("x", "5"));
    channel.publish(line("y", "6"));  // now the second "same" is gone too
    CHECK(replayed(channel, "same") == (std::vector<std::string>{"last", "x", "y"}));
    // Given a third time, alone: it stands for that one.
    channel.publish(line("same", "7"));
    CHECK(replayed(channel, "same").empty());
    CHECK(replayed(channel, "x") == (std::vector<std::string>{"y", "same"}));
}

TEST_CASE("Channel: a subscriber with little room gets only the newest events that fit") {
    MemoryStore store;
    auto& channel = store.channel("c", HistoryLimits{10});
    publish_numbered(channel, 5);
    auto cost = fastsse::queued_size(fastsse::encode(line("e1", "data 1")));
    CHECK(cost > fastsse::encode(line("e1", "data 1")).size());  // the stream's framing counts too
    CHECK(replayed(channel, "", 3 * cost) == ids(3, 5));
    CHECK(replayed(channel, "", 3 * cost - 1) == ids(4, 5));
    CHECK(replayed(channel, "", cost) == ids(5, 5));
    CHECK(replayed(channel, "", cost - 1).empty());
    CHECK(replayed(channel, "", 0).empty());
    // After an id: of what is left, the newest that fit.
    CHECK(replayed(channel, "e1", 2 * cost) == ids(4, 5));
    CHECK(replayed(channel, "e3", 5 * cost) == ids(4, 5));
}

TEST_CASE("Channel: a subscriber that leaves during a fan-out gets nothing more; the others go on") {
    MemoryStore store;
    auto& channel = store.channel("c", HistoryLimits{10});

    SUBCASE("an earlier subscriber makes a later one leave") {
        Sink a, b, c;
        ChannelSubscription sa = channel.subscribe(a, ""), sb = channel.subscribe(b, ""), sc = channel.subscribe(c, "");
        a.on_send = [&] { sb.reset(); };
        channel.publish(line("1", "x"));
        CHECK(a.calls.size() == 1);
        CHECK(b.calls.empty());
        CHECK(c.calls.size() == 1);
        CHECK(channel.subscribers() == 2);
        channel.publish(line("2", "y"));
        CHECK(a.ids() == std::vector<std::string>{"1", "2"});
        CHECK(c.ids() == std::vector<std::string>{"1", "2"});
    }
    SUBCASE("a subscriber leaves from its own send") {
        Sink a, b;
        ChannelSubscription sa = channel.subscribe(a, ""), sb = channel.subscribe(b, "");
        a.on_send = [&] { sa.reset(); };
        channel.publish(line("1", "x"));
        channel.publish(line("2", "y"));
        CHECK(a.ids() == std::vector<std::string>{"1"});
        CHECK(b.ids() == std::vector<std::string>{"1", "2"});
    }
    SUBCASE("a later subscriber is destroyed, its sink and subscription with it") {
        struct Viewer {
            Sink sink;                  // declared first: destroyed after the subscription
            ChannelSubscription subscription;
        };
        Sink a;
        auto sa = channel.subscribe(a, "");
        std::vector<std::unique_ptr<Viewer>> viewers;
        for (int i = 0; i < 4; ++i) {
            viewers.push_back(std::make_unique<Viewer>());
            viewers.back()->subscription = channel.subscribe(viewers.back()->sink, "");
        }
        a.on_send = [&] {
            viewers[1].reset();
            viewers[2].reset();
        };
        channel.publish(line("1", "x"));
        CHECK(viewers[0]->sink.ids() == std::vector<std::string>{"1"});
        CHECK(viewers[3]->sink.ids() == std::vector<std::string>{"1"});
        CHECK(channel.subscribers() == 3);
    }
    SUBCASE("many leave during one fan-out, each from its own send") {
        std::vector<std::unique_ptr<Sink>> sinks;
        std::vector<ChannelSubscription> subs(100);
        for (size_t i = 0; i < subs.size(); ++i) {
            sinks.push_back(std::make_unique<Sink>());
            subs[i] = channel.subscribe(*sinks[i], "");
            if (i % 3 != 0) sinks[i]->on_send = [&subs, i] { subs[i].reset(); };
        }
        channel.publish(line("1", "x"));
        channel.publish(line("2", "y"));
        for (size_t i = 0; i < sinks.size(); ++i) {
            CAPTURE(i);
            CHECK(sinks[i]->calls.size() == (i % 3 == 0 ? 2u : 1u));
        }
        CHECK(channel.subscribers() == 34);
    }
}

TEST_CASE("Channel: one who subscribes during a fan-out gets that event once, from the history") {
    MemoryStore store;
    auto& channel = store.channel("c", HistoryLimits{10});
    Sink a, late;
    ChannelSubscription sa = channel.subscribe(a, ""), slate;
    a.on_send = [&] {
        if (!slate) slate = channel.subscribe(late, "");
    };
    channel.publish(line("1", "x"));
    CHECK(late.ids() == std::vector<std::string>{"1"});
    channel.publish(line("2", "y"));
    CHECK(late.ids() == std::vector<std::string>{"1", "2"});
}

TEST_CASE("Channel: subscriptions leave when reset or destroyed, once; a moved one leaves once") {
    MemoryStore store;
    auto& channel = store.channel("c", HistoryLimits{0});
    Sink a, b;
    {
        auto sa = channel.subscribe(a, "");
        auto moved = std::move(sa);
        CHECK_FALSE(sa);
        CHECK(moved);
        CHECK(channel.subscribers() == 1);
        sa.reset();  // the moved-from one: nothing
        CHECK(channel.subscribers() == 1);
        auto sb = channel.subscribe(b, "");
        sb = std::move(moved);  // b leaves, a's subscription lives on in sb
        CHECK(channel.subscribers() == 1);
        channel.publish(line("1", "x"));
        CHECK(a.calls.size() == 1);
        CHECK(b.calls.empty());
        sb.reset();
        sb.reset();
        CHECK(channel.subscribers() == 0);
    }
    CHECK(channel.subscribers() == 0);
    channel.publish(line("2", "y"));
    CHECK(a.calls.size() == 1);
}

TEST_CASE("Channel: finish() ends every subscriber's stream, with the retry hint") {
    MemoryStore store;
    auto& channel = store.channel("c", HistoryLimits{10});
    Sink a, b;
    auto sa = channel.subscribe(a, ""), sb = channel.subscribe(b, "");
    channel.publish(Event{"exit", "done", std::nullopt, std::nullopt});
    channel.finish(std::chrono::milliseconds(1234));
    for (auto* s : {&a, &b}) {
        REQUIRE(s->calls.size() == 2);
        CHECK(s->calls[0].sent.event == "exit");
        CHECK(s->calls[1].finished);
        CHECK(s->calls[1].retry == std::optional(std::chrono::milliseconds(1234)));
    }
    CHECK(channel.subscribers() == 2);  // until their streams go
}

TEST_CASE("MemoryStore: channels by name; one removed starts anew") {
    MemoryStore store;
    auto& a = store.channel("a", HistoryLimits{10});
    CHECK(&store.channel("a", HistoryLimits{1}) == &a);  // it exists: its own limits stay
    CHECK(&store.channel("b", HistoryLimits{10}) != &a);
    CHECK(store.size() == 2);
    publish_numbered(a, 3);
    CHECK(replayed(store.channel("a", HistoryLimits{1})) == ids(1, 3));

    store.remove("a");
    store.remove("a");
    store.remove("never there");
    CHECK(store.size() == 1);
    CHECK(replayed(store.channel("a", HistoryLimits{10})).empty());
}
