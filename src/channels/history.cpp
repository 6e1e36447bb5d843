#include "fastsse/channels/history.hpp"

#include <algorithm>

#include "fastsse/metrics/metrics.hpp"

namespace fastsse {

void History::keep(std::shared_ptr<const Kept> kept) {
    size_t size = kept->bytes.size();
    for (const auto& t : kept->topics) size += t.size();
    auto seq = end_seq();
    auto& entry = history_.emplace_back(Entry{std::move(kept), size});
    bytes_ += size;
    ++metrics::counts.history_entries;
    metrics::counts.history_bytes += static_cast<long long>(size);
    // An empty id is no resume point (a client that gets one forgets its last id).
    if (const auto& id = entry.kept->id; !id.empty()) {
        auto [it, added] = by_id_.try_emplace(id, SameId{seq, seq});
        if (!added) at(std::exchange(it->second.newest, seq)).next_same_id = seq;
    }
    while (!history_.empty() && (history_.size() > limits_.max_events || bytes_ > limits_.max_bytes))
        forget_oldest();
}

void History::forget_oldest() noexcept {
    auto& oldest = history_.front();
    if (const auto& id = oldest.kept->id; !id.empty()) {
        // The oldest entry is the oldest of its id: the id now stands for the next one, if any.
        auto it = by_id_.find(id);
        if (oldest.next_same_id == no_seq) {
            by_id_.erase(it);
        } else {
            // The key views this entry's id, which goes with it: it views the next one's now.
            // Moving the node in and out of the map allocates nothing.
            auto node = by_id_.extract(it);
            node.key() = at(oldest.next_same_id).kept->id;
            node.mapped().oldest = oldest.next_same_id;
            by_id_.insert(std::move(node));
        }
    }
    bytes_ -= oldest.size;
    --metrics::counts.history_entries;
    metrics::counts.history_bytes -= static_cast<long long>(oldest.size);
    history_.pop_front();
    ++first_;
}

Resume History::replay(Sink& sink, std::string_view last_id, const Interest* interest) {
    Resume resume;
    // The events after last_id; when it is not in the history (another channel's, one pushed
    // out, none at all), all of them.
    auto from = first_;
    if (last_id != earliest_id && !last_id.empty())
        if (auto it = by_id_.find(last_id); it != by_id_.end()) {
            resume.found = true;
            from = it->second.oldest + 1;
        }
    // Of those, the newest wanted that fit in what the stream may hold. Held, not pointed at:
    // a send may publish, and the history let them go.
    std::vector<std::shared_ptr<const Kept>> newest_first;
    const Kept* left_out = nullptr;
    size_t room = sink.room();
    for (auto seq = end_seq(); seq > from; --seq) {
        const auto& kept = at(seq - 1).kept;
        if (interest && !interest->wants(kept->meta())) continue;
        auto size = queued_size(std::string_view(kept->bytes));
        if (size > room) {
            left_out = kept.get();
            break;
        }
        room -= size;
        newest_first.push_back(kept);
    }
    resume.last_event_id = left_out ? left_out->id : resume.found ? std::string(last_id) : std::string(earliest_id);
    auto next = end_seq();
    for (auto it = newest_first.rbegin(); it != newest_first.rend(); ++it) sink.send_encoded((*it)->bytes);
    resume.replayed = newest_first.size();
    // What a send published meanwhile went to the subscribers there were, not yet this one: what
    // of it was kept follows, in order, so that nothing kept is lost between the replay and the
    // live events. (Room is not checked again: a sink that has none left drops its stream.)
    while (next < end_seq()) {
        std::vector<std::shared_ptr<const Kept>> batch;
        for (auto seq = std::max(next, first_), end = end_seq(); seq < end; ++seq)
            if (const auto& kept = at(seq).kept; !interest || interest->wants(kept->meta())) batch.push_back(kept);
        next = end_seq();
        for (const auto& kept : batch) sink.send_encoded(kept->bytes);
        resume.replayed += batch.size();
    }
    return resume;
}

History::~History() { uncount(); }

void History::uncount() noexcept {
    metrics::counts.history_entries -= static_cast<long long>(history_.size());
    metrics::counts.history_bytes -= static_cast<long long>(bytes_);
}

void History::clear() noexcept {
    uncount();
    by_id_.clear();
    first_ = end_seq();  // sequence numbers are never given twice: a replay under way compares them
    history_.clear();
    bytes_ = 0;
}

}  // namespace fastsse
