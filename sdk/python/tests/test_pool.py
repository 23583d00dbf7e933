"""Pre-started runtimes (leverd --prestart, docs/operations.md): once a
Python service has started, leverd keeps a lever-serve-py started ahead, past
the interpreter's start-up and liblever's load; the next cold start of a
Python service is handed to it, the pool refills, and one that dies is
replaced."""
import json
import os
import platform
import shutil
import signal
import tempfile

from leveros import Client

from conftest import Leverd, py_runner, wait_until

SERVICE = "pypooltest"
# A service that says what it runs with.
SERVER = '''
import os
import sys

import leveros  # the SDK, without bundling it


def Where():
    return {"cwd": os.getcwd(), "instance": os.environ.get("LEVEROS_INSTANCE_ID"),
            "unbuffered": os.environ.get("PYTHONUNBUFFERED"), "pythonpath": os.environ.get("PYTHONPATH", ""),
            "listen": os.environ.get("LEVEROS_LISTEN_ADDR"), "argv": sys.argv[1:],
            "no_bytecode": sys.dont_write_bytecode, "client": hasattr(leveros, "Client")}
'''
READ_SYSCALL = "63" if platform.machine() == "aarch64" else "0"


def _proc(pid, name):
    try:
        with open(f"/proc/{pid}/{name}", "rb") as f:
            return f.read()
    except OSError:
        return b""


def pooled(leverd_pid):
    """leverd's lever-serve-py processes started ahead (their command line
    says --pool-fd=3, also once handed a service): {pid: ready}. Ready:
    blocked reading its hand-off on fd 3."""
    out = {}
    runner = os.fsencode(os.path.realpath(py_runner()))  # leverd resolves it
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        stat = _proc(name, "stat")
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) < 2 or int(fields[1]) != leverd_pid:
            continue
        argv = _proc(name, "cmdline").split(b"\0")
        if runner in argv and b"--pool-fd=3" in argv:
            out[int(name)] = _proc(name, "syscall").startswith(f"{READ_SYSCALL} 0x3 ".encode())
    return out


def instances(leverd):
    return [i for i in json.loads(leverd.lever("ps", "--json").stdout)["instances"] if i["service"] == SERVICE]


def test_a_cold_python_call_is_served_by_the_pre_started_runner_and_the_pool_is_refilled():
    d = Leverd(["--idle-timeout", "300ms"]).start()
    code = tempfile.mkdtemp(prefix="lvpy-pool-")
    try:
        os.chmod(code, 0o755)
        with open(os.path.join(code, "lever.json"), "w") as f:
            json.dump({"name": SERVICE, "pyEntry": "server.py"}, f)
        with open(os.path.join(code, "server.py"), "w") as f:
            f.write(SERVER)
        d.deploy(code)  # its first instance: Python is in use here
        client = Client(force_host=d.address, timeout=30, wait_for_ready=True)
        ep = client.service("dev.lever", SERVICE)

        def cold_call_takes(pid):
            wait_until(lambda: not instances(d), what="the service to scale to zero")
            where = ep.invoke("Where")
            (inst,) = instances(d)
            assert inst["pid"] == pid  # the pre-started process
            assert where["instance"] == inst["id"]
            assert "/code/" in where["cwd"]
            assert where["listen"].startswith("unix:/")
            assert where["argv"] == ["server.py"]
            assert where["unbuffered"] == "1" and where["no_bytecode"] and where["client"]
            return where

        first = wait_until(lambda: next((p for p, ready in pooled(d.proc.pid).items() if ready), None),
                           what="a ready lever-serve-py")
        # Before its hand-off it knows no service: the runner's environment.
        env = set(_proc(first, "environ").split(b"\0")) - {b""}
        assert not any(e.startswith(b"LEVEROS_") for e in env), env
        assert b"PYTHONUNBUFFERED=1" in env
        where = cold_call_takes(first)
        # What the runner's start-up set (its launcher's PYTHONPATH, if any)
        # stays under the instance's environment.
        start_path = next((e[len(b"PYTHONPATH="):] for e in env if e.startswith(b"PYTHONPATH=")), b"")
        assert where["pythonpath"] == os.fsdecode(start_path)

        refill = wait_until(lambda: next((p for p in pooled(d.proc.pid) if p != first), None), what="a refill")
        os.kill(refill, signal.SIGKILL)
        again = wait_until(
            lambda: next((p for p, ready in pooled(d.proc.pid).items() if p not in (first, refill) and ready), None),
            what="a replacement")
        cold_call_takes(again)
        client.close()
    finally:
        d.stop()
        shutil.rmtree(code, ignore_errors=True)
