// An elastic worker pool for handlers (private). It starts with no threads
// and adds one whenever a task is posted while no worker is idle, up to a
// maximum, so handlers may block (for example on calls to other services)
// without starving each other. Past the maximum, tasks queue up to a bound:
// beyond it Post refuses (the server answers RESOURCE_EXHAUSTED) instead of
// growing without end. A worker idle for `idle_timeout` retires, so a burst
// does not keep its threads for good.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace lever::internal {

class Executor {
 public:
  explicit Executor(int max_threads, size_t max_queued = SIZE_MAX,
                    std::chrono::milliseconds idle_timeout = std::chrono::seconds(30))
      : max_threads_(max_threads < 1 ? 1 : max_threads), max_queued_(max_queued), idle_timeout_(idle_timeout) {}
  ~Executor() { Shutdown(); }

  // Queues `task`; false (and `task` dropped) when every worker is busy, no
  // more may start, and `max_queued` tasks already wait.
  bool Post(std::function<void()> task) { return Add(std::move(task), false); }
  // The same, without the bound: for the continuations of tasks already
  // admitted (a call whose resource just opened).
  void PostAdmitted(std::function<void()> task) { (void)Add(std::move(task), true); }

  // True on a worker thread of any Executor.
  static bool InWorker() { return in_worker_; }

  // Worker threads alive now (tests).
  size_t threads() {
    std::lock_guard<std::mutex> lock(mu_);
    return threads_.size();
  }

  // Runs the queued tasks, then joins every worker. Not from a worker.
  void Shutdown() {
    std::vector<std::thread> threads, retired;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      threads.swap(threads_);
      retired.swap(retired_);
    }
    cv_.notify_all();
    for (std::thread& t : threads) t.join();
    for (std::thread& t : retired) t.join();
  }

 private:
  bool Add(std::function<void()> task, bool admitted) {
    std::vector<std::thread> retired;
    bool refused = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      retired.swap(retired_);  // joined below, outside the lock
      bool can_grow = static_cast<int>(threads_.size()) < max_threads_ && !stop_;
      // Tasks no idle worker is about to take.
      size_t waiting = tasks_.size() > static_cast<size_t>(idle_) ? tasks_.size() - static_cast<size_t>(idle_) : 0;
      if (!admitted && !can_grow && waiting >= max_queued_) {
        refused = true;
      } else {
        tasks_.push_back(std::move(task));
        if (idle_ < static_cast<int>(tasks_.size()) && can_grow) {
          threads_.emplace_back([this] { Run(); });
        } else {
          cv_.notify_one();
        }
      }
    }
    for (std::thread& t : retired) t.join();
    return !refused;
  }

  void Run() {
    in_worker_ = true;
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      ++idle_;
      bool woke = cv_.wait_for(lock, idle_timeout_, [this] { return stop_ || !tasks_.empty(); });
      --idle_;
      if (!woke) {
        // Idle for the whole timeout: retire (joined by the next Post or
        // Shutdown; this thread only returns from here).
        for (auto it = threads_.begin(); it != threads_.end(); ++it) {
          if (it->get_id() == std::this_thread::get_id()) {
            retired_.push_back(std::move(*it));
            threads_.erase(it);
            break;
          }
        }
        return;
      }
      if (tasks_.empty()) return;  // stop_ and drained
      std::function<void()> task = std::move(tasks_.front());
      tasks_.pop_front();
      lock.unlock();
      task();
      task = nullptr;
      lock.lock();
    }
  }

  const int max_threads_;
  const size_t max_queued_;
  const std::chrono::milliseconds idle_timeout_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  std::vector<std::thread> threads_;
  std::vector<std::thread> retired_;  // exited on their own, not joined yet
  int idle_ = 0;
  bool stop_ = false;
  static inline thread_local bool in_worker_ = false;
};

}  // namespace lever::internal
