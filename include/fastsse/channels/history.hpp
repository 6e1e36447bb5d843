#pragma once
// A channel's past in this process: the newest events within HistoryLimits, each with its id and
// its UpdateMeta, and a replay after an id. The memory store's channels keep their whole history
// here; the Redis store's keep here the newest entries of their Redis Stream (the same limits), read
// as every process reads them, so that a replay or an id look-up never waits for Redis.
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "fastsse/channels/channel.hpp"

namespace fastsse {

class History {
public:
    // One event as published: its encoding and what a replay asks an Interest about. Immutable
    // once kept, and shared, so that a replay or a fan-out holds it even after the history let it go.
    struct Kept {
        std::string bytes;  // encode()d once
        std::string id;
        std::vector<std::string> topics;
        bool is_private = false;
        UpdateMeta meta() const { return {topics, is_private}; }
    };

    explicit History(const HistoryLimits& limits) : limits_(limits) {}
    ~History();
    History(const History&) = delete;
    History& operator=(const History&) = delete;

    // Keeps `kept` as the newest event (its id may be empty: no resume point), then forgets the
    // oldest until the limits hold again.
    void keep(std::shared_ptr<const Kept> kept);
    // Sends `sink` what follows `last_id` that `interest` wants (see Channel::subscribe), the newest
    // that fit in its room(), and what the sends published meanwhile; says where it started.
    Resume replay(Sink& sink, std::string_view last_id, const Interest* interest);
    bool contains(std::string_view id) const { return by_id_.contains(id); }
    // The id of the newest event kept, or empty.
    std::string_view newest_id() const { return history_.empty() ? std::string_view() : history_.back().kept->id; }
    bool keeps_events() const { return limits_.max_events > 0; }
    size_t size() const { return history_.size(); }
    // Forgets every event (a store that lost its past: its subscribers resume from `earliest`).
    void clear() noexcept;

private:
    static constexpr uint64_t no_seq = UINT64_MAX;
    struct Entry {
        std::shared_ptr<const Kept> kept;
        size_t size;                   // what it counts against max_bytes
        uint64_t next_same_id = no_seq;  // the next entry with the same id, if any
    };
    // The entries of one id, oldest and newest still kept; those between are linked by next_same_id.
    struct SameId {
        uint64_t oldest, newest;
    };

    const Entry& at(uint64_t seq) const { return history_[seq - first_]; }
    Entry& at(uint64_t seq) { return history_[seq - first_]; }
    uint64_t end_seq() const { return first_ + history_.size(); }

    void forget_oldest() noexcept;
    void uncount() noexcept;  // what it holds leaves the metrics' history gauges

    HistoryLimits limits_;
    std::deque<Entry> history_;  // oldest first
    uint64_t first_ = 0;         // the sequence number of history_.front(); each event kept takes the next
    size_t bytes_ = 0;           // counted against max_bytes, in history_
    // Each id's entries. The keys view the ids of the entries they name (held by shared pointers,
    // they never move).
    std::unordered_map<std::string_view, SameId> by_id_;
};

}  // namespace fastsse
