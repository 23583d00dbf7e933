"""lever-serve-py <pyEntry>: what leverd runs for a service with a pyEntry.

Loads <code dir>/<pyEntry> as a module, serves its functions (see
leveros.server) on LEVEROS_LISTEN_ADDR (default 0.0.0.0:3837), runs async
handlers on the main thread's event loop, and on SIGTERM/SIGINT stops
gracefully: no new calls, 5 s for those in flight, then exit.

lever-serve-py --pool-fd=N: pre-started by leverd (--prestart) before it
knows its service, with this module and liblever loaded. It writes "R" on fd
N and waits there for its hand-off: the order leverd's process runtime
encodes (host/src/process_runtime.cc: a 48-byte header {size, argc, envc,
flags, limits, uid, gid, group}, then NUL-terminated exe, code dir, argv,
env). With a per-service user (flag 8) it runs as root until then and
switches to that user first. It then moves to the code dir, takes the
instance's environment over its own start-up one (so the PYTHONPATH its
launcher set stays), and goes on as `lever-serve-py <pyEntry>` would have. Everything read at interpreter start-up (PYTHONUNBUFFERED,
PYTHONDONTWRITEBYTECODE, PYTHONPATH) is the same for every service, so it is
set when the runner starts.
"""
import asyncio
import importlib.util
import os
import re
import signal
import socket
import struct
import sys
import threading
import traceback

from ._native import lib
from .server import Server

GRACE_SECONDS = 5.0
# Whatever happens to the graceful stop, the process ends this long after
# the signal (handlers that never return cannot hold it).
HARD_EXIT_SECONDS = 8.0

MAX_ORDER = 64 << 10  # host/src/process_runtime.cc kMaxOrder
ORDER_HEADER = 48  # sizeof(OrderHeader)
ORDER_IDENTITY = 8  # kIdentity: switch to the service's user (uid, gid, group at byte 32)

USAGE = "usage: lever-serve-py <pyEntry>   (run by leverd in the service's code dir)\n"


def load_entry(entry):
    """Imports the entry file as a module named after it, with its directory
    and the code dir on sys.path (so the service imports its own modules)."""
    path = os.path.abspath(entry)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"pyEntry {entry} not found in {os.getcwd()}")
    for d in (os.getcwd(), os.path.dirname(path)):
        if d not in sys.path:
            sys.path.insert(0, d)
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _exit(code):
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except Exception:
            pass
    # No interpreter teardown: liblever's threads may still be running
    # handlers, and nothing is left to clean up that the kernel does not.
    os._exit(code)


def _become_user(uid, gid, group):
    """Becomes the service's own user (real, effective and saved ids), or
    exits: no service code runs as root."""
    try:
        if uid == 0 or gid == 0:
            raise ValueError("uid or gid 0")
        os.setgroups([group] if group else [])
        os.setgid(gid)
        os.setuid(uid)
        if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
            raise ValueError(f"still {os.getresuid()}")
    except (OSError, ValueError) as err:
        sys.stderr.write(f"lever-serve-py: cannot switch to the service's user {uid}: {err}\n")
        _exit(127)


def _read_order(sock):
    """The order from leverd on sock (blocking), and the fd that came with it
    (SCM_RIGHTS: the instance's listening socket, with socket activation) or
    None; exits quietly at EOF (the runner was not needed after all)."""
    buf = b""
    size = 0
    passed = []
    while size == 0 or len(buf) < size:
        chunk, fds, _, _ = socket.recv_fds(sock, 65536 if size == 0 else size - len(buf), 1)
        passed += fds
        if not chunk:
            _exit(0)
        buf += chunk
        if size == 0 and len(buf) >= ORDER_HEADER:
            size = struct.unpack_from("<I", buf)[0]
            if not ORDER_HEADER <= size <= MAX_ORDER:
                raise ValueError("lever-serve-py: a bad hand-off from leverd")
    for extra in passed[1:]:
        os.close(extra)  # one socket is all an order carries
    argc, envc, flags = struct.unpack_from("<III", buf, 4)
    identity = struct.unpack_from("<III", buf, 32) if flags & ORDER_IDENTITY else None
    strings = buf[ORDER_HEADER:size].split(b"\0")
    if len(strings) < 2 + argc + envc or argc < 2:
        raise ValueError("lever-serve-py: a bad hand-off from leverd")
    decode = os.fsdecode
    return (decode(strings[1]), [decode(a) for a in strings[2 : 2 + argc]],
            [decode(e) for e in strings[2 + argc : 2 + argc + envc]], passed[0] if passed else None, identity)


def _hand_off(fd):
    """Waits for the service and becomes its instance; returns main's argv."""
    sock = socket.socket(fileno=fd)
    sock.sendall(b"R")
    code_dir, argv, env, passed, identity = _read_order(sock)
    sock.close()
    if identity is not None:
        _become_user(*identity)
    os.chdir(code_dir)
    for kv in env:
        key, eq, value = kv.partition("=")
        if eq and key:
            os.environ[key] = value
    if passed is not None:
        # It goes where LEVEROS_LISTEN_FD says, as for a fresh start.
        listen_fd = os.environ.get("LEVEROS_LISTEN_FD", "")
        if listen_fd.isdigit() and int(listen_fd) >= 3:
            if int(listen_fd) != passed:
                os.dup2(passed, int(listen_fd))
                os.close(passed)
            os.set_inheritable(int(listen_fd), True)
        else:
            os.close(passed)
    sys.argv = [sys.argv[0]] + argv[1:]
    return argv[1:]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    pool = re.fullmatch(r"--pool-fd=(\d+)", argv[0]) if len(argv) == 1 else None
    if pool:
        lib.lp_limit_malloc_arenas(2)  # before any thread, as below
        argv = _hand_off(int(pool.group(1)))
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        sys.stderr.write(USAGE)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    for f in (sys.stdout, sys.stderr):
        f.reconfigure(line_buffering=True)  # each line reaches `lever logs` as it is printed
    # Before any thread starts: with one malloc arena per thread, gRPC's and
    # the workers' threads fragment memory that the instance's limit counts
    # (a burst of 3,000 calls peaked 20-40 % lower with 2 arenas, measured).
    lib.lp_limit_malloc_arenas(2)
    try:
        module = load_entry(argv[0])
    except BaseException:
        traceback.print_exc()
        _exit(1)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = Server(module, listen_addr=os.environ.get("LEVEROS_LISTEN_ADDR") or None, loop=loop)
    server.start()
    stopping = []

    def stop():
        if stopping:
            return
        stopping.append(True)
        t = threading.Timer(HARD_EXIT_SECONDS, _exit, (0,))
        t.daemon = True
        t.start()
        # server.stop blocks until the calls in flight are done; the loop
        # keeps running the async ones meanwhile.
        loop.run_in_executor(None, server.stop, GRACE_SECONDS).add_done_callback(lambda _: loop.stop())

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    loop.run_forever()
    _exit(0)


if __name__ == "__main__":
    sys.exit(main())
