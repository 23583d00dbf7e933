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
import socket
import struct
import subprocess
import tempfile

import pytest

from leveros import Client, LeverError

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
RECEIVING = ("63", "212") if platform.machine() == "aarch64" else ("0", "47")  # read, recvmsg


def _proc(pid, name):
    try:
        with open(f"/proc/{pid}/{name}", "rb") as f:
            return f.read()
    except OSError:
        return b""


def pooled(leverd_pid):
    """leverd's lever-serve-py processes started ahead (their command line
    says --pool-fd=3, also once handed a service): {pid: ready}. Ready:
    blocked receiving its hand-off on fd 3 (read or recvmsg)."""
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
            call = _proc(name, "syscall").decode().split(" ")
            out[int(name)] = len(call) > 1 and call[0] in RECEIVING and call[1] == "0x3"
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
            assert inst["socket"] == "inherited"  # it serves on the socket leverd made
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


def _ready_runner():
    """A lever-serve-py --pool-fd started as leverd would, once it said it is
    ready: (the process, our end of its order socket)."""
    ours, theirs = socket.socketpair()
    p = subprocess.Popen([py_runner(), f"--pool-fd={theirs.fileno()}"], pass_fds=(theirs.fileno(),),
                         env={"PATH": os.environ["PATH"]}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    theirs.close()
    ours.settimeout(20)
    assert ours.recv(1) == b"R"
    return p, ours


def _call_until_answered(path, method):
    """A call with a fresh client until one is answered: a liblever without
    socket activation binds the path anew once it has loaded the entry, and a
    connection made before that waits on the passed socket, unaccepted."""
    def call():
        c = Client(force_host=f"unix:{path}", timeout=2, wait_for_ready=True)
        try:
            return c.service("dev.lever", SERVICE).invoke(method)
        except LeverError:
            return None
        finally:
            c.close()

    return wait_until(call, what="a call")


def _order(code_dir, argv, env, identity=None):
    """An order as leverd's process runtime encodes it (host/src/process_runtime.cc):
    with identity (uid, gid, group), flag 8, the user to switch to."""
    strings = [argv[0], code_dir, *argv, *env]
    body = b"".join(os.fsencode(s) + b"\0" for s in strings)
    flags, (uid, gid, group) = (8, identity) if identity else (0, (0, 0, 0))
    return struct.pack("<IIIIQQIIII", 48 + len(body), len(argv), len(env), flags, 0, 0, uid, gid, group, 0) + body


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root (CI runs the tests as root)")
def test_a_runner_started_as_root_becomes_the_user_its_order_names_before_loading_the_service():
    """Per-service users (docs/security.md): a runner pre-started as root
    switches to the order's uid, gid and group before it reads the
    service's code, which it then reads through its group only."""
    d = tempfile.mkdtemp(prefix="lvpy-user-")
    uid, gid, group = 61999, 61999, 61998
    try:
        code = os.path.join(d, "code")
        os.mkdir(code)
        os.chmod(d, 0o755)
        with open(os.path.join(code, "server.py"), "w") as f:
            f.write(SERVER + "\n\ndef Ids():\n    return [os.getresuid(), os.getresgid(), os.getgroups()]\n")
        os.chown(code, 0, gid)
        os.chmod(code, 0o750)
        run = os.path.join(d, "run")
        os.mkdir(run)
        os.chmod(run, 0o1733)
        path = os.path.join(run, "s.sock")
        p, ours = _ready_runner()
        try:
            env = [f"LEVEROS_LISTEN_ADDR=unix:{path}", "LEVEROS_INSTANCE_ID=switched", "PATH=" + os.environ["PATH"]]
            ours.sendall(_order(code, [py_runner(), "server.py"], env, (uid, gid, group)))
            ours.close()
            ids = _call_until_answered(path, "Ids")
            assert ids == [[uid] * 3, [gid] * 3, [group]]
        finally:
            p.kill()
            p.wait()
        # A uid of 0 in an order is refused: the runner exits without
        # loading the service.
        p, ours = _ready_runner()
        ours.sendall(_order(code, [py_runner(), "server.py"], [], (0, 0, 0)))
        out, _ = p.communicate(timeout=20)
        assert p.returncode == 127
        assert b"cannot switch to the service's user 0" in out
        ours.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_a_runner_handed_a_listening_socket_keeps_it_where_leveros_listen_fd_says():
    """Socket activation: the instance's listening socket rides on the order
    (SCM_RIGHTS); the runner puts it on LEVEROS_LISTEN_FD, and serves."""
    d = tempfile.mkdtemp(prefix="lvpy-hand-")
    try:
        path = os.path.join(d, "s.sock")
        with open(os.path.join(d, "server.py"), "w") as f:
            f.write(SERVER)
        p, ours = _ready_runner()
        try:
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(path)
            listener.listen()
            env = [f"LEVEROS_LISTEN_ADDR=unix:{path}", "LEVEROS_LISTEN_FD=3", f"LEVEROS_LISTEN_PID={p.pid}",
                   "LEVEROS_INSTANCE_ID=handed", "PATH=" + os.environ["PATH"]]
            socket.send_fds(ours, [_order(d, [py_runner(), "server.py"], env)], [listener.fileno()])
            ours.close()
            want = f"socket:[{os.fstat(listener.fileno()).st_ino}]"
            wait_until(lambda: _readlink(f"/proc/{p.pid}/fd/3") == want, what="the socket on fd 3")
            listener.close()
            where = _call_until_answered(path, "Where")
            assert where["instance"] == "handed" and where["cwd"] == d and where["argv"] == ["server.py"]
        finally:
            p.kill()
            p.wait()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _readlink(path):
    try:
        return os.readlink(path)
    except OSError:
        return ""
