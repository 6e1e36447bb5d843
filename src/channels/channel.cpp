#include "fastsse/channels/channel.hpp"

#include <algorithm>

#include "fastsse/metrics/metrics.hpp"

namespace fastsse {

ChannelSubscription& ChannelSubscription::operator=(ChannelSubscription&& o) noexcept {
    if (this != &o) {
        reset();
        channel_ = std::exchange(o.channel_, nullptr);
        token_ = o.token_;
    }
    return *this;
}

void ChannelSubscription::reset() noexcept {
    if (channel_) std::exchange(channel_, nullptr)->remove_subscriber(token_);
}

ChannelSubscription Channel::add_subscriber(Sink& sink, const Interest* interest) {
    auto token = next_token_++;
    slots_.push_back({token, &sink, interest});
    return ChannelSubscription(this, token);
}

void Channel::remove_subscriber(uint64_t token) noexcept {
    auto it = std::lower_bound(slots_.begin(), slots_.end(), token,
                               [](const Slot& s, uint64_t t) { return s.token < t; });
    if (it == slots_.end() || it->token != token || !it->sink) return;
    it->sink = nullptr;
    ++holes_;
    compact_if_sparse();
}

void Channel::set_interest(uint64_t token, const Interest* interest) noexcept {
    auto it = std::lower_bound(slots_.begin(), slots_.end(), token,
                               [](const Slot& s, uint64_t t) { return s.token < t; });
    if (it != slots_.end() && it->token == token && it->sink) it->interest = interest;
}

void Channel::compact_if_sparse() noexcept {
    // Once holes are half the slots: a leave costs O(1) on average, and a walk under way never
    // sees the slots move.
    if (walking_ > 0 || holes_ * 2 <= slots_.size()) return;
    std::erase_if(slots_, [](const Slot& s) { return s.sink == nullptr; });
    holes_ = 0;
}

template <class Fn>
void Channel::each_subscriber(Fn fn) {
    struct Walk {
        Channel& c;
        explicit Walk(Channel& channel) : c(channel) { ++c.walking_; }
        ~Walk() {
            --c.walking_;
            c.compact_if_sparse();
        }
    } walk(*this);
    // Only those there when it began: one that joins meanwhile got this event from the history, or
    // came too late for it. A copy of the slot: fn may add one, and slots_ move.
    for (size_t i = 0, n = slots_.size(); i < n; ++i)
        if (Slot slot = slots_[i]; slot.sink) fn(slot);
}

void Channel::fan_out(std::string_view sse_bytes, const UpdateMeta& meta) {
    metrics::FanOutTimer timer(metrics::counts.channel_fan_out);
    each_subscriber([sse_bytes, &meta](const Slot& s) {
        if (!s.interest || s.interest->wants(meta)) s.sink->send_encoded(sse_bytes);
    });
}

void Channel::finish(std::optional<std::chrono::milliseconds> retry) {
    each_subscriber([retry](const Slot& s) { s.sink->finish(retry); });
}

}  // namespace fastsse
