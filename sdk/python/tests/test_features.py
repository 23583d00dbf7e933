"""Bytes, resources, handler shapes, stream forms, platform errors, deadlines,
cancellation and logs, against a real leverd."""
import asyncio

import pytest

from conftest import wait_until
from leveros import Client, LeverError


def test_bytes_both_ways(ep):
    assert ep.invoke("reverseBytes", b"\x01\x02\x03\xff") == b"\xff\x03\x02\x01"
    assert ep.invoke("reverseBytes", "text") == "not bytes: str"
    with pytest.raises(LeverError) as e:
        ep.invoke("byteError")
    assert e.value.code == "REMOTE"
    assert e.value.remote == b"\x01\x02\x03"
    with ep.invoke_chan("bytesChan") as s:
        s.send(b"ab")
        assert s.recv() == b"abab"
        s.send("no")
        assert s.recv() == "not bytes: str"
        s.close()
        assert list(s) == []


def test_handler_shapes(ep):
    assert ep.invoke("add", 2, 3) == 5  # async def
    assert ep.invoke("nothing") is None
    assert ep.invoke("helper", "hi") == "HI!"  # a module of the service's own
    with pytest.raises(LeverError) as e:
        ep.invoke("objectError")
    assert e.value.remote == {"reason": "bad", "n": 7}
    assert str(e.value) == '{"reason": "bad", "n": 7}'
    with pytest.raises(LeverError) as e:
        ep.invoke("asyncFail", 1)
    assert (e.value.code, str(e.value)) == ("REMOTE", "async 1")


def test_resources(client):
    a = client.resource("dev.lever", "pyresources", "alpha")
    b = client.service("dev.lever", "pyresources").resource("beta")
    assert a.invoke("incr", 2) == 2
    assert a.invoke("incr", 3) == 5
    assert b.invoke("incr", 10) == 10
    assert a.invoke("opened").count("alpha") == 1  # NewResource ran once, before the first call
    assert "beta" in b.invoke("opened")
    with a.invoke_chan("whoChan", "I am") as s:
        assert list(s) == ["I am alpha"]
    assert client.service("dev.lever", "pyresources").invoke("noResource") == "plain"
    with pytest.raises(LeverError) as e:
        client.resource("dev.lever", "pyresources", "gamma").invoke("noResource")
    assert e.value.code == "INVALID_ARGUMENT"  # the resource comes first: one argument too many


def test_stream_half_close(ep):
    s = ep.invoke_chan("sumChan", 100)
    for n in (1, 2, 3):
        s.send(n)
    assert [s.recv(), s.recv(), s.recv()] == [101, 103, 106]
    s.close()  # half-close: the server sees the end of our messages, then answers once more
    assert s.recv() == "total 106"
    with pytest.raises(EOFError):
        s.recv()
    with pytest.raises(EOFError):
        s.recv()
    s.release()


def test_generator_and_async_streams(ep):
    with ep.invoke_chan("countChan", 5) as s:
        assert list(s) == [0, 1, 2, 3, 4]

    async def main():
        s = await ep.ainvoke_chan("aechoChan", ">")
        for m in ("a", "b"):
            await s.send(m)
        s.close()
        assert [m async for m in s] == [">a", ">b"]
        s.release()
        async with await ep.ainvoke_chan("agenChan", 3) as s2:
            assert [m async for m in s2] == [0, 10, 20]

    asyncio.run(main())


def test_stream_error_after_a_message(ep):
    with ep.invoke_chan("failChan", "went wrong") as s:
        assert s.recv() == "first"
        with pytest.raises(LeverError) as e:
            s.recv()
        assert (e.value.code, e.value.remote) == ("REMOTE", "went wrong")
        with pytest.raises(EOFError):
            s.recv()


def test_platform_errors_with_codes(client, ep):
    cases = [
        (lambda: client.service("dev.lever", "noSuchService").invoke("x"), "NOT_FOUND", 5),
        (lambda: ep.invoke("noSuchMethod"), "NOT_FOUND", 5),
        (lambda: ep.invoke("_hidden"), "NOT_FOUND", 5),
        (lambda: ep.invoke("BasicHello"), "INVALID_ARGUMENT", 3),
        (lambda: ep.invoke("BasicHello", "a", "b"), "INVALID_ARGUMENT", 3),
        (lambda: ep.invoke("badReply"), "INTERNAL", 13),
        (lambda: ep.invoke("ReqReplyStreamChan"), "INVALID_ARGUMENT", 3),
        (lambda: ep.invoke_chan("BasicHello", "x"), "INVALID_ARGUMENT", 3),
        (lambda: client.invoke_url("not a url"), "INVALID_ARGUMENT", 3),
    ]
    for call, code, status in cases:
        with pytest.raises(LeverError) as e:
            call()
        assert (e.value.code, e.value.status) == (code, status), str(e.value)
    with pytest.raises(LeverError, match="Use invoke_chan for streaming methods"):
        ep.invoke("ReqReplyStreamChan")
    with pytest.raises(LeverError, match="Invalid arguments for BasicHello"):
        ep.invoke("BasicHello")


def test_unreachable_host_is_unavailable():
    c = Client(force_host="127.0.0.1:1", timeout=10)
    with pytest.raises(LeverError) as e:
        c.service("dev.lever", "x").invoke("y")
    assert e.value.code == "UNAVAILABLE"

    async def main():
        with pytest.raises(LeverError) as e:
            await c.service("dev.lever", "x").ainvoke("y")
        assert e.value.code == "UNAVAILABLE"
        with pytest.raises(LeverError) as e:
            await c.service("dev.lever", "x").ainvoke_chan("yChan")
        assert e.value.code == "UNAVAILABLE"

    asyncio.run(main())
    c.close()


def test_no_environment(monkeypatch, leverd):
    monkeypatch.delenv("LEVEROS_ENVIRONMENT", raising=False)
    c = Client(force_host=leverd.address)
    with pytest.raises(LeverError, match="Environment not specified and cannot be deduced"):
        c.service("", "basictestservice").invoke("BasicHello", "x")
    monkeypatch.setenv("LEVEROS_ENVIRONMENT", "DEV.lever")
    assert c.service("", "basictestservice").invoke("BasicHello", "x") == "hello x"
    assert c.invoke_url("/basictestservice/BasicHello", "y") == "hello y"
    assert c.invoke_url("lever://dev.lever/basictestservice/BasicHello", "z") == "hello z"


def test_deadlines(ep, probe):
    with pytest.raises(LeverError) as e:
        ep.invoke("slow", 5000, timeout=0.2)
    assert e.value.code == "DEADLINE_EXCEEDED"

    async def main():
        with pytest.raises(LeverError) as e:
            await probe.ainvoke("aslow", "deadline", 60000, timeout=0.2)
        assert e.value.code == "DEADLINE_EXCEEDED"
        s = await probe.ainvoke_chan("waitChan", "stream-deadline", timeout=0.3)
        with pytest.raises(LeverError) as e:
            await s.recv()
        assert e.value.code == "DEADLINE_EXCEEDED"
        s.release()

    asyncio.run(main())
    # The async handler saw its deadline pass: its task was cancelled.
    wait_until(lambda: "deadline cancelled" in probe.invoke("events"), what="the handler's task to be cancelled")
    assert ep.invoke("slow", 1, timeout=10) == "slow"


def test_cancel_a_stream_reaches_the_server(probe):
    s = probe.invoke_chan("waitChan", "cancel-sync")
    wait_until(lambda: "cancel-sync started" in probe.invoke("events"), what="the handler to start")
    s.cancel()
    with pytest.raises(LeverError) as e:
        s.recv()
    assert e.value.code == "CANCELLED"
    wait_until(lambda: "cancel-sync CANCELLED" in probe.invoke("events"), what="the server to see the cancel")
    s.release()


def test_releasing_an_async_stream_cancels_its_handler(probe):
    async def main():
        async with await probe.ainvoke_chan("aslowChan", "release-async"):
            await asyncio.to_thread(wait_until, lambda: "release-async started" in probe.invoke("events"))

    asyncio.run(main())
    wait_until(lambda: any(e.startswith("release-async ") and not e.endswith("started")
                           for e in probe.invoke("events")), what="the server to see the cancel")


def test_cancelling_an_asyncio_task_cancels_the_call(probe):
    async def main():
        task = asyncio.ensure_future(probe.ainvoke("aslow", "task-cancel", 60000))
        await asyncio.to_thread(wait_until, lambda: "task-cancel started" in probe.invoke("events"))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # asyncio.wait_for cancels the same way when its time is up.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(probe.ainvoke("aslow", "wait-for", 60000), 0.3)

    asyncio.run(main())
    # The server's handler saw both cancels at once (the calls' own deadline is 30 s away).
    wait_until(lambda: {"task-cancel cancelled", "wait-for cancelled"} <= set(probe.invoke("events")),
               timeout=10, what="the server to see the cancels")


def test_cancelling_an_asyncio_stream_task(ep):
    async def main():
        s = await ep.ainvoke_chan("ReqReplyStreamChan", "p")
        reader = asyncio.ensure_future(s.recv())
        await asyncio.sleep(0)
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
        # The cancelled receive lost nothing: the next one gets the reply.
        await s.send("m")
        assert await s.recv() == "p:m received"
        s.release()

    asyncio.run(main())


def test_recv_timeout_keeps_the_stream(ep):
    with ep.invoke_chan("ReqReplyStreamChan", "t") as s:
        with pytest.raises(TimeoutError):
            s.recv(timeout=0.05)
        s.send(1)
        assert s.recv(timeout=20) == "t:1 received"


def test_context(ep):
    c = ep.invoke("context")
    assert c == {"url": "lever://dev.lever/basictestservice//context", "environment": "dev.lever",
                 "service": "basictestservice", "resource": "", "method": "context", "source": "",
                 "has_deadline": True}
    assert ep.invoke("identity") == {"environment": "dev.lever", "service": "basictestservice"}


def test_output_goes_to_lever_logs(leverd, ep):
    assert ep.invoke("log", "a line from python") == "logged"
    wait_until(lambda: "a line from python" in leverd.lever("logs", "basictestservice").stdout,
               what="the line in lever logs")


def test_proto_json_mode(leverd):
    c = Client(force_host=leverd.address, proto_json=True, timeout=20)
    e = c.service("dev.lever", "basictestservice")
    assert e.invoke("BasicHello", "pj") == "hello pj"
    assert e.invoke("echo", {"a": [1, 2.5, None]}) == [{"a": [1, 2.5, None]}]
    c.close()
