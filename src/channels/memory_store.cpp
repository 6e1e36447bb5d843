#include "fastsse/channels/memory_store.hpp"

#include <deque>
#include <unordered_map>

namespace fastsse {

namespace {

class MemoryChannel final : public Channel {
public:
    explicit MemoryChannel(const HistoryLimits& limits) : limits_(limits) {}

    void publish(const Event& event) override {
        // Shared by the history and this fan-out: a subscriber that publishes again from its send
        // (none does today) may push it out of the history, never out from under the fan-out.
        auto bytes = std::make_shared<const std::string>(encode(event));
        if (event.id && limits_.max_events > 0) keep(*event.id, bytes);
        fan_out(*bytes);
    }

    ChannelSubscription subscribe(Sink& sink, std::string_view last_id) override {
        replay(sink, last_id);
        return add_subscriber(sink);
    }

private:
    struct Entry {
        std::string id;
        std::shared_ptr<const std::string> bytes;
    };

    void keep(std::string_view id, std::shared_ptr<const std::string> bytes) {
        bytes_ += bytes->size();
        auto& entry = history_.emplace_back(Entry{std::string(id), std::move(bytes)});
        // An id given again (the publisher's business) now means its newest event.
        by_id_.erase(entry.id);
        by_id_.emplace(entry.id, first_ + history_.size() - 1);
        while (!history_.empty() && (history_.size() > limits_.max_events || bytes_ > limits_.max_bytes)) {
            auto& oldest = history_.front();
            if (auto it = by_id_.find(oldest.id); it != by_id_.end() && it->second == first_) by_id_.erase(it);
            bytes_ -= oldest.bytes->size();
            history_.pop_front();
            ++first_;
        }
    }

    void replay(Sink& sink, std::string_view last_id) {
        // The events after last_id; when it is not in the history (another channel's, one pushed
        // out, none at all), all of them.
        size_t after = 0;
        if (auto it = by_id_.find(last_id); !last_id.empty() && it != by_id_.end()) after = it->second - first_ + 1;
        // Of those, the newest that fit in what the stream may hold: more would drop it at once.
        size_t first = history_.size();
        for (size_t room = sink.room(); first > after; --first) {
            auto size = queued_size(std::string_view(*history_[first - 1].bytes));
            if (size > room) break;
            room -= size;
        }
        for (size_t i = first; i < history_.size(); ++i) sink.send_encoded(*history_[i].bytes);
    }

    HistoryLimits limits_;
    std::deque<Entry> history_;  // oldest first
    uint64_t first_ = 0;         // the sequence number of history_.front(); each event kept takes the next
    size_t bytes_ = 0;           // encoded bytes in history_
    // Each id's sequence number. The keys view the ids in history_: a deque's elements stay where
    // they are while others are added at the back and removed at the front.
    std::unordered_map<std::string_view, uint64_t> by_id_;
};

}  // namespace

Channel& MemoryStore::channel(std::string_view name, const HistoryLimits& limits) {
    auto it = channels_.find(name);
    if (it == channels_.end()) it = channels_.emplace(std::string(name), std::make_unique<MemoryChannel>(limits)).first;
    return *it->second;
}

void MemoryStore::remove(std::string_view name) noexcept {
    if (auto it = channels_.find(name); it != channels_.end()) channels_.erase(it);
}

}  // namespace fastsse
