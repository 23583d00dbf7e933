"""The client: Client, Endpoint (reference §10.2, with asyncio forms)."""
from __future__ import annotations

import asyncio
import math
import os
import threading
from typing import Any, Optional

from . import _bridge
from ._native import Shared, ffi, lib
from .errors import OK, LeverError, from_native, take_error, usage
from .streams import AsyncStream, Stream
from .url import format_url, is_chan_method, parse_url
from .values import args_to_lever, take

_free_value = lib.lever_value_free
_DEFAULT = object()


def _new_client(force_host, proto_json):
    """A lever_client in a Shared: freed once the Python client let go of it
    and no blocking call or stream open is using it (liblever lets
    asynchronous calls and open streams finish by themselves)."""
    opts = ffi.new("lever_client_options *")
    lib.lever_client_options_init(opts, lib.LEVER_CLIENT_OPTIONS_VERSION)
    host = ffi.new("char[]", force_host.encode()) if force_host else ffi.NULL
    opts.force_host = host
    opts.proto_json = 1 if proto_json else 0
    out = ffi.new("lever_client **")
    err = ffi.new("lever_error **")
    rc = lib.lever_client_new(out, opts, err)
    if rc != OK:
        raise take_error(rc, err)
    return Shared(out[0], lib.lever_client_free)


class Client:
    """A Lever client. Share one per process; it is thread-safe and works
    from any asyncio loop.

    force_host:     dial every call here ("host:port" or "unix:/path.sock").
                    Without it: internal environments (*.lever) and the own
                    environment go to LEVEROS_INTERNAL_RPC_GATEWAY when set
                    (inside instances), others to LEVEROS_IP_PORT or
                    127.0.0.1:8080.
    timeout:        deadline of each call in seconds (None or 0: none).
    wait_for_ready: a call waits (within its timeout) for a target that
                    cannot be reached yet, instead of failing UNAVAILABLE.
    proto_json:     send proto-JSON like Lever OS 0.1 (to call original
                    servers); the default is msgpack, which our servers answer in.

    All four are plain attributes that can be changed later.
    """

    def __init__(self, force_host: Optional[str] = None, *, timeout: Optional[float] = None,
                 wait_for_ready: bool = False, proto_json: bool = False) -> None:
        self.force_host = force_host or ""
        self.timeout = timeout
        self.wait_for_ready = bool(wait_for_ready)
        self.proto_json = bool(proto_json)
        self._lock = threading.Lock()
        self._native = None
        self._native_key = None
        self._opts: dict = {}

    # -- endpoints and URLs --------------------------------------------

    def service(self, env: Optional[str], service: str) -> "Endpoint":
        """An Endpoint for `service` in `env` ("" or None: the own environment)."""
        if not isinstance(service, str) or not service:
            raise TypeError("service must be a non-empty str")
        return Endpoint(self, env or "", service, "")

    def resource(self, env: Optional[str], service: str, resource: str) -> "Endpoint":
        """An Endpoint for one resource of `service`."""
        if not isinstance(service, str) or not service:
            raise TypeError("service must be a non-empty str")
        if not isinstance(resource, str):
            raise TypeError("resource must be a str")
        return Endpoint(self, env or "", service, resource)

    def invoke_url(self, url: str, *args: Any, timeout: Any = _DEFAULT) -> Any:
        return self._invoke(self._url(url, False), args, timeout)

    async def ainvoke_url(self, url: str, *args: Any, timeout: Any = _DEFAULT) -> Any:
        return await self._ainvoke(self._url(url, False), args, timeout)

    def invoke_chan_url(self, url: str, *args: Any, timeout: Any = _DEFAULT) -> Stream:
        return self._open(self._url(url, True), args, timeout)

    async def ainvoke_chan_url(self, url: str, *args: Any, timeout: Any = _DEFAULT) -> AsyncStream:
        return await self._aopen(self._url(url, True), args, timeout)

    def close(self) -> None:
        """Releases the connections once the calls in flight have ended."""
        with self._lock:
            native, self._native, self._native_key = self._native, None, None
        if native is not None:
            native.release()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()

    # -- internals -----------------------------------------------------

    def _url(self, target, streaming, method=None):
        if isinstance(target, str):
            try:
                env, service, resource, method = parse_url(target)
            except ValueError as e:
                raise usage(str(e)) from None
        else:
            env, service, resource = target
        if streaming and not is_chan_method(method):
            raise usage("Use invoke for non-streaming methods")
        if not streaming and is_chan_method(method):
            raise usage("Use invoke_chan for streaming methods")
        if not env:
            env = os.environ.get("LEVEROS_ENVIRONMENT", "").lower()
            if not env:
                raise usage("Environment not specified and cannot be deduced")
        return format_url(env, service, resource, method).encode()

    def _acquire(self):
        """The current lever_client's Shared, acquired (done() when the C
        call that uses it has returned)."""
        key = (self.force_host or "", self.proto_json)
        with self._lock:
            if self._native is None or self._native_key != key:
                old = self._native
                self._native, self._native_key = _new_client(key[0], key[1]), key
                if old is not None:
                    old.release()
            native = self._native
            native.acquire()
            return native

    def _call_opts(self, timeout):
        if timeout is _DEFAULT:
            timeout = self.timeout
        ms = 0
        if timeout:
            if not isinstance(timeout, (int, float)) or math.isnan(timeout) or timeout < 0:
                raise ValueError("timeout must be a non-negative number of seconds")
            ms = min(max(1, math.ceil(timeout * 1000)), 4_000_000_000)
        key = (ms, self.wait_for_ready)
        opts = self._opts.get(key)
        if opts is None:
            opts = ffi.new("lever_call_options *")
            lib.lever_call_options_init(opts, lib.LEVER_CALL_OPTIONS_VERSION)
            opts.timeout_ms = ms
            opts.wait_for_ready = 1 if self.wait_for_ready else 0
            if len(self._opts) < 64:
                self._opts[key] = opts
        return opts

    def _blocking(self, c_fn, out_type, url, args, timeout):
        """Runs a blocking lever.h call (the GIL is released meanwhile) and
        returns its out-value, or raises its LeverError."""
        opts = self._call_opts(timeout)
        a = args_to_lever(args)
        out = ffi.new(out_type)
        err = ffi.new("lever_error **")
        native = self._acquire()
        try:
            rc = c_fn(out, native.ptr, url, a, opts, err)
        finally:
            native.done()
            _free_value(a)
        if rc == OK:
            return out[0]
        raise take_error(rc, err)

    def _invoke(self, url, args, timeout):
        return take(self._blocking(lib.lever_client_invoke, "lever_value **", url, args, timeout))

    def _open(self, url, args, timeout):
        return Stream(self._blocking(lib.lever_client_stream_open, "lever_stream **", url, args, timeout), False)

    def _start(self, c_fn, url, args, timeout, finish, hold):
        """Starts an asynchronous lever.h call completing on the running
        loop: finish(fut, lp_done) resolves `fut`. With `hold`, the
        lever_client stays acquired until then (stream opens)."""
        loop = asyncio.get_running_loop()
        bridge = _bridge.of(loop)
        opts = self._call_opts(timeout)
        a = args_to_lever(args)
        fut = loop.create_future()
        native = self._acquire()

        def done(d):
            if hold:
                native.done()
            finish(fut, d)

        token = bridge.register(done)
        try:
            rc = c_fn(bridge.q, native.ptr, url, a, opts, token)
        finally:
            if not hold:
                native.done()
            _free_value(a)
        if rc != OK:
            bridge.forget(token)
            if hold:
                native.done()
            raise from_native(rc, ffi.NULL)
        return fut

    async def _ainvoke(self, url, args, timeout):
        # The call's handle: cancelling the awaiting task cancels the call
        # (the server sees it); freed when the completion is taken, on the
        # loop's thread like the cancel, so they never race.
        inv = ffi.new("lever_invocation **")

        def finish(fut, d):
            lib.lever_invocation_free(inv[0])
            inv[0] = ffi.NULL
            if fut.cancelled():
                return
            if d.rc == OK:
                v, d.value = d.value, ffi.NULL
                fut.set_result(take(v))
            else:
                fut.set_exception(from_native(d.rc, d.err))

        def start(q, client, url, a, opts, token):
            return lib.lp_invoke_start(q, inv, client, url, a, opts, token)

        fut = self._start(start, url, args, timeout, finish, False)
        try:
            return await fut
        except asyncio.CancelledError:
            if inv[0] != ffi.NULL:
                lib.lever_invocation_cancel(inv[0])
            raise

    async def _aopen(self, url, args, timeout):
        loop = asyncio.get_running_loop()

        def finish(fut, d):
            if d.rc == OK:
                s, d.stream = d.stream, ffi.NULL
                stream = AsyncStream(s, False, loop)
                if fut.cancelled():
                    stream.release()  # nobody wants it: cancel the call
                else:
                    fut.set_result(stream)
            elif not fut.cancelled():
                fut.set_exception(from_native(d.rc, d.err))

        return await self._start(lib.lp_stream_open_async, url, args, timeout, finish, True)


class Endpoint:
    """A service (or one resource of it) in an environment."""

    __slots__ = ("_client", "environment", "service", "_resource")

    def __init__(self, client: Client, env: str, service: str, resource: str) -> None:
        self._client = client
        self.environment = env.lower()
        self.service = service
        self._resource = resource

    @property
    def resource_name(self) -> str:
        return self._resource

    def resource(self, name: str) -> "Endpoint":
        """The Endpoint of one resource of this service."""
        if not isinstance(name, str):
            raise TypeError("resource must be a str")
        return Endpoint(self._client, self.environment, self.service, name)

    def _target(self, method):
        if not isinstance(method, str) or not method:
            raise TypeError("method must be a non-empty str")
        return (self.environment, self.service, self._resource)

    def invoke(self, method: str, *args: Any, timeout: Any = _DEFAULT) -> Any:
        """Calls `method` with `args` and returns its result; raises LeverError.
        Blocks this thread (not others: the GIL is released meanwhile)."""
        c = self._client
        return c._invoke(c._url(self._target(method), False, method), args, timeout)

    async def ainvoke(self, method: str, *args: Any, timeout: Any = _DEFAULT) -> Any:
        """invoke() for asyncio."""
        c = self._client
        return await c._ainvoke(c._url(self._target(method), False, method), args, timeout)

    def invoke_chan(self, method: str, *args: Any, timeout: Any = _DEFAULT) -> Stream:
        """Opens a streaming call (a method named ...Chan, ..._chan or chan):
        returns a Stream once the server accepted it."""
        c = self._client
        return c._open(c._url(self._target(method), True, method), args, timeout)

    async def ainvoke_chan(self, method: str, *args: Any, timeout: Any = _DEFAULT) -> AsyncStream:
        """invoke_chan() for asyncio: an AsyncStream."""
        c = self._client
        return await c._aopen(c._url(self._target(method), True, method), args, timeout)

    def __repr__(self):
        return f"Endpoint({self.environment!r}, {self.service!r}, {self._resource!r})"


__all__ = ["Client", "Endpoint", "LeverError"]
