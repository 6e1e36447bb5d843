#pragma once
// Channels: events published once and sent to every stream that subscribes, with a bounded history
// for late joiners and for clients that come back with Last-Event-ID. A ChannelStore keeps them by
// name: in this process (memory_store.hpp) or in Redis (redis_store.hpp), as nchan's nchan_store_t
// has store/memory and store/redis behind one table of functions. The history itself is history.hpp.
//
// Ids are opaque text, chosen by whoever makes them (the publisher, the hub, or a store such as
// Redis Streams: assigns_ids()): a channel never reads a number out of one. A subscriber resumes
// after the id it saw last, or gets the whole history when that id is not in it.
//
// An event may carry where it goes (UpdateMeta: a Mercure update's topics and private flag), and a
// subscriber may say what it wants of them (an Interest): the hub's subscribers share one channel
// and each gets, live and in its replay, only what its topic selectors and token let it see. A
// command's events carry nothing and its subscribers want everything.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
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
    size_t max_bytes = SIZE_MAX;  // of encoded events and their topics
};

// Where an update goes, as an Interest sees it: never its bytes. A command's events have none of
// it (no topics, public).
struct UpdateMeta {
    std::span<const std::string> topics;  // the canonical topic first, then the alternates
    bool is_private = false;              // Mercure's `private`: only for subscribers allowed to see it
};

// What one subscriber wants: asked once per publish for each subscriber that has one, and once per
// history entry in its replay, so that a replay after an id lets through exactly what a live
// subscriber would have got. It decides from the update alone (pure, no side effect: it must not
// publish, subscribe or leave), and it is the only work a publish does per subscriber besides the
// send: it should not allocate. It must outlive the subscription it was given to.
class Interest {
public:
    virtual bool wants(const UpdateMeta& update) const = 0;

protected:
    ~Interest() = default;
};

// The resume point that asks for the whole history, as Mercure reserves it ("Reconnection, State
// Reconciliation and Event Sourcing": the value `earliest` asks the hub for all the updates it
// has). Mercure forbids a publisher to give an update this id; a channel keeps one that has it, but
// nobody can resume after it.
inline constexpr std::string_view earliest_id = "earliest";

// What a subscriber's replay did with the id it came back with: what a Mercure hub answers in the
// `Last-Event-ID` response header (0.x, draft 07) and `Mercure-Last-Event-ID` (1.0, draft 08). The
// spec's section "Reconnection, State Reconciliation and Event Sourcing", in short: the hub sets
// the header whenever the request gave an id; its value is the id of the event just before the
// first one sent to the subscriber, or `earliest` when there is none before it (the history is
// empty, the subscriber asked for `earliest`, or the id it gave does not exist or was discarded),
// so that a subscriber comparing it with the id it sent can tell it missed updates. Mercure's own
// hub names only events the subscriber may read; so does this: an event the Interest does not want
// is never named, and when the requested id was found, it stands for the unwanted events after it.
struct Resume {
    // The requested id named an event in the history (`earliest` names none).
    bool found = false;
    // The id before the first event sent, in the sense above: the requested id when it was found and
    // everything wanted after it fitted in the sink's room(); the newest wanted event left out for
    // lack of room when some were; otherwise earliest_id. Empty when no id was given (no replay,
    // nothing to answer).
    std::string last_event_id;
    size_t replayed = 0;  // events sent from the history
};

class Channel;

// What a publish learns once the store kept the event, or could not: the id it has (its own, or the
// one a store that makes ids up gave it: see Channel::assigns_ids), or why it was not kept. An event
// that was not kept reached nobody.
struct Published {
    std::string id;
    std::string failure;  // empty: kept
};
using PublishedFn = std::function<void(Published)>;

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

// What subscribe() gives a subscriber with an Interest: its place, and the answer for its headers.
struct Joined {
    ChannelSubscription subscription;
    Resume resume;
};

// One channel. What differs between stores is where the history lives, so publish() and
// subscribe() are theirs; the subscribers are always streams of this process, and their fan-out is
// here, shared by every store. subscribe() answers at once (its Resume goes into the response's
// headers): a store whose history is elsewhere, such as Redis Streams, reads that stream anyway to
// fan out what other processes publish, and keeps its newest entries (within the same limits, with
// their meta) in the process for replays and id look-ups; its publish() fans out when the entry
// comes back from the stream, so that every process sends the updates in the stream's order.
class Channel {
public:
    Channel() = default;
    Channel(const Channel&) = delete;
    Channel& operator=(const Channel&) = delete;
    virtual ~Channel() = default;

    // Encodes `event` once, keeps it in the history with `meta` (when it has an id), and sends the
    // same bytes to every subscriber whose Interest wants `meta` (and to those without one). Throws
    // EventError for a bad name or id: then nothing is kept or sent. A sink may publish from inside
    // its send; that event goes out (to everyone there) before this one reaches the later subscribers.
    // `done` (if given) is called once: before publish() returns in a store of this process (once
    // the event is kept, before the fan-out); later in one elsewhere (Redis), which fans out when the
    // event comes back from it, in its order, to the subscribers of every process.
    virtual void publish(const Event& event, const UpdateMeta& meta, PublishedFn done) = 0;
    void publish(const Event& event, const UpdateMeta& meta) { publish(event, meta, nullptr); }
    // An event for everyone: no topics, public.
    void publish(const Event& event) { publish(event, UpdateMeta{}, nullptr); }
    // Whether an event published without an id gets one from the store (Redis: its stream entry's),
    // kept and sent with it. Otherwise such an event is sent and never kept.
    virtual bool assigns_ids() const { return false; }

    // Sends `sink` the history after `last_id`, then everything published from now on; both only
    // what `interest` wants (everything when it is null; it must outlive the subscription).
    // - no last_id: no history, only what comes next (a Mercure subscriber that gave no id);
    // - an id in the history: the events after it; an id given to several events stands for the
    //   oldest of them still kept (Mercure 1.0 requires it: a subscriber may get an event twice,
    //   never lose one);
    // - earliest_id, an empty id, or one not in the history (another channel's, pushed out, never
    //   given): all of it.
    // Of those, only the newest that fit in the sink's room(): more would drop it at once.
    [[nodiscard]] virtual Joined subscribe(Sink& sink, std::optional<std::string_view> last_id,
                                           const Interest* interest) = 0;
    // The command producer's way: everything, and the whole history when last_id is empty or not in it.
    [[nodiscard]] ChannelSubscription subscribe(Sink& sink, std::string_view last_id) {
        return subscribe(sink, std::optional(last_id), nullptr).subscription;
    }

    // Ends every subscriber's stream (Sink::finish). They stay subscribed until they go.
    void finish(std::optional<std::chrono::milliseconds> retry);

    size_t subscribers() const noexcept { return slots_.size() - holes_; }

protected:
    // Adds `sink` to the fan-out: it gets what fan_out() sends from now on that `interest` wants.
    ChannelSubscription add_subscriber(Sink& sink, const Interest* interest);
    // The same bytes to every subscriber there was when it began that wants `meta`. A subscriber
    // may leave during it (its subscription reset or destroyed, before its Sink) and one may join
    // (it gets none of them). Allocates nothing.
    void fan_out(std::string_view sse_bytes, const UpdateMeta& meta);
    // A subscriber's Interest from now on, if it is still there (a store that held one back lets
    // it in: redis_store.cpp). `subscription` names it: token_of() it while it is held.
    void set_interest(uint64_t token, const Interest* interest) noexcept;
    static uint64_t token_of(const ChannelSubscription& subscription) noexcept { return subscription.token_; }

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
        const Interest* interest;  // null: everything
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
