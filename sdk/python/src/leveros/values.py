"""Python values <-> lever_value trees (lever.h).

| Python                              | on the wire      | back in Python |
|-------------------------------------|------------------|----------------|
| None                                | null             | None           |
| bool                                | bool             | bool           |
| int in [-2**63, 2**64 - 1]          | int / uint       | int            |
| float                               | double           | float          |
| str                                 | string (UTF-8)   | str            |
| bytes, bytearray, memoryview        | bytes            | bytes          |
| list, tuple                         | array            | list           |
| dict with str keys                  | map (in order)   | dict           |

Subclasses travel as their base, other numbers.Integral / numbers.Real as int
/ float, other Mappings as maps. Integers are exact to 64 bits; beyond that
OverflowError. Anything else (sets, objects, non-str keys, str with lone
surrogates, complex numbers) is a TypeError, and
nesting deeper than MAX_DEPTH (a cycle) is a ValueError, before anything is
sent.
"""
import collections.abc
import numbers

from ._native import ffi, lib

MAX_DEPTH = 100
INT64_MIN = -(1 << 63)
UINT64_MAX = (1 << 64) - 1
INT64_MAX = (1 << 63) - 1

T_NULL, T_BOOL, T_INT, T_UINT, T_DOUBLE, T_STRING, T_BYTES, T_ARRAY, T_MAP = range(9)

_free = lib.lever_value_free


def _must(v):
    if v == ffi.NULL:
        raise MemoryError("lever: out of memory")
    return v


def _enc_str(s):
    try:
        b = s.encode("utf-8")
    except UnicodeEncodeError as e:
        raise TypeError(f"lever: strings must be valid Unicode text ({e.reason} at {e.start})") from None
    return lib.lever_value_new_string(b, len(b))


def _enc_int(n):
    if INT64_MIN <= n <= INT64_MAX:
        return lib.lever_value_new_int(n)
    if INT64_MAX < n <= UINT64_MAX:
        return lib.lever_value_new_uint(n)
    raise OverflowError(f"lever: integer {n} does not fit in 64 bits (Lever carries -2**63 .. 2**64-1 exactly)")


def _enc(obj, depth):
    t = type(obj)
    if t is str:
        v = _enc_str(obj)
    elif t is int:
        v = _enc_int(obj)
    elif obj is None:
        v = lib.lever_value_new_null()
    elif t is bool:
        v = lib.lever_value_new_bool(obj)
    elif t is float:
        v = lib.lever_value_new_double(obj)
    elif t is bytes or t is bytearray or t is memoryview:
        buf = ffi.from_buffer(obj)
        v = lib.lever_value_new_bytes(buf, len(buf))
    elif t is list or t is tuple:
        return _enc_array(obj, depth)
    elif t is dict:
        return _enc_map(obj, depth)
    else:
        return _enc_subclass(obj, depth)
    return _must(v)


def _enc_subclass(obj, depth):
    # Subclasses (IntEnum, str enums, OrderedDict, namedtuple...) by their base.
    if isinstance(obj, bool):
        return _must(lib.lever_value_new_bool(bool(obj)))
    if isinstance(obj, int):
        return _must(_enc_int(int(obj)))
    if isinstance(obj, float):
        return _must(lib.lever_value_new_double(float(obj)))
    if isinstance(obj, str):
        return _must(_enc_str(str(obj)))
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return _enc(bytes(obj), depth)
    if isinstance(obj, (list, tuple)):
        return _enc_array(obj, depth)
    if isinstance(obj, dict):
        return _enc_map(obj, depth)
    # Other numbers and mappings (numpy scalars, MappingProxyType, ...).
    if isinstance(obj, numbers.Integral):
        return _must(_enc_int(int(obj)))
    if isinstance(obj, numbers.Real):
        return _must(lib.lever_value_new_double(float(obj)))
    if isinstance(obj, collections.abc.Mapping):
        return _enc_map(obj, depth)
    raise TypeError(f"lever: cannot send a value of type {type(obj).__name__} "
                    "(use None, bool, int, float, str, bytes, list, tuple or dict)")


def _enc_array(items, depth):
    if depth >= MAX_DEPTH:
        raise ValueError(f"lever: value nested deeper than {MAX_DEPTH} levels (is it circular?)")
    a = _must(lib.lever_value_new_array())
    try:
        for item in items:
            # array_push takes the item, also on error.
            if lib.lever_value_array_push(a, _enc(item, depth + 1)) != 0:
                raise MemoryError("lever: out of memory")
    except BaseException:
        _free(a)
        raise
    return a


def _enc_map(d, depth):
    if depth >= MAX_DEPTH:
        raise ValueError(f"lever: value nested deeper than {MAX_DEPTH} levels (is it circular?)")
    m = _must(lib.lever_value_new_map())
    try:
        for k, item in d.items():
            if not isinstance(k, str):
                raise TypeError(f"lever: map keys must be str, not {type(k).__name__}")
            try:
                kb = k.encode("utf-8")
            except UnicodeEncodeError as e:
                raise TypeError(f"lever: map keys must be valid Unicode text ({e.reason})") from None
            if lib.lever_value_map_set(m, kb, len(kb), _enc(item, depth + 1)) != 0:
                raise MemoryError("lever: out of memory")
    except BaseException:
        _free(m)
        raise
    return m


def to_lever(obj):
    """A new lever_value (the caller frees it with lever_value_free)."""
    return _enc(obj, 0)


def args_to_lever(args):
    """The argument list of a call as a lever array (the caller frees it)."""
    return _enc_array(args, 0)


def owned(v):
    """Ties a lever_value the caller owns to a Python object that frees it."""
    return ffi.gc(v, _free)


def _dec(v, sc):
    t = lib.lp_value_scalar(v, sc)
    if t == T_STRING:
        return ffi.unpack(sc.s, sc.len).decode("utf-8", "surrogateescape") if sc.len else ""
    if t == T_INT:
        return sc.i
    if t == T_ARRAY:
        n = sc.len
        at = lib.lever_value_at
        return [_dec(at(v, i), sc) for i in range(n)]
    if t == T_MAP:
        n = sc.len
        out = {}
        klen = ffi.new("size_t *")
        for i in range(n):
            k = lib.lever_value_key_at(v, i, klen)
            key = ffi.unpack(k, klen[0]).decode("utf-8", "surrogateescape")
            out[key] = _dec(lib.lever_value_at(v, i), sc)
        return out
    if t == T_NULL:
        return None
    if t == T_BOOL:
        return sc.i != 0
    if t == T_DOUBLE:
        return sc.d
    if t == T_BYTES:
        return ffi.unpack(sc.s, sc.len) if sc.len else b""
    if t == T_UINT:
        return sc.u
    raise ValueError(f"lever: unknown value type {t}")


def from_lever(v):
    """The Python value of a lever_value (borrowed; None for NULL)."""
    if v == ffi.NULL:
        return None
    return _dec(v, ffi.new("lp_scalar *"))


def take(v):
    """from_lever, then frees `v` (a value the caller owns)."""
    if v == ffi.NULL:
        return None
    try:
        return _dec(v, ffi.new("lp_scalar *"))
    finally:
        _free(v)
