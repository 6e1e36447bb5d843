#pragma once
// Channels: events published once and sent to every stream that subscribes, with a bounded history
// for late joiners and for clients that come back with Last-Event-ID. A ChannelStore keeps them by
// name: in this process now (memory_store.hpp), in Redis later, as nchan's nchan_store_t has
// store/memory and store/redis behind one table of functions.
//
// Ids are opaque text, chosen by whoever makes them (the publisher now; a store such as Redis
// Streams, or a hub, later): a channel never reads a number out of one. A subscriber resumes after
// the id it saw last, or gets the whole history when that id is not in it.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "fastsse/producers/producer.hpp"
#include "fastsse/sse/event.hpp"

namespace fastsse {

// How much of its past a channel keeps: the newest events within both bounds (an event that alone
// passes max_bytes leaves the history empty). Events without an id are never kept: nobody could
// resume after them.
struct HistoryLimits {
    size_t max_events = 0;        // 0: no history
    size_t max_bytes = SIZE_MAX;  // of encoded events
};

class Channel;

// A stream's place in a channel's fan-out, from subscribe() until it is destroyed. Move-only. A
// channel must outlive its subscriptions.
class ChannelSubscription {
public:
    ChannelSubscription() noexcept = default;
    ChannelSubscription(ChannelSubscription&& o) noexcept
        : channel_(std::exchange(o.channel_, nullptr)), token_(o.token_) {}
    ChannelSubscription& operator=(ChannelSubscription&& o) noexcept;
    ChannelSubscription(const ChannelSubscription&) = delete;
    ChannelSubscription& operator=(const ChannelSubscription&) = delete;
    ~ChannelSubscription() { reset(); }

    void reset() noexcept;  // leaves the channel: nothing more is sent to the sink
    explicit operator bool() const noexcept { return channel_ != nullptr; }

private:
    friend class Channel;
    ChannelSubscription(Channel* channel, uint64_t token) noexcept : channel_(channel), token_(token) {}
    Channel* channel_ = nullptr;
    uint64_t token_ = 0;
};

// One channel. What differs between stores is where the history lives, so publish() and
// subscribe() are theirs; the subscribers are always streams of this process, and their fan-out is
// here, shared by every store.
class Channel {
public:
    Channel() = default;
    Channel(const Channel&) = delete;
    Channel& operator=(const Channel&) = delete;
    virtual ~Channel() = default;

    // Encodes `event` once, keeps it in the history (when it has an id), and sends the same bytes to
    // every subscriber. Throws EventError for a bad name or id: then nothing is kept or sent.
    virtual void publish(const Event& event) = 0;

    // Sends `sink` the history after `last_id` (all of it when last_id is empty or not there), only
    // the newest events that fit in its room(), then everything published from now on.
    [[nodiscard]] virtual ChannelSubscription subscribe(Sink& sink, std::string_view last_id) = 0;

    // Ends every subscriber's stream (Sink::finish). They stay subscribed until they go.
    void finish(std::optional<std::chrono::milliseconds> retry);

    size_t subscribers() const noexcept { return slots_.size() - holes_; }

protected:
    // Adds `sink` to the fan-out: it gets what fan_out() sends from now on.
    ChannelSubscription add_subscriber(Sink& sink);
    // The same bytes to every subscriber there was when it began. A subscriber may leave during it
    // (its subscription reset or destroyed, before its Sink) and one may join (it gets none of them).
    void fan_out(std::string_view sse_bytes);

private:
    friend class ChannelSubscription;
    void remove_subscriber(uint64_t token) noexcept;
    void compact_if_sparse() noexcept;
    template <class Fn>
    void each_subscriber(Fn fn);

    // In the order they came (tokens only grow); one that left is a hole (sink null) until the
    // next compaction, so that leaving is cheap and never moves what a fan-out walks over.
    struct Slot {
        uint64_t token;
        Sink* sink;
    };
    std::vector<Slot> slots_;
    size_t holes_ = 0;
    uint64_t next_token_ = 1;
    int walking_ = 0;  // fan-outs under way (a Sink call may lead to another)
};

// Channels by name.
class ChannelStore {
public:
    virtual ~ChannelStore() = default;
    // The channel of that name; made with `limits` if there is none yet (one that exists keeps its
    // own). The reference holds until remove(name).
    virtual Channel& channel(std::string_view name, const HistoryLimits& limits) = 0;
    // Forgets a channel and its history. Nobody may subscribe to it any more (see ChannelSubscription).
    virtual void remove(std::string_view name) noexcept = 0;
};

}  // namespace fastsse
