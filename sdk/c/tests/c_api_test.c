/*
 * C tests of lever.h. Usage: lever_c_test <lever_test_server> <test>.
 * Most tests start the C++ test server (sdk/cpp/testing) as a child process on
 * a unix socket in a fresh temp dir and call it through the ABI; `c_server`
 * serves handlers written in C. Waits are bounded; nothing sleeps.
 */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lever.h"

static int failures = 0;
#define CHECK(cond)                                                   \
  do {                                                                \
    if (!(cond)) {                                                    \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                     \
    }                                                                 \
  } while (0)
#define REQUIRE(cond)                                                 \
  do {                                                                \
    if (!(cond)) {                                                    \
      fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond); \
      exit(1);                                                        \
    }                                                                 \
  } while (0)

static char dir[256];
static char addr[512];
static pid_t child = -1;

static void start_child(const char *server_path) {
  snprintf(addr, sizeof addr, "unix:%s/s.sock", dir);
  child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    setenv("LEVEROS_LISTEN_ADDR", addr, 1);
    execl(server_path, server_path, (char *)NULL);
    _exit(127);
  }
}

static void stop_child(void) {
  int status = 0;
  if (child <= 0) return;
  kill(child, SIGTERM);
  REQUIRE(waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0); /* graceful shutdown */
  child = -1;
}

static lever_client *new_client(void) {
  lever_client *c = NULL;
  lever_client_options o;
  REQUIRE(lever_client_options_init(&o, LEVER_CLIENT_OPTIONS_VERSION) == 0);
  o.force_host = addr;
  o.own_environment = "dev.lever";
  REQUIRE(lever_client_new(&c, &o, NULL) == 0);
  return c;
}

static lever_call_options call_opts(void) {
  lever_call_options o = LEVER_CALL_OPTIONS_INIT;
  o.timeout_ms = 20000;
  o.wait_for_ready = 1; /* the child may still be binding: wait, bounded */
  return o;
}

static lever_value *str(const char *s) { return lever_value_new_string(s, strlen(s)); }

static lever_value *args1(lever_value *a) {
  lever_value *arr = lever_value_new_array();
  lever_value_array_push(arr, a);
  return arr;
}

static lever_value *args2(lever_value *a, lever_value *b) {
  lever_value *arr = args1(a);
  lever_value_array_push(arr, b);
  return arr;
}

static int str_eq(const lever_value *v, const char *want) {
  size_t n = 0;
  const char *s = lever_value_string(v, &n);
  return s != NULL && n == strlen(want) && memcmp(s, want, n) == 0;
}

/* ---- tests against the C++ test server ---------------------------------- */

static void test_unary(void) {
  lever_client *c = new_client();
  lever_call_options o = call_opts();
  lever_value *out = NULL, *args = args2(lever_value_new_int(40), lever_value_new_int(2));
  lever_error *err = NULL;
  int rc = lever_client_invoke(&out, c, "lever://dev.lever/testService//add", args, &o, &err);
  CHECK(rc == LEVER_OK);
  CHECK(lever_value_type(out) == LEVER_TYPE_INT && lever_value_int(out) == 42);
  lever_value_free(out);
  lever_value_free(args);
  lever_error_free(err);

  /* A map round trip, and the relative URL form. */
  lever_value *m = lever_value_new_map();
  lever_value_map_set(m, "name", 4, str("lever"));
  lever_value_map_set(m, "n", 1, lever_value_new_double(1.5));
  args = args1(m);
  out = NULL;
  rc = lever_client_invoke(&out, c, "/testService/echo", args, &o, NULL);
  CHECK(rc == LEVER_OK);
  CHECK(lever_value_type(out) == LEVER_TYPE_MAP && lever_value_size(out) == 2);
  CHECK(str_eq(lever_value_map_get(out, "name", 4), "lever"));
  CHECK(lever_value_double(lever_value_map_get(out, "n", 1)) == 1.5);
  lever_value_free(out);
  lever_value_free(args);

  /* No arguments: NULL args. */
  out = NULL;
  rc = lever_client_invoke(&out, c, "lever://dev.lever/testService//whoami", NULL, &o, NULL);
  CHECK(rc == LEVER_OK);
  CHECK(lever_value_int(lever_value_map_get(out, "nargs", 5)) == 0);
  CHECK(str_eq(lever_value_map_get(out, "method", 6), "whoami"));
  lever_value_free(out);
  lever_client_free(c);
}

static void test_bytes(void) {
  lever_client *c = new_client();
  lever_call_options o = call_opts();
  static const unsigned char raw[] = {0, 1, 2, 255};
  lever_value *out = NULL, *args = args1(lever_value_new_bytes(raw, sizeof raw));
  CHECK(lever_client_invoke(&out, c, "lever://dev.lever/testService//bytesLen", args, &o, NULL) == 0);
  CHECK(lever_value_int(out) == 4);
  lever_value_free(out);
  lever_value_free(args);
  args = args1(lever_value_new_int(3));
  out = NULL;
  CHECK(lever_client_invoke(&out, c, "lever://dev.lever/testService//makeBytes", args, &o, NULL) == 0);
  size_t n = 0;
  const void *b = lever_value_bytes(out, &n);
  CHECK(lever_value_type(out) == LEVER_TYPE_BYTES && n == 3 && memcmp(b, "bbb", 3) == 0);
  lever_value_free(out);
  lever_value_free(args);
  lever_client_free(c);
}

static void test_errors(void) {
  lever_client *c = new_client();
  lever_call_options o = call_opts();
  lever_value *out = NULL, *args = args1(str("boom"));
  lever_error *err = NULL;
  int rc = lever_client_invoke(&out, c, "lever://dev.lever/testService//fail", args, &o, &err);
  CHECK(rc == LEVER_EAPP);
  CHECK(out == NULL);
  CHECK(lever_error_code_of(err) == LEVER_EAPP);
  CHECK(str_eq(lever_error_value(err), "boom"));
  CHECK(strcmp(lever_error_message(err), "boom") == 0);
  lever_error_free(err);
  lever_value_free(args);

  err = NULL;
  rc = lever_client_invoke(&out, c, "lever://dev.lever/testService//nope", NULL, &o, &err);
  CHECK(rc == LEVER_ERROR);
  CHECK(lever_error_status(err) == 5); /* NOT_FOUND */
  CHECK(strstr(lever_error_message(err), "nope") != NULL);
  CHECK(lever_error_value(err) == NULL);
  lever_error_free(err);

  err = NULL;
  rc = lever_client_invoke(&out, c, "lever://dev.lever/testService", NULL, &o, &err);
  CHECK(rc == LEVER_EINVALID);
  lever_error_free(err);
  CHECK(lever_client_invoke(&out, c, "lever://dev.lever/testService//echoChan", NULL, &o, NULL) == LEVER_EINVALID);

  lever_call_options bad = LEVER_CALL_OPTIONS_INIT;
  bad.version = 99;
  CHECK(lever_client_invoke(&out, c, "lever://dev.lever/testService//echo", NULL, &bad, NULL) == LEVER_EINVALID);
  lever_client_options bad_client;
  CHECK(lever_client_options_init(&bad_client, 7) == LEVER_EINVALID);
  lever_client_free(c);

  /* Nothing listening: UNAVAILABLE, promptly. */
  lever_client_options co = LEVER_CLIENT_OPTIONS_INIT;
  co.force_host = "unix:/nonexistent/lever.sock";
  lever_client *dead = NULL;
  REQUIRE(lever_client_new(&dead, &co, NULL) == 0);
  lever_call_options quick = LEVER_CALL_OPTIONS_INIT;
  quick.timeout_ms = 5000;
  err = NULL;
  CHECK(lever_client_invoke(&out, dead, "lever://dev.lever/x//y", NULL, &quick, &err) == LEVER_ERROR);
  CHECK(lever_error_status(err) == 14);
  lever_error_free(err);
  lever_client_free(dead);
}

static void test_msgpack(void) {
  lever_client *c = new_client();
  lever_call_options o = call_opts();
  /* [20, 22] */
  static const unsigned char args[] = {0x92, 20, 22};
  lever_buf out = LEVER_BUF_INIT;
  CHECK(lever_client_invoke_msgpack(&out, c, "lever://dev.lever/testService//add", args, sizeof args, &o, NULL) == 0);
  CHECK(out.size == 1 && (unsigned char)out.ptr[0] == 42);
  lever_buf_dispose(&out);
  /* No args (NULL) and an application error. */
  lever_error *err = NULL;
  CHECK(lever_client_invoke_msgpack(&out, c, "lever://dev.lever/testService//fail", NULL, 0, &o, &err) == LEVER_EAPP);
  CHECK(str_eq(lever_error_value(err), "failed"));
  lever_error_free(err);
  /* Not an array: refused before sending. */
  static const unsigned char scalar[] = {0x01};
  CHECK(lever_client_invoke_msgpack(&out, c, "lever://dev.lever/testService//add", scalar, 1, &o, NULL) == LEVER_EINVALID);
  static const unsigned char truncated[] = {0x92, 0x01};
  CHECK(lever_client_invoke_msgpack(&out, c, "lever://dev.lever/testService//add", truncated, 2, &o, NULL) == LEVER_EINVALID);
  /* The proto-JSON codec gives the same answer. */
  lever_client_options po = LEVER_CLIENT_OPTIONS_INIT;
  lever_client *pj = NULL;
  po.force_host = addr;
  po.proto_json = 1;
  REQUIRE(lever_client_new(&pj, &po, NULL) == 0);
  CHECK(lever_client_invoke_msgpack(&out, pj, "lever://dev.lever/testService//add", args, sizeof args, &o, NULL) == 0);
  CHECK(out.size == 1 && (unsigned char)out.ptr[0] == 42);
  lever_buf_dispose(&out);
  lever_client_free(pj);
  lever_client_free(c);
}

typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int done;
  int good;
  int ended;
  int end_rc;
  int open_status; /* the status in a failed open's error */
  int64_t got[64];
  int ngot;
  lever_stream *stream;
} waiter;

static void waiter_init(waiter *w) {
  memset(w, 0, sizeof *w);
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->cv, NULL);
}

/* Waits until pred(w) holds, at most 20 s. */
static int waiter_wait(waiter *w, int (*pred)(waiter *)) {
  struct timespec until;
  int ok;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 20;
  pthread_mutex_lock(&w->mu);
  while (!(ok = pred(w))) {
    if (pthread_cond_timedwait(&w->cv, &w->mu, &until) == ETIMEDOUT) {
      ok = pred(w);
      break;
    }
  }
  pthread_mutex_unlock(&w->mu);
  return ok;
}

enum { kAsyncCalls = 100 };
static int all_done(waiter *w) { return w->done == kAsyncCalls; }

/* Runs on a gRPC thread. */
static void on_invoke(int rc, lever_value *result, lever_error *err, void *payload) {
  waiter *w = (waiter *)payload;
  pthread_mutex_lock(&w->mu);
  if (rc == LEVER_OK && lever_value_int(result) == 7) ++w->good;
  ++w->done;
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
  lever_value_free(result);
  lever_error_free(err);
}

static void test_async(void) {
  lever_client *c = new_client();
  lever_call_options o = call_opts();
  waiter w;
  int i;
  waiter_init(&w);
  for (i = 0; i < kAsyncCalls; ++i) {
    lever_value *args = args2(lever_value_new_int(3), lever_value_new_int(4));
    CHECK(lever_client_invoke_async(c, "lever://dev.lever/testService//add", args, &o, on_invoke, &w) == 0);
    lever_value_free(args); /* borrowed only during the call */
  }
  CHECK(waiter_wait(&w, all_done));
  CHECK(w.good == kAsyncCalls);
  lever_client_free(c);
}

static void test_stream(void) {
  lever_client *c = new_client();
  lever_call_options o = call_opts();
  lever_stream *s = NULL;
  lever_error *err = NULL;
  lever_value *msg = NULL;
  int i;
  REQUIRE(lever_client_stream_open(&s, c, "lever://dev.lever/testService//echoChan", NULL, &o, &err) == 0);
  /* Nothing was sent, so nothing comes back: the wait times out, the stream goes on. */
  err = NULL;
  CHECK(lever_stream_recv(&msg, s, 1, &err) == LEVER_ETIMEOUT);
  CHECK(msg == NULL);
  lever_error_free(err);
  for (i = 0; i < 10; ++i) {
    lever_value *v = lever_value_new_int(i);
    CHECK(lever_stream_send(s, v, NULL) == 0);
    lever_value_free(v);
    CHECK(lever_stream_recv(&msg, s, 20000, NULL) == 0);
    CHECK(lever_value_int(msg) == i);
    lever_value_free(msg);
    msg = NULL;
  }
  CHECK(lever_stream_close_send(s) == 0);
  CHECK(lever_stream_recv(&msg, s, 20000, NULL) == LEVER_EEND);
  lever_stream_free(s);

  /* A stream that ends with an application error. */
  s = NULL;
  REQUIRE(lever_client_stream_open(&s, c, "lever://dev.lever/testService//failChan", NULL, &o, NULL) == 0);
  CHECK(lever_stream_recv(&msg, s, 20000, NULL) == 0);
  CHECK(str_eq(msg, "before"));
  lever_value_free(msg);
  err = NULL;
  CHECK(lever_stream_recv(&msg, s, 20000, &err) == LEVER_EAPP);
  CHECK(str_eq(lever_error_value(err), "stream failed"));
  lever_error_free(err);
  CHECK(lever_stream_recv(&msg, s, 20000, NULL) == LEVER_EEND);
  lever_stream_free(s);

  /* Unknown streaming method: the open fails. */
  s = NULL;
  err = NULL;
  CHECK(lever_client_stream_open(&s, c, "lever://dev.lever/testService//missingChan", NULL, &o, &err) == LEVER_ERROR);
  CHECK(lever_error_status(err) == 5);
  CHECK(s == NULL);
  lever_error_free(err);
  lever_client_free(c);
}

static int stream_ended(waiter *w) { return w->ended; }

/* Runs on a gRPC thread or inline; re-arms itself until the end. */
static void on_recv(int rc, lever_value *msg, lever_error *err, void *payload) {
  waiter *w = (waiter *)payload;
  if (rc == LEVER_OK) {
    pthread_mutex_lock(&w->mu);
    if (w->ngot < 64) w->got[w->ngot++] = lever_value_int(msg);
    pthread_mutex_unlock(&w->mu);
    lever_value_free(msg);
    lever_stream_recv_async(w->stream, on_recv, w);
    return;
  }
  pthread_mutex_lock(&w->mu);
  w->ended = 1;
  w->end_rc = rc;
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
  lever_error_free(err);
}

static void test_stream_async(void) {
  lever_client *c = new_client();
  lever_call_options o = call_opts();
  lever_value *args = args1(lever_value_new_int(20));
  waiter w;
  int i;
  waiter_init(&w);
  REQUIRE(lever_client_stream_open(&w.stream, c, "lever://dev.lever/testService//countChan", args, &o, NULL) == 0);
  lever_value_free(args);
  CHECK(lever_stream_recv_async(w.stream, on_recv, &w) == 0);
  CHECK(waiter_wait(&w, stream_ended));
  CHECK(w.end_rc == LEVER_EEND);
  CHECK(w.ngot == 20);
  for (i = 0; i < w.ngot; ++i) CHECK(w.got[i] == i);
  lever_stream_free(w.stream);
  lever_client_free(c);
}

static int opened(waiter *w) { return w->done == 1; }
static int sent_all(waiter *w) { return w->good == 3; }

/* Runs on a gRPC thread. */
static void on_open(int rc, lever_stream *s, lever_error *err, void *payload) {
  waiter *w = (waiter *)payload;
  pthread_mutex_lock(&w->mu);
  w->end_rc = rc;
  w->stream = s;
  w->open_status = err != NULL ? lever_error_status(err) : -1; /* a failed open carries its error */
  w->done = 1;
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
  lever_error_free(err);
}

/* Runs on a gRPC thread (or inline if the stream already ended). */
static void on_sent(int rc, lever_error *err, void *payload) {
  waiter *w = (waiter *)payload;
  pthread_mutex_lock(&w->mu);
  if (rc == LEVER_OK) ++w->good;
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
  lever_error_free(err);
}

/* Everything without blocking a thread: open, send, receive. */
static void test_stream_nonblocking(void) {
  lever_client *c = new_client();
  lever_call_options o = call_opts();
  waiter w;
  int i;
  waiter_init(&w);
  CHECK(lever_client_stream_open_async(c, "lever://dev.lever/testService//sumChan", NULL, &o, on_open, &w) == 0);
  REQUIRE(waiter_wait(&w, opened));
  REQUIRE(w.end_rc == LEVER_OK && w.stream != NULL);
  for (i = 1; i <= 3; ++i) {
    lever_value *v = lever_value_new_int(i);
    CHECK(lever_stream_send_async(w.stream, v, on_sent, &w) == 0);
    lever_value_free(v);
  }
  CHECK(waiter_wait(&w, sent_all));
  lever_stream_close_send(w.stream);
  w.done = 0;
  CHECK(lever_stream_recv_async(w.stream, on_recv, &w) == 0);
  CHECK(waiter_wait(&w, stream_ended));
  CHECK(w.end_rc == LEVER_EEND);
  CHECK(w.ngot == 1 && w.got[0] == 6);
  lever_stream_free(w.stream);

  /* A failed open reports through the callback. */
  waiter_init(&w);
  CHECK(lever_client_stream_open_async(c, "lever://dev.lever/testService//missingChan", NULL, &o, on_open, &w) == 0);
  REQUIRE(waiter_wait(&w, opened));
  CHECK(w.end_rc == LEVER_ERROR && w.stream == NULL);
  CHECK(w.open_status == 5); /* NOT_FOUND, in the error handed to the callback */
  lever_client_free(c);
}

static void test_resource(void) {
  lever_client *c = new_client();
  lever_call_options o = call_opts();
  lever_value *out = NULL;
  CHECK(lever_client_invoke(&out, c, "lever://dev.lever/testService/rooms/7/whoami", NULL, &o, NULL) == 0);
  CHECK(str_eq(lever_value_map_get(out, "resource", 8), "rooms/7"));
  lever_value_free(out);
  lever_client_free(c);
}

/* ---- a server written in C ---------------------------------------------- */

/* Runs on a worker thread: replies with "hello, <arg0>". */
static void hello_handler(lever_call *call, void *payload) {
  const lever_value *args = lever_call_args(call);
  const char *suffix = (const char *)payload;
  char buf[128];
  size_t n = 0;
  const char *name = lever_value_string(lever_value_at(args, 0), &n);
  if (name == NULL) {
    lever_value *e = str("want a name");
    lever_call_reply_error(call, e);
    lever_value_free(e);
    return;
  }
  snprintf(buf, sizeof buf, "hello, %.*s%s", (int)n, name, suffix);
  lever_value *r = str(buf);
  lever_call_reply(call, r);
  lever_value_free(r);
}

static void deny_handler(lever_call *call, void *payload) {
  (void)payload;
  CHECK(strcmp(lever_context_method(lever_call_context(call)), "deny") == 0);
  lever_call_fail(call, 7, "no entry");
}

/* Runs on a worker thread: doubles every number until the client half-closes. */
static void double_chan(lever_stream *s, void *payload) {
  lever_value *msg = NULL;
  (void)payload;
  while (lever_stream_recv(&msg, s, -1, NULL) == LEVER_OK) {
    lever_value *out = lever_value_new_int(lever_value_int(msg) * 2);
    lever_stream_send(s, out, NULL);
    lever_value_free(out);
    lever_value_free(msg);
    msg = NULL;
  }
  lever_stream_free(s); /* ends with OK */
}

/* Ends the stream with an application error once it got one message. */
static void picky_chan(lever_stream *s, void *payload) {
  lever_value *msg = NULL;
  (void)payload;
  CHECK(lever_value_size(lever_stream_args(s)) == 1);
  CHECK(strcmp(lever_context_method(lever_stream_context(s)), "pickyChan") == 0);
  if (lever_stream_recv(&msg, s, -1, NULL) == LEVER_OK) {
    lever_value *e = str("not today");
    lever_stream_end_with_error(s, e);
    lever_value_free(e);
    lever_value_free(msg);
  }
  lever_stream_free(s);
}

static void test_c_server(void) {
  lever_server *srv = NULL;
  lever_server_options so = LEVER_SERVER_OPTIONS_INIT;
  lever_error *err = NULL;
  so.listen_addr = addr;
  REQUIRE(lever_server_new(&srv, &so, NULL) == 0);
  REQUIRE(lever_server_handle(srv, "hello", hello_handler, "!", NULL) == 0);
  REQUIRE(lever_server_handle(srv, "deny", deny_handler, NULL, NULL) == 0);
  REQUIRE(lever_server_handle_stream(srv, "doubleChan", double_chan, NULL, NULL) == 0);
  REQUIRE(lever_server_handle_stream(srv, "pickyChan", picky_chan, NULL, NULL) == 0);
  CHECK(lever_server_handle(srv, "badChan", hello_handler, NULL, &err) == LEVER_EINVALID);
  lever_error_free(err);
  REQUIRE(lever_server_start(srv, NULL) == 0);

  lever_client *c = new_client();
  lever_call_options o = call_opts();
  lever_value *out = NULL, *args = args1(str("C"));
  CHECK(lever_client_invoke(&out, c, "lever://dev.lever/cService//hello", args, &o, NULL) == 0);
  CHECK(str_eq(out, "hello, C!"));
  lever_value_free(out);
  lever_value_free(args);

  args = args1(lever_value_new_int(1));
  err = NULL;
  CHECK(lever_client_invoke(&out, c, "lever://dev.lever/cService//hello", args, &o, &err) == LEVER_EAPP);
  CHECK(str_eq(lever_error_value(err), "want a name"));
  lever_error_free(err);
  lever_value_free(args);

  err = NULL;
  CHECK(lever_client_invoke(&out, c, "lever://dev.lever/cService//deny", NULL, &o, &err) == LEVER_ERROR);
  CHECK(lever_error_status(err) == 7 && strcmp(lever_error_message(err), "no entry") == 0);
  lever_error_free(err);

  lever_stream *s = NULL;
  REQUIRE(lever_client_stream_open(&s, c, "lever://dev.lever/cService//doubleChan", NULL, &o, NULL) == 0);
  for (int i = 1; i <= 5; ++i) {
    lever_value *v = lever_value_new_int(i);
    CHECK(lever_stream_send(s, v, NULL) == 0);
    lever_value_free(v);
    out = NULL;
    CHECK(lever_stream_recv(&out, s, 20000, NULL) == 0);
    CHECK(lever_value_int(out) == 2 * i);
    lever_value_free(out);
  }
  lever_stream_close_send(s);
  CHECK(lever_stream_recv(&out, s, 20000, NULL) == LEVER_EEND);
  lever_stream_free(s);

  s = NULL;
  args = args1(str("x"));
  REQUIRE(lever_client_stream_open(&s, c, "lever://dev.lever/cService//pickyChan", args, &o, NULL) == 0);
  lever_value_free(args);
  lever_value *one = lever_value_new_int(1);
  CHECK(lever_stream_send(s, one, NULL) == 0);
  lever_value_free(one);
  err = NULL;
  CHECK(lever_stream_recv(&out, s, 20000, &err) == LEVER_EAPP);
  CHECK(str_eq(lever_error_value(err), "not today"));
  lever_error_free(err);
  CHECK(lever_stream_recv(&out, s, 20000, NULL) == LEVER_EEND);
  lever_stream_free(s);
  lever_client_free(c);
  CHECK(lever_server_stop(srv, 5000) == 0);
  lever_server_free(srv);
}

/* ---- cancellable async calls (lever_client_invoke_start) --------------- */

/* What the cancel test observes, under one lock. */
typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  lever_call *parked;       /* a call the "park" handler holds without replying */
  int watch_fired;          /* server watchers that ran */
  int watch_cancelled;      /* ... of which with cancelled = 1 */
  int client_done;          /* client callbacks that ran */
  int client_rc, client_status;
  lever_buf mp;             /* msgpack result */
} cancel_state;

static cancel_state cs;

static void cs_reset(void) {
  pthread_mutex_lock(&cs.mu);
  cs.parked = NULL;
  cs.watch_fired = cs.watch_cancelled = cs.client_done = 0;
  cs.client_rc = cs.client_status = 0;
  lever_buf_dispose(&cs.mp);
  pthread_mutex_unlock(&cs.mu);
}

/* Waits until pred() holds, at most 20 s. */
static int cs_wait(int (*pred)(void)) {
  struct timespec until;
  int ok;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 20;
  pthread_mutex_lock(&cs.mu);
  while (!(ok = pred())) {
    if (pthread_cond_timedwait(&cs.cv, &cs.mu, &until) == ETIMEDOUT) {
      ok = pred();
      break;
    }
  }
  pthread_mutex_unlock(&cs.mu);
  return ok;
}
static int cs_parked(void) { return cs.parked != NULL; }
static int cs_client_done(void) { return cs.client_done == 1; }
static int cs_both(void) { return cs.client_done == 1 && cs.watch_fired == 1; }

/* The server's cancel watcher: runs once per call. */
static void on_server_cancel(int cancelled, void *payload) {
  CHECK(payload == &cs);
  pthread_mutex_lock(&cs.mu);
  ++cs.watch_fired;
  if (cancelled) ++cs.watch_cancelled;
  pthread_cond_broadcast(&cs.cv);
  pthread_mutex_unlock(&cs.mu);
}

/* Holds the call (no reply) and watches it for a cancel. */
static void park_handler(lever_call *call, void *payload) {
  (void)payload;
  CHECK(lever_context_watch_cancel(lever_call_context(call), on_server_cancel, &cs) == 0);
  pthread_mutex_lock(&cs.mu);
  cs.parked = call;
  pthread_cond_broadcast(&cs.cv);
  pthread_mutex_unlock(&cs.mu);
}

/* Replies at once; its watcher hears cancelled = 0 when the call is over. */
static void watched_handler(lever_call *call, void *payload) {
  lever_value *r = lever_value_new_int(5);
  (void)payload;
  CHECK(lever_context_watch_cancel(lever_call_context(call), on_server_cancel, &cs) == 0);
  CHECK(lever_context_watch_cancel(NULL, on_server_cancel, &cs) == LEVER_EINVALID);
  lever_call_reply(call, r);
  lever_value_free(r);
}

static void on_client_done(int rc, lever_value *result, lever_error *err, void *payload) {
  CHECK(payload == &cs);
  pthread_mutex_lock(&cs.mu);
  ++cs.client_done;
  cs.client_rc = rc;
  cs.client_status = err ? lever_error_status(err) : (rc == 0 ? (int)lever_value_int(result) : -1);
  pthread_cond_broadcast(&cs.cv);
  pthread_mutex_unlock(&cs.mu);
  lever_value_free(result);
  lever_error_free(err);
}

static void on_client_msgpack(int rc, lever_buf *result, lever_error *err, void *payload) {
  CHECK(payload == &cs);
  CHECK(result != NULL);
  pthread_mutex_lock(&cs.mu);
  ++cs.client_done;
  cs.client_rc = rc;
  cs.client_status = err ? lever_error_status(err) : 0;
  cs.mp = *result; /* take ownership of the bytes */
  result->ptr = NULL;
  result->size = 0;
  pthread_cond_broadcast(&cs.cv);
  pthread_mutex_unlock(&cs.mu);
  lever_error_free(err);
}

/* Parks one call with `opts`, then ends it with `end` (cancel or free). */
static void park_and_end(lever_client *c, const lever_call_options *o, int use_free) {
  lever_invocation *inv = NULL;
  cs_reset();
  REQUIRE(lever_client_invoke_start(&inv, c, "lever://dev.lever/cService//park", NULL, o, on_client_done, &cs) == 0);
  REQUIRE(inv != NULL);
  REQUIRE(cs_wait(cs_parked));
  CHECK(cs.client_done == 0); /* still running */
  if (use_free) {
    lever_invocation_free(inv); /* frees and cancels */
    inv = NULL;
  } else {
    CHECK(lever_invocation_cancel(inv) == 0);
    CHECK(lever_invocation_cancel(inv) == 0); /* idempotent */
  }
  CHECK(cs_wait(cs_both));
  CHECK(cs.client_rc == LEVER_ERROR && cs.client_status == 1); /* CANCELLED */
  CHECK(cs.watch_cancelled == 1);
  CHECK(lever_context_cancelled(lever_call_context(cs.parked)) == 1);
  /* A watcher added after the cancel runs at once, with cancelled = 1. */
  CHECK(lever_context_watch_cancel(lever_call_context(cs.parked), on_server_cancel, &cs) == 0);
  CHECK(cs.watch_fired == 2 && cs.watch_cancelled == 2);
  CHECK(lever_call_reply(cs.parked, NULL) == 0); /* too late, harmless */
  lever_invocation_cancel(inv);                   /* after the end: a no-op */
  lever_invocation_free(inv);
}

static void test_cancel(void) {
  lever_server *srv = NULL;
  lever_server_options so = LEVER_SERVER_OPTIONS_INIT;
  lever_invocation *inv = NULL;
  so.listen_addr = addr;
  pthread_mutex_init(&cs.mu, NULL);
  pthread_cond_init(&cs.cv, NULL);
  REQUIRE(lever_server_new(&srv, &so, NULL) == 0);
  REQUIRE(lever_server_handle(srv, "park", park_handler, NULL, NULL) == 0);
  REQUIRE(lever_server_handle(srv, "watched", watched_handler, NULL, NULL) == 0);
  REQUIRE(lever_server_handle(srv, "hello", hello_handler, "!", NULL) == 0);
  REQUIRE(lever_server_start(srv, NULL) == 0);
  lever_client *c = new_client();
  lever_call_options o = call_opts();

  /* Cancel reaches both ends: the client's callback and the handler's watcher. */
  park_and_end(c, &o, 0);
  /* Freeing the handle of a running call cancels it too. */
  park_and_end(c, &o, 1);

  /* The deadline passing counts as a cancel for the server's watcher. */
  {
    lever_call_options short_o = o;
    short_o.timeout_ms = 1000; /* the handler parks the call well before */
    cs_reset();
    REQUIRE(lever_client_invoke_start(&inv, c, "lever://dev.lever/cService//park", NULL, &short_o, on_client_done,
                                      &cs) == 0);
    CHECK(cs_wait(cs_parked));
    CHECK(cs_wait(cs_both));
    CHECK(cs.client_rc == LEVER_ERROR && cs.client_status == 4); /* DEADLINE_EXCEEDED */
    CHECK(cs.watch_cancelled == 1);
    if (cs.parked) lever_call_reply(cs.parked, NULL);
    lever_invocation_free(inv);
  }

  /* A call that ends normally: the result, and the watcher hears 0. */
  cs_reset();
  REQUIRE(lever_client_invoke_start(&inv, c, "lever://dev.lever/cService//watched", NULL, &o, on_client_done, &cs) ==
          0);
  CHECK(cs_wait(cs_both));
  CHECK(cs.client_rc == LEVER_OK && cs.client_status == 5);
  CHECK(cs.watch_cancelled == 0);
  CHECK(lever_invocation_cancel(inv) == 0); /* after the end: nothing happens */
  lever_invocation_free(inv);
  CHECK(cs.client_done == 1);

  /* msgpack in and out: ["C"] -> "hello, C!". */
  {
    static const char args_mp[] = {(char)0x91, (char)0xa1, 'C'};
    static const char want[] = "\xa9hello, C!";
    cs_reset();
    REQUIRE(lever_client_invoke_msgpack_start(&inv, c, "lever://dev.lever/cService//hello", args_mp, sizeof args_mp,
                                              &o, on_client_msgpack, &cs) == 0);
    CHECK(cs_wait(cs_client_done));
    CHECK(cs.client_rc == LEVER_OK);
    CHECK(cs.mp.size == sizeof want - 1 && memcmp(cs.mp.ptr, want, cs.mp.size) == 0);
    lever_invocation_free(inv);
    /* Not an array: refused before sending, in this thread, handle set anyway. */
    cs_reset();
    REQUIRE(lever_client_invoke_msgpack_start(&inv, c, "lever://dev.lever/cService//hello", "\xa1x", 2, &o,
                                              on_client_msgpack, &cs) == 0);
    CHECK(cs.client_done == 1 && cs.client_rc == LEVER_EINVALID && cs.client_status == 3 && cs.mp.ptr == NULL);
    CHECK(inv != NULL);
    lever_invocation_free(inv);
  }

  /* Errors before sending go to the callback in this thread. */
  cs_reset();
  inv = NULL;
  CHECK(lever_client_invoke_start(&inv, c, "lever://dev.lever/cService//helloChan", NULL, &o, on_client_done, &cs) ==
        0);
  CHECK(inv != NULL && cs.client_done == 1 && cs.client_rc == LEVER_EINVALID);
  lever_invocation_free(inv);
  /* Bad arguments to the function itself: no call, no callback. */
  cs_reset();
  inv = (lever_invocation *)&cs;
  CHECK(lever_client_invoke_start(&inv, NULL, "lever://dev.lever/cService//hello", NULL, &o, on_client_done, &cs) ==
        LEVER_EINVALID);
  CHECK(inv == NULL);
  CHECK(lever_client_invoke_start(NULL, c, "lever://dev.lever/cService//hello", NULL, &o, on_client_done, &cs) ==
        LEVER_EINVALID);
  CHECK(lever_client_invoke_start(&inv, c, "lever://dev.lever/cService//hello", NULL, &o, NULL, &cs) ==
        LEVER_EINVALID);
  CHECK(cs.client_done == 0);
  CHECK(lever_invocation_cancel(NULL) == LEVER_EINVALID);
  lever_invocation_free(NULL);

  lever_client_free(c);
  CHECK(lever_server_stop(srv, 5000) == 0);
  lever_server_free(srv);
  cs_reset();
}

/* NULL checks come before anything that allocates: with no err requested,
 * nothing is allocated at all, and a requested error is a real one. */
static void test_invalid(void) {
  lever_error *err = NULL;
  lever_value *out = NULL;
  CHECK(lever_client_invoke(&out, NULL, "x", NULL, NULL, NULL) == LEVER_EINVALID);
  CHECK(lever_client_invoke(&out, NULL, "x", NULL, NULL, &err) == LEVER_EINVALID);
  CHECK(err != NULL && lever_error_code_of(err) == LEVER_EINVALID && lever_error_status(err) == 3);
  CHECK(strcmp(lever_error_message(err), "null argument") == 0);
  lever_error_free(err);
  err = NULL;
  lever_client_options bad = LEVER_CLIENT_OPTIONS_INIT;
  lever_client *c = NULL;
  bad.version = 99;
  CHECK(lever_client_new(&c, &bad, &err) == LEVER_EINVALID && c == NULL);
  CHECK(strstr(lever_error_message(err), "version") != NULL);
  lever_error_free(err);
}

static void test_values(void) {
  const char *json = "{\"a\":[1,2.5,\"x\",null,true],\"b\":{}}";
  lever_value *v = NULL, *back = NULL;
  lever_buf mp = LEVER_BUF_INIT, text = LEVER_BUF_INIT;
  lever_error *err = NULL;
  REQUIRE(lever_value_from_json(&v, json, strlen(json), NULL) == 0);
  CHECK(lever_value_type(v) == LEVER_TYPE_MAP);
  size_t klen = 0;
  CHECK(strcmp(lever_value_key_at(v, 0, &klen), "a") == 0 && klen == 1);
  const lever_value *a = lever_value_at(v, 0);
  CHECK(lever_value_size(a) == 5);
  CHECK(lever_value_int(lever_value_at(a, 0)) == 1);
  CHECK(lever_value_type(lever_value_at(a, 3)) == LEVER_TYPE_NULL);
  CHECK(lever_value_bool(lever_value_at(a, 4)) == 1);
  CHECK(lever_value_to_msgpack(&mp, v) == 0);
  CHECK(lever_value_from_msgpack(&back, mp.ptr, mp.size, NULL) == 0);
  CHECK(lever_value_to_json(&text, back, NULL) == 0);
  CHECK(strcmp(text.ptr, json) == 0);
  CHECK(lever_value_from_json(&back, "{", 1, &err) == LEVER_EINVALID);
  CHECK(err != NULL && lever_error_status(err) == 3);
  lever_error_free(err);
  lever_buf_dispose(&mp);
  lever_buf_dispose(&text);
  lever_value_free(back);
  lever_value_free(v);
  lever_value_free(NULL);
  lever_buf_dispose(NULL);
  CHECK(lever_value_array_push(NULL, lever_value_new_null()) == LEVER_EINVALID); /* item freed */
  lever_value *big = lever_value_new_uint(UINT64_MAX);
  CHECK(lever_value_type(big) == LEVER_TYPE_UINT && lever_value_uint(big) == UINT64_MAX);
  lever_value_free(big);
}

/* Only lever_* symbols are visible in liblever.so. */
static void test_exports(void) {
  void *self = dlopen(NULL, RTLD_NOW);
  REQUIRE(self != NULL);
  CHECK(dlsym(self, "lever_client_invoke") != NULL);
  CHECK(dlsym(self, "lever_value_new_map") != NULL);
  /* The full list is checked with nm by the c_api.only_lever_symbols test. */
  dlclose(self);
}

int main(int argc, char **argv) {
  const char *test;
  signal(SIGPIPE, SIG_IGN);
  if (argc != 3) {
    fprintf(stderr, "usage: %s <lever_test_server> <test>\n", argv[0]);
    return 2;
  }
  test = argv[2];
  snprintf(dir, sizeof dir, "%s/lever-c-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  REQUIRE(mkdtemp(dir) != NULL);
  snprintf(addr, sizeof addr, "unix:%s/s.sock", dir);

  if (strcmp(test, "c_server") == 0) {
    test_c_server();
  } else if (strcmp(test, "cancel") == 0) {
    test_cancel();
  } else if (strcmp(test, "invalid") == 0) {
    test_invalid();
  } else if (strcmp(test, "values") == 0) {
    test_values();
  } else if (strcmp(test, "exports") == 0) {
    test_exports();
  } else {
    start_child(argv[1]);
    if (strcmp(test, "unary") == 0) test_unary();
    else if (strcmp(test, "bytes") == 0) test_bytes();
    else if (strcmp(test, "errors") == 0) test_errors();
    else if (strcmp(test, "msgpack") == 0) test_msgpack();
    else if (strcmp(test, "async") == 0) test_async();
    else if (strcmp(test, "stream") == 0) test_stream();
    else if (strcmp(test, "stream_async") == 0) test_stream_async();
    else if (strcmp(test, "resource") == 0) test_resource();
    else if (strcmp(test, "stream_nonblocking") == 0) test_stream_nonblocking();
    else {
      fprintf(stderr, "unknown test %s\n", test);
      ++failures;
    }
    stop_child();
  }
  {
    char path[600];
    snprintf(path, sizeof path, "%s/s.sock", dir);
    unlink(path);
    rmdir(dir);
  }
  if (failures) fprintf(stderr, "%d check(s) failed\n", failures);
  return failures ? 1 : 0;
}
