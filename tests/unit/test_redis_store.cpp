// The Redis store against a real redis-server started by each test (redis_server.hpp): two stores on
// one Redis stand for two fastsse processes. Publishes answered only once stored, fan-out from the
// stream in its order, history loaded at start, and the faults of issue 12: Redis away (publishes
// refused, streams untouched, reading on after the last entry read), Redis back without its data
// (resuming subscribers told `earliest`), a stuck Redis (the loop goes on), a bad start.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "fastsse/channels/redis_store.hpp"
#include "redis_server.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using fastsse::Channel;
using fastsse::Event;
using fastsse::HistoryLimits;
using fastsse::Published;
using fastsse::RedisStore;
using fastsse::RedisStoreOptions;
using fastsse::UpdateMeta;
using fastsse_test::ChannelSink;
using fastsse_test::RedisServer;
using fastsse_test::run_loop_until;

namespace {

const HistoryLimits limits{100, 1 << 20};

RedisStoreOptions options_for(const RedisServer& redis, std::string prefix = "test:") {
    RedisStoreOptions o;
    o.connection = redis.options();
    o.connection.connect_timeout = 1s;
    o.connection.command_timeout = 1s;
    o.key_prefix = std::move(prefix);
    o.block = 300ms;
    o.reconnect_first = 100ms;
    o.reconnect_cap = 400ms;
    return o;
}

// A publish of `data` to `topic`, its outcome kept for the test.
struct Publish {
    std::optional<Published> outcome;
    Publish(Channel& channel, std::string data, std::string topic = "urn:t", std::optional<std::string> id = {}) {
        Event e;
        e.data = data;
        if (id) e.id = *id;
        std::vector<std::string> topics{topic};
        channel.publish(e, UpdateMeta{topics, false}, [this](Published p) { outcome = std::move(p); });
    }
    bool answered() const { return outcome.has_value(); }
    bool kept() const { return outcome && outcome->failure.empty(); }
};

std::vector<std::string> data_of(const ChannelSink& sink) {
    std::vector<std::string> out;
    for (const auto& c : sink.calls)
        if (!c.finished) out.push_back(c.sent.data.value_or(""));
    return out;
}

// Why start() refused, for a store with one channel; empty if it did not.
std::string start_failure(fastsse::EventLoop& loop, const RedisStoreOptions& options) {
    RedisStore store(loop, options);
    store.channel("hub", limits);
    try {
        store.start();
    } catch (const std::runtime_error& e) {
        return e.what();
    }
    return {};
}

size_t occurrences(const std::string& text, std::string_view what) {
    size_t n = 0;
    for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
}

}  // namespace

TEST_CASE("RedisStore: a publish is answered once Redis kept it, then reaches every process's subscribers in the stream's order") {
    fastsse_test::LogCapture log;
    RedisServer redis;
    fastsse::EventLoop loop;
    RedisStore a(loop, options_for(redis)), b(loop, options_for(redis));
    auto& ca = a.channel("hub", limits);
    auto& cb = b.channel("hub", limits);
    a.start();
    b.start();
    CHECK(a.connected());
    CHECK(ca.assigns_ids());

    ChannelSink sa, sb;
    auto ja = ca.subscribe(sa, std::nullopt, nullptr);
    auto jb = cb.subscribe(sb, std::nullopt, nullptr);
    Publish p1(ca, "one"), p2(cb, "two", "urn:t", "my-id"), p3(ca, "three");
    CHECK_FALSE(p1.answered());  // Redis has not answered yet: no 200 for what it may not keep
    CHECK(sa.calls.empty());     // and no fan-out before the stream gives the entry back
    REQUIRE(run_loop_until(loop, [&] { return sa.calls.size() == 3 && sb.calls.size() == 3; }, 5s));
    REQUIRE(p1.kept());
    REQUIRE(p2.kept());
    REQUIRE(p3.kept());
    // Ids: the publisher's, else `#` and the stream entry's.
    CHECK(p1.outcome->id.starts_with("#"));
    CHECK(p2.outcome->id == "my-id");
    // Both processes in the stream's one order: a's two in the order a sent them, b's anywhere.
    CHECK(sa.ids() == sb.ids());
    auto order = data_of(sa);
    CHECK(order == data_of(sb));
    auto at = [&](const std::string& d) { return std::find(order.begin(), order.end(), d) - order.begin(); };
    REQUIRE(order.size() == 3);
    CHECK(at("one") < at("three"));
    CHECK(at("two") < 3);
    CHECK(sa.ids()[at("two")] == "my-id");
    CHECK(sa.ids()[at("one")] == p1.outcome->id);
    CHECK(ca.subscribers() == 1);
}

TEST_CASE("RedisStore: a process that starts later loads the history, and resumes any client after its id") {
    RedisServer redis;
    fastsse::EventLoop loop;
    RedisStore first(loop, options_for(redis));
    auto& c1 = first.channel("hub", limits);
    first.start();
    std::vector<std::unique_ptr<Publish>> published;
    for (int i = 0; i < 5; ++i) published.push_back(std::make_unique<Publish>(c1, "u" + std::to_string(i)));
    REQUIRE(run_loop_until(loop, [&] { return published.back()->answered(); }, 5s));

    RedisStore later(loop, options_for(redis));
    auto& c2 = later.channel("hub", limits);
    later.start();
    ChannelSink sink;
    auto joined = c2.subscribe(sink, std::string_view(published[1]->outcome->id), nullptr);
    CHECK(joined.resume.found);
    CHECK(data_of(sink) == std::vector<std::string>{"u2", "u3", "u4"});
    ChannelSink all;
    auto everything = c2.subscribe(all, std::string_view("earliest"), nullptr);
    CHECK(data_of(all).size() == 5);
}

TEST_CASE("RedisStore: connections lost: publishes are refused, then the process reads on after the last entry it read") {
    fastsse_test::LogCapture log;
    RedisServer redis;
    fastsse::EventLoop loop;
    auto slow = options_for(redis);
    slow.reconnect_first = 1s;  // time for the other process to publish while this one is away
    slow.reconnect_cap = 1s;
    RedisStore a(loop, slow);
    auto& ca = a.channel("hub", limits);
    a.start();
    ChannelSink sink;
    auto joined = ca.subscribe(sink, std::nullopt, nullptr);
    Publish before(ca, "before");
    REQUIRE(run_loop_until(loop, [&] { return sink.calls.size() == 1; }, 5s));

    // Redis drops this process's connections (as a network cut would); another process, which
    // connects after, publishes meanwhile.
    {
        fastsse::redis::RedisConnection admin(loop, redis.options(), {});
        REQUIRE(run_loop_until(loop, [&] { return admin.state() == fastsse::redis::RedisConnection::State::ready; }, 5s));
        bool killed = false;
        REQUIRE(admin.command({"CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"}, [&](auto&) { killed = true; }));
        REQUIRE(run_loop_until(loop, [&] { return killed && !a.connected(); }, 5s));
    }
    Publish refused(ca, "while away");
    REQUIRE(refused.answered());  // at once, and not kept
    CHECK_FALSE(refused.kept());
    CHECK(refused.outcome->failure.find("not connected") != std::string::npos);

    RedisStore b(loop, options_for(redis));
    auto& cb = b.channel("hub", limits);
    b.start();
    std::vector<std::unique_ptr<Publish>> meanwhile;
    for (int i = 0; i < 3; ++i) meanwhile.push_back(std::make_unique<Publish>(cb, "meanwhile " + std::to_string(i)));
    REQUIRE(run_loop_until(loop, [&] { return meanwhile.back()->answered(); }, 5s));
    CHECK(meanwhile.back()->kept());
    CHECK(sink.calls.size() == 1);  // this process is still away

    REQUIRE(run_loop_until(loop, [&] { return a.connected() && sink.calls.size() >= 4; }, 5s));
    Publish after(ca, "after");
    REQUIRE(run_loop_until(loop, [&] { return sink.calls.size() >= 5; }, 5s));
    CHECK(data_of(sink) == std::vector<std::string>{"before", "meanwhile 0", "meanwhile 1", "meanwhile 2", "after"});
    // Said once when lost, once when back: not a line per attempt.
    CHECK(occurrences(log.text(), "reconnecting") == 1);
    CHECK(occurrences(log.text(), "connected again") == 1);
}

TEST_CASE("RedisStore: a client resumes after an entry this process has not read yet: nothing replayed, nothing twice") {
    RedisServer redis;
    fastsse::EventLoop loop;
    auto slow = options_for(redis);
    slow.reconnect_first = 1s;  // this process stays away while the other publishes
    slow.reconnect_cap = 1s;
    RedisStore a(loop, slow);
    auto& ca = a.channel("hub", limits);
    a.start();
    Publish before(ca, "before");
    REQUIRE(run_loop_until(loop, [&] { return before.answered(); }, 5s));
    {
        fastsse::redis::RedisConnection admin(loop, redis.options(), {});
        REQUIRE(run_loop_until(loop, [&] { return admin.state() == fastsse::redis::RedisConnection::State::ready; }, 5s));
        bool killed = false;
        REQUIRE(admin.command({"CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"}, [&](auto&) { killed = true; }));
        REQUIRE(run_loop_until(loop, [&] { return killed && !a.connected(); }, 5s));
    }
    // The other process stores two updates and sends them to its clients; one of them comes here.
    RedisStore b(loop, options_for(redis));
    auto& cb = b.channel("hub", limits);
    b.start();
    Publish first(cb, "first"), second(cb, "second");
    REQUIRE(run_loop_until(loop, [&] { return second.answered(); }, 5s));
    REQUIRE(first.kept());

    ChannelSink sink;
    auto joined = ca.subscribe(sink, first.outcome->id, nullptr);
    CHECK(joined.resume.found);
    CHECK(joined.resume.last_event_id == first.outcome->id);  // not `earliest`: it missed nothing
    CHECK(joined.resume.replayed == 0);
    CHECK(sink.calls.empty());
    // An id never given, far ahead, or one from before: held back, and `earliest`.
    ChannelSink ahead, old;
    auto held = ca.subscribe(ahead, "#99999999999999-0", nullptr);
    CHECK(held.resume.last_event_id == "#99999999999999-0");
    auto replayed = ca.subscribe(old, "#1-0", nullptr);
    CHECK(replayed.resume.last_event_id == "earliest");

    // Once this process reads on: the entries after the client's, the one it had not.
    REQUIRE(run_loop_until(loop, [&] { return a.connected() && sink.calls.size() >= 1; }, 5s));
    Publish after(ca, "after");
    REQUIRE(run_loop_until(loop, [&] { return sink.calls.size() >= 2; }, 5s));
    CHECK(data_of(sink) == std::vector<std::string>{"second", "after"});
    CHECK(ahead.calls.empty());
    CHECK(data_of(old) == std::vector<std::string>{"before", "first", "second", "after"});
}

TEST_CASE("RedisStore: Redis back without its data: subscribers that resume are told `earliest`, and the stream goes on") {
    fastsse_test::LogCapture log;
    std::optional<RedisServer> redis(std::in_place);
    auto port = redis->port();
    fastsse::EventLoop loop;
    RedisStore a(loop, options_for(*redis));
    auto& ca = a.channel("hub", limits);
    a.start();
    ChannelSink live;
    auto joined = ca.subscribe(live, std::nullopt, nullptr);
    Publish p(ca, "lost");
    REQUIRE(run_loop_until(loop, [&] { return live.calls.size() == 1; }, 5s));
    auto old_id = p.outcome->id;

    redis->kill_now();
    REQUIRE(run_loop_until(loop, [&] { return !a.connected(); }, 5s));
    redis.emplace(std::vector<std::string>{}, port);  // empty: no persistence
    REQUIRE(run_loop_until(loop, [&] { return a.connected(); }, 5s));

    ChannelSink resuming;
    auto again = ca.subscribe(resuming, std::string_view(old_id), nullptr);
    CHECK_FALSE(again.resume.found);
    CHECK(again.resume.last_event_id == "earliest");
    CHECK(log.text().find("no longer holds entry") != std::string::npos);

    Publish next(ca, "new");
    REQUIRE(run_loop_until(loop, [&] { return live.calls.size() == 2 && resuming.calls.size() == 1; }, 5s));
    CHECK(data_of(live) == std::vector<std::string>{"lost", "new"});
}

TEST_CASE("RedisStore: a stuck Redis never holds the loop; its publishes fail when their time is up") {
    fastsse_test::LogCapture log;
    RedisServer redis;
    fastsse::EventLoop loop;
    auto o = options_for(redis);
    o.connection.command_timeout = 300ms;
    RedisStore a(loop, o);
    auto& ca = a.channel("hub", limits);
    a.start();
    redis.signal(SIGSTOP);
    int ticks = 0;
    std::function<void()> tick;
    fastsse::Timer ticker;
    tick = [&] {
        ++ticks;
        ticker = loop.call_after(50ms, tick);
    };
    ticker = loop.call_after(50ms, tick);
    Publish stuck(ca, "stuck");
    REQUIRE(run_loop_until(loop, [&] { return stuck.answered(); }, 5s));
    CHECK_FALSE(stuck.kept());
    CHECK(ticks >= 4);  // the loop went on while Redis said nothing
    redis.signal(SIGCONT);
    REQUIRE(run_loop_until(loop, [&] { return a.connected(); }, 5s));
}

TEST_CASE("RedisStore: start() says why it cannot: refused, wrong password") {
    fastsse_test::LogCapture log;
    fastsse::EventLoop loop;
    {
        uint16_t port = 0;
        auto held = fastsse_test::bound_socket(port);  // bound, not listening: refused
        RedisStoreOptions o;
        o.connection.address = "127.0.0.1";
        o.connection.port = port;
        o.connection.connect_timeout = 1s;
        CHECK(start_failure(loop, o).find("refused") != std::string::npos);
    }
    {
        RedisServer redis({"--requirepass", "right"});
        auto o = options_for(redis);
        o.connection.password = "wrong";
        CHECK(start_failure(loop, o).find("WRONGPASS") != std::string::npos);
    }
}
