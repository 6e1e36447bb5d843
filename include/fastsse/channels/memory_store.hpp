#pragma once
// The in-process channel store: each channel's history in memory, as encoded events.
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "fastsse/channels/channel.hpp"

namespace fastsse {

class MemoryStore final : public ChannelStore {
public:
    Channel& channel(std::string_view name, const HistoryLimits& limits) override;
    void remove(std::string_view name) noexcept override;
    size_t size() const noexcept { return channels_.size(); }

private:
    std::map<std::string, std::unique_ptr<Channel>, std::less<>> channels_;
};

}  // namespace fastsse
