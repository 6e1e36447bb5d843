// The config file's [commands.NAME] tables, read through load_settings() from a temporary TOML file
// (--config PATH) by the section reader of the producer that owns them (CommandSection, as the
// command producer has it): a full declaration lands in its commands as written, with the program
// looked up in PATH and pass_env copied from our environment; every mistake is a UsageError whose
// message starts with "PATH:LINE:" and names the problem.
#include <doctest/doctest.h>

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "support.hpp"
#include "fastsse/loop/event_loop.hpp"
#include "fastsse/producers/clock.hpp"
#include "fastsse/producers/command_config.hpp"
#include "fastsse/config/settings.hpp"

using namespace std::chrono_literals;
using fastsse::CommandSpec;
using fastsse::Settings;
using fastsse::UsageError;

namespace {

using fastsse_test::TempDir;

// An environment variable set for one scope, then put back.
class ScopedEnv {
public:
    ScopedEnv(const char* name, std::optional<std::string> value) : name_(name) {
        if (const char* old = std::getenv(name)) old_ = old;
        if (value) ::setenv(name, value->c_str(), 1);
        else ::unsetenv(name);
    }
    ~ScopedEnv() {
        if (old_) ::setenv(name_, old_->c_str(), 1);
        else ::unsetenv(name_);
    }

private:
    const char* name_;
    std::optional<std::string> old_;
};

// A producer that owns the [commands] section, as the command producer does, running nothing.
struct Commands final : fastsse::Producer {
    explicit Commands(std::map<std::string, CommandSpec>& commands) : section(commands) {}
    std::span<const fastsse::OptionSpec> options() const override { return {}; }
    std::unique_ptr<fastsse::Subscription> open(fastsse::Sink&, const fastsse::StreamStart&) override { return nullptr; }
    fastsse::ConfigSection* config_section() override { return &section; }
    fastsse::CommandSection section;
};

// The settings, and the commands the producer got.
struct Loaded : Settings {
    std::map<std::string, CommandSpec> commands;
};

std::optional<Loaded> load(const std::vector<std::string>& args) {
    std::vector<std::string> storage = {"fastsse"};
    storage.insert(storage.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : storage) argv.push_back(a.data());
    argv.push_back(nullptr);
    fastsse::EventLoop loop;
    fastsse::Registry registry;
    Loaded loaded;
    registry.add("clock", std::make_unique<fastsse::ClockProducer>(loop));
    registry.add("command", std::make_unique<Commands>(loaded.commands));
    auto settings = fastsse::load_settings(static_cast<int>(storage.size()), argv.data(), registry);
    if (!settings) return std::nullopt;
    static_cast<Settings&>(loaded) = *settings;
    return loaded;
}

Loaded load_config(const std::string& path) {
    auto s = load({"--config", path});
    REQUIRE(s);
    return *s;
}

// The UsageError for a config file, or a failed check.
std::string config_error(const std::string& path) {
    try {
        load({"--config", path});
        FAIL_CHECK("no UsageError for " << path);
    } catch (const UsageError& e) {
        return e.what();
    }
    return {};
}

// A config with one mistake: the message starts with "PATH:LINE:" and contains `mention`.
void check_error(const TempDir& dir, const std::string& toml, int line, const std::string& mention) {
    auto path = dir.write("bad.toml", toml);
    auto message = config_error(path);
    CAPTURE(toml);
    CAPTURE(message);
    CHECK(message.starts_with(path + ":" + std::to_string(line) + ": "));
    CHECK(message.find(mention) != std::string::npos);
}

}  // namespace

TEST_CASE("config: a full command declaration lands in the command producer's commands") {
    TempDir dir;
    // The program, named without a slash, is looked up in PATH: a non-executable file of that name
    // in an earlier directory is skipped.
    std::filesystem::create_directories(dir.path / "nox");
    std::filesystem::create_directories(dir.path / "bin");
    dir.write("nox/fastsse-unit-tool", "#!/bin/sh\n", 0644);
    auto tool = dir.write("bin/fastsse-unit-tool", "#!/bin/sh\necho hi\n", 0755);
    ScopedEnv path("PATH", (dir.path / "nox").string() + ":" + (dir.path / "bin").string() + ":/usr/bin:/bin");
    ScopedEnv passed("FASTSSE_UNIT_PASSED", "from the test");
    ScopedEnv unset("FASTSSE_UNIT_UNSET", std::nullopt);

    auto config = dir.write("fastsse.toml", R"(retry = 1500

[commands.ping]
argv = ["fastsse-unit-tool", "-c", "3", "--", "{host}", "{count}", "{host}"]
cwd = "/tmp"
env = { LANG = "C.UTF-8", EMPTY = "" }
pass_env = ["FASTSSE_UNIT_PASSED", "FASTSSE_UNIT_UNSET"]
shared = true
time_limit = 30
output_limit = 1000
max_running = 2
stdout_event = "line"
stderr_event = "problem"
retry = 5000
grace = 100
max_line = 64
quiet = 50
replay = 7
linger = 3

[commands.ping.params.host]
pattern = "[a-z0-9.-]+"
max_length = 64

[commands.ping.params.count]
values = ["1", "2", "-3"]
default = "1"
allow_leading_dash = true

[commands.date]
argv = ["/bin/date", "-u"]
)");
    auto s = load_config(config);
    CHECK(s.limits.retry == 1500ms);
    REQUIRE(s.commands.size() == 2);
    REQUIRE(s.commands.count("ping"));
    const CommandSpec& ping = s.commands.at("ping");
    CHECK(ping.name == "ping");
    CHECK(ping.argv == std::vector<std::string>{tool, "-c", "3", "--", "{host}", "{count}", "{host}"});
    CHECK(ping.cwd == "/tmp");
    CHECK(ping.env == std::map<std::string, std::string>{
                          {"LANG", "C.UTF-8"}, {"EMPTY", ""}, {"FASTSSE_UNIT_PASSED", "from the test"}});
    CHECK(ping.pass_env == std::vector<std::string>{"FASTSSE_UNIT_PASSED", "FASTSSE_UNIT_UNSET"});
    CHECK(ping.shared);
    CHECK(ping.time_limit == 30s);
    CHECK(ping.output_limit == 1000);
    CHECK(ping.max_running == 2);
    CHECK(ping.stdout_event == "line");
    CHECK(ping.stderr_event == "problem");
    CHECK(ping.retry == 5000ms);
    CHECK(ping.grace == 100ms);
    CHECK(ping.max_line == 64);
    CHECK(ping.quiet == 50ms);
    CHECK(ping.replay == 7);
    CHECK(ping.linger == 3s);
    REQUIRE(ping.params.size() == 2);
    const auto& host = ping.params.at("host");
    CHECK(host.pattern == "[a-z0-9.-]+");
    CHECK(host.values.empty());
    CHECK_FALSE(host.default_value);
    CHECK(host.max_length == 64);
    CHECK_FALSE(host.allow_leading_dash);
    const auto& count = ping.params.at("count");
    CHECK(count.pattern == "");
    CHECK(count.values == std::vector<std::string>{"1", "2", "-3"});
    CHECK(count.default_value == "1");
    CHECK(count.max_length == 256);
    CHECK(count.allow_leading_dash);
    // What the config declares is what a request gets.
    CHECK(fastsse::command_argv(ping, "host=example.org&count=-3") ==
          std::vector<std::string>{tool, "-c", "3", "--", "example.org", "-3", "example.org"});

    // A minimal declaration: the defaults.
    const CommandSpec& date = s.commands.at("date");
    CHECK(date.name == "date");
    CHECK(date.argv == std::vector<std::string>{"/bin/date", "-u"});
    CHECK(date.cwd == "/");
    CHECK(date.env.empty());
    CHECK(date.pass_env.empty());
    CHECK(date.params.empty());
    CHECK_FALSE(date.shared);
    CHECK(date.time_limit == 0s);
    CHECK(date.output_limit == 16777216);
    CHECK(date.max_running == 4);
    CHECK(date.stdout_event == "stdout");
    CHECK(date.stderr_event == "stderr");
    CHECK(date.retry == 60000ms);
    CHECK(date.grace == 2000ms);
    CHECK(date.max_line == 16384);
    CHECK(date.quiet == 200ms);
    CHECK(date.replay == 100);
    CHECK(date.linger == 10s);
}

TEST_CASE("config: no commands, and a program found in the default PATH") {
    TempDir dir;
    auto none = load_config(dir.write("none.toml", "max_streams = 10\n"));
    CHECK(none.commands.empty());
    CHECK(none.max_streams == 10);
    CHECK(load({})->commands.empty());

    ScopedEnv path("PATH", "/usr/bin:/bin");
    auto s = load_config(dir.write("echo.toml", "[commands.hello]\nargv = [\"echo\", \"hello\"]\n"));
    CHECK(s.commands.at("hello").argv == std::vector<std::string>{"/usr/bin/echo", "hello"});
}

TEST_CASE("config: mistakes in a command are UsageErrors naming file:line and the problem") {
    TempDir dir;
    const std::string ok_argv = "argv = [\"/bin/echo\", \"{host}\"]\n";
    const std::string ok_param = "[commands.c.params.host]\npattern = \"[a-z]+\"\n";

    SUBCASE("an unknown key (a string value)") {
        check_error(dir, "[commands.c]\nargv = [\"/bin/date\"]\nbogus = \"x\"\n", 3, "commands.c: unknown option bogus");
    }
    SUBCASE("an unknown key (a boolean value)") {
        check_error(dir, "[commands.c]\nargv = [\"/bin/date\"]\n\nbogus = true\n", 4, "commands.c.bogus: unexpected type");
    }
    SUBCASE("a setting of the wrong type") {
        check_error(dir, "[commands.c]\nargv = [\"/bin/date\"]\ntime_limit = true\n", 3,
                    "commands.c.time_limit: unexpected type");
        check_error(dir, "[commands.c]\nargv = [\"/bin/date\"]\nquiet = 1.5\n", 3, "commands.c.quiet: unexpected type");
    }
    SUBCASE("argv of the wrong type") {
        check_error(dir, "[commands.c]\nargv = \"/bin/date\"\n", 2, "commands.c.argv: expected an array of strings");
        check_error(dir, "[commands.c]\n\nargv = [\"/bin/date\", 1]\n", 3, "commands.c.argv: expected an array of strings");
    }
    SUBCASE("env and pass_env of the wrong type") {
        check_error(dir, "[commands.c]\nargv = [\"/bin/date\"]\nenv = { A = 1 }\n", 3, "commands.c.env.A: expected a string");
        check_error(dir, "[commands.c]\nargv = [\"/bin/date\"]\npass_env = \"HOME\"\n", 3,
                    "commands.c.pass_env: expected an array of strings");
    }
    SUBCASE("a bad setting value") {
        check_error(dir, "[commands.c]\nargv = [\"/bin/date\"]\ntime_limit = -1\n", 3,
                    "commands.c: time_limit: expected an integer from 0 to 31536000 s, got '-1'");
        check_error(dir, "[commands.c]\nargv = [\"/bin/date\"]\n\n\nmax_line = 10\n", 5, "commands.c: max_line: expected an integer");
        check_error(dir, "[commands.c]\nargv = [\"/bin/date\"]\nmax_running = 0\n", 3, "commands.c: max_running:");
        check_error(dir, "[commands.c]\nargv = [\"/bin/date\"]\nquiet = \"soon\"\n", 3, "commands.c: quiet:");
    }
    SUBCASE("a parameter that is not a table") {
        check_error(dir, "[commands.c]\n" + ok_argv + "params = { host = \"x\" }\n", 3,
                    "commands.c.params.host: expected a table");
    }
    SUBCASE("an unknown key in a parameter") {
        check_error(dir, "[commands.c]\n" + ok_argv + ok_param + "regex = \"x\"\n", 5,
                    "commands.c.params.host: 'regex': expected pattern (string), values (strings), default (string), "
                    "max_length (positive integer) or allow_leading_dash (boolean)");
    }
    SUBCASE("a parameter key of the wrong type") {
        check_error(dir, "[commands.c]\n" + ok_argv + ok_param + "max_length = 0\n", 5, "commands.c.params.host: 'max_length'");
        check_error(dir, "[commands.c]\n" + ok_argv + ok_param + "default = 3\n", 5, "commands.c.params.host: 'default'");
        check_error(dir, "[commands.c]\n" + ok_argv + ok_param + "allow_leading_dash = \"yes\"\n", 5,
                    "commands.c.params.host: 'allow_leading_dash'");
        check_error(dir, "[commands.c]\n" + ok_argv + "[commands.c.params.host]\nvalues = \"a\"\n", 4,
                    "commands.c.params.host: values: expected an array of strings");
    }
    // Problems found by check_command are reported at the [commands.NAME] line.
    SUBCASE("an invalid pattern") {
        check_error(dir, "# comment\n[commands.c]\n" + ok_argv + "[commands.c.params.host]\npattern = \"[a-\"\n", 2,
                    "commands.c: params.host: pattern '[a-' is not a valid POSIX extended regex");
    }
    SUBCASE("a parameter not used in argv") {
        check_error(dir, "\n\n[commands.c]\nargv = [\"/bin/date\"]\n" + ok_param, 3,
                    "commands.c: params.host: not used in argv");
    }
    SUBCASE("a placeholder naming no parameter") {
        check_error(dir, "[commands.c]\n" + ok_argv, 1,
                    "commands.c: argv: '{host}' names no parameter declared in [commands.c.params]");
    }
    SUBCASE("a default the parameter refuses") {
        check_error(dir, "[commands.c]\n" + ok_argv + ok_param + "default = \"-x\"\n", 1,
                    "commands.c: params.host: the default '-x' must not start with '-'");
        check_error(dir, "\n[commands.c]\n" + ok_argv + ok_param + "default = \"A\"\n", 2,
                    "commands.c: params.host: the default 'A' does not match its pattern");
    }
    SUBCASE("a directory as the program") {
        check_error(dir, "[commands.c]\nargv = [\"/tmp\"]\n", 1, "commands.c: argv: cannot execute '/tmp'");
    }
    SUBCASE("both pattern and values") {
        check_error(dir, "[commands.c]\n" + ok_argv + ok_param + "values = [\"a\"]\n", 1,
                    "commands.c: params.host: give either pattern or values");
    }
    SUBCASE("a program that cannot be run") {
        auto plain = dir.write("plain", "#!/bin/sh\n", 0644);
        check_error(dir, "\n[commands.c]\nargv = [\"" + plain + "\"]\n", 2, "commands.c: argv: cannot execute '" + plain + "'");
        ScopedEnv path("PATH", "/usr/bin:/bin");
        check_error(dir, "[commands.c]\nargv = [\"fastsse-unit-no-such-program\"]\n", 1,
                    "commands.c: argv: 'fastsse-unit-no-such-program' was not found in PATH (or give an absolute path)");
        check_error(dir, "[commands.c]\nargv = []\n", 1, "commands.c: argv: must name the program");
        check_error(dir, "[commands.c]\ncwd = \"/\"\n", 1, "commands.c: argv: must name the program");
    }
    SUBCASE("an event name that would break the framing") {
        check_error(dir, "[commands.c]\nargv = [\"/bin/date\"]\nstdout_event = \"a\\nb\"\n", 1,
                    "commands.c: stdout_event: must not contain CR, LF or NUL");
    }
    SUBCASE("commands that are not tables") {
        check_error(dir, "commands = 1\n", 1, "commands: expected tables [commands.NAME]");
        check_error(dir, "[commands]\nc = 1\n", 2, "commands.c: expected a table");
    }
}

TEST_CASE("config: a value of the wrong type is not called an unknown option") {
    // The keys read_command takes itself name the type they expect, at their own line.
    TempDir dir;
    const std::string head = "[commands.c]\nargv = [\"/bin/date\"]\n";
    check_error(dir, head + "cwd = 5\n", 3, "commands.c.cwd: expected a string");
    check_error(dir, head + "shared = \"yes\"\n", 3, "commands.c.shared: expected true or false");
    check_error(dir, head + "params = 1\n", 3, "commands.c.params: expected tables [commands.NAME.params.P]");
    check_error(dir, head + "env = \"A=1\"\n", 3, "commands.c.env: expected a table of strings");
    for (std::string line : {"cwd = 5", "shared = \"yes\"", "params = 1", "env = 2"}) {
        CAPTURE(line);
        CHECK(config_error(dir.write("bad.toml", head + line + "\n")).find("unknown option") == std::string::npos);
    }
}

TEST_CASE("config: a section goes to the producer that owns it, and to no other") {
    TempDir dir;
    auto path = dir.write("commands.toml", "[commands.hello]\nargv = [\"/bin/echo\", \"hello\"]\n");
    auto s = load_config(path);
    CHECK(s.commands.at("hello").argv == std::vector<std::string>{"/bin/echo", "hello"});

    auto run = [&](fastsse::Registry& registry) {
        std::string arg0 = "fastsse", flag = "--config";
        char* argv[] = {arg0.data(), flag.data(), path.data(), nullptr};
        return fastsse::load_settings(3, argv, registry);
    };
    SUBCASE("without a producer that reads [commands], it is an unknown setting") {
        fastsse::EventLoop loop;
        fastsse::Registry registry;
        registry.add("clock", std::make_unique<fastsse::ClockProducer>(loop));
        try {
            run(registry);
            FAIL("no UsageError");
        } catch (const UsageError& e) {
            CHECK(std::string(e.what()) == path + ":1: unknown setting 'commands'");
        }
    }
    SUBCASE("two producers may not own the same section") {
        std::map<std::string, CommandSpec> a, b;
        fastsse::Registry registry;
        registry.add("a", std::make_unique<Commands>(a));
        registry.add("b", std::make_unique<Commands>(b));
        CHECK_THROWS_AS(run(registry), std::logic_error);
    }
}

TEST_CASE("config: process settings land in their fields, from the file, then the flags") {
    TempDir dir;
    auto path = dir.write("fastsse.toml",
                          "socket_mode = \"0640\"\nheartbeat = 20\nretry = \"250\"\nstream_buffer = 8192\n"
                          "write_timeout = 7\nmax_streams = 3\nlog_level = \"warn\"\n");
    auto s = load({"--config", path, "--max-streams", "4", "--listen", "unix:/tmp/x.sock"});
    REQUIRE(s);
    CHECK(s->listen == "unix:/tmp/x.sock");
    CHECK(s->socket_mode == 0640);
    CHECK(s->limits.heartbeat == 20s);
    CHECK(s->limits.retry == 250ms);
    CHECK(s->limits.max_buffer == 8192);
    CHECK(s->limits.write_timeout == 7s);
    CHECK(s->max_streams == 4);  // the flag wins
    CHECK(s->log_level == "warn");

    SUBCASE("defaults") {
        auto d = load({});
        REQUIRE(d);
        CHECK(d->listen == "");
        CHECK(d->socket_mode == 0660);
        CHECK(d->limits.heartbeat == 15s);
        CHECK(d->limits.retry == 3000ms);
        CHECK(d->max_streams == 15000);
        CHECK(d->log_level == "info");
    }
    SUBCASE("a bad value names where it was given") {
        check_error(dir, "\nsocket_mode = \"0999\"\n", 2,
                    "socket_mode: expected octal permissions such as 0660, got '0999'");
        check_error(dir, "heartbeat = 0\n", 1, "heartbeat: expected an integer from 1 to 3600 s, got '0'");
        try {
            load({"--retry", "-1"});
            FAIL("no UsageError");
        } catch (const UsageError& e) {
            CHECK(std::string(e.what()) == "--retry: retry: expected an integer from 0 to 86400000 ms, got '-1'");
        }
    }
}

TEST_CASE("config: the hub's keys come from the file, then the environment, then the flags") {
    TempDir dir;
    auto path = dir.write("fastsse.toml",
                          "publisher_jwt_key = \"file-pub\"\nsubscriber_jwt_key = \"file-sub\"\n"
                          "hub_history = 10\nhub_history_bytes = 4096\nhub_max_selectors = 3\n");
    SUBCASE("the file alone") {
        ScopedEnv pub("MERCURE_PUBLISHER_JWT_KEY", std::nullopt), sub("MERCURE_SUBSCRIBER_JWT_KEY", std::nullopt);
        auto s = load({"--config", path});
        REQUIRE(s);
        CHECK(s->hub.publisher_key == "file-pub");
        CHECK(s->hub.subscriber_key == "file-sub");
        CHECK(s->hub.history == 10);
        CHECK(s->hub.history_bytes == 4096);
        CHECK(s->hub.max_selectors == 3);
    }
    SUBCASE("the environment wins over the file, a flag over both") {
        ScopedEnv pub("MERCURE_PUBLISHER_JWT_KEY", "env-pub"), sub("MERCURE_SUBSCRIBER_JWT_KEY", "env-sub");
        auto s = load({"--config", path, "--subscriber-jwt-key", "flag-sub"});
        REQUIRE(s);
        CHECK(s->hub.publisher_key == "env-pub");
        CHECK(s->hub.subscriber_key == "flag-sub");
    }
    SUBCASE("defaults") {
        ScopedEnv pub("MERCURE_PUBLISHER_JWT_KEY", std::nullopt), sub("MERCURE_SUBSCRIBER_JWT_KEY", std::nullopt);
        auto s = load({});
        REQUIRE(s);
        CHECK(s->hub.publisher_key.empty());
        CHECK(s->hub.subscriber_key.empty());
        CHECK(s->hub.history == 1000);
        CHECK(s->hub.history_bytes == 8 * 1024 * 1024);
        CHECK(s->hub.max_selectors == 100);
        CHECK(s->hub.jwt_audience.empty());
        CHECK(s->hub.jwt_issuer.empty());
    }
}

TEST_CASE("config: the hub's jwt_audience and jwt_issuer; the issuer from MERCURE_TRUSTED_ISSUERS too") {
    TempDir dir;
    auto path = dir.write("fastsse.toml", "jwt_audience = \"https://hub.test/.well-known/mercure\"\n"
                                          "jwt_issuer = \"https://file.test\"\n");
    SUBCASE("the file") {
        ScopedEnv iss("MERCURE_TRUSTED_ISSUERS", std::nullopt);
        auto s = load({"--config", path});
        REQUIRE(s);
        CHECK(s->hub.jwt_audience == "https://hub.test/.well-known/mercure");
        CHECK(s->hub.jwt_issuer == "https://file.test");
    }
    SUBCASE("the environment wins over the file, a flag over both") {
        ScopedEnv iss("MERCURE_TRUSTED_ISSUERS", "https://env.test");
        auto s = load({"--config", path});
        REQUIRE(s);
        CHECK(s->hub.jwt_issuer == "https://env.test");
        s = load({"--config", path, "--jwt-issuer", "https://flag.test", "--jwt-audience", "urn:hub"});
        REQUIRE(s);
        CHECK(s->hub.jwt_issuer == "https://flag.test");
        CHECK(s->hub.jwt_audience == "urn:hub");
    }
}

TEST_CASE("config: the hub's cors_origins are read once, at start; a bad origin stops it there") {
    TempDir dir;
    auto path = dir.write("fastsse.toml", "cors_origins = \"https://app.test http://localhost:8080\"\n");
    auto s = load({"--config", path});
    REQUIRE(s);
    CHECK(s->hub.cors.origins() == std::vector<std::string>{"https://app.test", "http://localhost:8080"});
    CHECK_FALSE(s->hub.cors.any());
    auto d = load({});
    REQUIRE(d);
    CHECK_FALSE(d->hub.cors.enabled());  // the default: no CORS header at all
    auto star = load({"--cors-origins", "*"});
    REQUIRE(star);
    CHECK(star->hub.cors.any());
    check_error(dir, "\ncors_origins = \"https://app.test/\"\n", 2,
                "cors_origins: 'https://app.test/' is not an origin: scheme://host or scheme://host:port, "
                "without a path (https://example.com), or *");
}

// ---------------------------------------------------------------------------------------------
// SIGHUP: SettingsSource::reload reads the file again under the flags and environment of the start.

namespace {

// A fastsse's settings as main keeps them: a source, the live settings, the commands in force.
struct Reloadable {
    std::vector<std::string> storage;
    std::vector<char*> argv;
    fastsse::EventLoop loop;
    fastsse::Registry registry;
    std::map<std::string, CommandSpec> commands;
    std::optional<fastsse::SettingsSource> source;
    Settings live;

    explicit Reloadable(std::vector<std::string> args) : storage{"fastsse"} {
        storage.insert(storage.end(), args.begin(), args.end());
        for (auto& a : storage) argv.push_back(a.data());
        argv.push_back(nullptr);
        registry.add("command", std::make_unique<Commands>(commands));
        source = fastsse::SettingsSource::from_command_line(static_cast<int>(storage.size()), argv.data(), registry);
        REQUIRE(source);
        live = source->read();
        source->apply_sections();
    }
};

}  // namespace

TEST_CASE("reload: a good file applies whole; flags and the start's environment still win") {
    TempDir dir;
    auto path = dir.write("fastsse.toml", "max_streams = 10\nheartbeat = 20\n[commands.a]\nargv = [\"/bin/true\"]\n");
    std::optional<Reloadable> r;
    {
        ScopedEnv pub("MERCURE_PUBLISHER_JWT_KEY", "env-pub");
        r.emplace(std::vector<std::string>{"--config", path, "--heartbeat", "7"});
    }
    // main unsets the keys' variables once read: a reload must not lose them.
    REQUIRE(std::getenv("MERCURE_PUBLISHER_JWT_KEY") == nullptr);
    CHECK(r->live.max_streams == 10);
    CHECK(r->live.limits.heartbeat == 7s);
    CHECK(r->commands.contains("a"));

    dir.write("fastsse.toml", "max_streams = 20\nheartbeat = 30\npublisher_jwt_key = \"file-pub\"\n"
                              "log_level = \"warn\"\n[commands.b]\nargv = [\"/bin/true\"]\n");
    fastsse_test::LogCapture log;
    CHECK(r->source->reload(r->live));
    CHECK(r->live.max_streams == 20);
    CHECK(r->live.limits.heartbeat == 7s);                // the flag
    CHECK(r->live.hub.publisher_key == "env-pub");        // the environment of the start
    CHECK(r->live.log_level == "warn");
    CHECK(!r->commands.contains("a"));
    CHECK(r->commands.contains("b"));
    CHECK(log.text().find("SIGHUP: reloaded " + path) != std::string::npos);
}

TEST_CASE("reload: a bad file changes nothing, commands included, and one line says where") {
    TempDir dir;
    auto path = dir.write("fastsse.toml", "max_streams = 10\n[commands.a]\nargv = [\"/bin/true\"]\n");
    Reloadable r({"--config", path});
    // The commands section comes first and is good; the error is after it: nothing of it applies.
    for (const auto& bad : {std::string("[commands.b]\nargv = [\"/bin/true\"]\n[other]\nx = 1\n"),
                            std::string("max_streams = 0\n"), std::string("max_streams = 20\nheartbeat = \n"),
                            std::string("[commands.b]\nargv = [\"relative\"]\n")}) {
        CAPTURE(bad);
        dir.write("fastsse.toml", bad);
        fastsse_test::LogCapture log;
        CHECK_FALSE(r.source->reload(r.live));
        CHECK(r.live.max_streams == 10);
        CHECK(r.commands.size() == 1);
        CHECK(r.commands.contains("a"));
        auto text = log.text();
        CHECK(text.starts_with("SIGHUP: not reloaded, the settings stay as they were: " + path + ":"));
        CHECK(std::count(text.begin(), text.end(), '\n') == 1);
    }
    std::filesystem::remove(path);
    fastsse_test::LogCapture log;
    CHECK_FALSE(r.source->reload(r.live));
    CHECK(log.text().find(path + ": ") != std::string::npos);
    CHECK(r.live.max_streams == 10);
}

TEST_CASE("reload: what only a restart changes is kept, and named without its value") {
    TempDir dir;
    auto path = dir.write("fastsse.toml", "listen = \"127.0.0.1:9000\"\nhub_history = 10\n");
    Reloadable r({"--config", path});
    dir.write("fastsse.toml", "listen = \"127.0.0.1:9001\"\nhub_history = 20\nengine = \"redis://:secret@127.0.0.1\"\n"
                              "max_streams = 30\n");
    {
        fastsse_test::LogCapture log;
        CHECK(r.source->reload(r.live));
        CHECK(r.live.listen == "127.0.0.1:9000");
        CHECK(r.live.hub.history == 10);
        CHECK(r.live.engine.memory);
        CHECK(r.live.max_streams == 30);  // the rest applies
        auto text = log.text();
        CHECK(text.find("SIGHUP: listen, hub_history, engine changed, but only a restart applies them") !=
              std::string::npos);
        CHECK(text.find("secret") == std::string::npos);
        CHECK(text.find("9001") == std::string::npos);
    }
    // Back to what is in force: nothing to name; and the kept values are what the next reload
    // compares with, not the ones it refused to apply.
    dir.write("fastsse.toml", "listen = \"127.0.0.1:9000\"\nhub_history = 10\n");
    fastsse_test::LogCapture log;
    CHECK(r.source->reload(r.live));
    CHECK(log.text().find("only a restart") == std::string::npos);
    CHECK(r.live.listen == "127.0.0.1:9000");
}

TEST_CASE("reload: without --config there is nothing to read again") {
    Reloadable r({"--max-streams", "5"});
    fastsse_test::LogCapture log;
    CHECK_FALSE(r.source->reload(r.live));
    CHECK(r.live.max_streams == 5);
    CHECK(log.text().find("started without --config") != std::string::npos);
}
