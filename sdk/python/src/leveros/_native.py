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


class Shared:
    """A C handle shared by its Python owner and the C calls that use it:
    freed with `free_fn` once the owner released it and no call uses it.
    (liblever's handles must not be freed under a call in another thread.)"""

    __slots__ = ("ptr", "free_fn", "lock", "users", "released")

    def __init__(self, ptr, free_fn):
        import threading

        self.ptr = ptr
        self.free_fn = free_fn
        self.lock = threading.Lock()
        self.users = 0
        self.released = False

    def acquire(self):
        """The pointer, held until done(); ValueError once released."""
        with self.lock:
            if self.released:
                raise ValueError("released")
            self.users += 1
            return self.ptr

    def done(self):
        with self.lock:
            self.users -= 1
            ptr = self._detach_if_unused()
        if ptr is not None:
            self.free_fn(ptr)

    def release(self):
        with self.lock:
            if self.released:
                return
            self.released = True
            ptr = self._detach_if_unused()
        if ptr is not None:
            self.free_fn(ptr)

    def _detach_if_unused(self):
        if self.released and self.users == 0 and self.ptr is not None:
            ptr, self.ptr = self.ptr, None
            return ptr
        return None

    def __del__(self):
        # Dropped without release(): nothing can be using it any more.
        if self.ptr is not None and self.users == 0:
            self.free_fn(self.ptr)
            self.ptr = None
