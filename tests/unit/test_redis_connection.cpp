// RedisConnection against a real redis-server (Debian's /usr/bin/redis-server), started by each test
// on a free loopback port and stopped by its PID; Backoff alone.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "fastsse/redis/connection.hpp"
#include "redis_server.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using fastsse::EventLoop;
using fastsse::UniqueFd;
using fastsse::redis::Backoff;
using fastsse::redis::RedisConnection;
using fastsse::redis::RedisHandlers;
using fastsse::redis::RedisOptions;
using fastsse::redis::RedisReply;
using fastsse::redis::ReplyType;
using fastsse_test::LoopWaiter;
using fastsse_test::RedisServer;
using fastsse_test::bound_socket;
using State = RedisConnection::State;

namespace {

// What a connection's handlers saw.
struct Events {
    int ready = 0;
    int lost = 0;
    std::string reason;
    RedisHandlers handlers(LoopWaiter* waiter = nullptr) {
        return {[this, waiter] {
                    ++ready;
                    if (waiter) waiter->notify();
                },
                [this, waiter](std::string_view why) {
                    ++lost;
                    reason = std::string(why);
                    if (waiter) waiter->notify();
                }};
    }
};

// A reply copied out of its callback.
struct Got {
    int calls = 0;
    bool failed = false;
    std::string why;
    ReplyType type = ReplyType::nil;
    std::string str;
    long long integer = 0;
    size_t size = 0;
    RedisConnection::ReplyFn fn(LoopWaiter* waiter = nullptr) {
        return [this, waiter](const RedisReply& r) {
            ++calls;
            failed = r.failed();
            if (failed) why = std::string(r.why());
            else {
                type = r.type();
                str = std::string(r.str());
                integer = r.integer();
                size = r.size();
            }
            if (waiter) waiter->notify();
        };
    }
};

// A connection made ready, on its own loop's waiter.
void wait_ready(LoopWaiter& waiter, RedisConnection& c, Events& ev) {
    REQUIRE(waiter.run_until([&] { return ev.ready > 0 || ev.lost > 0; }));
    REQUIRE_MESSAGE(c.state() == State::ready, ev.reason);
}

}  // namespace

TEST_CASE("connect, PING, and binary-safe arguments") {
    RedisServer server;
    EventLoop loop;
    LoopWaiter waiter(loop);
    Events ev;
    RedisConnection c(loop, server.options(), ev.handlers(&waiter));
    CHECK(c.state() == State::connecting);
    Got early;
    CHECK_FALSE(c.command({"PING"}, early.fn()));  // not ready yet: refused, never called
    wait_ready(waiter, c, ev);

    Got pong;
    REQUIRE(c.command({"PING"}, pong.fn(&waiter)));
    CHECK(c.pending() == 1);
    REQUIRE(waiter.run_until([&] { return pong.calls > 0; }));
    CHECK(pong.calls == 1);
    CHECK_FALSE(pong.failed);
    CHECK(pong.type == ReplyType::status);
    CHECK(pong.str == "PONG");
    CHECK(c.pending() == 0);

    // A value with NUL, CR LF and a '$': the argv form sends it as it is.
    std::string value("a\0b\r\n$3\r\nx %s", 14);
    Got set, get, arr, err;
    REQUIRE(c.command({"SET", "k", value}, set.fn()));
    REQUIRE(c.command({"GET", "k"}, get.fn()));
    REQUIRE(c.command({"MGET", "k", "nothing"}, arr.fn()));
    REQUIRE(c.command({"NOSUCHCOMMAND"}, err.fn(&waiter)));
    REQUIRE(waiter.run_until([&] { return err.calls > 0; }));
    CHECK(set.str == "OK");
    CHECK(get.type == ReplyType::string);
    CHECK(get.str == value);
    CHECK(arr.type == ReplyType::array);
    CHECK(arr.size == 2);
    CHECK(err.type == ReplyType::error);  // Redis's error is a reply, not a failure
    CHECK_FALSE(err.failed);
    CHECK(err.str.starts_with("ERR unknown command"));
    CHECK(ev.ready == 1);
    CHECK(ev.lost == 0);
    CHECK(c.state() == State::ready);
}

TEST_CASE("nested replies are read through views") {
    RedisServer server;
    EventLoop loop;
    LoopWaiter waiter(loop);
    Events ev;
    RedisConnection c(loop, server.options(), ev.handlers(&waiter));
    wait_ready(waiter, c, ev);
    Got add;
    REQUIRE(c.command({"XADD", "s", "1-1", "f", "v"}, add.fn()));
    std::string id, field;
    long long count = -1;
    bool done = false;
    REQUIRE(c.command({"XRANGE", "s", "-", "+"}, [&](const RedisReply& r) {
        REQUIRE(r.size() == 1);
        id = std::string(r[0][0].str());
        field = std::string(r[0][1][0].str());
        done = true;
    }));
    REQUIRE(c.command({"XLEN", "s"}, [&](const RedisReply& r) { count = r.integer(); }));
    REQUIRE(waiter.run_until([&] { return count >= 0; }));
    CHECK(done);
    CHECK(add.str == "1-1");
    CHECK(id == "1-1");
    CHECK(field == "f");
    CHECK(count == 1);
}

TEST_CASE("AUTH with a password: right, wrong, missing") {
    RedisServer server({"--requirepass", "p@ss word"});
    EventLoop loop;
    LoopWaiter waiter(loop);

    SUBCASE("right") {
        Events ev;
        auto o = server.options();
        o.password = "p@ss word";
        RedisConnection c(loop, o, ev.handlers(&waiter));
        wait_ready(waiter, c, ev);
        Got pong;
        REQUIRE(c.command({"PING"}, pong.fn(&waiter)));
        REQUIRE(waiter.run_until([&] { return pong.calls > 0; }));
        CHECK(pong.str == "PONG");
    }
    SUBCASE("wrong") {
        Events ev;
        auto o = server.options();
        o.password = "nope";
        RedisConnection c(loop, o, ev.handlers(&waiter));
        REQUIRE(waiter.run_until([&] { return ev.lost > 0; }));
        CHECK(ev.ready == 0);
        CHECK(c.state() == State::lost);
        CHECK(ev.reason.find("AUTH refused: WRONGPASS") != std::string::npos);
        CHECK(ev.reason.find("nope") == std::string::npos);
        CHECK(ev.reason.starts_with("redis 127.0.0.1:" + std::to_string(server.port()) + ": "));
        // Once: nothing more comes.
        CHECK_FALSE(waiter.run_until([&] { return ev.lost > 1; }, 200ms));
        Got late;
        CHECK_FALSE(c.command({"PING"}, late.fn()));
    }
    SUBCASE("missing") {
        Events ev;
        RedisConnection c(loop, server.options(), ev.handlers(&waiter));
        REQUIRE(waiter.run_until([&] { return ev.lost > 0; }));
        CHECK(ev.ready == 0);
        CHECK(ev.reason.find("PING refused: NOAUTH") != std::string::npos);
    }
}

TEST_CASE("AUTH user password (an ACL user)") {
    RedisServer server;
    EventLoop loop;
    LoopWaiter waiter(loop);
    Events admin_ev;
    RedisConnection admin(loop, server.options(), admin_ev.handlers(&waiter));
    wait_ready(waiter, admin, admin_ev);
    Got made;
    REQUIRE(admin.command({"ACL", "SETUSER", "alice", "on", ">s:cret", "~*", "+@all"}, made.fn(&waiter)));
    REQUIRE(waiter.run_until([&] { return made.calls > 0; }));
    REQUIRE(made.str == "OK");

    Events ev;
    auto o = server.options();
    o.user = "alice";
    o.password = "s:cret";
    RedisConnection c(loop, o, ev.handlers(&waiter));
    wait_ready(waiter, c, ev);
    Got who;
    REQUIRE(c.command({"ACL", "WHOAMI"}, who.fn(&waiter)));
    REQUIRE(waiter.run_until([&] { return who.calls > 0; }));
    CHECK(who.str == "alice");

    Events bad;
    o.password = "wrong";
    RedisConnection refused(loop, o, bad.handlers(&waiter));
    REQUIRE(waiter.run_until([&] { return bad.lost > 0; }));
    CHECK(bad.reason.find("AUTH refused: WRONGPASS") != std::string::npos);
}

TEST_CASE("SELECT: the db is chosen before ready") {
    RedisServer server;
    EventLoop loop;
    LoopWaiter waiter(loop);
    Events ev3, ev0;
    auto o = server.options();
    o.db = 3;
    RedisConnection db3(loop, o, ev3.handlers(&waiter));
    RedisConnection db0(loop, server.options(), ev0.handlers(&waiter));
    REQUIRE(waiter.run_until([&] { return ev3.ready && ev0.ready; }));
    Got set, in3, in0;
    REQUIRE(db3.command({"SET", "where", "three"}, set.fn()));
    REQUIRE(db3.command({"GET", "where"}, in3.fn(&waiter)));
    REQUIRE(waiter.run_until([&] { return in3.calls > 0; }));
    REQUIRE(db0.command({"GET", "where"}, in0.fn(&waiter)));
    REQUIRE(waiter.run_until([&] { return in0.calls > 0; }));
    CHECK(in3.str == "three");
    CHECK(in0.type == ReplyType::nil);

    Events bad;
    o.db = 99;  // past `databases` (16)
    RedisConnection out_of_range(loop, o, bad.handlers(&waiter));
    REQUIRE(waiter.run_until([&] { return bad.lost > 0; }));
    CHECK(bad.reason.find("SELECT refused: ERR DB index is out of range") != std::string::npos);
}

TEST_CASE("a command timeout drops the connection; the loop goes on meanwhile") {
    RedisServer server;
    EventLoop loop;
    LoopWaiter waiter(loop);
    Events ev;
    auto o = server.options();
    o.command_timeout = 300ms;
    RedisConnection c(loop, o, ev.handlers(&waiter));
    wait_ready(waiter, c, ev);

    // Something else on the loop, that must keep its pace while Redis does not answer.
    int ticks = 0;
    fastsse::Timer ticker;
    std::function<void()> tick = [&] {
        ++ticks;
        ticker = loop.call_after(10ms, tick);
    };
    ticker = loop.call_after(10ms, tick);

    server.signal(SIGSTOP);
    Got first, second;
    auto sent = std::chrono::steady_clock::now();
    REQUIRE(c.command({"PING"}, first.fn(&waiter)));
    REQUIRE(c.command({"GET", "x"}, second.fn(&waiter), 5s));  // its own timeout is longer: the first one's ends it
    REQUIRE(waiter.run_until([&] { return ev.lost > 0; }));
    auto took = std::chrono::steady_clock::now() - sent;
    server.signal(SIGCONT);

    CHECK(took >= 300ms);
    CHECK(took < 2s);
    CHECK(ticks >= 10);  // 30 would be exact; a loaded machine may be slower, never stopped
    CHECK(first.calls == 1);
    CHECK(first.failed);
    CHECK(first.why.find("no reply to PING within 300 ms") != std::string::npos);
    CHECK(second.calls == 1);
    CHECK(second.failed);
    CHECK(second.why == first.why);
    CHECK(ev.lost == 1);
    CHECK(ev.reason == first.why);
    CHECK(c.state() == State::lost);
    CHECK(c.pending() == 0);
    // Nothing comes twice, even once Redis answers again.
    CHECK_FALSE(waiter.run_until([&] { return ev.lost > 1 || first.calls > 1 || second.calls > 1; }, 300ms));
}

TEST_CASE("a connect timeout: TCP connected, no answer") {
    RedisServer server;
    server.signal(SIGSTOP);  // the kernel still completes the TCP handshake into its backlog
    EventLoop loop;
    LoopWaiter waiter(loop);
    Events ev;
    auto o = server.options();
    o.connect_timeout = 300ms;
    RedisConnection c(loop, o, ev.handlers(&waiter));
    REQUIRE(waiter.run_until([&] { return ev.lost > 0; }));
    server.signal(SIGCONT);
    CHECK(ev.ready == 0);
    CHECK(ev.reason.find("connected, but no answer to PING within 300 ms") != std::string::npos);
}

TEST_CASE("a blocking command on a connection of its own, with its own timeout") {
    RedisServer server;
    EventLoop loop;
    LoopWaiter waiter(loop);
    Events ev, writer_ev;
    auto o = server.options();
    o.command_timeout = 100ms;  // shorter than the BLOCK: the command's own timeout must win
    RedisConnection reader(loop, o, ev.handlers(&waiter));
    RedisConnection writer(loop, o, writer_ev.handlers(&waiter));
    REQUIRE(waiter.run_until([&] { return ev.ready && writer_ev.ready; }));

    Got nothing;
    REQUIRE(reader.command({"XREAD", "BLOCK", "400", "STREAMS", "s", "$"}, nothing.fn(&waiter), 2s));
    REQUIRE(waiter.run_until([&] { return nothing.calls > 0; }));
    CHECK_FALSE(nothing.failed);
    CHECK(nothing.type == ReplyType::nil);  // BLOCK ran out: Redis says nil

    Got entry, added;
    REQUIRE(reader.command({"XREAD", "BLOCK", "5000", "STREAMS", "s", "$"}, entry.fn(&waiter), 6s));
    // The writer's XADD goes once Redis holds the XREAD: a PING on the reader would wait behind it,
    // so the writer checks with CLIENT LIST that the reader is blocked.
    bool blocked = false;
    std::function<void()> poll_blocked = [&] {
        REQUIRE(writer.command({"CLIENT", "LIST"}, [&](const RedisReply& r) {
            blocked = r.str().find("cmd=xread") != std::string_view::npos;
            if (!blocked) poll_blocked();
            else REQUIRE(writer.command({"XADD", "s", "*", "f", "v"}, added.fn(&waiter)));
        }));
    };
    poll_blocked();
    REQUIRE(waiter.run_until([&] { return entry.calls > 0 && added.calls > 0; }));
    CHECK_FALSE(entry.failed);
    CHECK(entry.type == ReplyType::array);
    CHECK(added.calls == 1);
    CHECK(ev.lost == 0);
}

TEST_CASE("the server killed mid-command: the callback fails, lost once") {
    RedisServer server;
    EventLoop loop;
    LoopWaiter waiter(loop);
    Events ev;
    RedisConnection c(loop, server.options(), ev.handlers(&waiter));
    wait_ready(waiter, c, ev);
    Got blpop, after;
    REQUIRE(c.command({"BLPOP", "list", "10"}, blpop.fn(&waiter)));
    REQUIRE(c.command({"PING"}, after.fn(&waiter)));
    // Let the BLPOP reach Redis, then kill it.
    fastsse::Timer kill = loop.call_after(50ms, [&] { server.kill_now(); });
    REQUIRE(waiter.run_until([&] { return ev.lost > 0; }));
    CHECK(blpop.calls == 1);
    CHECK(blpop.failed);
    CHECK(after.calls == 1);
    CHECK(after.failed);
    CHECK(ev.lost == 1);
    CHECK(ev.reason.find("redis 127.0.0.1:") == 0);
    CHECK(ev.reason == blpop.why);
    CHECK_FALSE(waiter.run_until([&] { return ev.lost > 1 || blpop.calls > 1; }, 200ms));
}

TEST_CASE("a refused connection is lost, from the loop, never from the constructor") {
    uint16_t port = 0;
    UniqueFd holder = bound_socket(port);  // bound, not listening: connect() is refused
    EventLoop loop;
    LoopWaiter waiter(loop);
    Events ev;
    RedisOptions o;
    o.port = port;
    RedisConnection c(loop, o, ev.handlers(&waiter));
    CHECK(ev.lost == 0);
    REQUIRE(waiter.run_until([&] { return ev.lost > 0; }));
    CHECK(ev.ready == 0);
    CHECK(ev.reason.find("Connection refused") != std::string::npos);
    CHECK(c.state() == State::lost);
}

TEST_CASE("host names are resolved at start, before the loop; the connection takes addresses") {
    CHECK(fastsse::redis::resolve_redis_host("127.0.0.1") == "127.0.0.1");
    CHECK(fastsse::redis::resolve_redis_host("::1") == "::1");
    CHECK(fastsse::redis::resolve_redis_host("localhost") == "127.0.0.1");  // IPv4 first, as hiredis
    try {
        fastsse::redis::resolve_redis_host("no-such-host.invalid");
        FAIL("an unknown host resolved");
    } catch (const std::runtime_error& e) {
        CHECK(std::string(e.what()).find("redis host \"no-such-host.invalid\": ") == 0);
    }
    EventLoop loop;
    RedisOptions o;
    o.address = "localhost";
    CHECK_THROWS_AS(RedisConnection(loop, o, {}), std::invalid_argument);
    o.unix_path = std::string(200, 'x');
    CHECK_THROWS_AS(RedisConnection(loop, o, {}), std::invalid_argument);
}

TEST_CASE("IPv6 loopback and a Unix socket") {
    fastsse_test::TempDir dir;
    auto sock = (dir.path / "redis.sock").string();
    RedisServer server({"--bind", "127.0.0.1", "::1", "--unixsocket", sock, "--unixsocketperm", "700"});
    EventLoop loop;
    LoopWaiter waiter(loop);
    Events ev6, evu;
    auto o6 = server.options();
    o6.address = "::1";
    auto ou = server.options();
    ou.unix_path = sock;
    ou.db = 1;
    RedisConnection c6(loop, o6, ev6.handlers(&waiter));
    RedisConnection cu(loop, ou, evu.handlers(&waiter));
    REQUIRE(waiter.run_until([&] { return (ev6.ready || ev6.lost) && (evu.ready || evu.lost); }));
    // A machine without IPv6 on loopback refuses ::1; the Unix socket must work everywhere.
    if (ev6.lost) MESSAGE("no IPv6 loopback here: " << ev6.reason);
    CHECK_MESSAGE(evu.ready == 1, evu.reason);
    Got pong;
    REQUIRE(cu.command({"PING"}, pong.fn(&waiter)));
    REQUIRE(waiter.run_until([&] { return pong.calls > 0; }));
    CHECK(pong.str == "PONG");
}

TEST_CASE("refused commands") {
    RedisServer server;
    EventLoop loop;
    LoopWaiter waiter(loop);
    Events ev;
    RedisConnection c(loop, server.options(), ev.handlers(&waiter));
    wait_ready(waiter, c, ev);
    Got g;
    for (auto name : {"SUBSCRIBE", "psubscribe", "SSubscribe", "UNSUBSCRIBE", "MONITOR", "HELLO"})
        CHECK_THROWS_AS((void)c.command({name, "x"}, g.fn()), std::invalid_argument);
    CHECK_THROWS_AS((void)c.command(std::span<const std::string_view>(), g.fn()), std::invalid_argument);
    CHECK(c.pending() == 0);
    RedisConnection moved = std::move(c);
    CHECK(c.state() == State::lost);  // NOLINT: a moved-from connection is an empty one
    CHECK_FALSE(c.command({"PING"}, g.fn()));
    CHECK(moved.state() == State::ready);
}

TEST_CASE("destroyed from inside its own callbacks") {
    RedisServer server;
    EventLoop loop;
    LoopWaiter waiter(loop);

    SUBCASE("a reply's, with more replies behind it in the same read") {
        Events ev;
        auto c = std::make_unique<RedisConnection>(loop, server.options(), ev.handlers(&waiter));
        wait_ready(waiter, *c, ev);
        Got second, third;
        bool first = false;
        REQUIRE(c->command({"PING"}, [&](const RedisReply&) {
            first = true;
            c.reset();
            waiter.notify();
        }));
        REQUIRE(c->command({"PING"}, second.fn()));
        REQUIRE(c->command({"PING"}, third.fn()));
        REQUIRE(waiter.run_until([&] { return first; }));
        CHECK_FALSE(waiter.run_until([&] { return second.calls || third.calls || ev.lost; }, 200ms));
    }
    SUBCASE("on_ready's") {
        std::unique_ptr<RedisConnection> c;
        int lost = 0;
        bool ready = false;
        c = std::make_unique<RedisConnection>(loop, server.options(),
                                              RedisHandlers{[&] {
                                                                ready = true;
                                                                c.reset();
                                                            },
                                                            [&](std::string_view) { ++lost; }});
        REQUIRE(waiter.run_until([&] { return ready; }));
        CHECK_FALSE(waiter.run_until([&] { return lost > 0; }, 100ms));
    }
    SUBCASE("on_lost's") {
        uint16_t port = 0;
        UniqueFd holder = bound_socket(port);
        std::unique_ptr<RedisConnection> c;
        int lost = 0;
        RedisOptions o;
        o.port = port;
        c = std::make_unique<RedisConnection>(loop, o, RedisHandlers{{}, [&](std::string_view) {
                                                                         ++lost;
                                                                         c.reset();
                                                                     }});
        REQUIRE(waiter.run_until([&] { return lost > 0; }));
        CHECK(lost == 1);
        CHECK_FALSE(c);
    }
    SUBCASE("a failing command's, with more failures to report") {
        Events ev;
        auto o = server.options();
        o.command_timeout = 200ms;
        auto c = std::make_unique<RedisConnection>(loop, o, ev.handlers(&waiter));
        wait_ready(waiter, *c, ev);
        server.signal(SIGSTOP);
        int first = 0;
        Got second;
        REQUIRE(c->command({"PING"}, [&](const RedisReply& r) {
            CHECK(r.failed());
            ++first;
            c.reset();
        }));
        REQUIRE(c->command({"PING"}, second.fn()));
        REQUIRE(waiter.run_until([&] { return first > 0; }));
        CHECK_FALSE(waiter.run_until([&] { return second.calls || ev.lost || first > 1; }, 100ms));
        server.signal(SIGCONT);
    }
    SUBCASE("another connection's, whose events are in the same round") {
        Events ev_a, ev_b;
        auto a = std::make_unique<RedisConnection>(loop, server.options(), ev_a.handlers(&waiter));
        auto b = std::make_unique<RedisConnection>(loop, server.options(), ev_b.handlers(&waiter));
        REQUIRE(waiter.run_until([&] { return ev_a.ready && ev_b.ready; }));
        // Both replies arrive together; whichever callback runs first destroys both connections.
        int calls = 0;
        auto end_both = [&](const RedisReply&) {
            ++calls;
            a.reset();
            b.reset();
        };
        // A blocked BLPOP on each, released by one LPUSH each from a third connection: both sockets
        // become readable in the same epoll_wait.
        Events ev_w;
        RedisConnection w(loop, server.options(), ev_w.handlers(&waiter));
        wait_ready(waiter, w, ev_w);
        REQUIRE(a->command({"BLPOP", "qa", "5"}, end_both));
        REQUIRE(b->command({"BLPOP", "qb", "5"}, end_both));
        Got pushed;
        fastsse::Timer go = loop.call_after(50ms, [&] {
            REQUIRE(w.command({"MULTI"}, {}));
            REQUIRE(w.command({"LPUSH", "qa", "1"}, {}));
            REQUIRE(w.command({"LPUSH", "qb", "1"}, {}));
            REQUIRE(w.command({"EXEC"}, pushed.fn()));
        });
        REQUIRE(waiter.run_until([&] { return calls > 0 && pushed.calls > 0; }));
        CHECK_FALSE(waiter.run_until([&] { return calls > 1 || ev_a.lost || ev_b.lost; }, 100ms));
        CHECK(calls == 1);
    }
}

TEST_CASE("a callback that throws is logged; the others are still called") {
    RedisServer server;
    EventLoop loop;
    LoopWaiter waiter(loop);
    fastsse_test::LogCapture log;
    Events ev;
    auto o = server.options();
    o.command_timeout = 200ms;
    RedisConnection c(loop, o, ev.handlers(&waiter));
    wait_ready(waiter, c, ev);
    Got after;
    REQUIRE(c.command({"PING"}, [](const RedisReply&) { throw std::runtime_error("boom"); }));
    REQUIRE(c.command({"PING"}, after.fn(&waiter)));
    REQUIRE(waiter.run_until([&] { return after.calls > 0; }));
    CHECK(log.text().find("bug: a Redis callback threw: boom") != std::string::npos);

    server.signal(SIGSTOP);
    Got failed_after;
    REQUIRE(c.command({"PING"}, [](const RedisReply&) { throw std::runtime_error("boom again"); }));
    REQUIRE(c.command({"PING"}, failed_after.fn(&waiter)));
    REQUIRE(waiter.run_until([&] { return ev.lost > 0; }));
    server.signal(SIGCONT);
    CHECK(failed_after.calls == 1);
    CHECK(failed_after.failed);
}

TEST_CASE("Backoff: doubling to the cap, each delay in the upper half of its step") {
    Backoff b(100ms, 1000ms, 42);
    std::vector<long long> steps = {100, 200, 400, 800, 1000, 1000};
    std::set<long long> seen;
    for (auto step : steps) {
        auto d = b.next().count();
        CHECK(d >= step / 2);
        CHECK(d <= step);
        seen.insert(d);
    }
    CHECK(seen.size() > 1);
    b.reset();
    CHECK(b.next() <= 100ms);

    // Jitter: two processes seeded differently do not come back in step.
    Backoff x(1000ms, 1000ms, 1), y(1000ms, 1000ms, 2);
    int same = 0;
    for (int i = 0; i < 20; ++i) same += x.next() == y.next();
    CHECK(same < 5);
    CHECK_THROWS_AS(Backoff(0ms, 10ms), std::invalid_argument);
    CHECK_THROWS_AS(Backoff(10ms, 5ms), std::invalid_argument);
}
