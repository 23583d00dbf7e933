// An elastic worker pool for handlers (private). It starts with no threads
// and adds one whenever a task is posted while no worker is idle, up to a
// maximum, so handlers may block (for example on calls to other services)
// without starving each other.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace lever::internal {

class Executor {
 public:
  explicit Executor(int max_threads) : max_threads_(max_threads < 1 ? 1 : max_threads) {}
  ~Executor() { Shutdown(); }

  void Post(std::function<void()> task) {
    std::lock_guard<std::mutex> lock(mu_);
    tasks_.push_back(std::move(task));
    if (idle_ < static_cast<int>(tasks_.size()) && static_cast<int>(threads_.size()) < max_threads_ && !stop_) {
      threads_.emplace_back([this] { Run(); });
    } else {
      cv_.notify_one();
    }
  }

  // True on a worker thread of any Executor.
  static bool InWorker() { return in_worker_; }

  // Runs the queued tasks, then joins every worker. Not from a worker.
  void Shutdown() {
    std::vector<std::thread> threads;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      threads.swap(threads_);
    }
    cv_.notify_all();
    for (std::thread& t : threads) t.join();
  }

 private:
  void Run() {
    in_worker_ = true;
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      ++idle_;
      cv_.wait(lock, [this] { return stop_ || !tasks_.empty(); });
      --idle_;
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
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  std::vector<std::thread> threads_;
  int idle_ = 0;
  bool stop_ = false;
  static inline thread_local bool in_worker_ = false;
};

}  // namespace lever::internal
