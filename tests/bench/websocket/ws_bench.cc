// Streaming message round trips through one leverd on one call of the test
// service's EchoChan (tests/bench/websocket/run.sh): over a WebSocket with
// Boost.Beast's client, and over gRPC with lever::Client, in the same run.
// Sequential (p50/p99 of one message there and back), then 64 in flight.
//   ws_bench <leverd host:port> <service> <messages>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket.hpp>

#include "lever/client.h"
#include "lever/json.h"

namespace {

namespace asio = boost::asio;
namespace websocket = boost::beast::websocket;
using Clock = std::chrono::steady_clock;
constexpr int kWindow = 64;
const std::string kMessage = R"({"seq":12345,"text":"a message of about sixty-four bytes!"})";

void Report(const char* name, std::vector<double> us, int n, double window_secs) {
  std::sort(us.begin(), us.end());
  std::printf("%-26s sequential p50 %4.0f us p99 %4.0f us | %d in flight %6.0f msgs/s\n", name, us[us.size() / 2],
              us[us.size() * 99 / 100], kWindow, n / window_secs);
}

int WebSocket(const std::string& host, const std::string& port, const std::string& service, int n) {
  asio::io_context io;
  asio::ip::tcp::resolver resolver(io);
  websocket::stream<asio::ip::tcp::socket> ws(io);
  asio::connect(ws.next_layer(), resolver.resolve(host, port));
  ws.next_layer().set_option(asio::ip::tcp::no_delay(true));
  ws.handshake(host, "/" + service + "/EchoChan?forceenv=dev.lever");
  ws.text(true);
  ws.write(asio::buffer(std::string("[]")));
  boost::beast::flat_buffer buf;
  auto round = [&] {
    ws.write(asio::buffer(kMessage));
    ws.read(buf);
    if (buf.size() != kMessage.size()) throw std::runtime_error("echo differs");
    buf.consume(buf.size());
  };
  for (int i = 0; i < 200; ++i) round();
  std::vector<double> us;
  for (int i = 0; i < n; ++i) {
    auto t0 = Clock::now();
    round();
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  auto t0 = Clock::now();
  int sent = 0;
  for (; sent < std::min(kWindow, n); ++sent) ws.write(asio::buffer(kMessage));
  for (int got = 0; got < n; ++got) {
    ws.read(buf);
    buf.consume(buf.size());
    if (sent < n) {
      ws.write(asio::buffer(kMessage));
      ++sent;
    }
  }
  Report("WebSocket (Beast client)", us, n, std::chrono::duration<double>(Clock::now() - t0).count());
  ws.close(websocket::close_code::normal);
  return 0;
}

int Grpc(const std::string& addr, const std::string& service, int n) {
  lever::ClientOptions o;
  o.force_host = addr;
  lever::Client client(o);
  lever::ClientStreamPtr s;
  if (lever::Status st = client.Service("dev.lever", service).InvokeStream(&s, "EchoChan", {}); !st.ok()) {
    std::fprintf(stderr, "stream: %s\n", st.ToString().c_str());
    return 1;
  }
  lever::Value msg;
  if (!lever::ParseJson(kMessage, &msg).ok()) return 1;
  auto round = [&] {
    (void)s->Send(msg);
    lever::Result r = s->Receive();
    if (!r.ok()) throw std::runtime_error(r.status.ToString());
  };
  for (int i = 0; i < 200; ++i) round();
  std::vector<double> us;
  for (int i = 0; i < n; ++i) {
    auto t0 = Clock::now();
    round();
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  auto t0 = Clock::now();
  int sent = 0;
  for (; sent < std::min(kWindow, n); ++sent) (void)s->Send(msg);
  for (int got = 0; got < n; ++got) {
    if (!s->Receive().ok()) return 1;
    if (sent < n) {
      (void)s->Send(msg);
      ++sent;
    }
  }
  Report("gRPC stream (lever::Client)", us, n, std::chrono::duration<double>(Clock::now() - t0).count());
  s->CloseSend();
  (void)s->Receive();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: ws_bench <host:port> <service> <messages>\n");
    return 2;
  }
  std::string addr = argv[1];
  size_t colon = addr.rfind(':');
  int n = std::max(1, std::atoi(argv[3]));
  try {
    if (int rc = WebSocket(addr.substr(0, colon), addr.substr(colon + 1), argv[2], n); rc != 0) return rc;
    return Grpc(addr, argv[2], n);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ws_bench: %s\n", e.what());
    return 1;
  }
}
