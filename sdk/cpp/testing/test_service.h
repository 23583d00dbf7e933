// Handlers shared by the in-process tests, the cross-process test server and
// the C ABI tests (test code only).
#pragma once

#include <atomic>
#include <map>
#include <mutex>
#include <string>

#include "lever/server.h"

namespace lever::testing {

struct TestState {
  std::mutex mu;
  std::map<std::string, int> new_resource;    // resource -> NewResource calls
  std::map<std::string, int> close_resource;  // resource -> CloseResource calls
  std::atomic<int> calls{0};
};

inline Status RegisterTestHandlers(Server* s, TestState* state) {
  Status first_error;
  auto check = [&first_error](Status x) {
    if (first_error.ok() && !x.ok()) first_error = std::move(x);
  };
  check(s->Handle("echo", [](const CallContext&, Array& args) {
    if (args.size() == 1) return Result::Of(std::move(args[0]));
    return Result::Of(Value(std::move(args)));
  }));
  check(s->Handle(
      "add",
      [](const CallContext&, Array& args) {
        if (!args[0].is_integer() || !args[1].is_integer()) return Result::AppError("add takes integers");
        return Result::Of(args[0].as_int() + args[1].as_int());
      },
      HandlerOptions{.num_args = 2}));
  check(s->Handle("fail", [](const CallContext&, Array& args) {
    return Result::AppError(args.empty() ? Value("failed") : std::move(args[0]));
  }));
  check(s->Handle("failBytes", [](const CallContext&, Array&) { return Result::AppError(Value::FromBytes("\x01\x02")); }));
  check(s->Handle("bytesLen", [](const CallContext&, Array& args) {
    if (args.size() != 1 || !args[0].is_bytes()) return Result::AppError("want one bytes argument");
    return Result::Of(static_cast<int64_t>(args[0].as_bytes().size()));
  }));
  check(s->Handle("makeBytes", [](const CallContext&, Array& args) {
    return Result::Of(Value::FromBytes(std::string(static_cast<size_t>(args[0].as_int()), 'b')));
  }));
  check(s->Handle("whoami", [state](const CallContext& c, Array& args) {
    ++state->calls;
    Map m;
    m.Set("env", c.env());
    m.Set("service", c.service());
    m.Set("resource", c.resource());
    m.Set("method", c.method());
    m.Set("source_env", c.source_env());
    m.Set("msgpack", c.codec() == wire::Codec::kMsgpack);
    m.Set("nargs", static_cast<int64_t>(args.size()));
    return Result::Of(Value(std::move(m)));
  }));
  check(s->Handle("NewResource", [state](const CallContext& c, Array& args) {
    std::lock_guard<std::mutex> lock(state->mu);
    ++state->new_resource[c.resource()];
    if (args.size() != 1 || !args[0].is_string() || args[0].as_string() != c.resource()) {
      return Result::AppError("NewResource got bad args");
    }
    if (c.resource() == "refused") return Result::AppError("resource refused");
    return Result::Of(nullptr);
  }));
  check(s->Handle("CloseResource", [state](const CallContext& c, Array&) {
    std::lock_guard<std::mutex> lock(state->mu);
    ++state->close_resource[c.resource()];
    return Result::Of(nullptr);
  }));
  check(s->HandleStream("echoChan", [](ServerStreamPtr st) {
    for (Result m = st->Receive(); !m.is_end(); m = st->Receive()) {
      if (m.is_platform_error()) return;
      if (!st->Send(m.value).ok()) return;
    }
  }));
  check(s->HandleStream("countChan", [](ServerStreamPtr st) {
    int64_t n = st->args().empty() ? 3 : st->args()[0].as_int();
    for (int64_t i = 0; i < n; ++i) {
      if (!st->Send(i).ok()) return;
    }
  }));
  check(s->HandleStream("failChan", [](ServerStreamPtr st) {
    (void)st->Send("before");
    st->Finish(Result::AppError("stream failed"));
  }));
  check(s->HandleStream("sumChan", [](ServerStreamPtr st) {
    int64_t sum = 0;
    for (Result m = st->Receive(); m.ok(); m = st->Receive()) sum += m.value.as_int();
    (void)st->Send(sum);
  }));
  check(s->HandleStream("bytesChan", [](ServerStreamPtr st) {
    for (Result m = st->Receive(); m.ok(); m = st->Receive()) {
      if (!m.value.is_bytes()) {
        st->Finish(Result::AppError("want bytes"));
        return;
      }
      (void)st->Send(Value::FromBytes(std::string(m.value.as_bytes().size(), 'r')));
    }
  }));
  check(s->HandleStream("whereChan", [](ServerStreamPtr st) {
    (void)st->Send(st->context().resource());
  }));
  return first_error;
}

}  // namespace lever::testing
