// A worker's loop, its stream pool, Router answers from other threads, the
// dirty-connection flush and stop. See gateway/relay.md.
#include "worker.h"

#include <algorithm>
#include <mutex>

#include <boost/asio/post.hpp>

#include "backend_side.h"
#include "client_side.h"

namespace lever::gateway {

namespace asio = boost::asio;

namespace {

// Workers by serial, for Router answers that arrive on other threads. Only
// the cold-start path takes the lock.
struct WorkerRegistry {
  std::mutex mu;
  std::unordered_map<uint32_t, std::weak_ptr<WorkerImpl>> workers;
};
WorkerRegistry& Registry() {
  static WorkerRegistry* registry = new WorkerRegistry;  // never destroyed: late answers may come at exit
  return *registry;
}
std::atomic<uint32_t> next_worker_serial{1};
thread_local WorkerImpl* current_worker = nullptr;

}  // namespace

WorkerImpl::WorkerImpl(size_t index, const RelayConfig& config, host::Router* router)
    : io_(1),
      index_(index),
      serial_(next_worker_serial.fetch_add(1)),
      config_(config),
      router_(router),
      session_memory_(std::make_shared<SessionMemory>()) {}

WorkerImpl::~WorkerImpl() {
  {
    std::lock_guard<std::mutex> lock(Registry().mu);
    Registry().workers.erase(serial_);
  }
  // Connections hold sessions whose callbacks point here: drop them first.
  clients_.clear();
  backends_.clear();
  retired_.clear();
  graveyard_.clear();
}

void WorkerImpl::StartClient(Socket socket, std::string preface, std::string src_env, bool peer) {
  auto conn = std::make_shared<ClientConn>(this, std::move(socket), std::move(src_env), peer);
  clients_.push_back(conn);
  counters_.clients.fetch_add(1, std::memory_order_relaxed);
  if (!conn->Init(preface)) conn->Close();
  if (draining_) conn->Goaway();
  FlushDirty();
}

Stream* WorkerImpl::NewStream() {
  Stream* s;
  if (!free_streams_.empty()) {
    s = free_streams_.back();
    free_streams_.pop_back();
    counters_.pooled.fetch_sub(1, std::memory_order_relaxed);
    counters_.pooled_bytes.fetch_sub(static_cast<int64_t>(s->capacity()), std::memory_order_relaxed);
  } else {
    auto fresh = std::make_unique<Stream>();
    s = fresh.get();
    s->gen = ++next_gen_;
    if (free_slots_.empty()) {
      s->slot = static_cast<uint32_t>(all_streams_.size());
      all_streams_.push_back(std::move(fresh));
    } else {
      s->slot = free_slots_.back();
      free_slots_.pop_back();
      all_streams_[s->slot] = std::move(fresh);
    }
  }
  int64_t open = counters_.streams.fetch_add(1, std::memory_order_relaxed) + 1;
  if (open > peak_streams_) peak_streams_ = open;
  counters_.streams_total.fetch_add(1, std::memory_order_relaxed);
  return s;
}

void WorkerImpl::MaybeRelease(Stream* s) {
  if (s->attached() || s->bconn != nullptr || s->routing) return;
  AddBuffered(-static_cast<int64_t>(s->up.size() + s->down.size()));
  if (s->call_started) s->backend->OnCallEnd();
  counters_.streams.fetch_sub(1);  // seq_cst: see IdleWatch
  if (idle_watch != nullptr) idle_watch->Notify();
  if (free_streams_.size() >= kMaxPooledStreams) {
    // After a burst: free it at the end of this event (callers up the stack
    // may still look at it; a late Router answer finds the slot empty).
    uint32_t slot = s->slot;
    free_slots_.push_back(slot);
    dead_streams_.push_back(std::move(all_streams_[slot]));
    return;
  }
  s->Reset();
  s->gen = ++next_gen_;
  free_streams_.push_back(s);
  counters_.pooled.fetch_add(1, std::memory_order_relaxed);
  counters_.pooled_bytes.fetch_add(static_cast<int64_t>(s->capacity()), std::memory_order_relaxed);
}

void WorkerImpl::AddBuffered(int64_t n) {
  int64_t now = counters_.buffered.load(std::memory_order_relaxed) + n;
  counters_.buffered.store(now, std::memory_order_relaxed);  // single writer per worker
  if (now > counters_.peak.load(std::memory_order_relaxed)) counters_.peak.store(now, std::memory_order_relaxed);
}

void WorkerImpl::Register() {
  std::lock_guard<std::mutex> lock(Registry().mu);
  Registry().workers[serial_] = weak_from_this();
}

void WorkerImpl::RunThread() {
  current_worker = this;
  if (config_.busy_poll.count() <= 0) {
    io_.run();
  } else {
    // Spin on the reactor for a while after each burst of work before
    // sleeping in epoll: trades CPU for the wake-up latency. Only at low
    // concurrency: with more calls in flight the events of one wake-up
    // batch several calls anyway, and on a small machine a spinning worker
    // takes the CPU the instances and clients need (docs/BENCHMARKS.md,
    // "Under foreign clients"). Concurrency is the most streams open at once
    // since the worker last slept, not those open now: between two bursts
    // of 16 calls in flight few may be open.
    auto sleep = [this] {
      peak_streams_ = counters_.streams.load(std::memory_order_relaxed);
      io_.run_one();
    };
    while (!io_.stopped()) {
      if (io_.poll() > 0) continue;
      if (peak_streams_ > kBusyPollMaxStreams) {
        sleep();
        continue;
      }
      counters_.busy_polls.fetch_add(1, std::memory_order_relaxed);
      auto until = std::chrono::steady_clock::now() + config_.busy_poll;
      bool ran = false;
      while (!io_.stopped() && std::chrono::steady_clock::now() < until) {
        if (io_.poll() > 0) {
          ran = true;
          break;
        }
      }
      if (!ran) sleep();
    }
  }
  current_worker = nullptr;
}

void WorkerImpl::Deliver(RouteTicket ticket, host::RouteResult result) {
  if (current_worker != nullptr && current_worker->serial_ == ticket.worker) {
    // Synchronous answer (inside Route, on the worker): the caller flushes.
    current_worker->OnTicket(ticket, std::move(result));
    return;
  }
  std::shared_ptr<WorkerImpl> w;
  {
    std::lock_guard<std::mutex> lock(Registry().mu);
    auto it = Registry().workers.find(ticket.worker);
    if (it != Registry().workers.end()) w = it->second.lock();
  }
  if (!w) return;  // the gateway is gone
  WorkerImpl* raw = w.get();
  asio::post(raw->io_, [raw, ticket, result = std::move(result)]() mutable {
    raw->OnTicket(ticket, std::move(result));
    raw->FlushDirty();
  });
}

void WorkerImpl::OnTicket(RouteTicket ticket, host::RouteResult result) {
  if (ticket.slot >= all_streams_.size()) return;
  Stream* s = all_streams_[ticket.slot].get();
  if (s != nullptr && s->gen == ticket.gen && s->routing) OnRouted(s, std::move(result));
}

BackendConn* WorkerImpl::GetBackendConn(const host::BackendPtr& backend) {
  auto it = backends_.find(backend->id());
  if (it != backends_.end() && it->second->usable()) return it->second.get();
  if (it != backends_.end()) {
    retired_.push_back(std::move(it->second));
    backends_.erase(it);
  }
  auto conn = std::make_shared<BackendConn>(this, backend);
  backends_.emplace(backend->id(), conn);
  counters_.backends.fetch_add(1, std::memory_order_relaxed);
  conn->Connect();
  return conn.get();
}

void WorkerImpl::ForgetBackend(BackendConn* c) {
  auto it = backends_.find(c->backend()->id());
  if (it != backends_.end() && it->second.get() == c) {
    retired_.push_back(std::move(it->second));
    backends_.erase(it);
  }
}

void WorkerImpl::MarkDirty(H2Conn* c) {
  if (c->dirty || c->closed()) return;
  c->dirty = true;
  dirty_.push_back(c);
}

void WorkerImpl::FlushDirty() {
  if (flushing_) return;
  flushing_ = true;
  while (!dirty_.empty() || !ds_dirty_.empty()) {
    if (!ds_dirty_.empty()) {
      ds_list_.swap(ds_dirty_);
      for (size_t i = 0; i < ds_list_.size(); ++i) {
        Downstream* d = ds_list_[i];
        if (d == nullptr) continue;  // closed meanwhile
        d->scheduled = false;
        d->Process();
      }
      ds_list_.clear();
      continue;
    }
    flush_list_.swap(dirty_);
    for (H2Conn* c : flush_list_) {
      c->dirty = false;
      c->Flush();
    }
    flush_list_.clear();
  }
  flushing_ = false;
  graveyard_.clear();
  dead_streams_.clear();
}

void WorkerImpl::OnConnClosed(H2Conn* c) {
  // Keep the object alive until the end of this event (FlushDirty).
  if (auto* client = dynamic_cast<ClientConn*>(c)) {
    for (auto it = clients_.begin(); it != clients_.end(); ++it) {
      if (it->get() == client) {
        graveyard_.push_back(*it);
        *it = std::move(clients_.back());
        clients_.pop_back();
        counters_.clients.fetch_sub(1);  // seq_cst: see IdleWatch
        if (idle_watch != nullptr) idle_watch->Notify();
        break;
      }
    }
  } else if (auto* backend = dynamic_cast<BackendConn*>(c)) {
    ForgetBackend(backend);
    for (auto it = retired_.begin(); it != retired_.end(); ++it) {
      if (it->get() == backend) {
        graveyard_.push_back(*it);
        *it = std::move(retired_.back());
        retired_.pop_back();
        counters_.backends.fetch_sub(1, std::memory_order_relaxed);
        break;
      }
    }
  }
}

void WorkerImpl::Drain() {
  draining_ = true;
  for (auto& c : clients_) c->Goaway();
  std::vector<Downstream*> http = http_;
  for (Downstream* d : http) d->Drain();
  FlushDirty();
}

void WorkerImpl::CloseAll() {
  std::vector<Downstream*> http = http_;
  for (Downstream* d : http) d->Close();
  std::vector<std::shared_ptr<ClientConn>> clients = clients_;
  for (auto& c : clients) c->Close();
  std::vector<std::shared_ptr<BackendConn>> backends;
  for (auto& [id, c] : backends_) backends.push_back(c);
  for (auto& c : retired_) backends.push_back(c);
  for (auto& c : backends) c->Close();
  FlushDirty();
}

void WorkerImpl::Schedule(Downstream* d) {
  if (d->scheduled) return;
  d->scheduled = true;
  ds_dirty_.push_back(d);
}

void WorkerImpl::AddHttp(Downstream* d) {
  http_.push_back(d);
  counters_.http_connections.fetch_add(1, std::memory_order_relaxed);
}

void WorkerImpl::RemoveHttp(Downstream* d) {
  for (auto it = http_.begin(); it != http_.end(); ++it) {
    if (*it == d) {
      *it = http_.back();
      http_.pop_back();
      counters_.http_connections.fetch_sub(1, std::memory_order_relaxed);
      break;
    }
  }
  // A closed connection must not be processed after it is gone.
  for (auto& p : ds_dirty_) {
    if (p == d) p = nullptr;
  }
  for (auto& p : ds_list_) {
    if (p == d) p = nullptr;
  }
}

}  // namespace lever::gateway
