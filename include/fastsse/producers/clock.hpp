#pragma once
// The clock producer: an event every interval, as Hoa's `$server->tick->send(time())` loop and
// MDN's ssedemo.php "ping". Streams with the same interval, name and format share one timer.
#include <map>
#include <memory>
#include <string>
#include <tuple>

#include "fastsse/loop/event_loop.hpp"
#include "fastsse/producers/producer.hpp"

namespace fastsse {

class ClockProducer final : public Producer {
public:
    explicit ClockProducer(EventLoop& loop);
    ~ClockProducer() override;
    std::span<const OptionSpec> options() const override;
    void check(const StreamStart& start) const override;
    std::unique_ptr<Subscription> open(Sink& sink, const StreamStart& start) override;

    size_t timers() const { return tickers_.size(); }  // for tests: shared timers in use

    class Ticker;  // one shared timer and the streams it ticks for

private:
    friend class Ticker;
    friend class ClockSubscription;
    using Key = std::tuple<long long, std::string, std::string>;  // interval, event name, format
    void drop(const Key& key);  // forgets the ticker of `key` if no stream uses it any more

    EventLoop& loop_;
    std::map<Key, std::unique_ptr<Ticker>> tickers_;
};

// The data of one tick: Unix seconds (Hoa), milliseconds, microseconds, or MDN's {"time": ISO 8601}.
std::string clock_data(std::string_view format, std::chrono::system_clock::time_point t);

}  // namespace fastsse
