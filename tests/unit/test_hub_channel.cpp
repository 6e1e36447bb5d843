// The channel core as the Mercure hub uses it (include/fastsse/channels/channel.hpp): updates with
// topics and a private flag, subscribers that say what they want (an Interest), the replay after an
// id filtered the same way, what a resume answers for the response headers, the history's bounds
// with the topics counted, and a fan-out to 10,000 subscribers that allocates nothing per
// subscriber (this executable counts every operator new).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <vector>

#include "support.hpp"
#include "fastsse/channels/channel.hpp"
#include "fastsse/channels/memory_store.hpp"
#include "fastsse/sse/event.hpp"

// Every allocation of this test program, counted: the fan-out test compares the count before and
// after one publish. (Replacing these four replaces the others: the standard's nothrow and array
// forms call them.) GCC takes the malloc inside for the allocation and warns that free() does not
// match it.
namespace {
size_t allocations = 0;
}
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpragmas"
#pragma GCC diagnostic ignored "-Wunknown-warning-option"
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(size_t size) {
    ++allocations;
    if (void* p = std::malloc(size ? size : 1)) return p;
    throw std::bad_alloc();
}
void* operator new[](size_t size) { return operator new(size); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop

using fastsse::Channel;
using fastsse::ChannelSubscription;
using fastsse::earliest_id;
using fastsse::Event;
using fastsse::HistoryLimits;
using fastsse::Interest;
using fastsse::Joined;
using fastsse::MemoryStore;
using fastsse::UpdateMeta;

namespace {

// As a Mercure subscriber's selectors and token would decide, reduced to exact topics: an update
// is wanted when one of its topics is in `topics` ("*": any), and, when it is private, one of them
// is also in `may_read` (the token's subscribe claim).
class Topics final : public Interest {
public:
    explicit Topics(std::vector<std::string> topics, std::vector<std::string> may_read = {})
        : topics_(std::move(topics)), may_read_(std::move(may_read)) {}
    bool wants(const UpdateMeta& u) const override {
        ++asked;
        auto any_in = [&u](const std::vector<std::string>& list) {
            return std::any_of(u.topics.begin(), u.topics.end(), [&list](const std::string& t) {
                return std::any_of(list.begin(), list.end(), [&t](const std::string& s) { return s == "*" || s == t; });
            });
        };
        return any_in(topics_) && (!u.is_private || any_in(may_read_));
    }
    mutable size_t asked = 0;

private:
    std::vector<std::string> topics_, may_read_;
};

// One Mercure update, owning what its Event and UpdateMeta view.
struct Update {
    std::string id;
    std::vector<std::string> topics;
    bool is_private = false;
    std::string data = "x";
    std::string type = "";
};

void publish(Channel& channel, const Update& u) {
    channel.publish(Event{u.type, u.data, u.id, std::nullopt}, UpdateMeta{u.topics, u.is_private});
}

using Sink = fastsse_test::ChannelSink;

using Ids = std::vector<std::string>;

// What a new subscriber with `interest` is replayed after `last_id`, and the answer it got.
struct Replayed {
    Ids ids;
    fastsse::Resume resume;
};
Replayed replayed(Channel& channel, std::optional<std::string_view> last_id, const Interest* interest,
                  size_t room = SIZE_MAX) {
    Sink s;
    s.room_left = room;
    auto joined = channel.subscribe(s, last_id, interest);
    CHECK(joined.resume.replayed == s.calls.size());
    return {s.ids(), joined.resume};
}

}  // namespace

TEST_CASE("Hub channel: each subscriber gets the updates its Interest wants, all the same bytes") {
    MemoryStore store;
    auto& channel = store.channel("hub", HistoryLimits{10});
    Topics books({"https://example.com/books/1"}), authors({"https://example.com/authors/2"}), any({"*"}),
        nothing({"https://example.com/other"});
    Sink sb, sa, sany, snothing, severything;
    auto b = channel.subscribe(sb, std::nullopt, &books), a = channel.subscribe(sa, std::nullopt, &authors),
         y = channel.subscribe(sany, std::nullopt, &any), n = channel.subscribe(snothing, std::nullopt, &nothing),
         e = channel.subscribe(severything, std::nullopt, nullptr);  // no Interest: everything

    // Canonical topic first, then an alternate: either one matching is enough.
    publish(channel, {"u1", {"https://example.com/books/1", "https://example.com/authors/2"}});
    publish(channel, {"u2", {"https://example.com/authors/2"}});
    publish(channel, {"u3", {"https://example.com/books/3"}});
    CHECK(sb.ids() == Ids{"u1"});
    CHECK(sa.ids() == Ids{"u1", "u2"});
    CHECK(sany.ids() == Ids{"u1", "u2", "u3"});
    CHECK(snothing.ids().empty());
    CHECK(severything.ids() == Ids{"u1", "u2", "u3"});
    // One encoding for all: the very same bytes.
    CHECK(sb.where[0] == sa.where[0]);
    CHECK(sb.where[0] == sany.where[0]);
    CHECK(sa.where[1] == severything.where[1]);

    // Asked once per publish each; a subscriber without an Interest is asked nothing.
    CHECK(books.asked == 3);
    CHECK(nothing.asked == 3);

    // The event's fields as given: type, data, id, retry.
    std::vector<std::string> topics{"https://example.com/books/1"};
    channel.publish(Event{"book", "{\"title\": 1}", "u4", 2500}, UpdateMeta{topics});
    REQUIRE(sb.calls.size() == 2);
    CHECK(sb.calls[1].encoded == "event: book\ndata: {\"title\": 1}\nid: u4\nretry: 2500\n\n");
}

TEST_CASE("Hub channel: a private update reaches only the subscribers allowed to read one of its topics") {
    MemoryStore store;
    auto& channel = store.channel("hub", HistoryLimits{10});
    const std::string t = "https://example.com/users/7/messages";
    Topics anonymous({t}), owner({t}, {t}), other_user({t}, {"https://example.com/users/8/messages"}),
        alternate({t}, {"https://example.com/users/7"});
    Sink sanon, sowner, sother, salt;
    auto s1 = channel.subscribe(sanon, std::nullopt, &anonymous);
    auto s2 = channel.subscribe(sowner, std::nullopt, &owner);
    auto s3 = channel.subscribe(sother, std::nullopt, &other_user);
    auto s4 = channel.subscribe(salt, std::nullopt, &alternate);

    publish(channel, {"public", {t}});
    publish(channel, {"private", {t}, true});
    publish(channel, {"private alt", {t, "https://example.com/users/7"}, true});
    CHECK(sanon.ids() == Ids{"public"});
    CHECK(sowner.ids() == Ids{"public", "private", "private alt"});
    CHECK(sother.ids() == Ids{"public"});
    CHECK(salt.ids() == Ids{"public", "private alt"});

    // The same in a replay: the history keeps each update's topics and flag.
    CHECK(replayed(channel, earliest_id, &anonymous).ids == Ids{"public"});
    CHECK(replayed(channel, earliest_id, &owner).ids == (Ids{"public", "private", "private alt"}));
    CHECK(replayed(channel, "public", &alternate).ids == Ids{"private alt"});
}

TEST_CASE("Hub channel: a replay after an id sends what the Interest wants after it, then the live updates") {
    MemoryStore store;
    auto& channel = store.channel("hub", HistoryLimits{10});
    for (int i = 1; i <= 6; ++i)
        publish(channel, {"u" + std::to_string(i), {i % 2 ? "odd" : "even"}, i == 5});
    Topics odd({"odd"}), odd_private({"odd"}, {"odd"}), even({"even"});
    CHECK(replayed(channel, "u1", &odd).ids == Ids{"u3"});  // u5 is private
    CHECK(replayed(channel, "u1", &odd_private).ids == (Ids{"u3", "u5"}));
    CHECK(replayed(channel, "u3", &even).ids == (Ids{"u4", "u6"}));
    CHECK(replayed(channel, "u1", nullptr).ids == (Ids{"u2", "u3", "u4", "u5", "u6"}));
    CHECK(odd.asked == 5);  // once per entry after the id

    Sink s;
    auto joined = channel.subscribe(s, "u2", &even);
    publish(channel, {"u7", {"odd"}});
    publish(channel, {"u8", {"even"}});
    CHECK(s.ids() == (Ids{"u4", "u6", "u8"}));
}

TEST_CASE("Hub channel: what a resume answers (Mercure's Last-Event-ID response header)") {
    MemoryStore store;
    Topics books({"books"}), books_private({"books"}, {"books"});

    SUBCASE("an empty history") {
        auto& channel = store.channel("empty", HistoryLimits{10});
        for (std::string_view id : {"u1", "earliest", ""}) {
            CAPTURE(id);
            auto r = replayed(channel, id, &books);
            CHECK(r.ids.empty());
            CHECK_FALSE(r.resume.found);
            CHECK(r.resume.last_event_id == "earliest");
        }
    }

    auto& channel = store.channel("hub", HistoryLimits{4});
    publish(channel, {"u1", {"books"}});
    publish(channel, {"u2", {"books"}});
    publish(channel, {"u3", {"books"}, true});
    publish(channel, {"u4", {"authors"}});
    publish(channel, {"u5", {"books"}});
    publish(channel, {"u6", {"books"}});  // keeps u3..u6

    SUBCASE("an id in the history: itself, the updates after it") {
        auto r = replayed(channel, "u4", &books);
        CHECK(r.ids == (Ids{"u5", "u6"}));
        CHECK(r.resume.found);
        CHECK(r.resume.last_event_id == "u4");  // though the subscriber does not want u4 itself
        r = replayed(channel, "u3", &books);  // an update it may not read, but it knows its id
        CHECK(r.ids == (Ids{"u5", "u6"}));
        CHECK(r.resume.found);
        CHECK(r.resume.last_event_id == "u3");
    }
    SUBCASE("the newest id: up to date, nothing replayed") {
        auto r = replayed(channel, "u6", &books);
        CHECK(r.ids.empty());
        CHECK(r.resume.found);
        CHECK(r.resume.last_event_id == "u6");
    }
    SUBCASE("an id pushed out of the history, or never given: all of it, and earliest") {
        for (std::string_view id : {"u1", "u2", "u99", "U5", ""}) {
            CAPTURE(id);
            auto r = replayed(channel, id, &books);
            CHECK(r.ids == (Ids{"u5", "u6"}));
            CHECK_FALSE(r.resume.found);
            CHECK(r.resume.last_event_id == "earliest");
            CHECK(replayed(channel, id, &books_private).ids == (Ids{"u3", "u5", "u6"}));
        }
    }
    SUBCASE("earliest: all of it") {
        auto r = replayed(channel, earliest_id, &books_private);
        CHECK(r.ids == (Ids{"u3", "u5", "u6"}));
        CHECK_FALSE(r.resume.found);
        CHECK(r.resume.last_event_id == "earliest");
    }
    SUBCASE("no id: no replay, and nothing to answer") {
        Sink s;
        auto joined = channel.subscribe(s, std::nullopt, &books);
        CHECK(s.calls.empty());
        CHECK_FALSE(joined.resume.found);
        CHECK(joined.resume.last_event_id.empty());
        CHECK(joined.resume.replayed == 0);
        publish(channel, {"u7", {"books"}});
        CHECK(s.ids() == Ids{"u7"});
    }
    SUBCASE("too little room: the newest that fit, after the newest wanted update left out") {
        auto cost = fastsse::queued_size(fastsse::encode(Event{"", "x", "u5", std::nullopt}));
        auto r = replayed(channel, "u3", &books, cost);
        CHECK(r.ids == Ids{"u6"});
        CHECK(r.resume.found);
        CHECK(r.resume.last_event_id == "u5");
        // Left out: u5; u4 and u3 are not wanted and never named.
        r = replayed(channel, earliest_id, &books, cost);
        CHECK(r.ids == Ids{"u6"});
        CHECK(r.resume.last_event_id == "u5");
        r = replayed(channel, "u4", &books, 0);
        CHECK(r.ids.empty());
        CHECK(r.resume.last_event_id == "u6");
        // Everything fits: the id asked for.
        r = replayed(channel, "u4", &books, 2 * cost);
        CHECK(r.ids == (Ids{"u5", "u6"}));
        CHECK(r.resume.last_event_id == "u4");
    }
}

TEST_CASE("Hub channel: the history counts topics against max_bytes and keeps each entry's own") {
    MemoryStore store;
    auto size = fastsse::encode(Event{"", "x", "u1", std::nullopt}).size();
    const std::string topic(100, 't');
    // Two updates of `size` bytes and one 100-byte topic each fit in 2 * (size + 100), not three.
    auto& channel = store.channel("hub", HistoryLimits{100, 2 * (size + 100)});
    for (int i = 1; i <= 5; ++i) publish(channel, {"u" + std::to_string(i), {topic}});
    CHECK(replayed(channel, earliest_id, nullptr).ids == (Ids{"u4", "u5"}));
    // Without topics, the same bytes hold more of them.
    auto& bare = store.channel("bare", HistoryLimits{100, 2 * (size + 100)});
    for (int i = 1; i <= 5; ++i) publish(bare, {"u" + std::to_string(i), {}});
    CHECK(replayed(bare, earliest_id, nullptr).ids.size() == 5);

    // Many updates through a small history: each entry left keeps its own topics and flag.
    auto& ring = store.channel("ring", HistoryLimits{7});
    for (int i = 1; i <= 1000; ++i)
        publish(ring, {"u" + std::to_string(i), {"t" + std::to_string(i % 3), "all"}, i % 2 == 0});
    Topics t0({"t0"}), t0_private({"t0"}, {"t0"}), all_public({"all"});
    // Kept: u994..u1000; of those, t0 are u996 (private: even) and u999.
    CHECK(replayed(ring, earliest_id, &t0).ids == (Ids{"u999"}));
    CHECK(replayed(ring, earliest_id, &t0_private).ids == (Ids{"u996", "u999"}));
    CHECK(replayed(ring, "u995", &all_public).ids == (Ids{"u997", "u999"}));
    CHECK(replayed(ring, "u993", &all_public).resume.last_event_id == "earliest");  // pushed out
}

TEST_CASE("Hub channel: subscribers with an Interest may leave or publish during a fan-out or a replay") {
    MemoryStore store;
    auto& channel = store.channel("hub", HistoryLimits{10});
    Topics books({"books"});

    SUBCASE("one makes a later one leave; one leaves from its own send") {
        Sink a, b, c;
        ChannelSubscription sa = channel.subscribe(a, std::nullopt, &books).subscription,
                            sb = channel.subscribe(b, std::nullopt, &books).subscription,
                            sc = channel.subscribe(c, std::nullopt, &books).subscription;
        a.on_send = [&] { sb.reset(); };
        c.on_send = [&] { sc.reset(); };
        publish(channel, {"u1", {"books"}});
        publish(channel, {"u2", {"books"}});
        CHECK(a.ids() == (Ids{"u1", "u2"}));
        CHECK(b.ids().empty());
        CHECK(c.ids() == Ids{"u1"});
        CHECK(channel.subscribers() == 1);
        CHECK(books.asked == 3);  // a and c, then a: one gone is not asked
    }
    SUBCASE("a publish from inside a send goes to everyone, the earlier subscribers included") {
        Sink a, b;
        auto sa = channel.subscribe(a, std::nullopt, &books), sb = channel.subscribe(b, std::nullopt, &books);
        a.on_send = [&] {
            if (a.calls.size() == 1) publish(channel, {"reply", {"books"}});
        };
        publish(channel, {"u1", {"books"}});
        CHECK(a.ids() == (Ids{"u1", "reply"}));
        CHECK(b.ids() == (Ids{"reply", "u1"}));  // nested: it reached b first
    }
    SUBCASE("a publish from inside a replay follows the replay, once, and nothing is lost") {
        publish(channel, {"u1", {"books"}});
        publish(channel, {"u2", {"books"}});
        Sink old, late;
        auto so = channel.subscribe(old, std::nullopt, &books);
        late.on_send = [&] {
            if (late.calls.size() == 1) publish(channel, {"during", {"books"}});
        };
        auto joined = channel.subscribe(late, earliest_id, &books);
        CHECK(old.ids() == Ids{"during"});
        CHECK(late.ids() == (Ids{"u1", "u2", "during"}));
        CHECK(joined.resume.replayed == 3);
        publish(channel, {"u3", {"books"}});
        CHECK(late.ids() == (Ids{"u1", "u2", "during", "u3"}));
    }
}

TEST_CASE("Hub channel: the command producer's way is unchanged; its events carry no topics") {
    MemoryStore store;
    auto& channel = store.channel("c", HistoryLimits{10});
    channel.publish(Event{"line", "a", "1", std::nullopt});
    Topics any({"*"});
    Sink plain, with_interest;
    ChannelSubscription s = channel.subscribe(plain, "");  // empty: the whole history
    auto j = channel.subscribe(with_interest, earliest_id, &any);
    CHECK(plain.ids() == Ids{"1"});
    CHECK(with_interest.ids().empty());  // "*" matches a topic; the event has none
    channel.publish(Event{"line", "b", "2", std::nullopt});
    CHECK(plain.ids() == (Ids{"1", "2"}));
    CHECK(with_interest.ids().empty());
}

namespace {

// A stream that counts what it is sent, allocating nothing.
class CountingSink final : public fastsse::Sink {
public:
    void send(const Event&) override { ++sent; }
    void send_encoded(std::string_view bytes) override {
        ++sent;
        last = bytes.data();
    }
    void finish(std::optional<std::chrono::milliseconds>) override {}
    size_t room() const override { return SIZE_MAX; }
    size_t sent = 0;
    const char* last = nullptr;
};

// How many allocations one publish to `n` subscribers (half of them wanting it) makes.
size_t allocations_for_one_publish(size_t n) {
    MemoryStore store;
    auto& channel = store.channel("hub", HistoryLimits{100});
    Topics wanted({"https://example.com/books/1"}), other({"https://example.com/books/2"});
    std::vector<CountingSink> sinks(n);
    std::vector<ChannelSubscription> subs;
    for (size_t i = 0; i < n; ++i)
        subs.push_back(channel.subscribe(sinks[i], std::nullopt, i % 2 ? &other : &wanted).subscription);
    Update u{"urn:uuid:5e94c686-2c0b-4f9b-958c-92ccc3bbb4eb",
             {"https://example.com/books/1", "https://example.com/authors/1"}};
    u.data = std::string(200, 'd');
    publish(channel, u);  // the history and the map have room from now on
    auto before = allocations;
    publish(channel, u);
    auto made = allocations - before;
    for (size_t i = 0; i < n; ++i) {
        CHECK(sinks[i].sent == (i % 2 ? 0u : 2u));
        if (i % 2 == 0) CHECK(sinks[i].last == sinks[0].last);
    }
    CHECK(wanted.asked == n);  // n/2 subscribers, twice
    return made;
}

}  // namespace

TEST_CASE("Hub channel: a publish to 10,000 subscribers allocates no more than a publish to 10") {
    auto few = allocations_for_one_publish(10);
    auto many = allocations_for_one_publish(10'000);
    MESSAGE("allocations for one publish: " << few << " with 10 subscribers, " << many << " with 10,000");
    CHECK(few > 0);  // the counter counts: the update is encoded and kept
    CHECK(many == few);
}
