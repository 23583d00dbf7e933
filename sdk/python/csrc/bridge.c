/* bridge.c: see bridge.h. Plain C; no Python API is used here. */
#include "bridge.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct lp_queue {
  pthread_mutex_t mu;
  lp_done *head, *tail;
  int fd;
  int signalled; /* an eventfd write is unread */
  int released;  /* Python let go */
  long refs;     /* Python's (until released) + one per operation in flight */
};

lp_queue *lp_queue_new(void) {
  lp_queue *q = calloc(1, sizeof *q);
  if (q == NULL) return NULL;
  q->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (q->fd < 0 || pthread_mutex_init(&q->mu, NULL) != 0) {
    if (q->fd >= 0) close(q->fd);
    free(q);
    return NULL;
  }
  q->refs = 1;
  return q;
}

int lp_queue_fd(const lp_queue *q) { return q->fd; }

void lp_done_free(lp_done *d) {
  if (d == NULL) return;
  lever_value_free(d->value);
  lever_stream_free(d->stream);
  lever_error_free(d->err);
  free(d);
}

static void free_list(lp_done *d) {
  while (d != NULL) {
    lp_done *next = d->next;
    lp_done_free(d);
    d = next;
  }
}

/* Drops one reference (lock held); frees the queue at zero. Returns 1 if freed. */
static int unref_locked(lp_queue *q) {
  if (--q->refs > 0) return 0;
  pthread_mutex_unlock(&q->mu);
  free_list(q->head);
  close(q->fd);
  pthread_mutex_destroy(&q->mu);
  free(q);
  return 1;
}

void lp_queue_release(lp_queue *q) {
  if (q == NULL) return;
  pthread_mutex_lock(&q->mu);
  q->released = 1;
  lp_done *pending = q->head;
  q->head = q->tail = NULL;
  int freed = unref_locked(q);
  if (!freed) pthread_mutex_unlock(&q->mu);
  free_list(pending);
}

lp_done *lp_queue_take(lp_queue *q) {
  uint64_t n;
  /* Clear first: a record pushed after this read either lands in the list
   * taken below or writes the eventfd again. */
  while (read(q->fd, &n, sizeof n) < 0 && errno == EINTR) {
  }
  pthread_mutex_lock(&q->mu);
  lp_done *list = q->head;
  q->head = q->tail = NULL;
  q->signalled = 0;
  pthread_mutex_unlock(&q->mu);
  return list;
}

/* Any thread: appends a completion and drops the operation's reference. */
static void push(lp_queue *q, lp_done *d) {
  pthread_mutex_lock(&q->mu);
  if (q->released) {
    if (!unref_locked(q)) pthread_mutex_unlock(&q->mu);
    lp_done_free(d);
    return;
  }
  d->next = NULL;
  if (q->tail) q->tail->next = d;
  else q->head = d;
  q->tail = d;
  int wake = !q->signalled;
  q->signalled = 1;
  int fd = q->fd;
  unref_locked(q); /* never frees: Python still holds the queue */
  pthread_mutex_unlock(&q->mu);
  if (wake) {
    uint64_t one = 1;
    while (write(fd, &one, sizeof one) < 0 && errno == EINTR) {
    }
  }
}

typedef struct {
  lp_done *done;
  lp_queue *q;
} op;

static op *op_new(lp_queue *q, uint64_t token) {
  op *o = malloc(sizeof *o);
  lp_done *d = calloc(1, sizeof *d);
  if (o == NULL || d == NULL) {
    free(o);
    free(d);
    return NULL;
  }
  d->token = token;
  o->done = d;
  o->q = q;
  pthread_mutex_lock(&q->mu);
  q->refs++;
  pthread_mutex_unlock(&q->mu);
  return o;
}

/* The operation never started: undo op_new. */
static void op_abandon(op *o) {
  pthread_mutex_lock(&o->q->mu);
  if (!unref_locked(o->q)) pthread_mutex_unlock(&o->q->mu);
  free(o->done);
  free(o);
}

static void op_finish(op *o, int rc, lever_value *value, lever_stream *stream, lever_error *err) {
  lp_done *d = o->done;
  lp_queue *q = o->q;
  free(o);
  d->rc = rc;
  d->value = value;
  d->stream = stream;
  d->err = err;
  push(q, d);
}

static void on_invoke(int rc, lever_value *result, lever_error *err, void *payload) {
  op_finish(payload, rc, result, NULL, err);
}
static void on_open(int rc, lever_stream *stream, lever_error *err, void *payload) {
  op_finish(payload, rc, NULL, stream, err);
}
static void on_recv(int rc, lever_value *msg, lever_error *err, void *payload) {
  op_finish(payload, rc, msg, NULL, err);
}
static void on_send(int rc, lever_error *err, void *payload) { op_finish(payload, rc, NULL, NULL, err); }
static void on_cancel(int cancelled, void *payload) { op_finish(payload, cancelled, NULL, NULL, NULL); }

#define START(call)                 \
  op *o = op_new(q, token);         \
  if (o == NULL) return LEVER_ERROR; \
  int rc = (call);                  \
  if (rc != LEVER_OK) op_abandon(o); \
  return rc

int lp_invoke_start(lp_queue *q, lever_invocation **out, lever_client *client, const char *url,
                    const lever_value *args, const lever_call_options *opts, uint64_t token) {
  START(lever_client_invoke_start(out, client, url, args, opts, on_invoke, o));
}

int lp_stream_open_async(lp_queue *q, lever_client *client, const char *url, const lever_value *args,
                         const lever_call_options *opts, uint64_t token) {
  START(lever_client_stream_open_async(client, url, args, opts, on_open, o));
}

int lp_stream_recv_async(lp_queue *q, lever_stream *stream, uint64_t token) {
  START(lever_stream_recv_async(stream, on_recv, o));
}

int lp_stream_send_async(lp_queue *q, lever_stream *stream, const lever_value *msg, uint64_t token) {
  START(lever_stream_send_async(stream, msg, on_send, o));
}

int lp_watch_cancel(lp_queue *q, const lever_context *ctx, uint64_t token) {
  START(lever_context_watch_cancel(ctx, on_cancel, o));
}

int lp_value_scalar(const lever_value *v, lp_scalar *out) {
  int t = (int)lever_value_type(v);
  switch (t) {
    case LEVER_TYPE_BOOL:
      out->i = lever_value_bool(v);
      break;
    case LEVER_TYPE_INT:
      out->i = lever_value_int(v);
      break;
    case LEVER_TYPE_UINT:
      out->u = lever_value_uint(v);
      break;
    case LEVER_TYPE_DOUBLE:
      out->d = lever_value_double(v);
      break;
    case LEVER_TYPE_STRING:
      out->s = lever_value_string(v, &out->len);
      break;
    case LEVER_TYPE_BYTES:
      out->s = (const char *)lever_value_bytes(v, &out->len);
      break;
    case LEVER_TYPE_ARRAY:
    case LEVER_TYPE_MAP:
      out->len = lever_value_size(v);
      break;
    default:
      break;
  }
  return t;
}

int lp_limit_malloc_arenas(int n) {
#ifdef M_ARENA_MAX
  return mallopt(M_ARENA_MAX, n);
#else
  (void)n;
  return 0;
#endif
}
