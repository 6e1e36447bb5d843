#include "fastsse/channels/redis_store.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <utility>
#include <vector>

#include "fastsse/channels/history.hpp"
#include "fastsse/metrics/metrics.hpp"

namespace fastsse {

namespace {

using redis::RedisReply;
using redis::ReplyType;

// An entry's id as Redis writes them, `<ms>-<seq>`: checked before it goes into a log line, an
// event id or a command.
bool is_entry_id(std::string_view id) {
    auto dash = id.find('-');
    if (dash == 0 || dash == id.npos || dash + 1 == id.size() || id.size() > 41) return false;
    return std::all_of(id.begin(), id.end(), [](char c) { return (c >= '0' && c <= '9') || c == '-'; }) &&
           id.find('-', dash + 1) == id.npos;
}

// An entry's id as two numbers, in the stream's order; nullopt for anything else.
using EntryKey = std::pair<uint64_t, uint64_t>;
std::optional<EntryKey> entry_key(std::string_view id) {
    if (!is_entry_id(id)) return std::nullopt;
    auto dash = id.find('-');
    EntryKey key;
    auto ms = std::from_chars(id.data(), id.data() + dash, key.first);
    auto seq = std::from_chars(id.data() + dash + 1, id.data() + id.size(), key.second);
    if (ms.ec != std::errc() || seq.ec != std::errc()) return std::nullopt;  // out of range
    return key;
}

// The Interest of a subscriber held back (RedisChannel::subscribe): it wants nothing yet.
class HeldBack final : public Interest {
public:
    bool wants(const UpdateMeta&) const override { return false; }
};
const HeldBack held_back;

// The topics of an update, in one field: each as <length>:<bytes>, so that any byte may be in one.
std::string pack_topics(std::span<const std::string> topics) {
    std::string out;
    for (const auto& t : topics) fmt::format_to(std::back_inserter(out), "{}:{}", t.size(), t);
    return out;
}

// The reverse; nullopt for anything pack_topics did not write.
std::optional<std::vector<std::string>> unpack_topics(std::string_view packed) {
    std::vector<std::string> topics;
    while (!packed.empty()) {
        size_t length = 0;
        auto [end, ec] = std::from_chars(packed.data(), packed.data() + packed.size(), length);
        if (ec != std::errc() || end == packed.data() || end == packed.data() + packed.size() || *end != ':')
            return std::nullopt;
        packed.remove_prefix(end - packed.data() + 1);
        if (length > packed.size()) return std::nullopt;
        topics.emplace_back(packed.substr(0, length));
        packed.remove_prefix(length);
    }
    return topics;
}

}  // namespace

// One channel: its subscribers (the fan-out of every Channel), the newest entries of its stream,
// and where this process's reading stands.
class RedisStore::RedisChannel final : public Channel {
public:
    RedisChannel(RedisStore& store, std::string key, const HistoryLimits& limits)
        : store_(store), key_(std::move(key)), limits_(limits), history_(limits) {}

    using Channel::publish;
    using Channel::subscribe;

    bool assigns_ids() const override { return true; }

    void publish(const Event& event, const UpdateMeta& meta, PublishedFn done) override {
        encode(event);  // what would break the framing is refused here, before Redis stores it
        if (!store_.up_) {
            if (done) done({{}, "the Redis engine is not connected (fastsse reconnects)"});
            return;
        }
        auto maxlen = std::to_string(std::max(limits_.max_events, store_.options_.min_stream_length));
        auto topics = pack_topics(meta.topics);
        auto retry = event.retry_ms ? std::to_string(*event.retry_ms) : std::string();
        std::vector<std::string_view> argv{"XADD", key_, "MAXLEN", "~", maxlen, "*", "topics", topics};
        if (meta.is_private) argv.insert(argv.end(), {"private", "1"});
        if (event.id) argv.insert(argv.end(), {"id", *event.id});
        if (!event.event.empty()) argv.insert(argv.end(), {"event", event.event});
        if (event.data) argv.insert(argv.end(), {"data", *event.data});
        if (event.retry_ms) argv.insert(argv.end(), {"retry", retry});
        std::optional<std::string> own_id;
        if (event.id) own_id = std::string(*event.id);
        auto sent = store_.commands_->command(argv, [done, own_id](const RedisReply& reply) {
            if (!done) return;
            if (reply.failed()) return done({{}, fmt::format("Redis did not answer: {}", reply.why())});
            if (reply.type() != ReplyType::string || !is_entry_id(reply.str()))
                return done({{}, "Redis refused the update"});
            done({own_id ? *own_id : fmt::format("#{}", reply.str()), {}});
        });
        if (!sent && done) done({{}, "the Redis engine is not connected (fastsse reconnects)"});
    }

    Joined subscribe(Sink& sink, std::optional<std::string_view> last_id, const Interest* interest) override {
        Joined joined;
        if (last_id) {
            if (auto ahead = unread_entry(*last_id)) {
                // Another process read this entry first and sent it (its client came here since):
                // nothing to replay, and nothing until this process's reads pass the entry. Not
                // `earliest` and the whole history again; not that entry twice.
                joined.resume.found = true;
                joined.resume.last_event_id = std::string(*last_id);
                joined.subscription = add_subscriber(sink, &held_back);
                held_.push_back({token_of(joined.subscription), *ahead, interest});
                return joined;
            }
            joined.resume = history_.replay(sink, *last_id, interest);
        }
        joined.subscription = add_subscriber(sink, interest);
        return joined;
    }

    // An id this store gave (#<entry>) that is not in the history and comes after the last entry
    // read. Not when nothing was read since the start or since the stream lost its entries: then
    // an id from before (a Redis restarted empty) is not told apart from one to come, and gets
    // `earliest`, as an unknown id does.
    std::optional<EntryKey> unread_entry(std::string_view id) const {
        if (id.size() < 2 || id[0] != '#' || history_.contains(id)) return std::nullopt;
        auto key = entry_key(id.substr(1));
        auto last = entry_key(last_read_);
        if (!key || !last || *last == EntryKey{0, 0} || *key <= *last) return std::nullopt;
        return key;
    }

    // Lets in the subscribers held back after an entry before `entry` (inclusive: after it too).
    void let_in(const EntryKey& entry, bool inclusive) {
        std::erase_if(held_, [&](const Held& h) {
            if (h.after > entry || (h.after == entry && !inclusive)) return false;
            set_interest(h.token, h.interest);  // no-op for one that left
            return true;
        });
    }

    // An entry read from the stream: kept, and sent to this process's subscribers.
    void deliver(std::string_view entry_id, const RedisReply& fields) {
        last_read_ = std::string(entry_id);
        auto key = entry_key(entry_id);
        if (!held_.empty() && key) let_in(*key, false);  // those held back after an older entry get this one
        deliver_entry(entry_id, fields);
        if (!held_.empty() && key) let_in(*key, true);   // those after this one get the next
    }

    void deliver_entry(std::string_view entry_id, const RedisReply& fields) {
        std::optional<std::string_view> id, data, type, retry, topics;
        bool is_private = false;
        for (size_t i = 0; i + 1 < fields.size(); i += 2) {
            auto name = fields[i].str();
            auto value = fields[i + 1].str();
            if (name == "id") id = value;
            else if (name == "data") data = value;
            else if (name == "event") type = value;
            else if (name == "retry") retry = value;
            else if (name == "topics") topics = value;
            else if (name == "private") is_private = value == "1";
        }
        auto unpacked = topics ? unpack_topics(*topics) : std::nullopt;
        auto kept = std::make_shared<History::Kept>();
        kept->id = id ? std::string(*id) : fmt::format("#{}", entry_id);
        Event event;
        event.id = kept->id;
        event.data = data;
        if (type) event.event = *type;
        if (retry) {
            long long ms = -1;
            auto [end, ec] = std::from_chars(retry->data(), retry->data() + retry->size(), ms);
            if (ec == std::errc() && end == retry->data() + retry->size()) event.retry_ms = ms;
        }
        try {
            if (!unpacked) throw EventError("no topics field as fastsse writes it");
            kept->bytes = encode(event);
        } catch (const EventError& e) {
            // Not written by fastsse (whoever else writes to the key): never sent, never logged raw.
            spdlog::warn("Redis engine: entry {} of {} skipped: {}", entry_id, key_, e.what());
            return;
        }
        kept->topics = std::move(*unpacked);
        kept->is_private = is_private;
        if (history_.keeps_events()) history_.keep(kept);
        fan_out(kept->bytes, kept->meta());
    }

    RedisStore& store_;
    const std::string key_;
    const HistoryLimits limits_;
    History history_;
    std::string last_read_ = "0-0";  // the newest entry delivered (or loaded)
    // Subscribers held back until the reads pass the entry they resume after (unread_entry()).
    struct Held {
        uint64_t token;
        EntryKey after;
        const Interest* interest;  // theirs, let in then; never called here
    };
    std::vector<Held> held_;
    bool loaded_ = false;            // the history was loaded once (later syncs check it instead)
    bool synced_ = false;            // loaded or checked on the current connections: read it
};

RedisStore::RedisStore(EventLoop& loop, RedisStoreOptions options)
    : loop_(loop), options_(std::move(options)), backoff_(options_.reconnect_first, options_.reconnect_cap) {
    metrics::counts.redis_engine = true;
}

RedisStore::~RedisStore() {
    // The connections first: no reply may reach a channel being destroyed.
    reader_.reset();
    commands_.reset();
}

void RedisStore::start() {
    starting_ = true;
    start_failure_.reset();
    connect();
    auto deadline = loop_.call_after(options_.connection.connect_timeout + options_.connection.command_timeout +
                                         std::chrono::seconds(1),
                                     [this] {
                                         start_failure_ = "no answer in time";
                                         loop_.stop();
                                     });
    loop_.run();
    starting_ = false;
    if (start_failure_) {
        auto why = std::move(*start_failure_);
        retry_.cancel();
        reader_.reset();
        commands_.reset();
        throw std::runtime_error(why);
    }
}

void RedisStore::connect() {
    ++generation_;
    up_ = false;
    metrics::counts.redis_connected = false;
    reading_ = false;
    syncing_ = 0;
    for (auto& [name, channel] : channels_) channel->synced_ = false;
    redis::RedisHandlers handlers;
    handlers.on_ready = [this] { on_ready(); };
    handlers.on_lost = [this](std::string_view reason) { on_lost(reason); };
    commands_ = std::make_unique<redis::RedisConnection>(loop_, options_.connection, handlers);
    reader_ = std::make_unique<redis::RedisConnection>(loop_, options_.connection, handlers);
}

void RedisStore::on_ready() {
    using State = redis::RedisConnection::State;
    if (!commands_ || !reader_ || commands_->state() != State::ready || reader_->state() != State::ready) return;
    for (auto& [name, channel] : channels_) sync(*channel);
    if (syncing_ == 0) synced();
}

void RedisStore::on_lost(std::string_view reason) {
    if (starting_) {
        start_failure_ = std::string(reason);
        loop_.stop();
        return;
    }
    if (!down_logged_) {
        spdlog::warn("Redis engine: {}; publishes are refused (503) until it is back; reconnecting", reason);
        down_logged_ = true;
    } else {
        spdlog::debug("Redis engine: {}", reason);
    }
    // Both go: a publish must not be answered by one connection while the other reads nothing.
    ++generation_;
    up_ = false;
    metrics::counts.redis_connected = false;
    reading_ = false;
    reader_.reset();
    commands_.reset();
    retry_ = loop_.call_after(backoff_.next(), [this] { connect(); });
}

// The channel's history from its stream: loaded the first time; on a reconnection, a check that the
// stream still holds the last entry read, else updates were lost to this process.
void RedisStore::sync(RedisChannel& channel) {
    ++syncing_;
    auto generation = generation_;
    std::string key = channel.key_;
    auto done = [this, generation, key](auto&& apply) {
        if (generation != generation_) return;
        auto it = std::find_if(channels_.begin(), channels_.end(), [&](const auto& c) { return c.second->key_ == key; });
        if (it != channels_.end()) {
            apply(*it->second);
            it->second->synced_ = true;
        }
        if (--syncing_ == 0) synced();
    };
    bool sent;
    if (!channel.loaded_) {
        auto count = std::to_string(std::max<size_t>(channel.limits_.max_events, 1));
        sent = commands_->command({"XREVRANGE", key, "+", "-", "COUNT", count}, [done](const RedisReply& reply) {
            if (reply.failed()) return;  // the connection is going: on_lost follows
            done([&](RedisChannel& c) {
                c.loaded_ = true;
                if (reply.type() != ReplyType::array) return;
                // Newest first: delivered oldest first, to a channel with no subscriber yet.
                for (size_t i = reply.size(); i-- > 0;) {
                    auto entry = reply[i];
                    if (entry.size() != 2 || !is_entry_id(entry[0].str())) continue;
                    c.deliver(entry[0].str(), entry[1]);
                }
            });
        });
    } else {
        auto last = channel.last_read_;
        sent = commands_->command({"XRANGE", key, last, last}, [done, last](const RedisReply& reply) {
            if (reply.failed()) return;
            done([&](RedisChannel& c) {
                if (last == "0-0" || (reply.type() == ReplyType::array && reply.size() == 1)) return;
                spdlog::warn("Redis engine: {} no longer holds entry {}, the last this process read (Redis "
                             "restarted without its data, or trimmed what was not read yet): subscribers "
                             "that resume get Last-Event-ID: earliest",
                             c.key_, last);
                c.history_.clear();
                c.last_read_ = "0-0";  // all the stream holds now came after
            });
        });
    }
    if (!sent) --syncing_;
}

void RedisStore::synced() {
    up_ = true;
    metrics::counts.redis_connected = true;
    backoff_.reset();
    if (starting_) {
        loop_.stop();
    } else if (down_logged_) {
        ++metrics::counts.redis_reconnects;
        spdlog::warn("Redis engine: connected again; reading on after the last entry read");
    }
    down_logged_ = false;
    read();
}

void RedisStore::read() {
    if (!up_ || reading_ || !reader_) return;
    std::vector<std::string_view> argv{"XREAD", "COUNT", "1000", "BLOCK"};
    auto block = std::to_string(options_.block.count());
    argv.push_back(block);
    argv.push_back("STREAMS");
    std::vector<RedisChannel*> streams;
    for (auto& [name, channel] : channels_)
        if (channel->synced_) streams.push_back(channel.get());
    if (streams.empty()) return;
    for (auto* c : streams) argv.push_back(c->key_);
    for (auto* c : streams) argv.push_back(c->last_read_);
    auto generation = generation_;
    auto read_generation = read_generation_;
    reading_ = reader_->command(
        argv,
        [this, generation, read_generation](const RedisReply& reply) {
            if (generation != generation_ || read_generation != read_generation_) return;
            reading_ = false;
            if (reply.failed()) return;  // on_lost follows
            on_read(reply);
            read();
        },
        options_.block + options_.connection.command_timeout);
}

void RedisStore::on_read(const RedisReply& reply) {
    if (reply.type() != ReplyType::array) return;  // nil: nothing new within the block time
    for (size_t s = 0; s < reply.size(); ++s) {
        auto stream = reply[s];
        if (stream.size() != 2) continue;
        auto key = stream[0].str();
        auto it = std::find_if(channels_.begin(), channels_.end(), [&](const auto& c) { return c.second->key_ == key; });
        if (it == channels_.end()) continue;
        auto entries = stream[1];
        for (size_t i = 0; i < entries.size(); ++i) {
            auto entry = entries[i];
            if (entry.size() != 2 || !is_entry_id(entry[0].str())) continue;
            it->second->deliver(entry[0].str(), entry[1]);
        }
    }
}

Channel& RedisStore::channel(std::string_view name, const HistoryLimits& limits) {
    if (auto it = channels_.find(name); it != channels_.end()) return *it->second;
    auto& channel = *channels_
                         .emplace(std::string(name), std::make_unique<RedisChannel>(
                                                         *this, options_.key_prefix + std::string(name), limits))
                         .first->second;
    // A channel made while connected: its history loads, then a new read takes it in. The read
    // under way (blocked on the others) cannot: the reader starts again.
    if (up_) {
        if (reading_) {
            ++read_generation_;  // the blocked read's answer, if it comes, is ignored
            reading_ = false;
            reader_ = std::make_unique<redis::RedisConnection>(
                loop_, options_.connection,
                redis::RedisHandlers{[this] { read(); }, [this](std::string_view reason) { on_lost(reason); }});
        }
        sync(channel);
    }
    return channel;
}

void RedisStore::remove(std::string_view name) noexcept {
    if (auto it = channels_.find(name); it != channels_.end()) channels_.erase(it);
}

}  // namespace fastsse
