#include <gtest/gtest.h>
#include <nghttp2/nghttp2.h>

#include <cstring>
#include <vector>

#include "h2_conn.h"

namespace lever::gateway {
namespace {

TEST(SessionMemory, BlocksAreReusedAndBoundedAfterABurst) {
  SessionMemory m;
  nghttp2_mem* mem = m.mem();
  std::vector<void*> blocks;
  for (int i = 0; i < 20000; ++i) {
    void* p = mem->malloc(100, mem->mem_user_data);
    ASSERT_NE(p, nullptr);
    std::memset(p, 0xab, 100);
    blocks.push_back(p);
  }
  for (void* p : blocks) mem->free(p, mem->mem_user_data);
  // 20000 blocks of 128 B went back; only kMaxIdleBytes of them stay.
  EXPECT_GT(m.idle_bytes(), 0u);
  EXPECT_LE(m.idle_bytes(), SessionMemory::kMaxIdleBytes);
  size_t idle = m.idle_bytes();
  void* again = mem->malloc(90, mem->mem_user_data);
  EXPECT_EQ(m.idle_bytes(), idle - 128);  // taken from the free list
  mem->free(again, mem->mem_user_data);
  mem->free(nullptr, mem->mem_user_data);
}

TEST(SessionMemory, CallocReallocAndLargeBlocks) {
  SessionMemory m;
  nghttp2_mem* mem = m.mem();
  auto* z = static_cast<unsigned char*>(mem->calloc(10, 30, mem->mem_user_data));
  ASSERT_NE(z, nullptr);
  for (int i = 0; i < 300; ++i) ASSERT_EQ(z[i], 0);
  std::memset(z, 7, 300);
  // Grows out of its class (512 B) into another, then into a plain malloc.
  auto* r = static_cast<unsigned char*>(mem->realloc(z, 3000, mem->mem_user_data));
  ASSERT_NE(r, nullptr);
  for (int i = 0; i < 300; ++i) ASSERT_EQ(r[i], 7);
  std::memset(r, 9, 3000);
  auto* big = static_cast<unsigned char*>(mem->realloc(r, 100000, mem->mem_user_data));
  ASSERT_NE(big, nullptr);
  for (int i = 0; i < 3000; ++i) ASSERT_EQ(big[i], 9);
  big[99999] = 1;
  mem->free(big, mem->mem_user_data);
  EXPECT_EQ(mem->calloc(SIZE_MAX / 2, 4, mem->mem_user_data), nullptr);  // overflow
}

// A client and a server session on the allocator exchange calls through
// memory, as the relay's sessions do.
TEST(SessionMemory, CarriesNghttp2Sessions) {
  SessionMemory m;
  nghttp2_session_callbacks* cb = nullptr;
  ASSERT_EQ(nghttp2_session_callbacks_new(&cb), 0);
  nghttp2_session* client = nullptr;
  nghttp2_session* server = nullptr;
  ASSERT_EQ(nghttp2_session_client_new3(&client, cb, nullptr, nullptr, m.mem()), 0);
  ASSERT_EQ(nghttp2_session_server_new3(&server, cb, nullptr, nullptr, m.mem()), 0);
  nghttp2_submit_settings(client, NGHTTP2_FLAG_NONE, nullptr, 0);
  nghttp2_submit_settings(server, NGHTTP2_FLAG_NONE, nullptr, 0);
  auto pump = [](nghttp2_session* from, nghttp2_session* to) {
    const uint8_t* p = nullptr;
    for (ssize_t n; (n = nghttp2_session_mem_send(from, &p)) > 0;) {
      ASSERT_EQ(nghttp2_session_mem_recv(to, p, static_cast<size_t>(n)), n);
    }
  };
  std::string value(200, 'v');
  for (int i = 0; i < 300; ++i) {
    nghttp2_nv nv[] = {Nv(":method", "POST"), Nv(":scheme", "http"), Nv(":path", "/core.LeverRPC/HandleRPC"),
                       Nv(":authority", "x"), Nv("x-some", value)};
    ASSERT_GT(nghttp2_submit_request(client, nullptr, nv, 5, nullptr, nullptr), 0);
    pump(client, server);
    pump(server, client);
  }
  EXPECT_EQ(nghttp2_session_get_next_stream_id(client), 601u);
  nghttp2_session_del(client);
  nghttp2_session_del(server);
  nghttp2_session_callbacks_del(cb);
  EXPECT_GT(m.idle_bytes(), 0u);  // what the sessions freed came back here
}

}  // namespace
}  // namespace lever::gateway
