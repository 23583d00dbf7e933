/*
 * bridge.h: the C half of the Python binding (compiled into leveros._lever).
 *
 * liblever runs asynchronous callbacks on gRPC threads, which must not block
 * (lever.h). Taking the GIL there would block them for up to a switch
 * interval (5 ms) while Python runs, and stall every other call on that
 * thread. So these callbacks never touch Python: each fills a plain C record
 * (lp_done) and appends it to a queue that belongs to one asyncio event loop;
 * the first record after a drain writes to the queue's eventfd, which the
 * loop watches (loop.add_reader), so a burst of completions costs one wake-up.
 * This is what loop.call_soon_threadsafe does (a write to the loop's self-pipe),
 * done without the GIL. The loop then drains the queue and resolves futures.
 */
#ifndef LEVEROS_BRIDGE_H
#define LEVEROS_BRIDGE_H

#include <stddef.h>
#include <stdint.h>

#include "lever.h"

typedef struct lp_queue lp_queue;

/* One completed operation. The taker owns it and its value/stream/err (set
 * them to NULL once taken over) and frees it with lp_done_free. */
typedef struct lp_done {
  struct lp_done *next;
  uint64_t token; /* what the Python side passed in */
  int rc;
  lever_value *value;   /* invoke result, received message */
  lever_stream *stream; /* opened stream */
  lever_error *err;
} lp_done;

/* A queue with its eventfd; NULL when out of memory or file descriptors. */
lp_queue *lp_queue_new(void);
int lp_queue_fd(const lp_queue *q);
/* Python lets go of the queue: queued and later completions are freed as
 * they come; the queue goes once no operation is in flight. */
void lp_queue_release(lp_queue *q);
/* Every completion so far, oldest first (NULL: none); clears the eventfd. */
lp_done *lp_queue_take(lp_queue *q);
/* Frees one record and whatever it still owns (not the rest of the list). */
void lp_done_free(lp_done *d);

/* The lever.h async operations, completing into `q` with `token`. They return
 * what the lever.h function returned; non-zero means nothing will complete. */
/* lever_client_invoke_start: *out cancels the call (lever_invocation_cancel)
 * and is freed by whoever takes the completion (lever_invocation_free), which
 * always comes, CANCELLED after a cancel. */
int lp_invoke_start(lp_queue *q, lever_invocation **out, lever_client *client, const char *url,
                    const lever_value *args, const lever_call_options *opts, uint64_t token);
int lp_stream_open_async(lp_queue *q, lever_client *client, const char *url, const lever_value *args,
                         const lever_call_options *opts, uint64_t token);
int lp_stream_recv_async(lp_queue *q, lever_stream *stream, uint64_t token);
int lp_stream_send_async(lp_queue *q, lever_stream *stream, const lever_value *msg, uint64_t token);
/* lever_context_watch_cancel: completes once, rc 1 when the caller cancelled
 * or the deadline passed, 0 when the call ended without that. */
int lp_watch_cancel(lp_queue *q, const lever_context *ctx, uint64_t token);

/* A value's type and, for scalars, its payload in one call (decoding costs
 * one FFI round trip per element). Strings and bytes point into `v`
 * (borrowed); arrays and maps give their size in `len`. */
typedef struct {
  int64_t i; /* bool, int */
  uint64_t u;
  double d;
  const char *s; /* string, bytes */
  size_t len;
} lp_scalar;
int lp_value_scalar(const lever_value *v, lp_scalar *out);

/* Caps glibc's malloc arenas (one per thread by default, up to 8 per core):
 * a service instance has a few dozen threads and a memory limit of its own
 * (lever.json "ram", 50 MB by default). Returns 1 if applied. */
int lp_limit_malloc_arenas(int n);

#endif
