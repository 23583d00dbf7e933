"""The README's Python snippet, run as written (with the test leverd's
address) against hello-py, so that it never rots."""
import os
import re
import subprocess
import sys

from conftest import REPO


def readme_block(after, lang):
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        text = f.read()
    at = text.index(after)
    start = text.index(f"```{lang}\n", at) + len(lang) + 4
    return text[start:text.index("```", start)]


def test_the_readme_python_snippet(leverd):
    leverd.lever("deploy", os.path.join(REPO, "examples", "hello-py"))
    code = readme_block("From Python", "python")
    assert "127.0.0.1:8080" in code
    code = re.sub(r"127\.0\.0\.1:8080", leverd.address, code) + "\nprint(reply)\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "Hello, world!\n"
