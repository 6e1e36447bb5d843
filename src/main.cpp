// fastsse: the program is assembled here, and only here: settings, logging, signals, producers.
#include <fcgiapp.h>
#include <fmt/format.h>
#include <signal.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include "fastsse/event_loop.hpp"
#include "fastsse/producers/clock.hpp"
#include "fastsse/server.hpp"
#include "fastsse/settings.hpp"

namespace {

void setup_logging(const std::string& level) {
    auto logger = spdlog::stderr_logger_mt("fastsse");
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %l %v");
    logger->set_level(spdlog::level::from_str(level));
    logger->flush_on(spdlog::level::trace);
    spdlog::set_default_logger(logger);
}

// Each stream costs one descriptor: take all the kernel allows (the soft limit is often 1024).
void raise_descriptor_limit() {
    rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
        lim.rlim_cur = lim.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &lim);
    }
    ::getrlimit(RLIMIT_NOFILE, &lim);
    spdlog::info("descriptor limit {}", static_cast<unsigned long long>(lim.rlim_cur));
}

}  // namespace

int main(int argc, char** argv) {
    using namespace fastsse;

    EventLoop loop;
    Registry registry;
    registry.add("clock", std::make_unique<ClockProducer>(loop));

    Settings settings;
    try {
        auto loaded = load_settings(argc, argv, registry);
        if (!loaded) return 0;
        settings = *loaded;
    } catch (const UsageError& e) {
        fmt::print(stderr, "fastsse: {}\n", e.what());
        return 2;
    }

    setup_logging(settings.log_level);
    // libfcgi's FCGX_Init installs handlers for SIGPIPE, SIGUSR1 and SIGTERM (its SIGTERM handler
    // only sets a flag). Take the signals back: SIGPIPE ignored, SIGTERM/SIGINT read from a signalfd.
    FCGX_Init();
    ::signal(SIGPIPE, SIG_IGN);
    ::signal(SIGTERM, SIG_DFL);
    ::signal(SIGINT, SIG_DFL);
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    ::pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);  // before any thread starts: all inherit it

    std::unique_ptr<Listener> listener;
    try {
        listener = std::make_unique<Listener>(settings);
    } catch (const UsageError& e) {
        fmt::print(stderr, "fastsse: {}\n", e.what());
        return 2;
    } catch (const std::exception& e) {
        fmt::print(stderr, "fastsse: {}\n", e.what());
        return 1;
    }
    spdlog::info("fastsse {} starting (pid {})", FASTSSE_VERSION, ::getpid());
    raise_descriptor_limit();
    spdlog::info("listening on {}", listener->address());
    try {
        Server server(loop, registry, settings, listener->fd());
        server.run();
    } catch (const std::exception& e) {
        spdlog::error("{}", e.what());
        return 1;
    }
    return 0;
}
