"""Many calls and streams in flight at once, from asyncio and from threads."""
import asyncio
import threading

from leveros import Client


def test_1000_concurrent_invokes_from_asyncio(ep):
    async def main():
        return await asyncio.wait_for(
            asyncio.gather(*(ep.ainvoke("BasicHello", f"n{i}") for i in range(1000))), 60)

    replies = asyncio.run(main())
    assert replies == [f"hello n{i}" for i in range(1000)]


def test_1000_concurrent_async_handler_calls(ep):
    async def main():
        return await asyncio.wait_for(asyncio.gather(*(ep.ainvoke("add", i, 1) for i in range(1000))), 60)

    assert asyncio.run(main()) == [i + 1 for i in range(1000)]


def test_100_concurrent_streams(ep):
    async def one(k):
        async with await ep.ainvoke_chan("ReqReplyStreamChan", f"s{k}") as s:
            out = []
            for i in range(10):
                await s.send(i)
                out.append(await s.recv())
            s.close()
            return out

    async def main():
        return await asyncio.wait_for(asyncio.gather(*(one(k) for k in range(100))), 60)

    for k, out in enumerate(asyncio.run(main())):
        assert out == [f"s{k}:{i} received" for i in range(10)]


def test_blocking_calls_from_many_threads(ep):
    results = {}
    errors = []

    def worker(t):
        try:
            results[t] = [ep.invoke("BasicHello", f"{t}-{i}") for i in range(50)]
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert all(results[t] == [f"hello {t}-{i}" for i in range(50)] for t in range(16))


def test_one_client_on_several_event_loops(leverd):
    c = Client(force_host=leverd.address, timeout=20, wait_for_ready=True)
    e = c.service("dev.lever", "basictestservice")

    def in_thread(out, k):
        out[k] = asyncio.run(e.ainvoke("BasicHello", f"loop{k}"))

    out = {}
    threads = [threading.Thread(target=in_thread, args=(out, k)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert out == {k: f"hello loop{k}" for k in range(4)}
    assert asyncio.run(e.ainvoke("BasicHello", "again")) == "hello again"
    c.close()
