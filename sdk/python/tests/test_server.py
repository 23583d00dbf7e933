"""The service runtime in code (leveros.serve), outside leverd: dict and
object handlers, its own event loop, stopping with calls in flight."""
import asyncio
import threading

import pytest

from leveros import Client, LeverError, Server, serve
from leveros.server import method_table


def test_dict_handlers_with_the_servers_own_loop():
    async def ahello(name):
        await asyncio.sleep(0)
        return f"async {name}"

    def echoChan(stream, prefix):
        for m in stream:
            stream.send(f"{prefix}{m}")

    s = serve({"hello": lambda name: f"hi {name}", "ahello": ahello, "echoChan": echoChan},
              listen_addr="127.0.0.1:0")
    try:
        assert s.port > 0
        c = Client(force_host=f"127.0.0.1:{s.port}", timeout=20)
        e = c.service("dev.lever", "any")
        assert e.invoke("hello", "dict") == "hi dict"
        assert e.invoke("ahello", "loop") == "async loop"
        with e.invoke_chan("echoChan", "> ") as st:
            st.send("x")
            st.close()
            assert list(st) == ["> x"]
        c.close()
    finally:
        s.close()


def test_object_handlers_are_its_public_methods():
    class Handler:
        def __init__(self):
            self.n = 0

        def bump(self, k):
            self.n += k
            return self.n

        def _private(self):
            return "no"

    h = Handler()
    assert sorted(method_table(h)) == ["bump"]
    with Server(h, listen_addr="127.0.0.1:0") as s:
        c = Client(force_host=f"127.0.0.1:{s.port}", timeout=20)
        e = c.service("dev.lever", "obj")
        assert [e.invoke("bump", 2), e.invoke("bump", 3)] == [2, 5]
        with pytest.raises(LeverError) as err:
            e.invoke("_private")
        assert err.value.code == "NOT_FOUND"
        c.close()


def test_module_methods_are_its_own_functions():
    import types

    m = types.ModuleType("svc")
    exec("from os.path import join\nclass K: pass\ndef mine(): return 1\ndef _hidden(): return 2\n", m.__dict__)
    assert sorted(method_table(m)) == ["mine"]
    m.__all__ = ["join"]
    assert sorted(method_table(m)) == ["join"]


def test_stop_cancels_async_calls_still_running_after_the_grace():
    started = threading.Event()
    cancelled = threading.Event()

    async def forever():
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    s = serve({"forever": forever}, listen_addr="127.0.0.1:0")
    c = Client(force_host=f"127.0.0.1:{s.port}", timeout=30)
    result = {}

    def call():
        try:
            c.service("dev.lever", "x").invoke("forever")
        except LeverError as e:
            result["err"] = e

    t = threading.Thread(target=call)
    t.start()
    assert started.wait(20)
    s.stop(0.1)
    t.join(20)
    # The call's error can reach the client before the coroutine, on its own
    # event loop, has run its except clause: wait for it, bounded.
    assert cancelled.wait(20)
    # Our grace timer fails the call CANCELLED, gRPC's own shutdown deadline
    # UNAVAILABLE ("Cancelling all calls"): both end at the same instant.
    assert result["err"].code in ("CANCELLED", "UNAVAILABLE"), result["err"]
    s.close()
    c.close()


def test_bad_handlers_are_refused():
    with pytest.raises(TypeError):
        Server({"x": 42})
    with pytest.raises(LeverError) as e:
        Server({"fine": lambda: 1}, listen_addr="not an address").start()
    assert (e.value.code, str(e.value)) == ("UNAVAILABLE", "cannot listen on not an address")
