"""Python values through liblever's value trees and msgpack codec, and the
same values through a real call."""
import math

import pytest

from leveros._native import ffi, lib
from leveros.values import MAX_DEPTH, from_lever, take, to_lever


def through_msgpack(obj):
    v = to_lever(obj)
    buf = ffi.new("lever_buf *")
    try:
        assert lib.lever_value_to_msgpack(buf, v) == 0
    finally:
        lib.lever_value_free(v)
    out = ffi.new("lever_value **")
    try:
        assert lib.lever_value_from_msgpack(out, buf.ptr, buf.size, ffi.NULL) == 0
    finally:
        lib.lever_buf_dispose(buf)
    return take(out[0])


SAMPLES = [
    None, True, False, 0, -1, 7, 2**63 - 1, -(2**63), 2**63, 2**64 - 1, 1.5, -0.0, 1e308, "", "héllo ✓ 😀",
    b"", b"\x00\xff\x10", [], [1, [2, [3]], {}], {"a": 1, "b": [None, b"x"], "ç": {"nested": "deep"}},
]


@pytest.mark.parametrize("value", SAMPLES, ids=repr)
def test_round_trip(value):
    back = through_msgpack(value)
    assert back == value
    assert type(back) is type(value)


def test_tuples_bytearrays_and_memoryviews_travel_as_arrays_and_bytes():
    assert through_msgpack((1, (2,))) == [1, [2]]
    assert through_msgpack(bytearray(b"ab")) == b"ab"
    assert through_msgpack(memoryview(b"cd")) == b"cd"


def test_nan_and_infinity():
    assert math.isnan(through_msgpack(float("nan")))
    assert through_msgpack(float("-inf")) == float("-inf")


def test_map_order_is_kept():
    d = {"z": 1, "a": 2, "m": 3}
    assert list(through_msgpack(d)) == ["z", "a", "m"]


def test_subclasses_travel_as_their_base():
    import enum

    class Color(enum.IntEnum):
        RED = 3

    class Name(str):
        pass

    assert through_msgpack([Color.RED, Name("x")]) == [3, "x"]
    assert type(through_msgpack(Color.RED)) is int


def test_other_numbers_and_mappings():
    import fractions
    import types

    assert through_msgpack([fractions.Fraction(3, 2), types.MappingProxyType({"k": 1})]) == [1.5, {"k": 1}]


@pytest.mark.parametrize("n", [2**64, -(2**63) - 1, 10**30])
def test_integers_past_64_bits_are_a_clear_error(n):
    with pytest.raises(OverflowError, match="does not fit in 64 bits"):
        to_lever([1, {"x": n}])


@pytest.mark.parametrize("bad", [{1, 2}, object(), {1: "int key"}, "\ud800", {"\udcff": 1}, 1j])
def test_unsendable_values_are_type_errors(bad):
    with pytest.raises(TypeError):
        to_lever([bad])


def test_depth_limit_and_cycles():
    ok = []
    for _ in range(MAX_DEPTH - 1):
        ok = [ok]
    through_msgpack(ok)
    too_deep = [ok]
    with pytest.raises(ValueError, match="nested deeper"):
        to_lever(too_deep)
    cyclic = []
    cyclic.append(cyclic)
    with pytest.raises(ValueError, match="circular"):
        to_lever(cyclic)


def test_from_lever_of_null_pointer_is_none():
    assert from_lever(ffi.NULL) is None


def test_values_through_a_call(ep):
    v = {"s": "héllo ✓", "i": -12, "f": 1.5, "big": 2**60, "u": 2**64 - 1, "t": True, "n": None,
         "a": [1, [2, [3]], {}], "b": b"\x00\x01"}
    assert ep.invoke("echo", v, 1, "two") == [v, 1, "two"]
    assert ep.invoke("echo") == []
    assert ep.invoke("kinds", 1, 2**64 - 1, 1.0, True, None, b"x", "s", [], {}) == [
        "int", "int", "float", "bool", "NoneType", "bytes", "str", "list", "dict"]


def test_an_oversized_argument_fails_before_sending(ep):
    with pytest.raises(OverflowError):
        ep.invoke("echo", 2**64)
