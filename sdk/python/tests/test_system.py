"""The original's system test (reference §11.1), blocking and asyncio."""
import asyncio

import pytest

from leveros import LeverError


def test_basic_hello(ep):
    assert ep.invoke("BasicHello", "name") == "hello name"


def test_basic_error(ep):
    with pytest.raises(LeverError) as e:
        ep.invoke("BasicError", "some test")
    assert str(e.value) == "error sent: some test"
    assert e.value.code == "REMOTE"
    assert e.value.remote == "error sent: some test"


def test_req_reply_stream(ep):
    s = ep.invoke_chan("ReqReplyStreamChan", "some test")
    for msg in [1, 2, "hello", "world", "test", 123]:
        s.send(msg)
        assert s.recv() == f"some test:{msg} received"
    s.close()
    with pytest.raises(EOFError):
        s.recv()
    s.release()


def test_async_forms(ep):
    async def main():
        assert await ep.ainvoke("BasicHello", "name") == "hello name"
        with pytest.raises(LeverError) as e:
            await ep.ainvoke("BasicError", "some test")
        assert str(e.value) == "error sent: some test"
        async with await ep.ainvoke_chan("ReqReplyStreamChan", "some test") as s:
            for msg in [1, 2, "hello", "world", "test", 123]:
                await s.send(msg)
                assert await s.recv() == f"some test:{msg} received"
            s.close()
            with pytest.raises(EOFError):
                await s.recv()

    asyncio.run(main())
