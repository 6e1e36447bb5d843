#include "fastsse/channels/memory_store.hpp"

#include <memory>
#include <string>

#include "fastsse/channels/history.hpp"

namespace fastsse {

namespace {

class MemoryChannel final : public Channel {
public:
    explicit MemoryChannel(const HistoryLimits& limits) : history_(limits) {}

    using Channel::publish;
    using Channel::subscribe;

    void publish(const Event& event, const UpdateMeta& meta, PublishedFn done) override {
        // Shared by the history and this fan-out: a subscriber that publishes again from its send
        // (none does today) may push it out of the history, never out from under the fan-out.
        auto kept = std::make_shared<History::Kept>();
        kept->bytes = encode(event);
        if (event.id && history_.keeps_events()) {
            kept->id = *event.id;
            kept->topics.assign(meta.topics.begin(), meta.topics.end());
            kept->is_private = meta.is_private;
            history_.keep(kept);
        }
        // Kept: the publisher hears so before the fan-out, which may take a while (10,000 sends),
        // rather than after it.
        if (done) done(Published{std::string(event.id.value_or(std::string_view())), {}});
        fan_out(kept->bytes, meta);
    }

    Joined subscribe(Sink& sink, std::optional<std::string_view> last_id, const Interest* interest) override {
        Joined joined;
        if (last_id) joined.resume = history_.replay(sink, *last_id, interest);
        joined.subscription = add_subscriber(sink, interest);
        return joined;
    }

private:
    History history_;
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
