"""Builds leveros._lever, the cffi extension over liblever (lever.h).

cffi's API mode: at install time this compiles a small C extension that calls
liblever directly (and carries csrc/bridge.c, the completion queue of the
asyncio client). It needs a C compiler, the Python headers (Debian:
python3-dev), lever.h and liblever.so. Where they are found, first hit wins:

  1. LEVER_INCLUDE_DIR (lever.h) and LEVER_LIB_DIR (liblever.so);
  2. LEVER_BUILD_DIR, a CMake build dir of this repository
     (<dir>/sdk/c/liblever.so), with lever.h from this source tree;
  3. pkg-config lever (an installed liblever; PKG_CONFIG_PATH for others);
  4. this source tree's default build dir, <repo>/build/main.

The extension gets an rpath to the library's directory, so it loads without
LD_LIBRARY_PATH; rebuilding liblever in place needs no reinstall, moving it
does.

Why cffi API mode and not ctypes (bench/ffi_overhead.py measures both; the
figures are in docs/sdk-python.md): a Python value crosses as a lever_value
tree, a few C calls per element, and a call through ctypes costs several
times one through a compiled cffi module. API mode also checks our
declarations against lever.h at compile time, and lets the asyncio bridge
(csrc/bridge.c) be C, so liblever's gRPC threads never wait for the GIL.
"""
import os
import re
import shlex
import subprocess

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def _pkg_config(*args):
    try:
        out = subprocess.run(["pkg-config", *args, "lever"], check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return shlex.split(out.stdout)


def find_liblever():
    """(include_dir, lib_dir, how) or raises with what to do."""
    tree_include = os.path.join(REPO, "sdk", "c", "include")
    inc, lib = os.environ.get("LEVER_INCLUDE_DIR"), os.environ.get("LEVER_LIB_DIR")
    if inc or lib:
        return inc or tree_include, lib, "LEVER_INCLUDE_DIR/LEVER_LIB_DIR"
    build = os.environ.get("LEVER_BUILD_DIR")
    if build:
        return tree_include, os.path.join(os.path.abspath(build), "sdk", "c"), "LEVER_BUILD_DIR"
    cflags, libs = _pkg_config("--cflags-only-I"), _pkg_config("--libs-only-L")
    if cflags is not None and libs is not None:
        incs = [f[2:] for f in cflags if f.startswith("-I")]
        lib_dirs = [f[2:] for f in libs if f.startswith("-L")]
        return (incs[0] if incs else "/usr/include"), (lib_dirs[0] if lib_dirs else None), "pkg-config lever"
    return tree_include, os.path.join(REPO, "build", "main", "sdk", "c"), "the source tree's build/main"


def cdef_of(header_text):
    """The declarations of lever.h in the form cffi's cdef reads: no
    preprocessor lines or comments, the LEVER_EXTERN/LEVER_CALLBACK macros
    expanded, and the version constants as `#define NAME N`."""
    consts = re.findall(r"^#define (LEVER_\w+_VERSION|LEVER_VERSION_(?:MAJOR|MINOR|PATCH)) (\d+)\s*$",
                        header_text, re.M)
    text = re.sub(r"/\*.*?\*/", "", header_text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"#ifdef __cplusplus.*?#endif", "", text, flags=re.S)
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    text = re.sub(r"LEVER_(?:EXTERN|CALLBACK)\(([^)]*)\)", r"\1", text)
    return text + "\n" + "\n".join(f"#define {name} {value}" for name, value in consts) + "\n"


include_dir, lib_dir, how = find_liblever()
header = os.path.join(include_dir, "lever.h")
if not os.path.exists(header):
    raise SystemExit(f"leveros: lever.h not found in {include_dir} (from {how}). Set LEVER_INCLUDE_DIR, "
                     "LEVER_BUILD_DIR or PKG_CONFIG_PATH; see docs/sdk-python.md")
if lib_dir and not os.path.exists(os.path.join(lib_dir, "liblever.so")):
    raise SystemExit(f"leveros: liblever.so not found in {lib_dir} (from {how}). Build it first "
                     "(cmake --build build/main --target lever) or set LEVER_LIB_DIR, LEVER_BUILD_DIR or "
                     "PKG_CONFIG_PATH; see docs/sdk-python.md")

with open(header, encoding="utf-8") as f:
    lever_h = f.read()
with open(os.path.join(HERE, "csrc", "bridge.h"), encoding="utf-8") as f:
    bridge_h = f.read()

ffibuilder = FFI()
ffibuilder.cdef(cdef_of(lever_h))
ffibuilder.cdef(cdef_of(bridge_h.split('#include "lever.h"', 1)[1]))
# The server's handlers: liblever runs them on its worker threads (which may
# block), and cffi takes the GIL for them there.
ffibuilder.cdef("""
extern "Python" void _lp_unary(lever_call *call, void *payload);
extern "Python" void _lp_stream(lever_stream *stream, void *payload);
""")
ffibuilder.set_source(
    "leveros._lever",
    """
#include "lever.h"
#if LEVER_VERSION_MAJOR != 0 || LEVER_VERSION_MINOR < 2
#error "leveros needs liblever 0.2 (lever.h LEVER_VERSION_MAJOR 0, MINOR >= 2)"
#endif
#include "bridge.h"
""",
    sources=[os.path.relpath(os.path.join(HERE, "csrc", "bridge.c"))],
    include_dirs=[include_dir, os.path.join(HERE, "csrc")],
    libraries=["lever"],
    library_dirs=[lib_dir] if lib_dir else [],
    runtime_library_dirs=[os.path.abspath(lib_dir)] if lib_dir else [],
    extra_compile_args=["-O2", "-Wall"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
