// A host::Backend at a fixed address that counts nothing (the relay benchmark
// and the h2c fuzzer route to one instance they started themselves).
#pragma once

#include <string>

#include "lever/host/router.h"

namespace lever::gateway::testing {

class FixedBackend final : public host::Backend {
 public:
  explicit FixedBackend(std::string address) : address_(std::move(address)) {}
  const std::string& address() const override { return address_; }
  uint64_t id() const override { return 1; }
  void OnCallStart() override {}
  void OnCallEnd() override {}
  void OnConnectionFailed() override {}
  bool alive() const override { return true; }

 private:
  std::string address_;
};

}  // namespace lever::gateway::testing
