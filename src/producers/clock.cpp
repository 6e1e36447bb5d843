#include "fastsse/producers/clock.hpp"

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <charconv>
#include <ctime>
#include <vector>

#include "fastsse/metrics/metrics.hpp"

namespace fastsse {

namespace {

// The id to continue after Last-Event-ID; a missing id, or one that is not an event number, starts
// over at 1. Ids never pass max_event_number: after it comes 1.
uint64_t next_id(uint64_t id) { return id >= max_event_number ? 1 : id + 1; }

uint64_t first_id(std::string_view last) {
    auto n = parse_event_number(last);
    return n ? next_id(*n) : 1;
}

// The options as a location gives them, its event name checked as encode() would check it.
ClockOptions read_options(const StreamStart& start) {
    ClockOptions options;
    clock_options().load(options, start.params, true);
    try {
        check_field("name", options.event);
    } catch (const EventError& e) {
        throw OptionError(fmt::format("event: {}", e.what()));
    }
    return options;
}

}  // namespace

const SettingTable<ClockOptions>& clock_options() {
    static const SettingTable<ClockOptions> table{
        duration("interval", &ClockOptions::interval, "1000", 10, 86'400'000, "time between two events"),
        text("event", &ClockOptions::event, "tick", "event name (empty: unnamed \"message\" events)"),
        choice("format", &ClockOptions::format, "unix", "unix|unix_ms|unix_us|json",
               "data: Unix seconds, milliseconds, microseconds, or {\"time\": \"<ISO 8601>\"}"),
        integer("count", &ClockOptions::count, "0", 0, 1'000'000'000, {},
                "events per connection before the server ends the stream with a retry: hint (0: never)"),
    };
    return table;
}

std::string clock_data(std::string_view format, std::chrono::system_clock::time_point t) {
    using namespace std::chrono;
    auto since = t.time_since_epoch();
    if (format == "unix_ms") return fmt::format("{}", duration_cast<milliseconds>(since).count());
    if (format == "unix_us") return fmt::format("{}", duration_cast<microseconds>(since).count());
    auto seconds = duration_cast<std::chrono::seconds>(since).count();
    if (format == "json") {
        std::time_t tt = seconds;
        std::tm tm{};
        ::gmtime_r(&tt, &tm);
        return fmt::format("{{\"time\": \"{:%Y-%m-%dT%H:%M:%S}+00:00\"}}", tm);
    }
    return fmt::format("{}", seconds);
}

class ClockSubscription;

class ClockProducer::Ticker {
public:
    Ticker(ClockProducer& owner, Key key) : owner_(owner), key_(std::move(key)) {
        using namespace std::chrono;
        interval_ = std::get<0>(key_);
        // Line ticks up with the wall clock (whole seconds for 1000 ms), as a PHP sleep(1) loop reads.
        auto wall_ms = duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
        next_ = owner_.loop_.now() + milliseconds(interval_.count() - wall_ms % interval_.count());
        timer_ = owner_.loop_.call_at(next_, [this] { fire(); });
    }

    void add(ClockSubscription* s) { subscribers_.push_back(s); }
    // Returns true when no stream is left: the owner then drops this ticker and its timer.
    bool remove(ClockSubscription* s) {
        for (auto& slot : subscribers_) {
            if (slot == s) {
                slot = nullptr;
                break;
            }
        }
        if (!firing_) compact();
        return subscribers_.empty();
    }
    const std::string& event_name() const { return std::get<1>(key_); }
    const Key& key() const { return key_; }
    bool idle() const { return subscribers_.empty(); }

private:
    void fire();
    void compact() { std::erase(subscribers_, nullptr); }

    ClockProducer& owner_;
    Key key_;
    std::chrono::milliseconds interval_;
    EventLoop::Clock::time_point next_;
    Timer timer_;
    std::vector<ClockSubscription*> subscribers_;
    bool firing_ = false;
};

class ClockSubscription final : public Subscription {
public:
    ClockSubscription(ClockProducer& producer, ClockProducer::Ticker& ticker, Sink& sink,
                      uint64_t first_id, long long count, std::chrono::milliseconds retry)
        : producer_(producer), ticker_(ticker), sink_(sink), next_id_(first_id), remaining_(count), retry_(retry) {
        ticker_.add(this);
    }
    ~ClockSubscription() override {
        if (ticker_.remove(this)) producer_.drop(ticker_.key());
    }

    void tick(std::string_view data) {
        if (done_) return;
        char id[24];
        auto end = std::to_chars(id, id + sizeof id, next_id_).ptr;
        next_id_ = next_id(next_id_);
        sink_.send(Event{ticker_.event_name(), data, std::string_view(id, end - id), std::nullopt});
        // Hoa's bounded loop: after `count` events the server ends the stream and the browser
        // reconnects after the retry hint, sending the last id.
        if (remaining_ > 0 && --remaining_ == 0) {
            done_ = true;
            sink_.finish(retry_);
        }
    }

private:
    ClockProducer& producer_;
    ClockProducer::Ticker& ticker_;
    Sink& sink_;
    uint64_t next_id_;
    long long remaining_;  // 0: unbounded
    std::chrono::milliseconds retry_;
    bool done_ = false;
};

void ClockProducer::Ticker::fire() {
    auto data = clock_data(std::get<2>(key_), std::chrono::system_clock::now());
    auto started = std::chrono::steady_clock::now();
    firing_ = true;
    // By index: a subscription that ends during its tick only nulls its slot.
    size_t written = 0;
    for (size_t i = 0; i < subscribers_.size(); ++i)
        if (subscribers_[i]) {
            subscribers_[i]->tick(data);
            ++written;
        }
    firing_ = false;
    // When events arrive late, the first question is whether fastsse's own fan-out was slow.
    auto elapsed = std::chrono::steady_clock::now() - started;
    metrics::counts.clock_fan_out.observe(elapsed);
    if (spdlog::should_log(spdlog::level::debug)) {
        std::chrono::duration<double, std::milli> took = elapsed;
        spdlog::debug("clock {} ms, event '{}': sent to {} streams in {:.1f} ms", interval_.count(), event_name(),
                      written, took.count());
    }
    compact();

    // Fixed-rate schedule that skips, rather than bursts, ticks missed while the loop was busy.
    auto now = owner_.loop_.now();
    do next_ += interval_;
    while (next_ <= now);
    timer_ = owner_.loop_.call_at(next_, [this] { fire(); });
    if (subscribers_.empty()) owner_.drop(key_);
}

ClockProducer::ClockProducer(EventLoop& loop) : loop_(loop) {}
ClockProducer::~ClockProducer() = default;

std::span<const OptionSpec> ClockProducer::options() const { return clock_options().specs(); }

void ClockProducer::check(const StreamStart& start) const { read_options(start); }

std::unique_ptr<Subscription> ClockProducer::open(Sink& sink, const StreamStart& start) {
    auto options = read_options(start);
    Key key{options.interval, std::move(options.event), std::move(options.format)};
    auto it = tickers_.find(key);
    if (it == tickers_.end()) it = tickers_.emplace(key, std::make_unique<Ticker>(*this, key)).first;
    return std::make_unique<ClockSubscription>(*this, *it->second, sink, first_id(start.last_event_id),
                                               options.count, start.retry);
}

void ClockProducer::drop(const Key& key) {
    auto it = tickers_.find(key);
    if (it == tickers_.end() || !it->second->idle()) return;
    // Perhaps from the ticker's own fire(): it is destroyed once that returns.
    loop_.destroy_later(std::move(it->second));
    tickers_.erase(it);
}

}  // namespace fastsse
