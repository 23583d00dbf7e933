// The message queues shared by client and server streams (private).
//
// A stream keeps at most one gRPC read and one gRPC write in flight (the
// callback API's rule). Received messages are decoded on the gRPC thread into
// a small inbox that blocking and asynchronous receivers drain in order; sends
// queue in an outbox. The side-specific parts (handshake, how the call ends,
// starting the gRPC operations) are virtual.
//
// Locking: mu_ guards everything. The Start*Op hooks are called with mu_ held,
// which is safe because gRPC never runs a read/write reaction inline in the
// thread that started it (client_callback.h / server_callback_handlers.h:
// can_inline=false). Finishing a server call may run OnDone inline, so
// FinishOp is called without mu_ and is the last thing a method does.
#pragma once

#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/status.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>

#include "lever/limits.h"
#include "lever/rpc.h"
#include "lever/wire.h"

namespace lever::internal {

class StreamBase : public std::enable_shared_from_this<StreamBase> {
 public:
  virtual ~StreamBase() = default;

  Result Receive(std::optional<std::chrono::milliseconds> timeout);
  void ReceiveAsync(std::function<void(Result)> done);
  Status Send(const Value& msg);
  void SendAsync(Value msg, std::function<void(Status)> done);
  // Queues an already encoded message.
  void SendEncoded(grpc::ByteBuffer buffer, std::function<void(Status)> done);

  // Reactions, called by the reactor.
  void HandleReadDone(bool ok);
  void HandleWriteDone(bool ok);

 protected:
  using Lock = std::unique_lock<std::mutex>;

  // Can gRPC operations still be started (the reactor is alive and not done)?
  virtual bool CanStartOps() const = 0;
  virtual void StartReadOp(grpc::ByteBuffer* buffer) = 0;
  virtual void StartWriteOp(const grpc::ByteBuffer* buffer) = 0;
  // The first message (the handshake), instead of the normal path.
  virtual void HandleFirstRead(Lock& lock, bool ok) = 0;
  // The gRPC read side ended (read returned !ok after the handshake).
  virtual void HandleReadClosed(Lock& lock) = 0;
  // A received message broke the protocol: end the call with `status`.
  virtual void Abort(Lock& lock, Status status) = 0;
  // Nothing left to write: a pending close or finish may start now. May
  // release the lock (then it returns with it released).
  virtual void HandleWritesDrained(Lock& lock) = 0;
  // The status reported to sends that can no longer happen.
  virtual Status EndedStatus() const = 0;

  // Starts the reads and writes that can start; may release the lock through
  // HandleWritesDrained.
  void Pump(Lock& lock);
  // Sets the terminal result (once), fails queued sends, wakes receivers.
  void SetTerminal(Lock& lock, Result result);
  // Delivers waiting messages to async receivers; releases the lock while a
  // callback runs, returns with it held.
  void Deliver(Lock& lock);
  // Fails every queued send with EndedStatus() (releases the lock while the
  // callbacks run, returns with it held).
  void FailOutbox(Lock& lock);

  struct PendingWrite {
    grpc::ByteBuffer buffer;
    std::function<void(Status)> done;
  };

  std::mutex mu_;
  std::condition_variable cv_;
  wire::Codec rx_codec_ = wire::Codec::kProtoJson;
  wire::Codec tx_codec_ = wire::Codec::kProtoJson;
  DecodeLimits limits_;
  bool first_read_done_ = false;  // the handshake message was read
  bool reading_enabled_ = false;  // the normal read loop may run
  bool read_in_flight_ = false;
  bool read_closed_ = false;
  grpc::ByteBuffer read_buffer_;
  std::deque<Result> inbox_;
  std::optional<Result> terminal_;
  std::deque<std::function<void(Result)>> receivers_;
  bool delivering_ = false;
  std::deque<PendingWrite> outbox_;
  bool write_in_flight_ = false;
  bool writes_failed_ = false;
  bool send_closed_ = false;  // CloseSend / Finish requested: no more user sends
  grpc::ByteBuffer write_buffer_;
  std::function<void(Status)> write_done_;

  static constexpr size_t kInboxLimit = 16;
  static constexpr size_t kOutboxLimit = 8;
};

}  // namespace lever::internal
