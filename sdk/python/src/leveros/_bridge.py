"""The asyncio side of csrc/bridge.c: one completion queue per event loop.

liblever completes asynchronous operations on gRPC threads. Those never run
Python (see csrc/bridge.h): they queue a C record and wake the loop through
an eventfd that the loop watches with add_reader. The loop then takes every
queued record at once and hands each to the Python callback registered under
its token, on the loop's own thread, so futures are resolved where they live.
"""
import asyncio
import itertools
import threading
import weakref

from ._native import ffi, lib

_bridges: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Bridge]" = weakref.WeakKeyDictionary()
_bridges_lock = threading.Lock()
_tokens = itertools.count(1)


class Bridge:
    def __init__(self, loop):
        q = lib.lp_queue_new()
        if q == ffi.NULL:
            raise OSError("lever: cannot create the completion queue (out of memory or file descriptors)")
        self.q = q
        self.loop = loop
        self.pending = {}  # token -> callback(lp_done *); called on the loop thread
        loop.add_reader(lib.lp_queue_fd(q), self._drain)
        # The loop may be dropped without being closed: let go of the queue then.
        weakref.finalize(self, lib.lp_queue_release, q)

    def register(self, callback):
        token = next(_tokens)
        self.pending[token] = callback
        return token

    def forget(self, token):
        self.pending.pop(token, None)

    def _drain(self):
        d = lib.lp_queue_take(self.q)
        while d != ffi.NULL:
            nxt = d.next
            cb = self.pending.pop(d.token, None)
            try:
                if cb is not None:
                    cb(d)
            except BaseException as e:  # a bug here must not stop the drain
                self.loop.call_exception_handler({"message": "leveros: completion callback failed", "exception": e})
            finally:
                lib.lp_done_free(d)
            d = nxt


def of(loop):
    """The bridge of `loop` (made on first use, from the loop's thread)."""
    b = _bridges.get(loop)
    if b is None:
        with _bridges_lock:
            b = _bridges.get(loop)
            if b is None:
                b = Bridge(loop)
                _bridges[loop] = b
    return b


def running():
    return of(asyncio.get_running_loop())
