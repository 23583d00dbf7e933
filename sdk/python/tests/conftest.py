"""A real leverd for the suite: started on port 0 with its own data dir,
running pyEntry services through this interpreter's lever-serve-py and
jsEntry services through the Node SDK's lever-serve, driven with the real
`lever` CLI. Binaries come from $LEVER_BUILD_DIR (default <repo>/build/main)."""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from leveros import Client

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
BUILD = os.path.abspath(os.environ.get("LEVER_BUILD_DIR") or os.path.join(REPO, "build", "main"))
LEVERD = os.path.join(BUILD, "cli", "leverd")
LEVER = os.path.join(BUILD, "cli", "lever")
JS_RUNNER = os.path.join(REPO, "sdk", "node", "bin", "lever-serve")
FIXTURES = os.path.join(HERE, "fixtures")


def py_runner():
    """The lever-serve-py installed with this interpreter's leveros."""
    p = os.path.join(os.path.dirname(sys.executable), "lever-serve-py")
    return p if os.path.exists(p) else shutil.which("lever-serve-py")


def wait_until(cond, timeout=20.0, what="condition"):
    """Polls `cond` until it is true (bounded); returns its value."""
    end = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


class Leverd:
    def __init__(self, flags=()):
        self.flags = list(flags)  # more leverd flags
        for p in (LEVERD, LEVER):
            if not os.path.exists(p):
                raise RuntimeError(f"{p} not found: build leverd and lever, and set LEVER_BUILD_DIR")
        self.dir = tempfile.mkdtemp(prefix="lvpy-")
        os.chmod(self.dir, 0o755)  # a root leverd's instances run as another user (docs/security.md)
        self.log = []
        self.address = None
        self._listening = threading.Event()

    def start(self):
        self.proc = subprocess.Popen(
            [LEVERD, "--listen", "127.0.0.1:0", "--data-dir", os.path.join(self.dir, "data"), "--js-runner",
             JS_RUNNER, "--py-runner", py_runner(), *self.flags],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._read_log, daemon=True).start()
        if not self._listening.wait(15) or self.address is None:
            self.stop()
            raise RuntimeError("leverd did not start:\n" + "".join(self.log))
        return self

    def _read_log(self):
        for line in self.proc.stderr:
            self.log.append(line)
            m = re.search(r"listening on (127\.0\.0\.1:\d+)", line)
            if m and self.address is None:
                self.address = m.group(1)
                self._listening.set()
        self._listening.set()

    def lever(self, *args, check=True, input=None):
        r = subprocess.run([LEVER, "-H", self.address, *args], capture_output=True, text=True, timeout=60,
                           input=input)
        if check and r.returncode != 0:
            raise AssertionError(f"lever {' '.join(args)} failed ({r.returncode}): {r.stderr}{r.stdout}")
        return r

    def deploy(self, path, env="dev.lever"):
        path = path if os.path.isabs(path) else os.path.join(FIXTURES, path)
        return self.lever("--env", env, "deploy", path).stdout

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def leverd():
    d = Leverd().start()
    try:
        for f in ("basic", "resources", "nodepeer", "probe"):
            d.deploy(f)
        yield d
    finally:
        d.stop()


@pytest.fixture(scope="session")
def client(leverd):
    c = Client(force_host=leverd.address, timeout=30, wait_for_ready=True)
    yield c
    c.close()


@pytest.fixture(scope="session")
def probe(client):
    """pyprobe through one resource: every call reaches the same instance
    (started here, so that short deadlines do not cover a cold start)."""
    p = client.resource("dev.lever", "pyprobe", "probe")
    assert isinstance(p.invoke("events"), list)
    return p


@pytest.fixture(scope="session")
def ep(client):
    e = client.service("dev.lever", "basictestservice")
    assert e.invoke("BasicHello", "warm") == "hello warm"
    return e
