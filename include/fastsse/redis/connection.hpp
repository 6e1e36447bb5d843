#pragma once
// One connection to Redis on fastsse's event loop, through hiredis's asynchronous API (0.14.1, what
// Debian 12 has: no adapter for our loop, no timeouts). The Redis store is built on it; this part
// knows commands and replies, never channels or streams.
//
// A connection's life: connecting (TCP, then AUTH and SELECT sent at once behind the connect) ->
// ready (on_ready) -> lost (on_lost, once, with the reason). A lost connection stays lost: the
// caller makes a new one, when its policy says so (Backoff below gives the delays). The timeouts
// are ours: a connect timeout covers the TCP connect and the handshake; each command has a timeout
// after which the connection is dropped, because a reply that comes late would be matched to the
// wrong command. A stuck Redis thus never blocks the loop nor leaves a callback waiting for ever.
//
// Why not redis-plus-plus: it is not in Debian 12, and its async API needs libuv.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>

#include "fastsse/loop/event_loop.hpp"
#include "fastsse/redis/url.hpp"

struct redisReply;  // hiredis's, from <hiredis/hiredis.h>: callers need not include it

namespace fastsse::redis {

// Where the connection goes and how it introduces itself.
struct RedisOptions {
    // A numeric IPv4 or IPv6 address (see resolve_redis_host) and a port; or, when unix_path is
    // set, that Unix socket (the address is then not used).
    std::string address = "127.0.0.1";
    uint16_t port = 6379;
    std::string unix_path;
    std::string user;                     // empty: `AUTH password`; else `AUTH user password`
    std::optional<std::string> password;  // absent: no AUTH
    unsigned db = 0;                      // SELECTed before ready when not 0
    std::chrono::milliseconds connect_timeout{2000};  // to ready: TCP connect, AUTH, SELECT
    std::chrono::milliseconds command_timeout{2000};  // a command's, unless it gives its own

    // The URL's user, password and db, to the address it resolved to.
    static RedisOptions from_url(const RedisUrl& url, std::string address);
};

// A name to one numeric address (IPv4 first, as hiredis tries them), through getaddrinfo(3), which
// BLOCKS for as long as the resolver takes: call it at start, before the loop runs, never from the
// loop. An address is given back as it is. Throws std::runtime_error naming the host.
//
// Why the connection takes numeric addresses only: hiredis's connect calls getaddrinfo itself, and
// a reconnect runs on the loop at any time; with the DNS down that call would stop every stream
// for the resolver's timeouts (5 s a try by default). The price: a Redis that moves to another
// address is followed only by a restart.
std::string resolve_redis_host(const std::string& host);

enum class ReplyType { string, array, integer, nil, status, error };

// What a command's callback gets: Redis's reply (a view into hiredis's, valid during the callback
// only: copy what you keep), or a failure: no reply will come (timeout, connection lost), why()
// saying so (a view too). An error reply of Redis's (-ERR...) is a reply, not a failure.
class RedisReply {
public:
    static RedisReply failure(std::string_view why) noexcept { return RedisReply(nullptr, why); }
    explicit RedisReply(const ::redisReply* r) noexcept : reply_(r) {}

    bool failed() const noexcept { return reply_ == nullptr; }
    std::string_view why() const noexcept { return why_; }  // when failed()

    // The rest only when !failed().
    ReplyType type() const noexcept;
    bool is_error() const noexcept { return type() == ReplyType::error; }  // Redis's -ERR, -WRONGPASS...
    std::string_view str() const noexcept;  // string, status, error; empty otherwise
    long long integer() const noexcept;     // integer; 0 otherwise
    size_t size() const noexcept;           // array's elements; 0 otherwise
    RedisReply operator[](size_t i) const noexcept;  // i < size()

private:
    RedisReply(const ::redisReply* r, std::string_view why) noexcept : reply_(r), why_(why) {}
    const ::redisReply* reply_ = nullptr;
    std::string_view why_;
};

struct RedisHandlers {
    std::function<void()> on_ready;                        // AUTH and SELECT done
    std::function<void(std::string_view reason)> on_lost;  // once; never from a constructor or command()
};

class RedisConnection {
public:
    using ReplyFn = std::function<void(const RedisReply&)>;
    enum class State { connecting, ready, lost };

    // Starts connecting (a non-blocking connect; never blocks: see resolve_redis_host). Throws
    // std::invalid_argument if options.address is not a numeric address.
    RedisConnection(EventLoop& loop, RedisOptions options, RedisHandlers handlers);
    // Drops the connection; no callback of it is called any more, not even the pending commands'
    // (the owner is going away). Safe from inside any of this connection's callbacks.
    ~RedisConnection();
    RedisConnection(RedisConnection&&) noexcept;
    RedisConnection& operator=(RedisConnection&&) noexcept;
    RedisConnection(const RedisConnection&) = delete;
    RedisConnection& operator=(const RedisConnection&) = delete;

    State state() const noexcept;

    // Sends argv (binary-safe, never formatted into a command string) and calls fn exactly once,
    // later, with the reply or a failure. timeout overrides options.command_timeout: a blocking
    // command (XREAD BLOCK n) gives one longer than n, and goes on a connection of its own, since
    // what is sent behind it waits for it. false when the connection is not ready: fn is then
    // dropped, never called. Pub/sub and MONITOR (one command, many replies) and HELLO (RESP3,
    // which hiredis 0.14 cannot read) throw std::invalid_argument, as does an empty argv.
    [[nodiscard]] bool command(std::span<const std::string_view> argv, ReplyFn fn,
                               std::optional<std::chrono::milliseconds> timeout = std::nullopt);
    [[nodiscard]] bool command(std::initializer_list<std::string_view> argv, ReplyFn fn,
                               std::optional<std::chrono::milliseconds> timeout = std::nullopt) {
        return command(std::span(argv.begin(), argv.size()), std::move(fn), timeout);
    }

    size_t pending() const noexcept;  // commands sent that have no reply yet

private:
    class Core;  // the part hiredis calls into: it outlives this object until the loop's round ends
    EventLoop* loop_ = nullptr;
    std::unique_ptr<Core> core_;
};

// The delays between reconnection attempts: doubling from `first` to `cap`, each one drawn at
// random from its upper half ("equal jitter"), so that processes that lost Redis together do not
// come back together. reset() after a connection was ready.
class Backoff {
public:
    Backoff(std::chrono::milliseconds first, std::chrono::milliseconds cap, uint64_t seed = std::random_device{}());
    std::chrono::milliseconds next();
    void reset() noexcept { step_ = first_; }

private:
    std::chrono::milliseconds first_, cap_, step_;
    std::minstd_rand random_;
};

}  // namespace fastsse::redis
