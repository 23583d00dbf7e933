"""Streams: one side of a streaming call, client's or server's.

Stream (blocking, for threads) and AsyncStream (asyncio) wrap the same
lever_stream. Messages are any sendable value (bytes travel as byte
messages). Reading ends at the peer's end; an error the peer sent (or a
failed call) raises LeverError.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator, Iterator, Optional

from . import _bridge
from ._native import Shared, ffi, lib
from .errors import EAPP, EEND, ETIMEOUT, OK, LeverError, from_native, take_error
from .values import take, to_lever

_free_value = lib.lever_value_free
# A blocking receive waits in slices, so that Ctrl-C (signals) and the
# caller's own timeout are noticed; liblever's wait itself has no cost per slice.
_SLICE_MS = 250
_RAISE = object()


def _mark_retrieved(fut):
    if not fut.cancelled():
        fut.exception()


class _Base:
    def __init__(self, ptr, server, context=None):
        self._h = Shared(ptr, lib.lever_stream_free)
        self._server = server
        self._ended = False  # the peer ended (or the call failed)
        self.context = context

    @property
    def server_side(self) -> bool:
        return self._server

    def _hold(self):
        """The lever_stream, held until self._h.done()."""
        try:
            return self._h.acquire()
        except ValueError:
            raise LeverError("lever: the stream is closed", "FAILED_PRECONDITION") from None

    def _use(self, c_fn, *args, closed=_RAISE):
        """c_fn(lever_stream *, *args) while the handle is held; once it is
        released, `closed` (or a LeverError)."""
        try:
            p = self._h.acquire()
        except ValueError:
            if closed is _RAISE:
                raise LeverError("lever: the stream is closed", "FAILED_PRECONDITION") from None
            return closed
        try:
            return c_fn(p, *args)
        finally:
            self._h.done()

    def close(self) -> None:
        """Client: half-close (no more messages from us; we can still read).
        Server: end the call normally once the queued messages are sent."""
        self._use(lib.lever_stream_close_send)

    def cancel(self) -> None:
        """Client: cancel the call. Server: end it with CANCELLED."""
        self._use(lib.lever_stream_cancel, closed=None)

    def end_with_error(self, value: Any) -> None:
        """Server: end the call with an application error carrying `value`."""
        v = to_lever(value)
        try:
            rc = self._use(lib.lever_stream_end_with_error, v)
        finally:
            _free_value(v)
        if rc != OK:
            raise from_native(rc, ffi.NULL)

    def release(self) -> None:
        """Frees the handle: a client stream that has not ended is cancelled,
        a server stream that has not ended ends normally."""
        self._h.release()


class Stream(_Base):
    """A blocking stream:

        s.send(msg)            # queued; blocks only under flow control
        msg = s.recv()         # EOFError once the peer ended
        for msg in s: ...      # stops at the peer's end
        s.close()              # half-close (client) / end the call (server)
        s.cancel()

    `with` releases it at the end (cancelling a client call still open).
    """

    def send(self, msg: Any) -> None:
        v = to_lever(msg)
        err = ffi.new("lever_error **")
        try:
            rc = self._use(lib.lever_stream_send, v, err)
        finally:
            _free_value(v)
        if rc != OK:
            raise take_error(rc, err)

    def recv(self, timeout: Optional[float] = None) -> Any:
        """The next message. EOFError once the peer ended; TimeoutError when
        `timeout` seconds passed first (the stream goes on); LeverError when
        the peer sent an error or the call failed."""
        if self._ended:
            raise EOFError("lever: the stream has ended")
        out = ffi.new("lever_value **")
        err = ffi.new("lever_error **")
        deadline = None if timeout is None else time.monotonic() + timeout
        p = self._hold()
        try:
            while True:
                wait = _SLICE_MS
                if deadline is not None:
                    wait = max(0, min(wait, int((deadline - time.monotonic()) * 1000)))
                rc = lib.lever_stream_recv(out, p, wait, err)
                if rc != ETIMEOUT:
                    break
                lib.lever_error_free(err[0])
                err[0] = ffi.NULL
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError("lever: no message within the timeout")
        finally:
            self._h.done()
        if rc == OK:
            return take(out[0])
        if rc == EEND:
            self._ended = True
            lib.lever_error_free(err[0])
            raise EOFError("lever: the stream has ended")
        if rc != EAPP:
            self._ended = True
        raise take_error(rc, err)

    def __iter__(self) -> Iterator[Any]:
        while True:
            try:
                yield self.recv()
            except EOFError:
                return

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


class AsyncStream(_Base):
    """An asyncio stream (on the loop it was opened on):

        await s.send(msg)      # resolves once gRPC wrote it
        msg = await s.recv()   # EOFError once the peer ended
        async for msg in s: ...
        s.close()              # half-close (client) / end the call (server)
        s.cancel()

    `async with` releases it at the end (cancelling a client call still open).
    """

    def __init__(self, ptr, server, loop, context=None):
        super().__init__(ptr, server, context)
        self._loop = loop
        self._inflight = None  # the receive liblever is doing, if any

    def _start(self, start, finish):
        """Runs lp_*_async(q, ptr, token) and returns the future that
        finish(lp_done) resolves."""
        bridge = _bridge.of(self._loop)
        fut = self._loop.create_future()
        h = self._h
        p = self._hold()  # until done(d) below

        def done(d):
            h.done()
            if not fut.cancelled():
                finish(fut, d)

        token = bridge.register(done)
        rc = start(bridge.q, p, token)
        if rc != OK:
            bridge.forget(token)
            h.done()
            fut.set_exception(from_native(rc, ffi.NULL))
        return fut

    async def send(self, msg: Any) -> None:
        v = to_lever(msg)
        try:
            def finish(fut, d):
                if d.rc == OK:
                    fut.set_result(None)
                else:
                    fut.set_exception(from_native(d.rc, d.err))

            fut = self._start(lambda q, p, t: lib.lp_stream_send_async(q, p, v, t), finish)
        finally:
            _free_value(v)  # lever_stream_send_async copies it
        await fut

    async def recv(self) -> Any:
        """The next message; EOFError once the peer ended; LeverError when the
        peer sent an error or the call failed. A receive whose task is
        cancelled loses nothing: the message goes to the next recv()."""
        fut = self._inflight
        if fut is None:
            if self._ended:
                raise EOFError("lever: the stream has ended")

            def finish(f, d):
                if d.rc == OK:
                    v, d.value = d.value, ffi.NULL
                    f.set_result(take(v))
                elif d.rc == EEND:
                    self._ended = True
                    f.set_exception(EOFError("lever: the stream has ended"))
                else:
                    if d.rc != EAPP:
                        self._ended = True
                    f.set_exception(from_native(d.rc, d.err))

            fut = self._inflight = self._start(lib.lp_stream_recv_async, finish)
            # Seen by a later recv(), or by nobody if the reader went away.
            fut.add_done_callback(_mark_retrieved)
        try:
            msg = await asyncio.shield(fut)
        except asyncio.CancelledError:
            raise  # fut stays in flight (or done): the next recv() takes its outcome
        except BaseException:
            self._inflight = None
            raise
        self._inflight = None
        return msg

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.recv()
        except EOFError:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> "AsyncStream":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.release()


def opened(ptr, loop=None):
    """A client stream for a freshly opened lever_stream."""
    if loop is None:
        return Stream(ptr, False)
    return AsyncStream(ptr, False, loop)

