"""Processes: a client program exits by itself; lever-serve-py on its own
(usage, a bad entry, serving a unix socket, draining on SIGTERM)."""
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading

import pytest

from conftest import FIXTURES, py_runner, wait_until
from leveros import Client, LeverError


def run_python(code, timeout=60, **kw):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, **kw)


def test_a_client_program_exits_without_hanging(leverd):
    # Calls of every kind, a stream left open and a client never closed: the
    # process still ends when the main thread does.
    r = run_python(f"""
        import asyncio
        from leveros import Client
        c = Client(force_host={leverd.address!r}, timeout=20, wait_for_ready=True)
        e = c.service("dev.lever", "basictestservice")
        print(e.invoke("BasicHello", "sync"))
        s = e.invoke_chan("ReqReplyStreamChan", "open")
        s.send(1)
        print(s.recv())
        async def main():
            print(await e.ainvoke("BasicHello", "async"))
            a = await e.ainvoke_chan("ReqReplyStreamChan", "aopen")
            await a.send(2)
            print(await a.recv())
            pending = asyncio.ensure_future(e.ainvoke("aslow", 60000))
            await asyncio.sleep(0.05)
        asyncio.run(main())
        print("done")
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["hello", "sync", "open:1", "received", "hello", "async", "aopen:2", "received",
                                "done"]


def test_an_idle_client_does_not_hold_the_process():
    r = run_python("""
        from leveros import Client
        c = Client(force_host="127.0.0.1:1")
        c.service("dev.lever", "x")
        print("ok")
    """)
    assert (r.returncode, r.stdout.strip()) == (0, "ok")


def test_usage_and_bad_entries():
    r = subprocess.run([py_runner()], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "usage: lever-serve-py" in r.stderr
    r = subprocess.run([py_runner(), "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "usage: lever-serve-py" in r.stderr
    with tempfile.TemporaryDirectory() as d:
        r = subprocess.run([py_runner(), "missing.py"], cwd=d, capture_output=True, text=True, timeout=30)
        assert r.returncode == 1 and "pyEntry missing.py not found" in r.stderr
        with open(os.path.join(d, "broken.py"), "w") as f:
            f.write("def oops(:\n")
        r = subprocess.run([py_runner(), "broken.py"], cwd=d, capture_output=True, text=True, timeout=30)
        assert r.returncode == 1 and "SyntaxError" in r.stderr


@pytest.fixture
def standalone():
    """lever-serve-py serving the basic fixture on a unix socket, outside leverd."""
    d = tempfile.mkdtemp(prefix="lvpy-serve-")
    sock = os.path.join(d, "s.sock")
    env = dict(os.environ, LEVEROS_LISTEN_ADDR=f"unix:{sock}", LEVEROS_ENVIRONMENT="dev.lever")
    p = subprocess.Popen([py_runner(), "server.py"], cwd=os.path.join(FIXTURES, "basic"), env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    c = Client(force_host=f"unix:{sock}", timeout=20, wait_for_ready=True)
    try:
        yield p, c.service("dev.lever", "basictestservice")
    finally:
        c.close()
        if p.poll() is None:
            p.kill()
        p.wait()
        import shutil
        shutil.rmtree(d, ignore_errors=True)


def test_serves_on_its_own_and_drains_on_sigterm(standalone):
    p, ep = standalone
    assert ep.invoke("BasicHello", "alone") == "hello alone"
    # A call in flight when SIGTERM comes is answered; then the process exits 0.
    result = {}

    def slow_call():
        try:
            result["v"] = ep.invoke("slow", 1000)
        except LeverError as e:  # pragma: no cover - reported below
            result["v"] = e

    t = threading.Thread(target=slow_call)
    t.start()
    wait_until(lambda: "slow 1000 started" in ep.invoke("events"), what="the handler to hold the call")
    p.send_signal(signal.SIGTERM)
    t.join(30)
    assert result["v"] == "slow"
    assert p.wait(30) == 0


def test_print_output_is_line_buffered(standalone):
    p, ep = standalone
    assert ep.invoke("log", "unbuffered line") == "logged"
    # The line arrives while the process is still running (no buffering to a pipe).
    assert p.stdout.readline().strip() == "unbuffered line"
