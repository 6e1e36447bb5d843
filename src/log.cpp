#include "fastsse/log.hpp"

#include <fmt/format.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <mutex>

namespace fastsse {

std::string log_escape(std::string_view text, size_t max_bytes) {
    std::string out;
    out.reserve(std::min(text.size(), max_bytes));
    for (size_t i = 0; i < text.size(); ++i) {
        if (out.size() >= max_bytes) {
            fmt::format_to(std::back_inserter(out), "... ({} bytes in all)", text.size());
            break;
        }
        auto c = static_cast<unsigned char>(text[i]);
        switch (c) {
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
            if (c < 0x20 || c >= 0x7f) fmt::format_to(std::back_inserter(out), "\\x{:02x}", c);
            else out += static_cast<char>(c);
        }
    }
    return out;
}

namespace {

// Escapes each message, then hands it to the sink that writes it.
class EscapingSink final : public spdlog::sinks::base_sink<std::mutex> {
public:
    explicit EscapingSink(spdlog::sink_ptr target) : target_(std::move(target)) {}

protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
        std::string_view payload(msg.payload.data(), msg.payload.size());
        bool plain = payload.size() <= 4096 && std::all_of(payload.begin(), payload.end(), [](char c) {
                         return static_cast<unsigned char>(c) >= 0x20 && static_cast<unsigned char>(c) < 0x7f;
                     });
        if (plain) return target_->log(msg);
        auto escaped = log_escape(payload);
        spdlog::details::log_msg copy(msg);
        copy.payload = escaped;
        target_->log(copy);
    }
    void flush_() override { target_->flush(); }
    void set_pattern_(const std::string& pattern) override { target_->set_pattern(pattern); }
    void set_formatter_(std::unique_ptr<spdlog::formatter> formatter) override {
        target_->set_formatter(std::move(formatter));
    }

private:
    spdlog::sink_ptr target_;
};

}  // namespace

std::shared_ptr<spdlog::logger> make_logger(std::string name, spdlog::sink_ptr sink) {
    return std::make_shared<spdlog::logger>(std::move(name), std::make_shared<EscapingSink>(std::move(sink)));
}

void setup_logging(const std::string& level) {
    auto logger = make_logger("fastsse", std::make_shared<spdlog::sinks::stderr_sink_mt>());
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %l %v");
    logger->set_level(spdlog::level::from_str(level));
    logger->flush_on(spdlog::level::trace);
    spdlog::set_default_logger(logger);
}

}  // namespace fastsse
