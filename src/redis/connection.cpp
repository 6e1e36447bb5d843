#include "fastsse/redis/connection.hpp"

#include <arpa/inet.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/un.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <map>
#include <stdexcept>
#include <vector>

// How hiredis 0.14.1 (async.c) can be driven without use-after-free, which decides the shape of
// this file:
// - It frees the context on its own on any error (read, write, EOF, a refused connect), from inside
//   redisAsyncHandleRead/Write, after calling each pending callback with a NULL reply, then
//   ev.cleanup, then onDisconnect. Its onConnect runs without REDIS_IN_CALLBACK set, so
//   redisAsyncFree() from there frees at once and hiredis then uses what it freed; from
//   onDisconnect it frees twice. Only reply callbacks are protected by REDIS_IN_CALLBACK.
// - So hiredis never calls the caller's code except with a reply: a NULL reply is ignored (the
//   context is going), ev.cleanup is where we learn that it went (ac_ = nullptr), and what must
//   follow (fail the pending commands, report lost) runs once hiredis has returned.
// - We free the context ourselves (timeouts, a refused AUTH) only when no hiredis function is on
//   the stack (in_hiredis_ == 0): a drop asked for from inside is recorded and done after.
// - The RedisConnection's owner may destroy it from inside any callback: the Core, which hiredis
//   and the loop call into (it is the IoHandler, and ev.data), is detached at once (no more calls
//   out, its fd out of epoll) and destroyed by EventLoop::destroy_later after the loop's round,
//   when no hiredis frame and no epoll event of this round can still refer to it.

namespace fastsse::redis {

using std::chrono::milliseconds;

namespace {

// A callback of the caller's that throws is a bug; through hiredis's C frames it would end the
// process, and it must not keep the other pending callbacks from being called: logged, as the loop
// does.
template <class Fn>
void guarded(Fn&& fn) noexcept {
    try {
        fn();
    } catch (const std::exception& e) {
        spdlog::error("bug: a Redis callback threw: {}", e.what());
    } catch (...) {
        spdlog::error("bug: a Redis callback threw");
    }
}

// Text from Redis or hiredis for a reason line: printable ASCII, bounded.
std::string printable(std::string_view s, size_t max = 200) {
    std::string out;
    for (char c : s.substr(0, max)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
    if (s.size() > max) out += "...";
    return out;
}

// A command's name for a reason line; never its arguments, which may hold a client's data.
std::string command_name(std::string_view argv0) {
    std::string out;
    for (char c : argv0.substr(0, 32)) out += std::isalnum(static_cast<unsigned char>(c)) ? std::toupper(c) : '?';
    return out;
}

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
           });
}

bool numeric_address(const std::string& s) {
    in_addr a4;
    in6_addr a6;
    return ::inet_pton(AF_INET, s.c_str(), &a4) == 1 || ::inet_pton(AF_INET6, s.c_str(), &a6) == 1;
}

}  // namespace

RedisOptions RedisOptions::from_url(const RedisUrl& url, std::string address) {
    RedisOptions o;
    o.address = std::move(address);
    o.port = url.port;
    o.user = url.user;
    o.password = url.password;
    o.db = url.db;
    return o;
}

std::string resolve_redis_host(const std::string& host) {
    if (numeric_address(host)) return host;
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &found);
    if (rc != 0) throw std::runtime_error("redis host \"" + host + "\": " + ::gai_strerror(rc));
    std::unique_ptr<addrinfo, void (*)(addrinfo*)> owner(found, ::freeaddrinfo);
    const addrinfo* pick = nullptr;
    for (auto* p = found; p; p = p->ai_next)
        if (p->ai_family == AF_INET && !pick) pick = p;
    for (auto* p = found; p && !pick; p = p->ai_next)
        if (p->ai_family == AF_INET6) pick = p;
    if (!pick) throw std::runtime_error("redis host \"" + host + "\": no IPv4 or IPv6 address");
    char text[INET6_ADDRSTRLEN] = {};
    const void* raw = pick->ai_family == AF_INET
                          ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in*>(pick->ai_addr)->sin_addr)
                          : static_cast<const void*>(&reinterpret_cast<const sockaddr_in6*>(pick->ai_addr)->sin6_addr);
    if (!::inet_ntop(pick->ai_family, raw, text, sizeof text))
        throw std::runtime_error("redis host \"" + host + "\": inet_ntop failed");
    return text;
}

// --- RedisReply ---

ReplyType RedisReply::type() const noexcept {
    switch (reply_ ? reply_->type : REDIS_REPLY_NIL) {
        case REDIS_REPLY_STRING: return ReplyType::string;
        case REDIS_REPLY_ARRAY: return ReplyType::array;
        case REDIS_REPLY_INTEGER: return ReplyType::integer;
        case REDIS_REPLY_STATUS: return ReplyType::status;
        case REDIS_REPLY_ERROR: return ReplyType::error;
        default: return ReplyType::nil;
    }
}

std::string_view RedisReply::str() const noexcept {
    if (!reply_ || !reply_->str) return {};
    auto t = reply_->type;
    if (t != REDIS_REPLY_STRING && t != REDIS_REPLY_STATUS && t != REDIS_REPLY_ERROR) return {};
    return {reply_->str, reply_->len};
}

long long RedisReply::integer() const noexcept {
    return reply_ && reply_->type == REDIS_REPLY_INTEGER ? reply_->integer : 0;
}

size_t RedisReply::size() const noexcept { return reply_ && reply_->type == REDIS_REPLY_ARRAY ? reply_->elements : 0; }

RedisReply RedisReply::operator[](size_t i) const noexcept { return RedisReply(reply_->element[i]); }

// --- the Core ---

class RedisConnection::Core final : public IoHandler {
public:
    Core(EventLoop& loop, RedisOptions options, RedisHandlers handlers)
        : loop_(loop), options_(std::move(options)), handlers_(std::move(handlers)) {
        endpoint_ = options_.unix_path.empty()
                        ? (options_.address.find(':') != std::string::npos ? "[" + options_.address + "]"
                                                                           : options_.address) +
                              ":" + std::to_string(options_.port)
                        : options_.unix_path;
    }

    ~Core() {
        detached_ = true;
        if (ac_) ::redisAsyncFree(ac_);  // pending callbacks get NULL (ignored), then ev.cleanup
    }

    Core(const Core&) = delete;
    Core& operator=(const Core&) = delete;

    void start();
    void on_io(uint32_t events) override;
    bool command(std::span<const std::string_view> argv, ReplyFn fn, std::optional<milliseconds> timeout);

    // The owner is gone: nothing of it is called any more, and the loop hears nothing of this fd.
    void detach() noexcept {
        detached_ = true;
        if (registered_) loop_.remove(fd_);
        registered_ = false;
    }

    State state() const noexcept { return state_; }
    size_t pending() const noexcept { return pending_.size(); }

private:
    struct Pending {
        ReplyFn fn;
        Timer timer;  // the command's timeout; none for the handshake (the connect timeout covers it)
        std::string name;
        milliseconds timeout{0};
        bool handshake = false;  // ours: not failed to anyone when the connection is lost
    };

    // Counts the hiredis frames on the stack: freeing the context waits until there are none.
    struct InHiredis {
        explicit InHiredis(Core& c) : core(c) { ++core.in_hiredis_; }
        ~InHiredis() { --core.in_hiredis_; }
        Core& core;
    };

    bool send(std::span<const std::string_view> argv, ReplyFn fn, std::optional<milliseconds> timeout,
              bool handshake);
    void on_reply(const redisReply* reply, uint64_t id);
    void handshake_reply(const std::string& name, const RedisReply& reply, bool last);
    void drop(std::string reason);
    void settle();
    void settle_soon();
    void lose(const std::string& reason);
    void update_epoll();

    // hiredis's hooks: ev.data and ac->data are this Core.
    static void reply_cb(redisAsyncContext* ac, void* reply, void* privdata) noexcept;
    static void connect_cb(const redisAsyncContext* ac, int status) noexcept;
    static void add_read(void* p) noexcept { static_cast<Core*>(p)->want(&Core::reading_, true); }
    static void del_read(void* p) noexcept { static_cast<Core*>(p)->want(&Core::reading_, false); }
    static void add_write(void* p) noexcept { static_cast<Core*>(p)->want(&Core::writing_, true); }
    static void del_write(void* p) noexcept { static_cast<Core*>(p)->want(&Core::writing_, false); }
    static void cleanup(void* p) noexcept { static_cast<Core*>(p)->context_gone(); }
    void want(bool Core::*which, bool on) noexcept {
        if (detached_ || !ac_) return;
        this->*which = on;
        update_epoll();
    }
    void context_gone() noexcept;

    EventLoop& loop_;
    RedisOptions options_;
    RedisHandlers handlers_;
    std::string endpoint_;  // for reasons: "127.0.0.1:6379", or the socket's path

    redisAsyncContext* ac_ = nullptr;
    int fd_ = -1;
    bool registered_ = false, reading_ = false, writing_ = false;
    uint32_t events_ = 0;

    State state_ = State::connecting;
    bool connected_ = false;  // TCP (or the Unix socket) connected; the handshake may still be waiting
    bool detached_ = false;
    int in_hiredis_ = 0;
    std::optional<std::string> drop_reason_;  // we end the connection, for this reason
    std::string hiredis_error_;               // hiredis ended it, saying this

    uint64_t next_id_ = 1;
    std::map<uint64_t, Pending> pending_;  // by id: the order they were sent in
    Timer connect_timer_, settle_timer_;
};

void RedisConnection::Core::start() {
    redisAsyncContext* ac = options_.unix_path.empty() ? ::redisAsyncConnect(options_.address.c_str(), options_.port)
                                                      : ::redisAsyncConnectUnix(options_.unix_path.c_str());
    if (!ac) return drop("out of memory");
    if (ac->err) {
        // A failure at once (no socket, a refused Unix connect): reported from the loop, as any other.
        std::string why = printable(ac->errstr);
        ::redisAsyncFree(ac);
        return drop(std::move(why));
    }
    ac_ = ac;
    fd_ = ac->c.fd;
    ac->data = this;
    ac->ev.data = this;
    ac->ev.addRead = &Core::add_read;
    ac->ev.delRead = &Core::del_read;
    ac->ev.addWrite = &Core::add_write;
    ac->ev.delWrite = &Core::del_write;
    ac->ev.cleanup = &Core::cleanup;
    {
        InHiredis in(*this);
        ::redisAsyncSetConnectCallback(ac, &Core::connect_cb);  // asks for EPOLLOUT: the connect's end
    }
    connect_timer_ = loop_.call_after(options_.connect_timeout, [this] {
        auto ms = std::to_string(options_.connect_timeout.count());
        std::string waiting;
        for (auto& entry : pending_) {
            if (entry.second.handshake) {
                waiting = entry.second.name;
                break;
            }
        }
        drop(connected_ ? "connected, but no answer to " + waiting + " within " + ms + " ms"
                        : "no connection within " + ms + " ms");
        settle();
    });

    // The handshake goes out behind the connect, in one write: ready after one round trip. PING
    // when there is nothing else to ask, so that ready always means that Redis answered (not
    // LOADING, not at maxclients).
    std::string db = std::to_string(options_.db);
    std::vector<std::vector<std::string_view>> steps;
    if (options_.password) {
        if (options_.user.empty()) steps.push_back({"AUTH", *options_.password});
        else steps.push_back({"AUTH", options_.user, *options_.password});
    }
    if (options_.db != 0) steps.push_back({"SELECT", db});
    if (steps.empty()) steps.push_back({"PING"});
    for (size_t i = 0; i < steps.size(); ++i) {
        bool last = i + 1 == steps.size();
        std::string name(steps[i][0]);
        if (!send(steps[i], [this, name, last](const RedisReply& r) { handshake_reply(name, r, last); },
                  std::nullopt, true))
            return drop("could not queue " + name);
    }
}

void RedisConnection::Core::handshake_reply(const std::string& name, const RedisReply& reply, bool last) {
    if (reply.is_error()) return drop(name + " refused: " + printable(reply.str()));
    if (!last) return;
    state_ = State::ready;
    connect_timer_.cancel();
    if (handlers_.on_ready) guarded([&] { handlers_.on_ready(); });
}

bool RedisConnection::Core::command(std::span<const std::string_view> argv, ReplyFn fn,
                                    std::optional<milliseconds> timeout) {
    if (argv.empty()) throw std::invalid_argument("a Redis command without its name");
    // One command, many replies (or none, or RESP3): the one-callback-per-command contract, and
    // hiredis 0.14's reply matching, would not hold.
    static constexpr std::array<std::string_view, 8> refused = {
        "subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe", "sunsubscribe", "monitor", "hello"};
    for (auto name : refused)
        if (iequals(argv[0], name))
            throw std::invalid_argument("RedisConnection does not send " + command_name(argv[0]));
    if (state_ != State::ready || drop_reason_ || !ac_ || detached_) return false;
    return send(argv, std::move(fn), timeout.value_or(options_.command_timeout), false);
}

bool RedisConnection::Core::send(std::span<const std::string_view> argv, ReplyFn fn,
                                 std::optional<milliseconds> timeout, bool handshake) {
    std::vector<const char*> args;
    std::vector<size_t> lengths;
    args.reserve(argv.size());
    lengths.reserve(argv.size());
    for (auto a : argv) {
        args.push_back(a.data() ? a.data() : "");
        lengths.push_back(a.size());
    }
    auto id = next_id_++;
    Pending p;
    p.fn = std::move(fn);
    p.name = command_name(argv[0]);
    p.handshake = handshake;
    if (timeout) {
        p.timeout = *timeout;
        p.timer = loop_.call_after(*timeout, [this, id] {
            auto it = pending_.find(id);
            if (it == pending_.end()) return;
            drop("no reply to " + it->second.name + " within " + std::to_string(it->second.timeout.count()) + " ms");
            settle();
        });
    }
    pending_.emplace(id, std::move(p));
    int rc;
    {
        InHiredis in(*this);
        rc = ::redisAsyncCommandArgv(ac_, &Core::reply_cb, reinterpret_cast<void*>(static_cast<uintptr_t>(id)),
                                     static_cast<int>(args.size()), args.data(), lengths.data());
    }
    if (rc != REDIS_OK) {
        pending_.erase(id);
        return false;
    }
    return true;
}

void RedisConnection::Core::reply_cb(redisAsyncContext* ac, void* reply, void* privdata) noexcept {
    // NULL: hiredis is freeing the context; settle() fails what is pending, outside hiredis.
    if (!reply) return;
    static_cast<Core*>(ac->data)->on_reply(static_cast<const redisReply*>(reply),
                                           static_cast<uint64_t>(reinterpret_cast<uintptr_t>(privdata)));
}

void RedisConnection::Core::on_reply(const redisReply* reply, uint64_t id) {
    // Once a drop is decided, replies still in the buffer are not given out: their commands fail
    // with the others, all for the same reason.
    if (detached_ || drop_reason_ || state_ == State::lost) return;
    auto it = pending_.find(id);
    if (it == pending_.end()) return;
    auto fn = std::move(it->second.fn);
    pending_.erase(it);  // its timer with it
    if (fn) guarded([&] { fn(RedisReply(reply)); });
}

void RedisConnection::Core::connect_cb(const redisAsyncContext* ac, int status) noexcept {
    // Errors are read in cleanup(), which follows; nothing may be freed from here (see the top).
    if (status == REDIS_OK) static_cast<Core*>(ac->data)->connected_ = true;
}

void RedisConnection::Core::context_gone() noexcept {
    if (registered_) loop_.remove(fd_);
    registered_ = false;
    if (ac_ && ac_->c.err && hiredis_error_.empty()) hiredis_error_ = printable(ac_->c.errstr);
    ac_ = nullptr;
}

void RedisConnection::Core::update_epoll() {
    uint32_t events = (reading_ ? EPOLLIN : 0u) | (writing_ ? EPOLLOUT : 0u);
    if (!registered_) {
        try {
            loop_.add(fd_, events, this);
        } catch (const std::exception& e) {
            return drop(std::string("epoll: ") + e.what());
        }
        registered_ = true;
        events_ = events;
    } else if (events != events_) {
        if (!loop_.modify(fd_, events, this)) return drop(std::string("epoll: ") + std::strerror(errno));
        events_ = events;
    }
}

void RedisConnection::Core::on_io(uint32_t events) {
    if (detached_ || !ac_) return;  // an event of this round for a connection already gone
    {
        InHiredis in(*this);
        // Errors and hang-ups go to the read side, which finds them (or the connect's error) and
        // frees the context; ignored, a level-triggered EPOLLERR would come back every round.
        if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) ::redisAsyncHandleRead(ac_);
        if (ac_ && !detached_ && !drop_reason_ && (events & EPOLLOUT)) ::redisAsyncHandleWrite(ac_);
    }
    settle();
}

// Asks for the connection to end. From inside hiredis it only records why: settle() ends it, from
// on_io or a timer, or from a zero-delay timer so that nothing is called back from inside
// command() or the constructor.
void RedisConnection::Core::drop(std::string reason) {
    if (state_ == State::lost) return;
    if (!drop_reason_) drop_reason_ = std::move(reason);
    settle_soon();
}

void RedisConnection::Core::settle_soon() {
    if (!settle_timer_) settle_timer_ = loop_.call_after(milliseconds(0), [this] { settle(); });
}

// Does what the last hiredis call left to do: from on_io once hiredis returned, and from timers.
void RedisConnection::Core::settle() {
    // Not reached today (timers never run inside on_io), but freeing here would be a use-after-free.
    if (in_hiredis_ > 0) return settle_soon();
    settle_timer_.cancel();
    if (detached_ || state_ == State::lost) return;
    if (drop_reason_ && ac_) {
        InHiredis in(*this);
        ::redisAsyncFree(ac_);  // pending callbacks get NULL (ignored), then ev.cleanup
        ac_ = nullptr;
    }
    if (!ac_) lose(drop_reason_ ? *drop_reason_ : hiredis_error_.empty() ? "connection closed" : hiredis_error_);
}

void RedisConnection::Core::lose(const std::string& reason) {
    state_ = State::lost;
    connect_timer_.cancel();
    const std::string why = "redis " + endpoint_ + ": " + reason;
    auto failed = std::move(pending_);
    pending_.clear();
    // Each pending command hears of it, in the order they were sent, then the owner; until one of
    // them destroys the connection.
    for (auto& entry : failed) {
        if (detached_) return;
        if (entry.second.handshake) continue;
        auto fn = std::move(entry.second.fn);
        entry.second.timer.cancel();
        if (fn) guarded([&] { fn(RedisReply::failure(why)); });
    }
    if (!detached_ && handlers_.on_lost) guarded([&] { handlers_.on_lost(why); });
}

// --- RedisConnection ---

RedisConnection::RedisConnection(EventLoop& loop, RedisOptions options, RedisHandlers handlers) : loop_(&loop) {
    if (options.unix_path.empty() && !numeric_address(options.address))
        throw std::invalid_argument("redis: \"" + printable(options.address, 64) +
                                    "\" is not a numeric address (resolve_redis_host() it at start)");
    if (options.unix_path.size() >= sizeof(sockaddr_un::sun_path))  // hiredis would cut it silently
        throw std::invalid_argument("redis: a Unix socket path longer than " +
                                    std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes");
    core_ = std::make_unique<Core>(loop, std::move(options), std::move(handlers));
    core_->start();
}

RedisConnection::~RedisConnection() {
    if (!core_) return;
    core_->detach();
    loop_->destroy_later(std::move(core_));
}

RedisConnection::RedisConnection(RedisConnection&& o) noexcept : loop_(o.loop_), core_(std::move(o.core_)) {}

RedisConnection& RedisConnection::operator=(RedisConnection&& o) noexcept {
    if (this != &o) {
        if (core_) {
            core_->detach();
            loop_->destroy_later(std::move(core_));
        }
        loop_ = o.loop_;
        core_ = std::move(o.core_);
    }
    return *this;
}

RedisConnection::State RedisConnection::state() const noexcept { return core_ ? core_->state() : State::lost; }

bool RedisConnection::command(std::span<const std::string_view> argv, ReplyFn fn, std::optional<milliseconds> timeout) {
    if (!core_) return false;
    return core_->command(argv, std::move(fn), timeout);
}

size_t RedisConnection::pending() const noexcept { return core_ ? core_->pending() : 0; }

// --- Backoff ---

Backoff::Backoff(milliseconds first, milliseconds cap, uint64_t seed)
    : first_(first), cap_(cap), step_(first), random_(static_cast<std::minstd_rand::result_type>(seed)) {
    if (first.count() <= 0 || cap < first) throw std::invalid_argument("Backoff: 0 < first <= cap");
}

milliseconds Backoff::next() {
    auto d = step_;
    step_ = std::min(cap_, step_ * 2);
    std::uniform_int_distribution<long long> pick(d.count() - d.count() / 2, d.count());
    return milliseconds(pick(random_));
}

}  // namespace fastsse::redis
