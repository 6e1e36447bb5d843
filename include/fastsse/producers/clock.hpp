#pragma once
// The clock producer: an event every interval, as Hoa's `$server->tick->send(time())` loop and
// MDN's ssedemo.php "ping". Streams with the same interval, name and format share one timer.
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <tuple>

#include "fastsse/loop/event_loop.hpp"
#include "fastsse/producers/producer.hpp"

namespace fastsse {

// A location's clock, from its FASTSSE_INTERVAL, FASTSSE_EVENT, FASTSSE_FORMAT and FASTSSE_COUNT.
struct ClockOptions {
    std::chrono::milliseconds interval{0};
    std::string event;    // empty: unnamed "message" events
    std::string format;   // a clock_data() format
    long long count = 0;  // events before the server ends the stream; 0: never
};

// The clock's per-location options, each bound to its field of ClockOptions.
const SettingTable<ClockOptions>& clock_options();

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
    using Key = std::tuple<std::chrono::milliseconds, std::string, std::string>;  // interval, event name, format
    void drop(const Key& key);  // forgets the ticker of `key` if no stream uses it any more

    EventLoop& loop_;
    std::map<Key, std::unique_ptr<Ticker>> tickers_;
};

// The data of one tick: Unix seconds (Hoa), milliseconds, microseconds, or MDN's {"time": ISO 8601}.
std::string clock_data(std::string_view format, std::chrono::system_clock::time_point t);

}  // namespace fastsse
