#include "lever/gateway/gateway.h"

#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <charconv>
#include <cstring>
#include <future>
#include <mutex>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include "http_api.h"
#include "io.h"
#include "peer_http.h"
#include "worker.h"

namespace lever::gateway {
namespace {

namespace asio = boost::asio;
using Acceptor = asio::basic_socket_acceptor<asio::generic::stream_protocol>;

constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
static_assert(kPreface.size() == 24);

// Reads the first bytes of a connection, bounded in size (the 24-byte
// preface) and time, and hands the connection to the relay or the HTTP/1 hook.
class Sniffer : public std::enable_shared_from_this<Sniffer> {
 public:
  Sniffer(WorkerImpl* w, Socket socket, std::string src_env, const Http1Handler* http1, bool peer)
      : w_(w),
        socket_(std::move(socket)),
        timer_(w->io_context()),
        src_env_(std::move(src_env)),
        http1_(http1),
        peer_(peer) {}
  // The acceptor counted the connection in `w`'s `sniffing` already.
  ~Sniffer() { w_->counters().sniffing.fetch_sub(1, std::memory_order_relaxed); }

  void Start(std::chrono::milliseconds timeout) {
    timer_.expires_after(timeout);
    timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (ec) return;
      boost::system::error_code ignored;
      self->socket_.close(ignored);  // never sent its first bytes: drop it
    });
    Read();
  }

 private:
  void Read() {
    socket_.async_read_some(asio::buffer(tmp_.data(), kPreface.size() - buf_.size()),
                            [self = shared_from_this()](boost::system::error_code ec, size_t n) {
                              self->OnRead(ec, n);
                            });
  }
  void OnRead(boost::system::error_code ec, size_t n) {
    if (ec) {
      timer_.cancel();
      return;
    }
    buf_.append(tmp_.data(), n);
    if (std::memcmp(buf_.data(), kPreface.data(), buf_.size()) != 0) {
      timer_.cancel();
      (*http1_)(std::move(socket_), std::move(buf_), src_env_, *w_);
      return;
    }
    if (buf_.size() == kPreface.size()) {
      timer_.cancel();
      w_->StartClient(std::move(socket_), std::move(buf_), std::move(src_env_), peer_);
      return;
    }
    Read();
  }

  WorkerImpl* w_;
  Socket socket_;
  asio::steady_timer timer_;
  std::string src_env_;
  const Http1Handler* http1_;
  bool peer_;
  std::array<char, 24> tmp_;
  std::string buf_;
};

// A connection beyond max_connections*: before reading anything, leverd
// sends an HTTP/2 server preface (an empty SETTINGS) and GOAWAY
// ENHANCE_YOUR_CALM "connection limit", half-closes, and drops what the
// client sends (so its kernel does not answer with a reset that could lose
// the GOAWAY) until it closes, 64 KiB, or one second.
class Refusal : public std::enable_shared_from_this<Refusal> {
 public:
  explicit Refusal(Socket socket) : socket_(std::move(socket)), timer_(socket_.get_executor()) {}
  void Start() {
    static constexpr uint8_t kFrames[] = {
        0, 0, 0, 4, 0, 0, 0, 0, 0,  // SETTINGS, empty
        0, 0, 8 + 16, 7, 0, 0, 0, 0, 0,  // GOAWAY, 24 bytes
        0, 0, 0, 0,                      // last stream id 0
        0, 0, 0, 0x0b,                   // ENHANCE_YOUR_CALM
        'c', 'o', 'n', 'n', 'e', 'c', 't', 'i', 'o', 'n', ' ', 'l', 'i', 'm', 'i', 't'};
    timer_.expires_after(std::chrono::seconds(1));
    timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (ec) return;
      boost::system::error_code ignored;
      self->socket_.close(ignored);
    });
    asio::async_write(socket_, asio::buffer(kFrames), [self = shared_from_this()](boost::system::error_code ec, size_t) {
      if (ec) return self->Done();
      boost::system::error_code ignored;
      self->socket_.shutdown(asio::socket_base::shutdown_send, ignored);
      self->Drop();
    });
  }

 private:
  void Drop() {
    socket_.async_read_some(asio::buffer(buf_), [self = shared_from_this()](boost::system::error_code ec, size_t n) {
      self->dropped_ += n;
      if (ec || self->dropped_ > (64u << 10)) return self->Done();
      self->Drop();
    });
  }
  void Done() {
    timer_.cancel();
    boost::system::error_code ignored;
    socket_.close(ignored);
  }
  Socket socket_;
  asio::steady_timer timer_;
  std::array<char, 4096> buf_;
  size_t dropped_ = 0;
};

}  // namespace

struct Gateway::Impl {
  struct Listener {
    std::unique_ptr<Acceptor> acceptor;
    std::string src_env;
    std::string unix_path;  // removed on stop
    bool peer = false;      // the peer port (calls and code from other nodes)
  };

  GatewayOptions options;
  Http1Handler http1;  // the HTTP API unless a test replaced it
  Http1Handler peer_http1;  // the peer port's: code archives for other nodes
  PeerHttpOptions peer_http;
  host::RouterPtr router;
  std::vector<std::shared_ptr<WorkerImpl>> workers;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  std::vector<std::shared_ptr<Listener>> listeners;
  std::atomic<size_t> next_worker{0};
  IdleWatch idle_watch;  // WaitUntilIdleForTest
  std::atomic<bool> stopping{false};
  uint16_t port = 0;
  std::mutex control_mu;  // started, stopped, listeners (AddInternalListener may race Stop)
  bool started = false;
  bool stopped = false;

  WorkerImpl* NextWorker() { return workers[next_worker.fetch_add(1, std::memory_order_relaxed) % workers.size()].get(); }

  // max_connections / max_connections_per_worker: the counts are the
  // workers' (relaxed atomics); the acceptor is one thread, so the caps
  // hold within the connections that close meanwhile.
  bool OverCap(WorkerImpl* w) const {
    if (options.max_connections_per_worker > 0 &&
        w->counters().connections() >= static_cast<int64_t>(options.max_connections_per_worker)) {
      return true;
    }
    if (options.max_connections == 0) return false;
    int64_t total = 0;
    for (auto& each : workers) total += each->counters().connections();
    return total >= static_cast<int64_t>(options.max_connections);
  }

  // Accepts on worker 0; each connection goes to the next worker round-robin
  // and stays there for its life.
  void Accept(const std::shared_ptr<Listener>& l) {
    WorkerImpl* w = NextWorker();
    auto socket = std::make_shared<Socket>(w->io_context());
    l->acceptor->async_accept(*socket, [this, l, w, socket](boost::system::error_code ec) {
      if (stopping.load() || !l->acceptor->is_open()) return;
      if (ec) {
        // Out of descriptors or similar: retry shortly instead of spinning.
        auto timer = std::make_shared<asio::steady_timer>(workers[0]->io_context(), std::chrono::milliseconds(20));
        timer->async_wait([this, l, timer](boost::system::error_code) {
          if (!stopping.load() && l->acceptor->is_open()) Accept(l);
        });
        return;
      }
      Admit(l, w, socket);
      Accept(l);
    });
  }

  // A connection `l` accepted for `w` (`socket` is on w's io_context), on
  // worker 0: refused beyond the caps, else sniffed on `w`.
  void Admit(const std::shared_ptr<Listener>& l, WorkerImpl* w, const std::shared_ptr<Socket>& socket) {
    if (OverCap(w)) {
      w->counters().refused.fetch_add(1, std::memory_order_relaxed);
      asio::post(w->io_context(), [socket] { std::make_shared<Refusal>(std::move(*socket))->Start(); });
    } else {
      w->counters().sniffing.fetch_add(1, std::memory_order_relaxed);  // the Sniffer gives it back
      asio::post(w->io_context(), [this, w, socket, l, env = l->src_env]() mutable {
        auto sniffer = std::make_shared<Sniffer>(w, std::move(*socket), std::move(env),
                                                 l->peer ? &peer_http1 : &http1, l->peer);
        sniffer->Start(options.sniff_timeout);
      });
    }
  }

  Status Listen(const asio::generic::stream_protocol::endpoint& endpoint, std::string src_env, std::string unix_path,
                std::shared_ptr<Listener>* out) {
    auto l = std::make_shared<Listener>();
    l->acceptor = std::make_unique<Acceptor>(workers[0]->io_context());
    l->src_env = std::move(src_env);
    l->unix_path = std::move(unix_path);
    boost::system::error_code ec;
    l->acceptor->open(endpoint.protocol(), ec);
    if (!ec && l->unix_path.empty()) l->acceptor->set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) l->acceptor->bind(endpoint, ec);
    if (!ec) l->acceptor->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return Status(Code::kUnavailable, "cannot listen: " + ec.message());
    *out = l;
    return Status::Ok();
  }
};

Gateway::Gateway(GatewayOptions options, host::RouterPtr router) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  impl_->router = std::move(router);
  const HttpApiOptions* http = &impl_->options.http;
  impl_->http1 = [http](Socket&& socket, std::string already_read, std::string_view, Worker& w) {
    // HTTP calls are external whichever listener they came in on.
    StartHttpApi(static_cast<WorkerImpl*>(&w), std::move(socket), std::move(already_read), *http);
  };
  impl_->peer_http.cluster_token = impl_->options.cluster_token;
  impl_->peer_http.blob_dir = impl_->options.peer_blob_dir;
  impl_->peer_http.timeout = impl_->options.http.idle_timeout;
  const PeerHttpOptions* peer = &impl_->peer_http;
  impl_->peer_http1 = [peer](Socket&& socket, std::string already_read, std::string_view, Worker& w) {
    StartPeerHttp(static_cast<WorkerImpl*>(&w), std::move(socket), std::move(already_read), *peer);
  };
}

struct GatewayTesting {
  static void SetHttp1(Gateway& g, Http1Handler handler) { g.impl_->http1 = std::move(handler); }

  static void Adopt(Gateway& g, int fd) {
    Gateway::Impl& m = *g.impl_;
    sockaddr_storage local{};
    socklen_t len = sizeof local;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0) {
      ::close(fd);
      return;
    }
    WorkerImpl* w = m.NextWorker();
    auto socket = std::make_shared<Socket>(w->io_context());
    boost::system::error_code ec;
    socket->assign(asio::generic::stream_protocol(local.ss_family, 0), fd, ec);
    if (ec) {
      ::close(fd);
      return;
    }
    std::shared_ptr<Gateway::Impl::Listener> l = m.listeners.front();  // the public port
    asio::post(m.workers[0]->io_context(), [&m, l, w, socket] { m.Admit(l, w, socket); });
  }

  static bool WaitUntilIdle(Gateway& g, std::chrono::steady_clock::time_point deadline) {
    Gateway::Impl& m = *g.impl_;
    auto idle = [&m] {
      for (auto& w : m.workers) {
        if (w->counters().streams.load() != 0 || w->counters().clients.load() != 0) return false;  // seq_cst: IdleWatch
      }
      return true;
    };
    m.idle_watch.waiters.fetch_add(1);
    bool ok;
    {
      std::unique_lock<std::mutex> lock(m.idle_watch.mu);
      ok = m.idle_watch.cv.wait_until(lock, deadline, idle);
    }
    m.idle_watch.waiters.fetch_sub(1);
    return ok;
  }
};

void SetHttp1HandlerForTest(Gateway& gateway, Http1Handler handler) {
  GatewayTesting::SetHttp1(gateway, std::move(handler));
}

void AdoptConnectionForTest(Gateway& gateway, int fd) { GatewayTesting::Adopt(gateway, fd); }

bool WaitUntilIdleForTest(Gateway& gateway, std::chrono::steady_clock::time_point deadline) {
  return GatewayTesting::WaitUntilIdle(gateway, deadline);
}

Gateway::~Gateway() { Stop(std::chrono::milliseconds(0)); }

Status Gateway::Start() {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lock(m.control_mu);
  if (m.started || m.stopped) return Status(Code::kFailedPrecondition, "gateway already started");
  const GatewayOptions& o = m.options;
  if (o.stream_window < (16u << 10) || o.stream_window > (1u << 30))
    return Status(Code::kInvalidArgument, "stream_window must be within 16 KiB .. 1 GiB");
  if (o.connection_window < o.stream_window || o.connection_window > 0x7fffffffu)
    return Status(Code::kInvalidArgument, "connection_window must be within stream_window .. 2 GiB");
  if (!m.router) return Status(Code::kInvalidArgument, "no router");
  if (o.max_concurrent_streams == 0) return Status(Code::kInvalidArgument, "max_concurrent_streams must be at least 1");
  if (o.max_header_list_bytes < 1024) return Status(Code::kInvalidArgument, "max_header_list_bytes must be at least 1 KiB");
  if (o.client_settings_timeout.count() <= 0 || o.instance_settings_timeout.count() <= 0)
    return Status(Code::kInvalidArgument, "SETTINGS timeouts must be positive");

  // Parse "host:port".
  size_t colon = o.listen.rfind(':');
  if (colon == std::string::npos) return Status(Code::kInvalidArgument, "listen must be host:port");
  std::string host = o.listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host == "localhost") host = "127.0.0.1";
  if (host.empty()) host = "0.0.0.0";
  uint16_t port = 0;
  std::string_view port_text = std::string_view(o.listen).substr(colon + 1);
  auto [ptr, perr] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  boost::system::error_code ec;
  auto ip = asio::ip::make_address(host, ec);
  if (ec || perr != std::errc() || ptr != port_text.data() + port_text.size())
    return Status(Code::kInvalidArgument, "bad listen address \"" + o.listen + "\" (want ip:port)");

  int n = o.workers > 0 ? o.workers : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  RelayConfig config;
  config.cluster_token = o.cluster_token;
  config.stream_window = o.stream_window;
  config.connection_window = o.connection_window;
  config.max_concurrent_streams = o.max_concurrent_streams;
  config.connect_timeout = o.connect_timeout;
  config.busy_poll = o.busy_poll;
  config.client_settings_timeout = o.client_settings_timeout;
  config.instance_settings_timeout = o.instance_settings_timeout;
  config.client_idle_timeout = o.client_idle_timeout;
  config.client_write_timeout = o.client_write_timeout;
  config.max_header_list_bytes = o.max_header_list_bytes;
  for (int i = 0; i < n; ++i) {
    m.workers.push_back(std::make_shared<WorkerImpl>(static_cast<size_t>(i), config, m.router.get()));
    m.workers.back()->Register();
    m.guards.push_back(asio::make_work_guard(m.workers.back()->io_context()));
  }
  std::shared_ptr<Impl::Listener> l;
  Status s = m.Listen(asio::generic::stream_protocol::endpoint(asio::ip::tcp::endpoint(ip, port)), "", "", &l);
  if (!s.ok()) {
    m.guards.clear();
    m.workers.clear();
    return s;
  }
  auto local = l->acceptor->local_endpoint(ec);
  m.port = asio::ip::tcp::endpoint(ip, 0).port();
  if (local.size() >= sizeof(sockaddr_in)) {
    m.port = ntohs(reinterpret_cast<const sockaddr_in*>(local.data())->sin_port);  // same offset for in6
  }
  m.listeners.push_back(l);
  for (auto& w : m.workers) {
    w->siblings = &m.workers;
    w->idle_watch = &m.idle_watch;
  }
  for (auto& w : m.workers) {
    WorkerImpl* raw = w.get();
    w->thread = std::thread([raw] {
      std::string name = "lever-gw-" + std::to_string(raw->index());
      pthread_setname_np(pthread_self(), name.c_str());
      raw->RunThread();
    });
  }
  asio::post(m.workers[0]->io_context(), [impl = impl_.get(), l] { impl->Accept(l); });
  m.started = true;
  return Status::Ok();
}

uint16_t Gateway::port() const { return impl_->port; }

Status Gateway::AddInternalListener(std::string env, std::string unix_socket_path) {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lock(m.control_mu);
  if (!m.started || m.stopped) return Status(Code::kFailedPrecondition, "gateway not running");
  if (env.empty()) return Status(Code::kInvalidArgument, "internal listener needs an environment");
  if (unix_socket_path.empty() || unix_socket_path.size() >= sizeof(sockaddr_un::sun_path))
    return Status(Code::kInvalidArgument, "bad unix socket path \"" + unix_socket_path + "\"");
  ::unlink(unix_socket_path.c_str());
  std::shared_ptr<Impl::Listener> l;
  Status s = m.Listen(asio::generic::stream_protocol::endpoint(asio::local::stream_protocol::endpoint(unix_socket_path)),
                      std::move(env), unix_socket_path, &l);
  if (!s.ok()) return s;
  m.listeners.push_back(l);
  asio::post(m.workers[0]->io_context(), [impl = impl_.get(), l] { impl->Accept(l); });
  return Status::Ok();
}

Status Gateway::AddPeerListener(const std::string& listen, uint16_t* port) {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lock(m.control_mu);
  if (!m.started || m.stopped) return Status(Code::kFailedPrecondition, "gateway not running");
  if (m.options.cluster_token.empty()) return Status(Code::kInvalidArgument, "a peer port needs a cluster token");
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos) return Status(Code::kInvalidArgument, "peer address must be host:port");
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host == "localhost") host = "127.0.0.1";
  uint16_t p = 0;
  std::string_view port_text = std::string_view(listen).substr(colon + 1);
  auto [ptr, perr] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), p);
  boost::system::error_code ec;
  auto ip = asio::ip::make_address(host, ec);
  if (ec || perr != std::errc() || ptr != port_text.data() + port_text.size())
    return Status(Code::kInvalidArgument, "bad peer address \"" + listen + "\" (want ip:port)");
  std::shared_ptr<Impl::Listener> l;
  Status s = m.Listen(asio::generic::stream_protocol::endpoint(asio::ip::tcp::endpoint(ip, p)), "", "", &l);
  if (!s.ok()) return s;
  l->peer = true;
  auto local = l->acceptor->local_endpoint(ec);
  if (port != nullptr && local.size() >= sizeof(sockaddr_in)) {
    *port = ntohs(reinterpret_cast<const sockaddr_in*>(local.data())->sin_port);
  }
  m.listeners.push_back(l);
  asio::post(m.workers[0]->io_context(), [impl = impl_.get(), l] { impl->Accept(l); });
  return Status::Ok();
}

void Gateway::Stop(std::chrono::milliseconds grace) {
  Impl& m = *impl_;
  std::vector<std::shared_ptr<Impl::Listener>> listeners;
  {
    std::lock_guard<std::mutex> lock(m.control_mu);
    if (!m.started || m.stopped) return;
    m.stopped = true;
    listeners = m.listeners;
  }
  m.stopping.store(true);
  auto deadline = std::chrono::steady_clock::now() + grace;
  // Stop accepting (the acceptors live on worker 0).
  std::promise<void> closed;
  asio::post(m.workers[0]->io_context(), [&listeners, &closed] {
    for (auto& l : listeners) {
      boost::system::error_code ignored;
      l->acceptor->close(ignored);
    }
    closed.set_value();
  });
  closed.get_future().wait();
  for (auto& l : listeners) {
    if (!l->unix_path.empty()) ::unlink(l->unix_path.c_str());
  }
  // GOAWAY to every client; streams in flight may finish until the deadline.
  for (auto& w : m.workers) {
    WorkerImpl* raw = w.get();
    asio::post(raw->io_context(), [raw] { raw->Drain(); });
  }
  auto busy = [&m] {
    for (auto& w : m.workers) {
      if (w->counters().streams.load() > 0 || w->counters().clients.load() > 0) return true;
    }
    return false;
  };
  while (busy() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  for (auto& w : m.workers) {
    WorkerImpl* raw = w.get();
    asio::post(raw->io_context(), [raw] {
      raw->CloseAll();
      raw->io_context().stop();
    });
  }
  for (auto& w : m.workers) {
    if (w->thread.joinable()) w->thread.join();
  }
  m.guards.clear();
  std::lock_guard<std::mutex> lock(m.control_mu);
  m.listeners.clear();
}

GatewayStats Gateway::StatsForTest() const { return SumStats(impl_->workers); }

}  // namespace lever::gateway
