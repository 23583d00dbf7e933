"""A Python service and a Node service calling each other inside leverd, and
hello-py deployed with `lever deploy` answering the CLI, curl and the Node
client."""
import json
import os
import subprocess
import urllib.request

import pytest

from conftest import REPO


def test_python_calls_node(ep):
    assert ep.invoke("callNode", "py") == "node hello py"
    assert ep.invoke("acallNode", "apy") == "node hello apy"
    assert ep.invoke("callNodeStream", ["a", "b"]) == ["A", "B"]


def test_node_calls_python(client):
    node = client.service("dev.lever", "nodepeer")
    assert node.invoke("callPy", "from node") == "hello from node"
    assert node.invoke("callPyError", "x") == {"code": "REMOTE", "message": "error sent: x"}
    assert node.invoke("callPyBytes", b"\x01\x02") == b"\x02\x01"


def test_internal_calls_carry_the_source_environment(client):
    # nodepeer -> basictestservice.context: an internal call from dev.lever
    # (a call from outside has no source environment: test_features.test_context).
    ctx = client.service("dev.lever", "nodepeer").invoke("callPyContext")
    assert (ctx["source"], ctx["method"], ctx["service"]) == ("dev.lever", "context", "basictestservice")


@pytest.fixture(scope="module")
def hello(leverd):
    out = leverd.lever("deploy", os.path.join(REPO, "examples", "hello-py")).stdout
    assert "Deployed helloService to dev.lever" in out
    return leverd


def test_hello_py_answers_the_cli(hello):
    r = hello.lever("invoke", "/helloService/sayHello", '"world"')
    assert r.stdout.strip() == '"Hello, world!"'


def test_hello_py_answers_curl(hello):
    r = subprocess.run(["curl", "-sS", "-H", "Content-Type: application/json", "-X", "POST", "-d", '["world"]',
                        f"http://{hello.address}/helloService/sayHello?forceenv=dev.lever"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == "Hello, world!"
    # And Python's own HTTP client, for good measure.
    req = urllib.request.Request(f"http://{hello.address}/helloService/sayHello?forceenv=dev.lever",
                                 data=b'["http"]', headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert json.loads(resp.read()) == "Hello, http!"


def test_hello_py_answers_the_node_client(hello):
    script = ("const { Client } = require(process.argv[1]);"
              "const c = new Client({ forceHost: process.argv[2], timeout: 20000, waitForReady: true });"
              "c.service('dev.lever', 'helloService').invoke('sayHello', 'node')"
              ".then((r) => { console.log(JSON.stringify(r)); c.close(); })"
              ".catch((e) => { console.error(e); process.exit(1); });")
    r = subprocess.run(["node", "-e", script, os.path.join(REPO, "sdk", "node"), hello.address],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == "Hello, node!"


def test_hello_py_answers_the_python_client(hello, client):
    assert client.service("dev.lever", "helloService").invoke("sayHello", "python") == "Hello, python!"
