"""The service runtime (reference §10.1, for Python): serves the functions of
a module (what lever-serve-py does with a pyEntry), an object or a dict.

Methods
    Module: its public functions (names not starting with "_") defined in the
    module itself, or exactly the names in its __all__. Object: its public
    methods. Dict: its items. A name ending in Chan or _chan (or chan) is a
    streaming method, others are unary.

Unary: fn([resource,] *args) -> result
    A plain function runs on one of liblever's worker threads (it may block;
    the GIL is released while C runs); an `async def` runs on the server's
    event loop. The return value is the result; an exception is the
    application error (str(exc), or the value of a LeverError.app(value) or
    of a LeverError passed on from a nested call, or the bytes of an
    exception whose only argument is bytes). Arguments that do not fit the
    signature fail the call with INVALID_ARGUMENT.

Streaming: fn(stream, [resource,] *args)
    A plain function or generator gets a blocking Stream, an `async def` or
    async generator an AsyncStream. Each value a generator yields is sent.
    When the handler returns, the call ends normally; an exception ends it
    with that application error.

Resources: when the call's URL has a resource, its name comes first among the
arguments (the original's rule). NewResource(resource) and
CloseResource(resource), when defined, are called when an instance takes on
and gives up a resource.

current_call() tells a handler its call's URL, environment, resource, method,
caller's environment and deadline.
"""
from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
import types
from typing import Any, Callable, Dict, Optional, Union

from . import _bridge
from ._native import ffi, lib
from .errors import OK, LeverError, error_value, take_error
from .streams import AsyncStream, Stream
from .url import is_chan_method
from .values import from_lever, to_lever

CANCELLED, INVALID_ARGUMENT, NOT_FOUND, INTERNAL = 1, 3, 5, 13
RESOURCE_HOOKS = frozenset(("NewResource", "CloseResource"))
_STOPPING = "the service is stopping"
_free_value = lib.lever_value_free


class CallContext:
    """What a handler knows about its call (see current_call())."""

    __slots__ = ("url", "environment", "service", "resource", "method", "source_environment", "deadline")

    def __init__(self, ctx):
        def s(p):
            return ffi.string(p).decode("utf-8", "replace")

        self.url = s(lib.lever_context_url(ctx))
        self.environment = s(lib.lever_context_env(ctx))
        self.service = s(lib.lever_context_service(ctx))
        self.resource = s(lib.lever_context_resource(ctx))
        self.method = s(lib.lever_context_method(ctx))
        # "" when the call came from outside Lever.
        self.source_environment = s(lib.lever_context_source_env(ctx))
        ms = lib.lever_context_deadline_ms(ctx)
        # Seconds since the epoch (time.time()), or None.
        self.deadline = None if ms < 0 else ms / 1000.0

    def __repr__(self):
        return f"CallContext(url={self.url!r}, source_environment={self.source_environment!r})"


_current = contextvars.ContextVar("leveros_current_call", default=None)


def current_call() -> Optional[CallContext]:
    """The CallContext of the call this handler serves (None outside one)."""
    return _current.get()


def method_table(handlers: Any) -> Dict[str, Callable[..., Any]]:
    """{name: callable} of what `handlers` serves (rules above)."""
    if isinstance(handlers, dict):
        table = dict(handlers)
    elif isinstance(handlers, types.ModuleType):
        names = getattr(handlers, "__all__", None)
        if names is not None:
            table = {n: getattr(handlers, n) for n in names}
        else:
            table = {n: f for n, f in vars(handlers).items()
                     if not n.startswith("_") and inspect.isfunction(f) and f.__module__ == handlers.__name__}
    else:
        table = {}
        for n in dir(handlers):
            if n.startswith("_"):
                continue
            f = getattr(handlers, n, None)
            if callable(f) and not inspect.isclass(f):
                table[n] = f
    for n, f in table.items():
        if not isinstance(n, str) or not n:
            raise TypeError(f"method names must be non-empty str, not {n!r}")
        if not callable(f):
            raise TypeError(f"{n} is not callable")
    return table


class _Method:
    __slots__ = ("server", "name", "fn", "streaming", "is_async", "sig", "prepend")

    def __init__(self, server, name, fn):
        self.server = server
        self.name = name
        self.fn = fn
        self.streaming = is_chan_method(name)
        self.is_async = inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)
        try:
            self.sig = inspect.signature(fn)
        except (TypeError, ValueError):
            self.sig = None
        self.prepend = name not in RESOURCE_HOOKS

    def check(self, args):
        """None, or why `args` do not fit the handler's signature."""
        if self.sig is None:
            return None
        try:
            self.sig.bind(*args)
        except TypeError as e:
            return f"Invalid arguments for {self.name}: {e}"
        return None


class _Call:
    """A lever_call that is finished exactly once (it is freed by finishing)."""

    __slots__ = ("ptr", "lock")

    def __init__(self, ptr):
        self.ptr = ptr
        self.lock = threading.Lock()

    def _take(self):
        with self.lock:
            p, self.ptr = self.ptr, None
        return p

    def with_context(self, fn):
        """fn(lever_context *) while the call is open (None once finished)."""
        with self.lock:
            return None if self.ptr is None else fn(lib.lever_call_context(self.ptr))

    def _finish(self, c_fn, v):
        try:
            p = self._take()
            if p is not None:
                c_fn(p, v)
        finally:
            _free_value(v)

    def reply(self, result):
        try:
            v = to_lever(result)
        except (TypeError, ValueError, OverflowError) as e:
            self.fail(INTERNAL, f"Invalid reply: {e}")
            return
        self._finish(lib.lever_call_reply, v)

    def error(self, exc):
        try:
            v = to_lever(error_value(exc))
        except (TypeError, ValueError, OverflowError):
            v = to_lever(str(exc))
        self._finish(lib.lever_call_reply_error, v)

    def fail(self, status, message):
        p = self._take()
        if p is not None:
            lib.lever_call_fail(p, status, message.encode("utf-8", "replace"))


def _safe(fn, *args):
    try:
        fn(*args)
    except Exception:  # the peer is gone; nothing left to tell it
        pass


@ffi.def_extern()
def _lp_unary(call, payload):
    c = _Call(call)
    try:
        m = ffi.from_handle(payload)
        m.server._unary(m, c)
    except BaseException:  # never leave a call unfinished
        c.fail(INTERNAL, "leveros: handler dispatch failed")


@ffi.def_extern()
def _lp_stream(stream, payload):
    m = ffi.from_handle(payload)
    m.server._stream(m, stream)


# Running servers stay referenced: dropping the Server must not free one that serves.
_running: "set[Server]" = set()


class Server:
    """Serves `handlers` (a module, an object or a dict; see the module doc).

    listen_addr: "unix:/abs/path.sock" or "host:port" (port 0: any); default
                 LEVEROS_LISTEN_ADDR, else 0.0.0.0:3837.
    max_workers: liblever's worker threads, i.e. how many plain-function
                 handlers run at once (default 32; async handlers do not hold
                 one, so a service that waits a lot is best written async).
    loop:        the event loop that runs async handlers; default a loop of
                 the server's own, on a thread started when first needed.
    """

    def __init__(self, handlers: Union[types.ModuleType, Dict[str, Callable[..., Any]], Any], *,
                 listen_addr: Optional[str] = None, max_workers: int = 32,
                 loop: Optional[asyncio.AbstractEventLoop] = None) -> None:
        self.methods = method_table(handlers)
        opts = ffi.new("lever_server_options *")
        lib.lever_server_options_init(opts, lib.LEVER_SERVER_OPTIONS_VERSION)
        addr = ffi.new("char[]", listen_addr.encode()) if listen_addr else ffi.NULL
        opts.listen_addr = addr
        opts.max_workers = int(max_workers)
        out = ffi.new("lever_server **")
        err = ffi.new("lever_error **")
        rc = lib.lever_server_new(out, opts, err)
        if rc != OK:
            raise take_error(rc, err)
        self._ptr = out[0]
        self._handles = []
        for name, fn in self.methods.items():
            m = _Method(self, name, fn)
            h = ffi.new_handle(m)
            self._handles.append(h)
            if m.streaming:
                rc = lib.lever_server_handle_stream(self._ptr, name.encode(), lib._lp_stream, h, err)
            else:
                rc = lib.lever_server_handle(self._ptr, name.encode(), lib._lp_unary, h, err)
            if rc != OK:
                lib.lever_server_free(self._ptr)
                self._ptr = None
                raise take_error(rc, err)
        self._loop = loop
        self._own_loop_thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()
        # Async work in flight: concurrent future -> what ends it after the grace.
        self._open: Dict[Any, Any] = {}
        self.port = 0
        self._state = "new"

    # -- lifecycle -----------------------------------------------------

    def start(self) -> int:
        """Binds and serves; returns the bound TCP port (0 for unix sockets)."""
        err = ffi.new("lever_error **")
        rc = lib.lever_server_start(self._ptr, err)
        if rc != OK:
            raise take_error(rc, err)
        self.port = lib.lever_server_port(self._ptr)
        self._state = "running"
        _running.add(self)
        return self.port

    def stop(self, grace: float = 5.0) -> None:
        """Stops accepting calls, gives calls in flight `grace` seconds, then
        cancels them (async handlers get CancelledError). Blocks until
        stopped; not from a handler. Plain-function handlers that never
        return keep their worker, and this waits for them."""
        if self._state != "running":
            return
        self._state = "stopping"
        timer = threading.Timer(grace, self._end_open)
        timer.daemon = True
        timer.start()
        try:
            lib.lever_server_stop(self._ptr, max(0, int(grace * 1000)))
        finally:
            timer.cancel()
            self._end_open()
            self._state = "stopped"
            _running.discard(self)
            t, self._own_loop_thread = self._own_loop_thread, None
            if t is not None:
                self.loop.call_soon_threadsafe(self.loop.stop)
                t.join()

    async def astop(self, grace: float = 5.0) -> None:
        """stop() from a coroutine (the loop keeps serving meanwhile)."""
        await asyncio.get_running_loop().run_in_executor(None, self.stop, grace)

    def wait(self) -> None:
        """Blocks until the server has stopped."""
        lib.lever_server_wait(self._ptr)

    def close(self) -> None:
        """stop(0) if needed, then frees the server."""
        self.stop(0)
        p, self._ptr = self._ptr, None
        if p is not None:
            lib.lever_server_free(p)

    def __enter__(self) -> "Server":
        if self._state == "new":
            self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop async handlers run on."""
        if self._loop is None:
            with self._lock:
                if self._loop is None:
                    loop = asyncio.new_event_loop()
                    ready = threading.Event()

                    def run():
                        asyncio.set_event_loop(loop)
                        loop.call_soon(ready.set)
                        loop.run_forever()

                    t = threading.Thread(target=run, name="leveros-server-loop", daemon=True)
                    t.start()
                    ready.wait()
                    self._own_loop_thread = t
                    self._loop = loop
        return self._loop

    def _end_open(self):
        with self._lock:
            items = list(self._open.items())
            self._open.clear()
        for cfut, end in items:
            cfut.cancel()
            _safe(end)

    def _spawn(self, coro, end):
        """Runs an async handler on the loop; `end` finishes its call if it
        is still open after the stop's grace."""
        cfut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        with self._lock:
            self._open[cfut] = end
        cfut.add_done_callback(self._spawned_done)

    def _spawned_done(self, cfut):
        with self._lock:
            self._open.pop(cfut, None)

    def _cancel_on_caller_cancel(self, with_context):
        """In an async handler's task: cancels the task when its caller
        cancels or its deadline passes (lever_context_watch_cancel, completing
        through the loop's bridge). with_context(fn) runs fn(lever_context *)
        while the call is open."""
        task = asyncio.current_task()
        bridge = _bridge.of(self.loop)

        def done(d):
            if d.rc == 1:
                task.cancel()

        token = bridge.register(done)
        if with_context(lambda ctx: lib.lp_watch_cancel(bridge.q, ctx, token)) != OK:
            bridge.forget(token)

    # -- dispatch (on liblever's worker threads) -----------------------

    def _unary(self, m, c):
        ptr = c.ptr
        try:
            args = from_lever(lib.lever_call_args(ptr))
            ctx = CallContext(lib.lever_call_context(ptr))
            if ctx.resource and m.prepend:
                args.insert(0, ctx.resource)
            why = m.check(args)
            if why is not None:
                c.fail(INVALID_ARGUMENT, why)
                return
            if m.is_async:
                self._spawn(self._await_unary(c, m.fn, args, ctx), lambda: c.fail(CANCELLED, _STOPPING))
                return
            token = _current.set(ctx)
            try:
                result = m.fn(*args)
            finally:
                _current.reset(token)
            if inspect.isawaitable(result):
                self._spawn(self._await_unary(c, None, result, ctx), lambda: c.fail(CANCELLED, _STOPPING))
                return
        except BaseException as e:
            c.error(e)
            return
        c.reply(result)

    async def _await_unary(self, c, fn, args_or_awaitable, ctx):
        _current.set(ctx)
        self._cancel_on_caller_cancel(c.with_context)
        try:
            result = await (fn(*args_or_awaitable) if fn is not None else args_or_awaitable)
        except asyncio.CancelledError:
            c.fail(CANCELLED, _STOPPING if self._state != "running" else "cancelled")
            raise
        except BaseException as e:
            c.error(e)
            return
        c.reply(result)

    def _stream(self, m, ptr):
        try:
            args = from_lever(lib.lever_stream_args(ptr))
            ctx = CallContext(lib.lever_stream_context(ptr))
            if m.is_async:
                s = AsyncStream(ptr, True, self.loop, ctx)
            else:
                s = Stream(ptr, True, ctx)
        except BaseException:
            lib.lever_stream_cancel(ptr)
            lib.lever_stream_free(ptr)
            return
        if ctx.resource:
            args.insert(0, ctx.resource)
        why = m.check([s, *args])
        if why is not None:
            _safe(s.end_with_error, why)
            s.release()
            return
        if m.is_async:
            self._spawn(self._run_astream(m, s, args, ctx), s.cancel)
            return
        token = _current.set(ctx)
        try:
            r = m.fn(s, *args)
            if inspect.isgenerator(r):
                for item in r:
                    s.send(item)
            elif inspect.isawaitable(r):
                raise TypeError(f"{m.name} returned an awaitable: make it `async def` to get an AsyncStream")
            s.close()
        except BaseException as e:
            _safe(s.end_with_error, _sendable_error(e))
        finally:
            _current.reset(token)
            s.release()

    async def _run_astream(self, m, s, args, ctx):
        _current.set(ctx)
        self._cancel_on_caller_cancel(
            lambda fn: s._use(lambda p: fn(lib.lever_stream_context(p)), closed=None))
        try:
            r = m.fn(s, *args)
            if inspect.isasyncgen(r):
                async for item in r:
                    await s.send(item)
            else:
                await r
            s.close()
        except asyncio.CancelledError:
            s.cancel()
            raise
        except BaseException as e:
            _safe(s.end_with_error, _sendable_error(e))
        finally:
            s.release()


def _sendable_error(exc):
    v = error_value(exc)
    try:
        _free_value(to_lever(v))
        return v
    except (TypeError, ValueError, OverflowError):
        return str(exc)


def serve(handlers: Any, **options: Any) -> Server:
    """A started Server (see Server for the options)."""
    s = Server(handlers, **options)
    s.start()
    return s


__all__ = ["Server", "serve", "current_call", "CallContext", "LeverError"]
