"""The Python client's side of the SDK round-trip benchmark (tests/bench/sdk/run.sh).

    python invoke_bench.py <leverd host:port> <calls>

Sequential: the blocking invoke() (the GIL is released while liblever waits).
64 in flight: ainvoke() from one asyncio loop.
"""
import asyncio
import sys
import time

from leveros import Client


def main():
    addr, n = sys.argv[1], int(sys.argv[2])
    client = Client(force_host=addr)
    ep = client.service("dev.lever", "helloService")
    for _ in range(200):
        ep.invoke("sayHello", "warm")
    us = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        ep.invoke("sayHello", "world")
        us.append((time.perf_counter_ns() - t0) / 1000)
    us.sort()

    async def flight():
        started = 0

        async def worker():
            nonlocal started
            while started < n:
                started += 1
                await ep.ainvoke("sayHello", "world")

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(64)))
        return time.perf_counter() - t0

    secs = asyncio.run(flight())
    print(f"python sequential p50 {us[len(us) // 2]:.0f} us p99 {us[int(len(us) * 0.99)]:.0f} us | "
          f"64 in flight {n / secs:.0f} calls/s")
    client.close()


if __name__ == "__main__":
    main()
