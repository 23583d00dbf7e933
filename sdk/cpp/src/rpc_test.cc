// In-process tests of the client and the server runtime over real sockets.
#include <map>
#include <gtest/gtest.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <condition_variable>
#include <filesystem>
#include <future>
#include <thread>

#include "executor.h"
#include "lever/client.h"
#include "lever/server.h"
#include "leverrpc.grpc.pb.h"
#include "../testing/test_service.h"

namespace lever {
namespace {

using namespace std::chrono_literals;
constexpr auto kWait = 20s;  // bound on every wait; tests never sleep

std::string MakeTempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "lever-rpc-XXXXXX").string();
  char* d = mkdtemp(tmpl.data());
  return d ? std::string(d) : std::string();
}

struct Param {
  wire::Codec codec;
  bool tcp;
};

std::string Name(const ::testing::TestParamInfo<Param>& p) {
  return std::string(p.param.codec == wire::Codec::kMsgpack ? "Msgpack" : "ProtoJson") + (p.param.tcp ? "Tcp" : "Unix");
}

class RpcTest : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    ASSERT_FALSE(dir_.empty());
    ServerOptions so;
    so.listen_addr = GetParam().tcp ? "127.0.0.1:0" : "unix:" + dir_ + "/s.sock";
    server_ = std::make_unique<Server>(so);
    ASSERT_TRUE(testing::RegisterTestHandlers(server_.get(), &state_).ok());
    RegisterExtra();
    Status st = server_->Start();
    ASSERT_TRUE(st.ok()) << st.ToString();
    target_ = GetParam().tcp ? "127.0.0.1:" + std::to_string(server_->port()) : so.listen_addr;
    ClientOptions co;
    co.force_host = target_;
    co.codec = GetParam().codec;
    co.own_environment = "dev.lever";
    client_ = std::make_unique<Client>(co);
  }
  void TearDown() override {
    client_.reset();
    if (server_) server_->Shutdown(1s);
    server_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  virtual void RegisterExtra() {}

  Endpoint Svc() { return client_->Service("dev.lever", "testService"); }

  std::string dir_, target_;
  testing::TestState state_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<Client> client_;
};

INSTANTIATE_TEST_SUITE_P(All, RpcTest,
                         ::testing::Values(Param{wire::Codec::kMsgpack, false}, Param{wire::Codec::kProtoJson, false},
                                           Param{wire::Codec::kMsgpack, true}, Param{wire::Codec::kProtoJson, true}),
                         Name);

TEST_P(RpcTest, UnaryValues) {
  Map m;
  m.Set("a", Array{1, "two", nullptr, true});
  m.Set("b", 2.5);
  Result r = Svc().Invoke("echo", {Value(m)});
  ASSERT_TRUE(r.ok()) << r.ToStatus().ToString();
  EXPECT_EQ(r.value, Value(m));
  r = Svc().Invoke("add", {40, 2});
  ASSERT_TRUE(r.ok()) << r.ToStatus().ToString();
  EXPECT_EQ(r.value, Value(42));
}

TEST_P(RpcTest, ZeroArgs) {
  Result r = Svc().Invoke("whoami", {});
  ASSERT_TRUE(r.ok()) << r.ToStatus().ToString();
  const Map& m = r.value.as_map();
  EXPECT_EQ(*m.Find("nargs"), Value(0));
  EXPECT_EQ(*m.Find("env"), Value("dev.lever"));
  EXPECT_EQ(*m.Find("service"), Value("testService"));
  EXPECT_EQ(*m.Find("method"), Value("whoami"));
  EXPECT_EQ(*m.Find("resource"), Value(""));
  EXPECT_EQ(*m.Find("msgpack"), Value(GetParam().codec == wire::Codec::kMsgpack));
}

TEST_P(RpcTest, Bytes) {
  Result r = Svc().Invoke("bytesLen", {Value::FromBytes(std::string("\0\1\2", 3))});
  ASSERT_TRUE(r.ok()) << r.ToStatus().ToString();
  EXPECT_EQ(r.value, Value(3));
  r = Svc().Invoke("makeBytes", {5});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value, Value::FromBytes("bbbbb"));
}

TEST_P(RpcTest, MsgpackPassThrough) {
  // [40, 2] in, 42 out, whatever the wire codec.
  std::string result;
  Result r = client_->InvokeUrlMsgpack("lever://dev.lever/testService//add", "\x92\x28\x02", {}, &result);
  ASSERT_TRUE(r.ok()) << r.ToStatus().ToString();
  EXPECT_EQ(result, "\x2a");
  r = client_->InvokeUrlMsgpack("lever://dev.lever/testService//makeBytes", "\x91\x02", {}, &result);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(result, "\xc4\x02" "bb");  // msgpack bin 8
  r = client_->InvokeUrlMsgpack("lever://dev.lever/testService//fail", "\x90", {}, &result);
  ASSERT_TRUE(r.is_app_error());
  EXPECT_EQ(r.value, Value("failed"));
  r = client_->InvokeUrlMsgpack("lever://dev.lever/testService//add", "\x01", {}, &result);
  EXPECT_EQ(r.status.code(), Code::kInvalidArgument);
}

TEST_P(RpcTest, LargeMessages) {
  std::string big(8 << 20, 'x');
  Result r = Svc().Invoke("bytesLen", {Value::FromBytes(big)});
  ASSERT_TRUE(r.ok()) << r.ToStatus().ToString();
  EXPECT_EQ(r.value, Value(8 << 20));
  r = Svc().Invoke("makeBytes", {8 << 20});
  ASSERT_TRUE(r.ok()) << r.ToStatus().ToString();
  EXPECT_EQ(r.value.as_bytes().size(), size_t{8} << 20);
}

TEST_P(RpcTest, ApplicationErrorsAreInBand) {
  Result r = Svc().Invoke("fail", {"boom"});
  ASSERT_TRUE(r.is_app_error());
  EXPECT_EQ(r.value, Value("boom"));
  EXPECT_EQ(r.ToStatus(), Status(Code::kUnknown, "boom"));
  Map detail;
  detail.Set("code", 7);
  r = Svc().Invoke("fail", {Value(detail)});
  ASSERT_TRUE(r.is_app_error());
  EXPECT_EQ(r.value, Value(detail));
  r = Svc().Invoke("failBytes", {});
  ASSERT_TRUE(r.is_app_error());
  EXPECT_EQ(r.value, Value::FromBytes("\x01\x02"));
}

TEST_P(RpcTest, PlatformErrors) {
  Result r = Svc().Invoke("noSuchMethod", {});
  ASSERT_TRUE(r.is_platform_error());
  EXPECT_EQ(r.status.code(), Code::kNotFound);
  EXPECT_EQ(r.status.message(), "method not found: noSuchMethod");
  r = Svc().Invoke("add", {1});
  ASSERT_TRUE(r.is_platform_error());
  EXPECT_EQ(r.status.code(), Code::kInvalidArgument);
  // The client refuses the wrong call style before sending anything.
  r = Svc().Invoke("echoChan", {});
  EXPECT_EQ(r.status.code(), Code::kInvalidArgument);
  ClientStreamPtr s;
  EXPECT_EQ(Svc().InvokeStream(&s, "echo", {}).code(), Code::kInvalidArgument);
  r = client_->InvokeUrl("lever://dev.lever/svc", {});
  EXPECT_EQ(r.status.code(), Code::kInvalidArgument);
}

TEST_P(RpcTest, AsyncInvokeManyInFlight) {
  constexpr int kCalls = 300;
  std::mutex mu;
  std::condition_variable cv;
  int done = 0, good = 0;
  for (int i = 0; i < kCalls; ++i) {
    Svc().InvokeAsync("add", {i, 1}, {}, [&, i](Result r) {
      std::lock_guard<std::mutex> lock(mu);
      if (r.ok() && r.value == Value(i + 1)) ++good;
      ++done;
      cv.notify_all();
    });
  }
  std::unique_lock<std::mutex> lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, kWait, [&] { return done == kCalls; }));
  EXPECT_EQ(good, kCalls);
  EXPECT_EQ(client_->ChannelCountForTest(), 1u);
}

TEST_P(RpcTest, IdleChannelsExpire) {
  ASSERT_TRUE(Svc().Invoke("echo", {1}).ok());
  EXPECT_EQ(client_->ChannelCountForTest(), 1u);
  client_->ExpireIdleChannelsForTest(std::chrono::steady_clock::now() + std::chrono::minutes(4));
  EXPECT_EQ(client_->ChannelCountForTest(), 1u);  // default idle timeout: 5 min
  client_->ExpireIdleChannelsForTest(std::chrono::steady_clock::now() + std::chrono::minutes(6));
  EXPECT_EQ(client_->ChannelCountForTest(), 0u);
  Result r = Svc().Invoke("echo", {2});  // redials
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value, Value(2));
  EXPECT_EQ(client_->ChannelCountForTest(), 1u);
}

TEST_P(RpcTest, ManyConcurrentStreams) {
  std::vector<std::thread> threads;
  std::atomic<int> good{0};
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      ClientStreamPtr s;
      if (!Svc().InvokeStream(&s, "echoChan", {}).ok()) return;
      bool all = true;
      for (int i = 0; i < 20; ++i) {
        if (!s->Send(t * 100 + i).ok()) all = false;
      }
      for (int i = 0; i < 20; ++i) {
        Result r = s->Receive(kWait);
        if (!r.ok() || r.value != Value(t * 100 + i)) all = false;
      }
      s->CloseSend();
      if (all && s->Receive(kWait).is_end()) ++good;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(good.load(), 16);
}

TEST_P(RpcTest, ManyThreadsSync) {
  std::vector<std::thread> threads;
  std::atomic<int> good{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        Result r = Svc().Invoke("add", {t, i});
        if (r.ok() && r.value == Value(t + i)) ++good;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(good.load(), 400);
}

TEST_P(RpcTest, StreamEcho) {
  ClientStreamPtr s;
  Status st = Svc().InvokeStream(&s, "echoChan", {});
  ASSERT_TRUE(st.ok()) << st.ToString();
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(s->Send(i).ok());
    Result r = s->Receive(kWait);
    ASSERT_TRUE(r.ok()) << r.ToStatus().ToString();
    EXPECT_EQ(r.value, Value(i));
  }
  s->CloseSend();
  EXPECT_TRUE(s->Receive(kWait).is_end());
  EXPECT_TRUE(s->Receive(kWait).is_end());  // sticky
}

TEST_P(RpcTest, StreamClientHalfCloseThenServerReplies) {
  ClientStreamPtr s;
  ASSERT_TRUE(Svc().InvokeStream(&s, "sumChan", {}).ok());
  for (int i = 1; i <= 10; ++i) ASSERT_TRUE(s->Send(i).ok());
  s->CloseSend();
  EXPECT_FALSE(s->Send(1).ok());
  Result r = s->Receive(kWait);
  ASSERT_TRUE(r.ok()) << r.ToStatus().ToString();
  EXPECT_EQ(r.value, Value(55));
  EXPECT_TRUE(s->Receive(kWait).is_end());
}

TEST_P(RpcTest, StreamServerEndsEarly) {
  ClientStreamPtr s;
  ASSERT_TRUE(Svc().InvokeStream(&s, "countChan", {5}).ok());
  for (int i = 0; i < 5; ++i) {
    Result r = s->Receive(kWait);
    ASSERT_TRUE(r.ok()) << r.ToStatus().ToString();
    EXPECT_EQ(r.value, Value(i));
  }
  EXPECT_TRUE(s->Receive(kWait).is_end());
}

TEST_P(RpcTest, StreamApplicationError) {
  ClientStreamPtr s;
  ASSERT_TRUE(Svc().InvokeStream(&s, "failChan", {}).ok());
  Result r = s->Receive(kWait);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value, Value("before"));
  r = s->Receive(kWait);
  ASSERT_TRUE(r.is_app_error()) << r.ToStatus().ToString();
  EXPECT_EQ(r.value, Value("stream failed"));
  EXPECT_TRUE(s->Receive(kWait).is_end());
}

TEST_P(RpcTest, StreamUnknownMethodFailsTheOpen) {
  ClientStreamPtr s;
  Status st = Svc().InvokeStream(&s, "missingChan", {});
  EXPECT_EQ(st.code(), Code::kNotFound);
  EXPECT_EQ(s, nullptr);
}

TEST_P(RpcTest, StreamBytesAndLargeMessages) {
  ClientStreamPtr s;
  ASSERT_TRUE(Svc().InvokeStream(&s, "bytesChan", {}).ok());
  for (size_t n : {size_t{0}, size_t{1}, size_t{5} << 20}) {
    ASSERT_TRUE(s->Send(Value::FromBytes(std::string(n, 'q'))).ok());
    Result r = s->Receive(kWait);
    ASSERT_TRUE(r.ok()) << r.ToStatus().ToString();
    EXPECT_EQ(r.value, Value::FromBytes(std::string(n, 'r')));
  }
  s->CloseSend();
  EXPECT_TRUE(s->Receive(kWait).is_end());
}

TEST_P(RpcTest, StreamAsyncReceiveInOrder) {
  ClientStreamPtr s;
  ASSERT_TRUE(Svc().InvokeStream(&s, "countChan", {50}).ok());
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Value> got;
  bool ended = false;
  std::function<void(Result)> on;
  on = [&](Result r) {
    std::lock_guard<std::mutex> lock(mu);
    if (r.ok()) {
      got.push_back(r.value);
      s->ReceiveAsync(on);
    } else {
      ended = r.is_end();
      cv.notify_all();
    }
  };
  s->ReceiveAsync(on);
  std::unique_lock<std::mutex> lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, kWait, [&] { return ended; }));
  ASSERT_EQ(got.size(), 50u);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(got[i], Value(i));
}

TEST_P(RpcTest, ResourcesCallNewResourceOnce) {
  Endpoint r1 = client_->Resource("dev.lever", "testService", "users/42");
  for (int i = 0; i < 3; ++i) {
    Result r = r1.Invoke("whoami", {"x"});
    ASSERT_TRUE(r.ok()) << r.ToStatus().ToString();
    EXPECT_EQ(*r.value.as_map().Find("resource"), Value("users/42"));
    EXPECT_EQ(*r.value.as_map().Find("nargs"), Value(1));  // the resource is not an argument
  }
  {
    std::lock_guard<std::mutex> lock(state_.mu);
    EXPECT_EQ(state_.new_resource["users/42"], 1);
  }
  // The host's explicit lifecycle calls (reference §7.2).
  Result r = client_->InvokeUrl("lever://dev.lever/testService//NewResource", {"users/42"});
  ASSERT_TRUE(r.ok()) << r.ToStatus().ToString();
  r = client_->InvokeUrl("lever://dev.lever/testService//NewResource", {"other"});
  ASSERT_TRUE(r.ok());
  {
    std::lock_guard<std::mutex> lock(state_.mu);
    EXPECT_EQ(state_.new_resource["users/42"], 1);
    EXPECT_EQ(state_.new_resource["other"], 1);
  }
  r = client_->InvokeUrl("lever://dev.lever/testService//CloseResource", {"users/42"});
  ASSERT_TRUE(r.ok());
  auto res = server_->ResourcesForTest();
  EXPECT_EQ(res, std::vector<std::string>{"other"});
  {
    std::lock_guard<std::mutex> lock(state_.mu);
    EXPECT_EQ(state_.close_resource["users/42"], 1);
  }
  // Reopened on the next call.
  ASSERT_TRUE(r1.Invoke("whoami", {}).ok());
  std::lock_guard<std::mutex> lock(state_.mu);
  EXPECT_EQ(state_.new_resource["users/42"], 2);
}

TEST_P(RpcTest, ResourceRefusedFailsTheCall) {
  Result r = client_->Resource("dev.lever", "testService", "refused").Invoke("whoami", {});
  ASSERT_TRUE(r.is_app_error());
  EXPECT_EQ(r.value, Value("resource refused"));
  EXPECT_TRUE(server_->ResourcesForTest().empty());
}

TEST_P(RpcTest, ResourceConcurrentFirstCalls) {
  std::vector<std::future<Result>> fs;
  for (int i = 0; i < 16; ++i) {
    fs.push_back(std::async(std::launch::async, [&] {
      return client_->Resource("dev.lever", "testService", "hot").Invoke("whoami", {});
    }));
  }
  for (auto& f : fs) EXPECT_TRUE(f.get().ok());
  std::lock_guard<std::mutex> lock(state_.mu);
  EXPECT_EQ(state_.new_resource["hot"], 1);
}

TEST_P(RpcTest, StreamForResource) {
  ClientStreamPtr s;
  ASSERT_TRUE(client_->Resource("dev.lever", "testService", "room").InvokeStream(&s, "whereChan", {}).ok());
  Result r = s->Receive(kWait);
  ASSERT_TRUE(r.ok()) << r.ToStatus().ToString();
  EXPECT_EQ(r.value, Value("room"));
  std::lock_guard<std::mutex> lock(state_.mu);
  EXPECT_EQ(state_.new_resource["room"], 1);
}

// ---- Tests that need extra handlers ----------------------------------------

class RpcControlTest : public RpcTest {
 protected:
  void RegisterExtra() override {
    ASSERT_TRUE(server_
                    ->HandleAsync("park",
                                  [this](UnaryCallPtr call) {
                                    std::lock_guard<std::mutex> lock(mu_);
                                    parked_.push_back(std::move(call));
                                    cv_.notify_all();
                                  })
                    .ok());
    ASSERT_TRUE(server_
                    ->Handle("stopServer",
                             [this](const CallContext&, Array&) {
                               server_->Shutdown(kWait);  // from a handler: must not deadlock
                               return Result::Of("stopping");
                             })
                    .ok());
    // A handler that never blocks: it returns at once and lives on in its
    // callbacks (what the Node and Go bindings do).
    ASSERT_TRUE(server_
                    ->HandleStream("asyncEchoChan",
                                   [](ServerStreamPtr s) {
                                     auto step = std::make_shared<std::function<void(Result)>>();
                                     *step = [s, step](Result m) {
                                       if (!m.ok()) {
                                         s->Finish(Result::End());
                                         *step = nullptr;  // breaks the cycle
                                         return;
                                       }
                                       s->SendAsync(std::move(m.value), nullptr);
                                       s->ReceiveAsync(*step);
                                     };
                                     s->ReceiveAsync(*step);
                                   },
                                   HandlerOptions{.run_inline = true})
                    .ok());
    ASSERT_TRUE(server_
                    ->Handle("throws",
                             [](const CallContext&, Array& args) {
                               return Result::Of(args[0].as_string());  // throws on a number
                             })
                    .ok());
    ASSERT_TRUE(server_
                    ->HandleStream("floodChan",
                                   [this](ServerStreamPtr s) {
                                     int sent = 0;
                                     while (s->Send(std::string(1024, 'f')).ok()) ++sent;
                                     std::lock_guard<std::mutex> lock(mu_);
                                     flood_sent_ = sent;
                                     cv_.notify_all();
                                   })
                    .ok());
    // Queues many sends, waits for the caller to go away, then ends with an
    // error: the writes fail, and the call must still finish.
    ASSERT_TRUE(server_
                    ->HandleStream("floodThenErrorChan",
                                   [this](ServerStreamPtr s) {
                                     for (int i = 0; i < 1000; ++i) s->SendAsync(Value(i), nullptr);
                                     (void)s->Receive(kWait);
                                     s->Finish(Result::AppError(Value("late error")));
                                     std::lock_guard<std::mutex> lock(mu_);
                                     flood_finished_ = true;
                                     cv_.notify_all();
                                   })
                    .ok());
    ASSERT_TRUE(server_
                    ->HandleStream("waitChan",
                                   [this](ServerStreamPtr s) {
                                     Result r = s->Receive(kWait);
                                     std::lock_guard<std::mutex> lock(mu_);
                                     stream_end_ = r;
                                     cv_.notify_all();
                                   })
                    .ok());
  }
  void TearDown() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      parked_.clear();
    }
    RpcTest::TearDown();
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<UnaryCallPtr> parked_;
  std::optional<Result> stream_end_;
  int flood_sent_ = -1;
  bool flood_finished_ = false;
};

INSTANTIATE_TEST_SUITE_P(All, RpcControlTest,
                         ::testing::Values(Param{wire::Codec::kMsgpack, false}, Param{wire::Codec::kProtoJson, true}),
                         Name);

TEST_P(RpcControlTest, AsyncHandlerRepliesFromAnotherThread) {
  auto f = std::async(std::launch::async, [&] { return Svc().Invoke("park", {}); });
  UnaryCallPtr call;
  {
    std::unique_lock<std::mutex> lock(mu_);
    ASSERT_TRUE(cv_.wait_for(lock, kWait, [&] { return !parked_.empty(); }));
    call = parked_.back();
  }
  std::thread([call] { call->Reply(Result::Of("late")); }).join();
  Result r = f.get();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value, Value("late"));
}

TEST_P(RpcControlTest, DeadlineCancelsServerSide) {
  Result r = Svc().Invoke("park", {}, CallOptions{.timeout = 50ms});
  EXPECT_EQ(r.status.code(), Code::kDeadlineExceeded);
  std::unique_lock<std::mutex> lock(mu_);
  ASSERT_EQ(parked_.size(), 1u);
  EXPECT_NE(parked_[0]->context().deadline(), std::chrono::system_clock::time_point::max());
}

// A pending async call's Cancel ends it at once for the caller (CANCELLED)
// and the server's watcher hears it without polling.
TEST_P(RpcControlTest, PendingCallCancelReachesTheHandler) {
  std::promise<Result> done;
  PendingCallPtr call = Svc().InvokeAsync("park", {}, {}, [&done](Result r) { done.set_value(std::move(r)); });
  ASSERT_TRUE(call);
  UnaryCallPtr parked;
  {
    std::unique_lock<std::mutex> lock(mu_);
    ASSERT_TRUE(cv_.wait_for(lock, kWait, [&] { return !parked_.empty(); }));
    parked = parked_.back();
  }
  std::promise<bool> watched;
  parked->context().WatchCancel([&watched](bool cancelled) { watched.set_value(cancelled); });
  call->Cancel();
  auto f = done.get_future();
  ASSERT_EQ(f.wait_for(kWait), std::future_status::ready);
  Result r = f.get();
  EXPECT_EQ(r.status.code(), Code::kCancelled) << r.ToStatus().ToString();
  auto w = watched.get_future();
  ASSERT_EQ(w.wait_for(kWait), std::future_status::ready);
  EXPECT_TRUE(w.get());
  EXPECT_TRUE(parked->context().cancelled());
  call->Cancel();  // after the end: harmless
  // A watcher added late runs at once with the outcome.
  bool late = false;
  parked->context().WatchCancel([&late](bool cancelled) { late = cancelled; });
  EXPECT_TRUE(late);
}

// A call that ends normally: each watcher hears `false` once it is over.
TEST_P(RpcControlTest, WatchCancelHearsTheEndOfANormalCall) {
  std::promise<bool> watched;
  auto f = std::async(std::launch::async, [&] { return Svc().Invoke("park", {}); });
  UnaryCallPtr parked;
  {
    std::unique_lock<std::mutex> lock(mu_);
    ASSERT_TRUE(cv_.wait_for(lock, kWait, [&] { return !parked_.empty(); }));
    parked = parked_.back();
    parked_.clear();
  }
  parked->context().WatchCancel([&watched](bool cancelled) { watched.set_value(cancelled); });
  parked->Reply(Result::Of(1));
  EXPECT_TRUE(f.get().ok());
  auto w = watched.get_future();
  ASSERT_EQ(w.wait_for(kWait), std::future_status::ready);
  EXPECT_FALSE(w.get());
}

TEST_P(RpcTest, MsgpackAsync) {
  std::promise<std::pair<Result, std::string>> done;
  PendingCallPtr call = client_->InvokeUrlMsgpackAsync(
      "lever://dev.lever/testService//add", "\x92\x28\x02", {},
      [&done](Result r, std::string mp) { done.set_value({std::move(r), std::move(mp)}); });
  ASSERT_TRUE(call);
  auto [r, mp] = done.get_future().get();
  ASSERT_TRUE(r.ok()) << r.ToStatus().ToString();
  EXPECT_EQ(mp, "\x2a");
  // Refused before sending: inline, and no handle.
  std::promise<Result> bad;
  call = client_->InvokeUrlMsgpackAsync("lever://dev.lever/testService//add", "\x01", {},
                                        [&bad](Result r2, std::string) { bad.set_value(std::move(r2)); });
  EXPECT_FALSE(call);
  EXPECT_EQ(bad.get_future().get().status.code(), Code::kInvalidArgument);
}

TEST_P(RpcControlTest, StreamCancelReachesServer) {
  ClientStreamPtr s;
  ASSERT_TRUE(Svc().InvokeStream(&s, "waitChan", {}).ok());
  s->Cancel();
  Result r = s->Receive(kWait);
  ASSERT_TRUE(r.is_platform_error());
  EXPECT_EQ(r.status.code(), Code::kCancelled);
  std::unique_lock<std::mutex> lock(mu_);
  ASSERT_TRUE(cv_.wait_for(lock, kWait, [&] { return stream_end_.has_value(); }));
  EXPECT_TRUE(stream_end_->is_platform_error());
  EXPECT_EQ(stream_end_->status.code(), Code::kCancelled);
}

TEST_P(RpcControlTest, FinishAfterFailedWritesLetsShutdownComplete) {
  ClientStreamPtr s;
  ASSERT_TRUE(Svc().InvokeStream(&s, "floodThenErrorChan", {}).ok());
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(s->Receive(kWait).ok());
  s->Cancel();
  {
    std::unique_lock<std::mutex> lock(mu_);
    ASSERT_TRUE(cv_.wait_for(lock, kWait, [&] { return flood_finished_; }));
  }
  auto stopper = std::async(std::launch::async, [&] { server_->Shutdown(1s); });
  ASSERT_EQ(stopper.wait_for(kWait), std::future_status::ready) << "Shutdown waits for a call that never finishes";
}

TEST_P(RpcControlTest, DroppingTheStreamCancelsIt) {
  ClientStreamPtr s;
  ASSERT_TRUE(Svc().InvokeStream(&s, "waitChan", {}).ok());
  s.reset();
  std::unique_lock<std::mutex> lock(mu_);
  ASSERT_TRUE(cv_.wait_for(lock, kWait, [&] { return stream_end_.has_value(); }));
  EXPECT_EQ(stream_end_->status.code(), Code::kCancelled);
}

TEST_P(RpcControlTest, GracefulShutdownFinishesInFlightCalls) {
  auto f = std::async(std::launch::async, [&] { return Svc().Invoke("park", {}); });
  UnaryCallPtr call;
  {
    std::unique_lock<std::mutex> lock(mu_);
    ASSERT_TRUE(cv_.wait_for(lock, kWait, [&] { return !parked_.empty(); }));
    call = parked_.back();
    parked_.clear();
  }
  auto stopper = std::async(std::launch::async, [&] { server_->Shutdown(kWait); });
  // A new call is refused once shutdown began; the parked one still completes.
  call->Reply(Result::Of("finished"));
  call.reset();
  Result r = f.get();
  ASSERT_TRUE(r.ok()) << r.ToStatus().ToString();
  EXPECT_EQ(r.value, Value("finished"));
  stopper.get();
  EXPECT_FALSE(Svc().Invoke("echo", {1}).ok());
}

TEST_P(RpcControlTest, ThrowingHandlerFailsTheCallNotTheServer) {
  Result r = Svc().Invoke("throws", {1});
  ASSERT_TRUE(r.is_platform_error());
  EXPECT_EQ(r.status.code(), Code::kUnknown);
  r = Svc().Invoke("throws", {"fine"});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value, Value("fine"));
}

TEST_P(RpcControlTest, NonBlockingServerStream) {
  ClientStreamPtr s;
  ASSERT_TRUE(Svc().InvokeStream(&s, "asyncEchoChan", {}).ok());
  for (int i = 0; i < 30; ++i) ASSERT_TRUE(s->Send(i).ok());
  for (int i = 0; i < 30; ++i) {
    Result r = s->Receive(kWait);
    ASSERT_TRUE(r.ok()) << r.ToStatus().ToString();
    EXPECT_EQ(r.value, Value(i));
  }
  s->CloseSend();
  EXPECT_TRUE(s->Receive(kWait).is_end());
}

TEST_P(RpcControlTest, FlowControlAndAbandonedStream) {
  ClientStreamPtr s;
  ASSERT_TRUE(Svc().InvokeStream(&s, "floodChan", {}).ok());
  Result r = s->Receive(kWait);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value.as_string().size(), 1024u);
  s.reset();  // the server is blocked by flow control; the cancel frees it
  std::unique_lock<std::mutex> lock(mu_);
  ASSERT_TRUE(cv_.wait_for(lock, kWait, [&] { return flood_sent_ >= 0; }));
  EXPECT_GE(flood_sent_, 1);
}

TEST_P(RpcControlTest, ClientDestroyedWithCallsInFlight) {
  std::mutex mu;
  std::condition_variable cv;
  int done = 0;
  {
    ClientOptions co;
    co.force_host = target_;
    Client c(co);
    for (int i = 0; i < 50; ++i) {
      c.InvokeUrlAsync("lever://dev.lever/testService//add", {i, i}, {}, [&](Result) {
        std::lock_guard<std::mutex> lock(mu);
        ++done;
        cv.notify_all();
      });
    }
  }  // the Client goes away first; its calls still complete
  std::unique_lock<std::mutex> lock(mu);
  EXPECT_TRUE(cv.wait_for(lock, kWait, [&] { return done == 50; }));
}

TEST_P(RpcControlTest, ShutdownFromAHandler) {
  Result r = Svc().Invoke("stopServer", {});
  ASSERT_TRUE(r.ok()) << r.ToStatus().ToString();
  EXPECT_EQ(r.value, Value("stopping"));
  server_->Wait();  // returns once the shutdown started by the handler is done
  EXPECT_FALSE(Svc().Invoke("echo", {1}).ok());
}

// ---- Raw gRPC peers: the original protocol, byte for byte ------------------

class RawTest : public RpcTest {};
INSTANTIATE_TEST_SUITE_P(All, RawTest, ::testing::Values(Param{wire::Codec::kProtoJson, false}), Name);

grpc::ByteBuffer Bytes(std::string_view s) {
  grpc::Slice slice(s.data(), s.size());
  return grpc::ByteBuffer(&slice, 1);
}

TEST_P(RawTest, MissingUrlAndMalformedMessages) {
  auto ch = grpc::CreateChannel(target_, grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(ch);
  auto call = [&](std::string_view body, bool with_url) {
    grpc::ClientContext ctx;
    if (with_url) ctx.AddMetadata("lever-url", "lever://dev.lever/testService//echo");
    grpc::ByteBuffer req = Bytes(body), resp;
    std::promise<grpc::Status> p;
    stub.UnaryCall(&ctx, wire::kUnaryMethod, grpc::StubOptions(), &req, &resp, [&](grpc::Status s) { p.set_value(s); });
    return p.get_future().get();
  };
  EXPECT_EQ(call(std::string("\x0a\x00", 2), false).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(call("\xff\xff", true).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(call("", true).error_code(), grpc::StatusCode::INVALID_ARGUMENT);  // RPC with no member
  EXPECT_TRUE(call(std::string("\x0a\x00", 2), true).ok());

  grpc::ClientContext ctx;
  grpc::ByteBuffer req = Bytes(std::string("\x0a\x00", 2)), resp;
  std::promise<grpc::Status> p;
  stub.UnaryCall(&ctx, "/other.Service/Method", grpc::StubOptions(), &req, &resp,
                 [&](grpc::Status s) { p.set_value(s); });
  EXPECT_EQ(p.get_future().get().error_code(), grpc::StatusCode::UNIMPLEMENTED);
}

// What the gateway adds reaches the handler's context.
TEST_P(RawTest, SourceEnvAndMetadataReachTheContext) {
  auto stub = core::LeverRPC::NewStub(grpc::CreateChannel(target_, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.AddMetadata("lever-url", "lever://dev.lever/testService/r9/whoami");
  ctx.AddMetadata("x-lever-src-env", "caller.lever");
  core::RPC req;
  req.mutable_args();
  core::RPCReply reply;
  ASSERT_TRUE(stub->HandleRPC(&ctx, req, &reply).ok());
  std::map<std::string, std::string> got;
  for (const auto& p : reply.result().json_object().property()) {
    if (p.value().has_json_string()) got[p.name()] = p.value().json_string();
  }
  EXPECT_EQ(got["source_env"], "caller.lever");
  EXPECT_EQ(got["resource"], "r9");
  EXPECT_EQ(got["env"], "dev.lever");
}

// The original clients are generated protobuf stubs: one must work unchanged.
TEST_P(RawTest, GeneratedStubAsOriginalClient) {
  auto stub = core::LeverRPC::NewStub(grpc::CreateChannel(target_, grpc::InsecureChannelCredentials()));
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("lever-url", "lever://dev.lever/testService//add");
    core::RPC req;
    req.mutable_args()->add_element()->set_json_number(2);
    req.mutable_args()->add_element()->set_json_number(3);
    core::RPCReply reply;
    ASSERT_TRUE(stub->HandleRPC(&ctx, req, &reply).ok());
    ASSERT_TRUE(reply.has_result());
    EXPECT_EQ(reply.result().json_number(), 5);
    EXPECT_EQ(ctx.GetServerInitialMetadata().count("lever-codec"), 0u);
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("lever-url", "lever://dev.lever/testService//bytesLen");
    core::RPC req;
    req.set_byte_args("abcd");
    core::RPCReply reply;
    ASSERT_TRUE(stub->HandleRPC(&ctx, req, &reply).ok());
    EXPECT_EQ(reply.result().json_number(), 4);
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("lever-url", "lever://dev.lever/testService//makeBytes");
    core::RPC req;
    req.mutable_args()->add_element()->set_json_number(2);
    core::RPCReply reply;
    ASSERT_TRUE(stub->HandleRPC(&ctx, req, &reply).ok());
    EXPECT_EQ(reply.byte_result(), "bb");
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("lever-url", "lever://dev.lever/testService//fail");
    core::RPC req;
    req.mutable_args()->add_element()->set_json_string("bad");
    core::RPCReply reply;
    ASSERT_TRUE(stub->HandleRPC(&ctx, req, &reply).ok());  // in-band
    EXPECT_EQ(reply.error().json_string(), "bad");
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("lever-url", "lever://dev.lever/testService//echoChan");
    auto rw = stub->HandleStreamingRPC(&ctx);
    core::StreamMessage first;
    first.mutable_rpc()->mutable_args();
    ASSERT_TRUE(rw->Write(first));
    core::StreamMessage m;
    ASSERT_TRUE(rw->Read(&m));
    EXPECT_EQ(m.message_oneof_case(), core::StreamMessage::MESSAGE_ONEOF_NOT_SET);  // the handshake
    EXPECT_EQ(m.ByteSizeLong(), 0u);
    core::StreamMessage hello;
    hello.mutable_message()->set_json_string("hi");
    ASSERT_TRUE(rw->Write(hello));
    ASSERT_TRUE(rw->Read(&m));
    EXPECT_EQ(m.message().json_string(), "hi");
    core::StreamMessage raw;
    raw.set_byte_message("\x00\x01");
    ASSERT_TRUE(rw->Write(raw));
    ASSERT_TRUE(rw->Read(&m));
    EXPECT_TRUE(m.has_byte_message());
    ASSERT_TRUE(rw->WritesDone());
    EXPECT_FALSE(rw->Read(&m));
    EXPECT_TRUE(rw->Finish().ok());
  }
}

// An original server (generated service, proto-JSON only) called by our
// client in proto-JSON mode.
class OriginalServer final : public core::LeverRPC::Service {
 public:
  grpc::Status HandleRPC(grpc::ServerContext* ctx, const core::RPC* req, core::RPCReply* reply) override {
    auto it = ctx->client_metadata().find("lever-url");
    if (it == ctx->client_metadata().end()) return grpc::Status(grpc::StatusCode::UNKNOWN, "Lever URL header not found");
    url = std::string(it->second.data(), it->second.size());
    if (req->has_byte_args()) {
      reply->set_byte_result(req->byte_args() + "!");
    } else {
      reply->mutable_result()->set_json_number(req->args().element_size());
    }
    return grpc::Status::OK;
  }
  grpc::Status HandleStreamingRPC(grpc::ServerContext*,
                                  grpc::ServerReaderWriter<core::StreamMessage, core::StreamMessage>* rw) override {
    core::StreamMessage m;
    if (!rw->Read(&m) || !m.has_rpc()) return grpc::Status(grpc::StatusCode::UNKNOWN, "no rpc");
    rw->Write(core::StreamMessage());
    while (rw->Read(&m)) {
      core::StreamMessage out;
      out.mutable_message()->set_json_string(m.message().json_string() + "?");
      rw->Write(out);
    }
    return grpc::Status::OK;
  }
  std::string url;
};

TEST(OriginalPeer, OurClientInProtoJsonMode) {
  std::string dir = MakeTempDir();
  OriginalServer svc;
  grpc::ServerBuilder b;
  b.AddListeningPort("unix:" + dir + "/o.sock", grpc::InsecureServerCredentials());
  b.RegisterService(&svc);
  auto server = b.BuildAndStart();
  ASSERT_TRUE(server);
  ClientOptions co;
  co.force_host = "unix:" + dir + "/o.sock";
  co.codec = wire::Codec::kProtoJson;
  co.own_environment = "dev.lever";
  Client client(co);
  Result r = client.InvokeUrl("/helloService/sayHello", {1, "a"});
  ASSERT_TRUE(r.ok()) << r.ToStatus().ToString();
  EXPECT_EQ(r.value, Value(2));
  EXPECT_EQ(svc.url, "lever://dev.lever/helloService//sayHello");
  r = client.InvokeUrl("/helloService/sayHello", {Value::FromBytes("x")});
  EXPECT_EQ(r.value, Value::FromBytes("x!"));
  ClientStreamPtr s;
  ASSERT_TRUE(client.InvokeStreamUrl(&s, "/helloService/talkChan", {}).ok());
  ASSERT_TRUE(s->Send("q").ok());
  r = s->Receive(kWait);
  EXPECT_EQ(r.value, Value("q?"));
  s->CloseSend();
  EXPECT_TRUE(s->Receive(kWait).is_end());
  s.reset();
  server->Shutdown();
  std::filesystem::remove_all(dir);
}

TEST(ClientDialRule, Targets) {
  ClientOptions o;
  o.force_host = "";
  o.internal_rpc_gateway = "unix:/run/gw.sock";
  o.default_host = "127.0.0.1:8080";
  o.own_environment = "example.com";
  Client c(o);
  EXPECT_EQ(c.TargetForEnv("dev.lever"), "unix:/run/gw.sock");
  EXPECT_EQ(c.TargetForEnv("example.com"), "unix:/run/gw.sock");
  EXPECT_EQ(c.TargetForEnv("other.org"), "other.org");
  o.internal_rpc_gateway = "";
  Client outside(o);
  EXPECT_EQ(outside.TargetForEnv("dev.lever"), "127.0.0.1:8080");
  o.force_host = "10.0.0.1:9";
  Client forced(o);
  EXPECT_EQ(forced.TargetForEnv("dev.lever"), "10.0.0.1:9");
}

TEST(ClientDialRule, RelativeUrlNeedsEnvironment) {
  ClientOptions o;
  o.own_environment = "";
  o.force_host = "unix:/nonexistent.sock";
  Client c(o);
  Result r = c.InvokeUrl("/svc/method", {});
  EXPECT_EQ(r.status.code(), Code::kInvalidArgument);
}

TEST(ClientErrors, UnreachableTargetIsUnavailable) {
  ClientOptions o;
  o.force_host = "unix:/nonexistent/lever.sock";
  Client c(o);
  Result r = c.InvokeUrl("lever://dev.lever/svc//m", {}, CallOptions{.timeout = 5s});
  ASSERT_TRUE(r.is_platform_error());
  EXPECT_EQ(r.status.code(), Code::kUnavailable);
}

// NewResource runs outside any lock and holds no thread while others wait:
// with two workers, a NewResource that blocks leaves its resource's first
// calls waiting (not each on a worker) and other resources served.
TEST(ServerResources, SlowNewResourceBlocksNeitherWorkersNorOtherResources) {
  std::string dir = MakeTempDir();
  ServerOptions so;
  so.listen_addr = "unix:" + dir + "/r.sock";
  so.max_workers = 2;
  Server server(so);
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  std::map<std::string, int> opened;
  ASSERT_TRUE(server
                  .Handle("NewResource",
                          [&](const CallContext& c, Array&) {
                            std::unique_lock<std::mutex> lock(mu);
                            ++opened[c.resource()];
                            cv.notify_all();
                            if (c.resource() == "slow") cv.wait_for(lock, kWait, [&] { return release; });
                            return Result::Of(nullptr);
                          })
                  .ok());
  ASSERT_TRUE(server.Handle("where", [](const CallContext& c, Array&) { return Result::Of(c.resource()); }).ok());
  ASSERT_TRUE(server.Start().ok());
  ClientOptions co;
  co.force_host = so.listen_addr;
  Client client(co);
  std::vector<std::future<Result>> slow;
  for (int i = 0; i < 8; ++i) {
    slow.push_back(std::async(std::launch::async, [&] {
      return client.Resource("dev.lever", "svc", "slow").Invoke("where", {}, CallOptions{kWait});
    }));
  }
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, kWait, [&] { return opened["slow"] == 1; }));
  }
  Result fast = client.Resource("dev.lever", "svc", "fast").Invoke("where", {}, CallOptions{kWait});
  ASSERT_TRUE(fast.ok()) << fast.ToStatus().ToString();
  EXPECT_EQ(fast.value, Value("fast"));
  {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
  }
  cv.notify_all();
  for (auto& f : slow) {
    Result r = f.get();
    ASSERT_TRUE(r.ok()) << r.ToStatus().ToString();
    EXPECT_EQ(r.value, Value("slow"));
  }
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(opened["slow"], 1);
  EXPECT_EQ(opened["fast"], 1);
  server.Shutdown(1s);
}

// The handler pool: past its threads, a bounded queue; idle threads retire.
TEST(Executor, BoundedQueueRefusesAndIdleWorkersRetire) {
  internal::Executor ex(1, 2, 50ms);
  std::mutex mu;
  std::condition_variable cv;
  bool started = false, release = false;
  std::atomic<int> ran{0};
  ASSERT_TRUE(ex.Post([&] {
    std::unique_lock<std::mutex> lock(mu);
    started = true;
    cv.notify_all();
    cv.wait_for(lock, kWait, [&] { return release; });
    ++ran;
  }));
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, kWait, [&] { return started; }));
  }
  // The only thread is busy: two may wait, the third is refused.
  EXPECT_TRUE(ex.Post([&] { ++ran; }));
  EXPECT_TRUE(ex.Post([&] { ++ran; }));
  EXPECT_FALSE(ex.Post([&] { ++ran; }));
  ex.PostAdmitted([&] { ++ran; });  // a continuation is never refused
  {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
  }
  cv.notify_all();
  auto deadline = std::chrono::steady_clock::now() + kWait;
  while ((ran.load() < 4 || ex.threads() > 0) && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  EXPECT_EQ(ran.load(), 4);
  EXPECT_EQ(ex.threads(), 0u);  // retired after 50 ms with nothing to do
  // It grows again on demand.
  std::promise<void> again;
  ASSERT_TRUE(ex.Post([&] { again.set_value(); }));
  EXPECT_EQ(again.get_future().wait_for(kWait), std::future_status::ready);
}

// Overload is RESOURCE_EXHAUSTED at once, not an unbounded queue.
TEST(ServerLimits, CallsPastTheQueueAreResourceExhausted) {
  std::string dir = MakeTempDir();
  ServerOptions so;
  so.listen_addr = "unix:" + dir + "/q.sock";
  so.max_workers = 1;
  so.max_queued_calls = 2;
  Server server(so);
  std::mutex mu;
  std::condition_variable cv;
  int started = 0;
  bool release = false;
  ASSERT_TRUE(server
                  .Handle("block",
                          [&](const CallContext&, Array&) {
                            std::unique_lock<std::mutex> lock(mu);
                            ++started;
                            cv.notify_all();
                            cv.wait_for(lock, kWait, [&] { return release; });
                            return Result::Of("done");
                          })
                  .ok());
  ASSERT_TRUE(server.HandleStream("chan", [](ServerStreamPtr st) { st->Finish(Result::Of("streamed")); }).ok());
  ASSERT_TRUE(server.Start().ok());
  ClientOptions co;
  co.force_host = so.listen_addr;
  Client client(co);
  auto call = [&] { return client.Service("dev.lever", "svc").Invoke("block", {}, CallOptions{kWait}); };
  auto first = std::async(std::launch::async, call);
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, kWait, [&] { return started == 1; }));
  }
  // Four more while the only worker is busy: two wait, two are refused.
  std::atomic<int> refused{0};
  std::vector<std::future<Result>> more;
  for (int i = 0; i < 4; ++i) {
    more.push_back(std::async(std::launch::async, [&] {
      Result r = call();
      if (r.status.code() == Code::kResourceExhausted) ++refused;
      return r;
    }));
  }
  auto deadline = std::chrono::steady_clock::now() + kWait;
  while (refused.load() < 2 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  EXPECT_EQ(refused.load(), 2);
  // A stream past the queue is refused the same way.
  ClientStreamPtr stream;
  Status opened = client.Service("dev.lever", "svc").InvokeStream(&stream, "chan", {});
  Result first_message = opened.ok() ? stream->Receive(kWait) : Result::Failed(opened);
  EXPECT_EQ(first_message.status.code(), Code::kResourceExhausted) << first_message.ToStatus().ToString();
  {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
  }
  cv.notify_all();
  EXPECT_TRUE(first.get().ok());
  int ok = 0;
  for (auto& f : more) {
    Result r = f.get();
    if (r.ok()) {
      ++ok;
    } else {
      EXPECT_NE(r.status.message().find("server busy"), std::string::npos) << r.status.message();
    }
  }
  EXPECT_EQ(ok, 2);
  server.Shutdown(1s);
}

}  // namespace
}  // namespace lever

namespace lever {
namespace {

// ServerOptions::listen_fd (socket activation): a TCP listening socket given
// to the server serves, and its port is reported; a bad fd is a clear error.
TEST(ServerListenFd, ServesOnAGivenTcpSocketAndRefusesOthers) {
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  ASSERT_EQ(bind(lfd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  ASSERT_EQ(listen(lfd, 16), 0);
  ASSERT_EQ(getsockname(lfd, reinterpret_cast<sockaddr*>(&sa), &len), 0);
  int port = ntohs(sa.sin_port);
  ServerOptions so;
  so.listen_addr = "127.0.0.1:" + std::to_string(port);
  so.listen_fd = lfd;
  Server server(so);
  ASSERT_TRUE(server.Handle("ping", [](const CallContext&, Array&) { return Result::Of("pong"); }).ok());
  ASSERT_TRUE(server.Start().ok());
  EXPECT_TRUE(server.on_listen_fd());
  EXPECT_EQ(server.port(), port);
  ClientOptions co;
  co.force_host = so.listen_addr;
  Client client(co);
  Result r = client.Service("dev.lever", "svc").Invoke("ping", {}, CallOptions{kWait});
  ASSERT_TRUE(r.ok()) << r.ToStatus().ToString();
  EXPECT_EQ(r.value, Value("pong"));
  server.Shutdown(std::chrono::milliseconds(0));
  // Stopped: the socket is closed, as a server that bound its own would.
  int probe = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  EXPECT_NE(connect(probe, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  close(probe);

  int pipe_fds[2];
  ASSERT_EQ(pipe2(pipe_fds, O_CLOEXEC), 0);
  close(pipe_fds[1]);
  int unbound = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  for (auto [fd, why] : {std::pair{pipe_fds[0], "not a stream socket"}, std::pair{unbound, "not listening"}}) {
    ServerOptions bad;
    bad.listen_addr = "unix:/nonexistent/x.sock";
    bad.listen_fd = fd;
    Server s(bad);
    Status st = s.Start();
    EXPECT_EQ(st.code(), Code::kInvalidArgument) << st.ToString();
    EXPECT_NE(st.message().find(why), std::string::npos) << st.message();
    EXPECT_EQ(fcntl(fd, F_GETFD), -1) << "the server took the fd (and closed it)";
  }
}

}  // namespace
}  // namespace lever
