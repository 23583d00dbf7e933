"""Loads leveros._lever, the compiled cffi module over liblever, with an
error that says how to fix a missing build."""
try:
    from ._lever import ffi, lib  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the installation
    raise ImportError(
        f"leveros: cannot load the native module leveros._lever ({e}).\n"
        "It is compiled when the package is installed: `pip install ./sdk/python` with liblever built\n"
        "(LEVER_BUILD_DIR=<cmake build dir>, or PKG_CONFIG_PATH for an installed liblever); see docs/sdk-python.md"
    ) from e
