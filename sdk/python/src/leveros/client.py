"""The client: Client, Endpoint (reference §10.2, with asyncio forms)."""
import asyncio
import math
import os
import threading

from . import _bridge
from ._native import ffi, lib
from .errors import OK, LeverError, from_native, take_error, usage
from .streams import AsyncStream, Stream
from .url import format_url, is_chan_method, parse_url
from .values import args_to_lever, take

_free_value = lib.lever_value_free
_DEFAULT = object()


class _Native:
    """One lever_client. Freed once the Python client let go of it and no
    blocking call or stream open is using it (liblever lets asynchronous
    calls and open streams finish by themselves)."""

    def __init__(self, force_host, proto_json):
        opts = ffi.new("lever_client_options *")
        lib.lever_client_options_init(opts, lib.LEVER_CLIENT_OPTIONS_VERSION)
        keep = []
        if force_host:
            keep.append(ffi.new("char[]", force_host.encode()))
            opts.force_host = keep[-1]
        opts.proto_json = 1 if proto_json else 0
        out = ffi.new("lever_client **")
        err = ffi.new("lever_error **")
        rc = lib.lever_client_new(out, opts, err)
        if rc != OK:
            raise take_error(rc, err)
        self.ptr = out[0]
        self.lock = threading.Lock()
        self.users = 0
        self.closed = False

    def acquire(self):
        with self.lock:
            self.users += 1

    def release(self):
        with self.lock:
            self.users -= 1
            free = self.closed and self.users == 0
        if free:
            self._free()

    def close(self):
        with self.lock:
            if self.closed:
                return
            self.closed = True
            free = self.users == 0
        if free:
            self._free()

    def _free(self):
        ptr, self.ptr = self.ptr, None
        if ptr is not None:
            lib.lever_client_free(ptr)

    def __del__(self):
        if getattr(self, "ptr", None) is not None and self.users == 0:
            self._free()


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

    def __init__(self, force_host=None, *, timeout=None, wait_for_ready=False, proto_json=False):
        self.force_host = force_host or ""
        self.timeout = timeout
        self.wait_for_ready = bool(wait_for_ready)
        self.proto_json = bool(proto_json)
        self._lock = threading.Lock()
        self._native = None
        self._native_key = None
        self._opts = {}

    # -- endpoints and URLs --------------------------------------------

    def service(self, env, service):
        """An Endpoint for `service` in `env` ("" or None: the own environment)."""
        if not isinstance(service, str) or not service:
            raise TypeError("service must be a non-empty str")
        return Endpoint(self, env or "", service, "")

    def resource(self, env, service, resource):
        """An Endpoint for one resource of `service`."""
        if not isinstance(service, str) or not service:
            raise TypeError("service must be a non-empty str")
        if not isinstance(resource, str):
            raise TypeError("resource must be a str")
        return Endpoint(self, env or "", service, resource)

    def invoke_url(self, url, *args, timeout=_DEFAULT):
        return self._invoke(self._url(url, False), args, timeout)

    async def ainvoke_url(self, url, *args, timeout=_DEFAULT):
        return await self._ainvoke(self._url(url, False), args, timeout)

    def invoke_chan_url(self, url, *args, timeout=_DEFAULT):
        return self._open(self._url(url, True), args, timeout)

    async def ainvoke_chan_url(self, url, *args, timeout=_DEFAULT):
        return await self._aopen(self._url(url, True), args, timeout)

    def close(self):
        """Releases the connections once the calls in flight have ended."""
        with self._lock:
            native, self._native, self._native_key = self._native, None, None
        if native is not None:
            native.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
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
        """The current lever_client, acquired (release() it when the C call
        that uses it has returned)."""
        key = (self.force_host or "", self.proto_json)
        with self._lock:
            if self._native is None or self._native_key != key:
                old = self._native
                self._native, self._native_key = _Native(key[0], key[1]), key
                if old is not None:
                    old.close()
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

    def _invoke(self, url, args, timeout):
        opts = self._call_opts(timeout)
        a = args_to_lever(args)
        out = ffi.new("lever_value **")
        err = ffi.new("lever_error **")
        native = self._acquire()
        try:
            rc = lib.lever_client_invoke(out, native.ptr, url, a, opts, err)
        finally:
            native.release()
            _free_value(a)
        if rc == OK:
            return take(out[0])
        raise take_error(rc, err)

    async def _ainvoke(self, url, args, timeout):
        loop = asyncio.get_running_loop()
        bridge = _bridge.of(loop)
        opts = self._call_opts(timeout)
        a = args_to_lever(args)
        fut = loop.create_future()

        def done(d):
            if fut.cancelled():
                return
            if d.rc == OK:
                v, d.value = d.value, ffi.NULL
                fut.set_result(take(v))
            else:
                fut.set_exception(from_native(d.rc, d.err))

        token = bridge.register(done)
        native = self._acquire()
        try:
            rc = lib.lp_invoke_async(bridge.q, native.ptr, url, a, opts, token)
        finally:
            native.release()
            _free_value(a)
        if rc != OK:
            bridge.forget(token)
            raise from_native(rc, ffi.NULL)
        return await fut

    def _open(self, url, args, timeout):
        opts = self._call_opts(timeout)
        a = args_to_lever(args)
        out = ffi.new("lever_stream **")
        err = ffi.new("lever_error **")
        native = self._acquire()
        try:
            rc = lib.lever_client_stream_open(out, native.ptr, url, a, opts, err)
        finally:
            native.release()
            _free_value(a)
        if rc == OK:
            return Stream(out[0], False)
        raise take_error(rc, err)

    async def _aopen(self, url, args, timeout):
        loop = asyncio.get_running_loop()
        bridge = _bridge.of(loop)
        opts = self._call_opts(timeout)
        a = args_to_lever(args)
        fut = loop.create_future()
        native = None

        def done(d):
            native.release()
            if d.rc == OK:
                s, d.stream = d.stream, ffi.NULL
                stream = AsyncStream(s, False, loop)
                if fut.cancelled():
                    stream.release()  # nobody wants it: cancel the call
                else:
                    fut.set_result(stream)
            elif not fut.cancelled():
                fut.set_exception(from_native(d.rc, d.err))

        token = bridge.register(done)
        native = self._acquire()  # released when the open completes
        try:
            rc = lib.lp_stream_open_async(bridge.q, native.ptr, url, a, opts, token)
        finally:
            _free_value(a)
        if rc != OK:
            bridge.forget(token)
            native.release()
            raise from_native(rc, ffi.NULL)
        return await fut


class Endpoint:
    """A service (or one resource of it) in an environment."""

    __slots__ = ("_client", "environment", "service", "_resource")

    def __init__(self, client, env, service, resource):
        self._client = client
        self.environment = env.lower()
        self.service = service
        self._resource = resource

    @property
    def resource_name(self):
        return self._resource

    def resource(self, name):
        """The Endpoint of one resource of this service."""
        if not isinstance(name, str):
            raise TypeError("resource must be a str")
        return Endpoint(self._client, self.environment, self.service, name)

    def _target(self, method):
        if not isinstance(method, str) or not method:
            raise TypeError("method must be a non-empty str")
        return (self.environment, self.service, self._resource)

    def invoke(self, method, *args, timeout=_DEFAULT):
        """Calls `method` with `args` and returns its result; raises LeverError.
        Blocks this thread (not others: the GIL is released meanwhile)."""
        c = self._client
        return c._invoke(c._url(self._target(method), False, method), args, timeout)

    async def ainvoke(self, method, *args, timeout=_DEFAULT):
        """invoke() for asyncio."""
        c = self._client
        return await c._ainvoke(c._url(self._target(method), False, method), args, timeout)

    def invoke_chan(self, method, *args, timeout=_DEFAULT):
        """Opens a streaming call (a method named ...Chan, ..._chan or chan):
        returns a Stream once the server accepted it."""
        c = self._client
        return c._open(c._url(self._target(method), True, method), args, timeout)

    async def ainvoke_chan(self, method, *args, timeout=_DEFAULT):
        """invoke_chan() for asyncio: an AsyncStream."""
        c = self._client
        return await c._aopen(c._url(self._target(method), True, method), args, timeout)

    def __repr__(self):
        return f"Endpoint({self.environment!r}, {self.service!r}, {self._resource!r})"


__all__ = ["Client", "Endpoint", "LeverError"]
