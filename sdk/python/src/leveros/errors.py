"""LeverError: what every failed call raises."""
from __future__ import annotations

import json
from typing import Any, Optional

from ._native import ffi, lib
from .values import from_lever

STATUS_NAMES = ("OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
                "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
                "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED")
STATUS = {name: i for i, name in enumerate(STATUS_NAMES)}

# lever.h return codes.
OK, ERROR, EAPP, EINVALID, EEND, ETIMEOUT = 0, -1, -2, -3, -4, -5


class LeverError(Exception):
    """A failed call.

    code:   "REMOTE" when the remote handler failed (an application error,
            sent in-band; `remote` holds the value it sent), else the gRPC
            status name of a platform error ("UNAVAILABLE", "NOT_FOUND",
            "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "CANCELLED", ...).
    status: the gRPC status number (2 for application errors).
    remote: the remote error value (str, dict, bytes, ...), or None.

    str(err) is the message: for an application error the remote string
    itself (the original system test's BasicError gives
    "error sent: some test"), bytes as UTF-8, other values as JSON.
    """

    def __init__(self, message: str, code: str = "UNKNOWN", status: Optional[int] = None, remote: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = STATUS.get(code, 2) if status is None else status
        self.remote = remote

    @classmethod
    def app(cls, value: Any) -> "LeverError":
        """An application error carrying `value` (any sendable value): raise
        it from a handler to send that value as the error."""
        return cls(remote_message(value), "REMOTE", 2, value)

    def __repr__(self):
        return f"LeverError({self.message!r}, code={self.code!r})"


def remote_message(remote: Any) -> str:
    if isinstance(remote, str):
        return remote
    if isinstance(remote, (bytes, bytearray)):
        return bytes(remote).decode("utf-8", "replace")
    try:
        return json.dumps(remote, default=lambda o: repr(o))
    except (TypeError, ValueError):
        return repr(remote)


def from_native(rc, err):
    """The LeverError of a lever.h failure (rc < 0) with its lever_error
    (borrowed, may be NULL)."""
    msg = ffi.string(lib.lever_error_message(err)).decode("utf-8", "replace") if err != ffi.NULL else ""
    if rc == EAPP:
        remote = from_lever(lib.lever_error_value(err)) if err != ffi.NULL else None
        return LeverError(remote_message(remote), "REMOTE", 2, remote)
    if rc == EINVALID:
        return LeverError(msg or "lever: invalid argument", "INVALID_ARGUMENT", 3)
    if rc == ETIMEOUT:
        return LeverError(msg or "lever: timed out", "DEADLINE_EXCEEDED", 4)
    status = lib.lever_error_status(err) if err != ffi.NULL else 2
    name = STATUS_NAMES[status] if 0 <= status < len(STATUS_NAMES) else "UNKNOWN"
    return LeverError(msg or "lever: call failed", name, status)


def take_error(rc, errp):
    """from_native for an out-parameter (lever_error **), then frees it."""
    err = errp[0]
    try:
        return from_native(rc, err)
    finally:
        lib.lever_error_free(err)


def usage(message, code="INVALID_ARGUMENT"):
    """A LeverError for a misuse found before anything is sent."""
    return LeverError(message, code)


def error_value(exc: BaseException) -> Any:
    """What a handler's exception sends as the application error: the remote
    value of a LeverError that carries one (also one passed on from a nested
    call), the bytes of an exception whose only argument is bytes, else
    str(exc) (the original's rule: an Error sends its message)."""
    if isinstance(exc, LeverError) and exc.code == "REMOTE":
        return exc.remote
    if len(getattr(exc, "args", ())) == 1 and isinstance(exc.args[0], (bytes, bytearray)):
        return bytes(exc.args[0])
    text = str(exc)
    return text if text else type(exc).__name__
