#pragma once
// The Redis store (`engine = "redis://..."`): each channel's history is a Redis Stream, and every
// fastsse process given the same Redis serves the same channels.
//
// - A publish is an XADD (MAXLEN ~ the history's count): Redis gives the entry its id, which orders
//   the updates for every process, and the publish is answered only once Redis replied. An update
//   without an id of its publisher's gets `#<entry id>` (Mercure allows a hub a fragment for an
//   offset of its own).
// - Each process reads the streams on a connection of its own (XREAD BLOCK, after the last entry it
//   read) and fans each entry out to its own subscribers: encoded once per process, never per
//   subscriber, and in the stream's order, the publisher's process included.
// - Each process keeps the newest entries in its History (the same limits), loaded at start with
//   XREVRANGE and kept up by the reads, so that a replay after Last-Event-ID never waits for Redis.
// - Redis away: open streams go on (heartbeats, replays from the History); publishes get a failure
//   (the hub answers 503); the store reconnects with a growing, jittered delay, says so once, and
//   reads on from the last entry it read, so that nothing published meanwhile is lost or repeated.
//   A stream that no longer holds that entry (Redis restarted empty, or trimmed what this process
//   had not read yet) means lost updates: the History is emptied, so that resuming subscribers get
//   `earliest`.
// - A client that resumes after an entry of the stream this process has not read yet (another
//   process read it first and sent it; this one lags, or lost Redis a moment) is answered with its
//   own id and held back until the reads pass that entry: no replay, nothing twice.
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "fastsse/channels/channel.hpp"
#include "fastsse/loop/event_loop.hpp"
#include "fastsse/redis/connection.hpp"

namespace fastsse {

struct RedisStoreOptions {
    redis::RedisOptions connection;
    std::string key_prefix = "fastsse:channel:";  // a channel's stream is key_prefix + its name
    std::chrono::milliseconds block{5000};       // how long one XREAD waits for new entries
    std::chrono::milliseconds reconnect_first{200};
    std::chrono::milliseconds reconnect_cap{5000};
    // The streams keep at least this many entries (MAXLEN ~), even for a channel without history:
    // a process that lags behind, or reconnects, still finds what it has not read.
    size_t min_stream_length = 1000;
};

class RedisStore final : public ChannelStore {
public:
    RedisStore(EventLoop& loop, RedisStoreOptions options);
    ~RedisStore() override;
    RedisStore(const RedisStore&) = delete;
    RedisStore& operator=(const RedisStore&) = delete;

    // Before the server runs: runs the loop until Redis answered (AUTH and SELECT done) and every
    // channel made so far has loaded its history. Throws std::runtime_error with the reason
    // (refused, wrong password, timeout...) if not: the caller stops there.
    void start();

    Channel& channel(std::string_view name, const HistoryLimits& limits) override;
    void remove(std::string_view name) noexcept override;

    // Both connections ready, and the reads under way.
    bool connected() const noexcept { return up_; }

private:
    class RedisChannel;

    void connect();
    void on_ready();
    void on_lost(std::string_view reason);
    void sync(RedisChannel& channel);
    void synced();
    void read();
    void on_read(const redis::RedisReply& reply);

    EventLoop& loop_;
    RedisStoreOptions options_;
    std::map<std::string, std::unique_ptr<RedisChannel>, std::less<>> channels_;
    std::unique_ptr<redis::RedisConnection> commands_;  // XADD, the history's loads and checks
    std::unique_ptr<redis::RedisConnection> reader_;    // XREAD BLOCK only: what is sent behind it waits
    bool up_ = false;
    bool reading_ = false;
    size_t syncing_ = 0;        // channels whose history is being loaded or checked
    uint64_t generation_ = 0;       // of the connections: a reply for older ones is ignored
    uint64_t read_generation_ = 0;  // of the reader alone (replaced when a channel is added)
    bool down_logged_ = false;  // "lost" was logged: "back" will be, once
    redis::Backoff backoff_;
    Timer retry_;
    std::optional<std::string> start_failure_;  // while start() runs
    bool starting_ = false;
};

}  // namespace fastsse
