#include "stream_base.h"

#include <future>

#include "buffers.h"

namespace lever::internal {

Result StreamBase::Receive(std::optional<std::chrono::milliseconds> timeout) {
  Lock lock(mu_);
  auto ready = [this] { return !inbox_.empty() || terminal_.has_value(); };
  if (timeout) {
    if (!cv_.wait_for(lock, *timeout, ready)) {
      return Result::Failed(Status(Code::kDeadlineExceeded, std::string(kReceiveTimeoutMessage)));
    }
  } else {
    cv_.wait(lock, ready);
  }
  if (inbox_.empty()) return *terminal_;
  Result r = std::move(inbox_.front());
  inbox_.pop_front();
  Pump(lock);
  return r;
}

void StreamBase::ReceiveAsync(std::function<void(Result)> done) {
  // A callback run here may drop the last handle, and the call may then end
  // on another thread: keep this stream alive until we return.
  auto self = shared_from_this();
  Lock lock(mu_);
  receivers_.push_back(std::move(done));
  Deliver(lock);
}

void StreamBase::Deliver(Lock& lock) {
  if (delivering_) return;  // the delivering thread will see the new receiver
  delivering_ = true;
  while (!receivers_.empty() && (!inbox_.empty() || terminal_.has_value())) {
    std::function<void(Result)> done = std::move(receivers_.front());
    receivers_.pop_front();
    Result r;
    if (!inbox_.empty()) {
      r = std::move(inbox_.front());
      inbox_.pop_front();
    } else {
      r = *terminal_;
    }
    lock.unlock();
    done(std::move(r));
    done = nullptr;  // may hold the last reference to the stream: not under mu_
    lock.lock();
  }
  delivering_ = false;
  // Taking messages makes room for the next read. Pump may release the lock
  // (server finish), so re-take it to keep the caller's contract.
  Pump(lock);
  if (!lock.owns_lock()) lock.lock();
}

Status StreamBase::Send(const Value& msg) {
  std::string encoded;
  Status s = wire::EncodeStreamValue(msg, false, tx_codec_, &encoded);
  if (!s.ok()) return s;
  grpc::ByteBuffer buffer = ToByteBuffer(std::move(encoded));
  {
    // A short queue absorbs sends without a thread hop; a failure of a queued
    // message shows on a later send or receive (as gRPC's own SendMsg).
    Lock lock(mu_);
    if (writes_failed_ || send_closed_ || !CanStartOps()) return EndedStatus();
    if (outbox_.size() < kOutboxLimit) {
      outbox_.push_back(PendingWrite{std::move(buffer), nullptr});
      Pump(lock);
      return Status::Ok();
    }
  }
  std::promise<Status> promise;
  std::future<Status> future = promise.get_future();
  SendEncoded(std::move(buffer), [&promise](Status st) { promise.set_value(std::move(st)); });
  return future.get();
}

void StreamBase::SendAsync(Value msg, std::function<void(Status)> done) {
  std::string encoded;
  Status s;
  {
    // tx_codec_ can change once, at the client's handshake, before any user send.
    s = wire::EncodeStreamValue(msg, false, tx_codec_, &encoded);
  }
  if (!s.ok()) {
    done(std::move(s));
    return;
  }
  SendEncoded(ToByteBuffer(std::move(encoded)), std::move(done));
}

void StreamBase::SendEncoded(grpc::ByteBuffer buffer, std::function<void(Status)> done) {
  Lock lock(mu_);
  if (writes_failed_ || send_closed_ || !CanStartOps()) {
    Status st = EndedStatus();
    lock.unlock();
    if (done) done(std::move(st));
    return;
  }
  outbox_.push_back(PendingWrite{std::move(buffer), std::move(done)});
  Pump(lock);
}

void StreamBase::Pump(Lock& lock) {
  if (!CanStartOps()) return;
  if (reading_enabled_ && !read_in_flight_ && !read_closed_ && !terminal_.has_value() &&
      inbox_.size() < kInboxLimit) {
    read_in_flight_ = true;
    StartReadOp(&read_buffer_);
  }
  if (!write_in_flight_) {
    if (!outbox_.empty() && !writes_failed_) {
      write_in_flight_ = true;
      write_buffer_ = std::move(outbox_.front().buffer);
      write_done_ = std::move(outbox_.front().done);
      outbox_.pop_front();
      StartWriteOp(&write_buffer_);
    } else {
      // After a failed write nothing more goes out: fail what is still queued
      // (such as the error message a later Finish queued) so that the call
      // can finish instead of waiting for writes that will never start.
      FailOutbox(lock);
      if (!write_in_flight_ && CanStartOps()) HandleWritesDrained(lock);
    }
  }
}

void StreamBase::FailOutbox(Lock& lock) {
  if (outbox_.empty()) return;
  std::deque<PendingWrite> failed;
  failed.swap(outbox_);
  Status st = EndedStatus();
  lock.unlock();
  for (PendingWrite& w : failed) {
    if (w.done) w.done(st);
  }
  failed.clear();  // callbacks may hold the last reference to the stream
  lock.lock();
}

void StreamBase::SetTerminal(Lock& lock, Result result) {
  if (!terminal_.has_value()) terminal_ = std::move(result);
  cv_.notify_all();
  Deliver(lock);
}

void StreamBase::HandleReadDone(bool ok) {
  auto self = shared_from_this();  // the reactor may go away during this call
  Lock lock(mu_);
  read_in_flight_ = false;
  if (!first_read_done_) {
    first_read_done_ = true;
    HandleFirstRead(lock, ok);
    return;
  }
  if (!ok) {
    read_closed_ = true;
    HandleReadClosed(lock);
    return;
  }
  wire::StreamKind kind;
  Value value;
  Array args;
  Status s;
  {
    FlatBytes flat(read_buffer_);
    s = wire::DecodeStreamMessage(flat.view(), rx_codec_, &kind, &value, &args, limits_);
  }
  read_buffer_.Clear();
  if (s.ok()) {
    if (kind == wire::StreamKind::kRpc) {
      s = InvalidArgument("the rpc field may only be set in the first stream message");
    } else if (kind == wire::StreamKind::kEmpty) {
      s = InvalidArgument("a stream message has no member set");
    }
  }
  if (!s.ok()) {
    Abort(lock, std::move(s));
    return;
  }
  inbox_.push_back(kind == wire::StreamKind::kError ? Result::AppError(std::move(value)) : Result::Of(std::move(value)));
  cv_.notify_all();
  Deliver(lock);
}

void StreamBase::HandleWriteDone(bool ok) {
  auto self = shared_from_this();
  Lock lock(mu_);
  write_in_flight_ = false;
  write_buffer_.Clear();
  std::function<void(Status)> done = std::move(write_done_);
  write_done_ = nullptr;
  std::deque<PendingWrite> failed;
  if (!ok) {
    writes_failed_ = true;
    failed.swap(outbox_);
  }
  Status st = ok ? Status::Ok() : EndedStatus();
  lock.unlock();
  if (done) done(st);
  for (PendingWrite& w : failed) {
    if (w.done) w.done(st);
  }
  done = nullptr;  // callbacks may hold the last reference to the stream
  failed.clear();
  lock.lock();
  Pump(lock);
}

}  // namespace lever::internal
