// fastsse: the program is assembled here, and only here: settings, logging, signals, producers, routes.
#include <fcgiapp.h>
#include <fmt/format.h>
#include <signal.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <filesystem>

#include "fastsse/channels/memory_store.hpp"
#include "fastsse/channels/redis_store.hpp"
#include "fastsse/loop/event_loop.hpp"
#include "fastsse/fastcgi/listener.hpp"
#include "fastsse/log.hpp"
#include "fastsse/loop/process.hpp"
#include "fastsse/metrics/endpoint.hpp"
#include "fastsse/metrics/metrics.hpp"
#include "fastsse/producers/clock.hpp"
#include "fastsse/producers/command.hpp"
#include "fastsse/producers/hub.hpp"
#include "fastsse/http/router.hpp"
#include "fastsse/http/server.hpp"
#include "fastsse/http/stream_route.hpp"
#include "fastsse/config/settings.hpp"

namespace {

// Each stream costs one descriptor: take all the kernel allows (the soft limit is often 1024), and
// say how many streams that holds, so that max_streams above it is found at start, not under load.
void raise_descriptor_limit(size_t max_streams) {
    rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
        lim.rlim_cur = lim.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &lim);
    }
    ::getrlimit(RLIMIT_NOFILE, &lim);
    auto limit = static_cast<unsigned long long>(lim.rlim_cur);
    // What is open now, and some for connections sending their heads and commands' pipes.
    auto in_use = static_cast<unsigned long long>(std::distance(std::filesystem::directory_iterator("/proc/self/fd"),
                                                                std::filesystem::directory_iterator{}));
    auto reserve = in_use + 32;
    auto room = limit > reserve ? limit - reserve : 0;
    if (max_streams > room)
        spdlog::warn("max_streams {} is more than the descriptor limit {} allows: about {} streams fit "
                     "(one descriptor each; beyond, new connections wait until descriptors are free)",
                     max_streams, limit, room);
    else
        spdlog::info("descriptor limit {}: room for about {} streams (max_streams {})", limit, room, max_streams);
}

}  // namespace

int main(int argc, char** argv) {
    using namespace fastsse;

    // Before anything else (and any thread): these signals are read from signalfds, never handled
    // asynchronously. Children get the default mask and dispositions back (process.cpp). SIGHUP
    // reloads the config file (Server).
    sigset_t signals;
    sigemptyset(&signals);
    for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGCHLD}) sigaddset(&signals, sig);
    ::pthread_sigmask(SIG_BLOCK, &signals, nullptr);

    EventLoop loop;
    std::unique_ptr<ChannelStore> hub_store;  // the engine: made once the settings say which
    ChildProcesses children(loop);
    Registry registry;
    registry.add("clock", std::make_unique<ClockProducer>(loop));
    auto commands = std::make_unique<CommandProducer>(loop, children);
    auto& command_producer = *commands;
    registry.add("command", std::move(commands));  // it reads the config file's [commands] itself
    auto hub = std::make_unique<HubProducer>(loop);
    auto& hub_producer = *hub;
    registry.add("hub", std::move(hub));  // a Mercure hub: its location takes POST too

    // The process's settings: routes and the server read them where they are, and a reload changes
    // them there.
    Settings settings;
    std::optional<SettingsSource> source;
    try {
        source = SettingsSource::from_command_line(argc, argv, registry);
        if (!source) return 0;
        settings = source->read();
        source->apply_sections();
        // The keys are read: commands' children (which get the whole environment unless their [commands]
        // entry says otherwise) must not inherit them. No thread runs yet: unsetenv is safe here.
        for (const auto& spec : settings_table().specs())
            if (!spec.env.empty()) ::unsetenv(std::string(spec.env).c_str());
    } catch (const UsageError& e) {
        fmt::print(stderr, "fastsse: {}\n", e.what());
        return 2;
    }

    // Which code answers a request: event streams for every location that names a producer, and
    // the metrics page where a location says FASTSSE_ENDPOINT metrics.
    Router routes;
    routes.add_producer_route(std::make_unique<StreamRoute>(registry, settings));
    routes.add_endpoint("metrics", std::make_unique<MetricsEndpoint>(registry, settings));

    setup_logging(settings.log_level);
    // libfcgi's FCGX_Init installs handlers for SIGPIPE, SIGUSR1 and SIGTERM (its SIGTERM handler
    // only sets a flag). Take them back: SIGPIPE ignored, SIGTERM as blocked above.
    FCGX_Init();
    ::signal(SIGPIPE, SIG_IGN);
    ::signal(SIGTERM, SIG_DFL);

    // The hub's channels: in this process, or in Redis, shared by every process given the same URL.
    // Redis must answer now: a wrong password or an unreachable host is the admin's to fix, said
    // in one line; once running, a Redis that goes away is waited for (redis_store.hpp).
    if (settings.engine.memory) {
        hub_store = std::make_unique<MemoryStore>();
        hub_producer.configure(settings.hub, hub_store.get());
    } else {
        auto where = redis::redacted(settings.engine);
        try {
            RedisStoreOptions options;
            // The name is resolved once, here: the loop never waits for DNS (connection.hpp).
            options.connection = redis::RedisOptions::from_url(settings.engine, redis::resolve_redis_host(settings.engine.host));
            auto store = std::make_unique<RedisStore>(loop, std::move(options));
            hub_producer.configure(settings.hub, store.get());
            store->start();
            hub_store = std::move(store);
        } catch (const std::exception& e) {
            fmt::print(stderr, "fastsse: the Redis engine at {}: {}\n", where, e.what());
            return 2;
        }
        spdlog::info("Redis engine: connected to {}", where);
    }

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
    raise_descriptor_limit(settings.max_streams);
    spdlog::info("listening on {}", listener->address());
    try {
        // SIGHUP. What a reload cannot change (the listening socket, the engine) SettingsSource
        // keeps, and names in the log.
        auto reload = [&] {
            bool applied = source->reload(settings);
            ++(applied ? metrics::counts.reloads_applied : metrics::counts.reloads_refused);
            metrics::counts.last_reload_applied = applied;
            if (!applied) return;
            spdlog::default_logger()->set_level(spdlog::level::from_str(settings.log_level));
            hub_producer.configure(settings.hub);  // its keys, for requests from now on
        };
        Server server(loop, routes, settings, listener->fd(), reload);
        ::sd_notify(0, "READY=1");  // systemd's Type=notify: we accept from here on
        server.run();
    } catch (const std::exception& e) {
        spdlog::error("{}", e.what());
        return 1;
    }
    // The streams are gone, and with them every run: end what is left of the commands (SIGTERM, a
    // short grace, SIGKILL) and reap it all, still within the 2 s a shutdown may take.
    command_producer.stop_runs();  // a shared run lingering after its last viewer, too
    children.stop_all(std::chrono::milliseconds(400));
    spdlog::info("stopped");
    return 0;
}
