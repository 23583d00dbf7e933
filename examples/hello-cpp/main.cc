// The hello service in C++: `sayHello("world")` returns "Hello, world!".
// Build it (the project's CMake build does), put the binary beside
// lever.json as `serve`, and `lever deploy` the folder.
#include "lever/server.h"

int main() {
  lever::Server server;  // listens where leverd says (LEVEROS_LISTEN_ADDR)
  (void)server.Handle("sayHello", [](const lever::CallContext&, lever::Array& args) {
    if (args.size() != 1 || !args[0].is_string()) {
      return lever::Result::AppError(lever::Value("sayHello takes one string"));
    }
    return lever::Result::Of(lever::Value("Hello, " + args[0].as_string() + "!"));
  });
  if (lever::Status s = server.Start(); !s.ok()) {
    std::fprintf(stderr, "hello: %s\n", s.ToString().c_str());
    return 1;
  }
  server.Wait();
  return 0;
}
