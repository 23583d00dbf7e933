"""Call overhead of cffi API mode (leveros._lever) against ctypes on the same
liblever: the measurement behind the binding's choice (leveros_build.py).

    python bench/ffi_overhead.py [iterations, default 200000]

Each row is the time of one Python-level operation, best of 5 runs:
  - one call: lever_value_new_int(7) + lever_value_free (2 C calls);
  - encode ["world"]: the argument list of sayHello as a lever_value tree
    (new_array, new_string, array_push, free: 4 C calls);
  - decode "Hello, world!": type, string pointer and length, copy out.
"""
import ctypes
import sys
import timeit

from leveros._lever import ffi, lib

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200000

path = None
with open("/proc/self/maps") as maps:
    for line in maps:
        if "/liblever.so" in line:
            path = line.split()[-1]
            break
c = ctypes.CDLL(path)
vp = ctypes.c_void_p
c.lever_value_new_int.restype = vp
c.lever_value_new_int.argtypes = [ctypes.c_int64]
c.lever_value_free.argtypes = [vp]
c.lever_value_new_array.restype = vp
c.lever_value_new_string.restype = vp
c.lever_value_new_string.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
c.lever_value_array_push.argtypes = [vp, vp]
c.lever_value_type.argtypes = [vp]
c.lever_value_string.restype = ctypes.POINTER(ctypes.c_char)
c.lever_value_string.argtypes = [vp, ctypes.POINTER(ctypes.c_size_t)]

s_c = c.lever_value_new_string(b"Hello, world!", 13)
s_f = lib.lever_value_new_string(b"Hello, world!", 13)
n_c = ctypes.c_size_t()
n_f = ffi.new("size_t *")


def cffi_one():
    lib.lever_value_free(lib.lever_value_new_int(7))


def ctypes_one():
    c.lever_value_free(c.lever_value_new_int(7))


def cffi_encode():
    a = lib.lever_value_new_array()
    b = "world".encode()
    lib.lever_value_array_push(a, lib.lever_value_new_string(b, len(b)))
    lib.lever_value_free(a)


def ctypes_encode():
    a = c.lever_value_new_array()
    b = "world".encode()
    c.lever_value_array_push(a, c.lever_value_new_string(b, len(b)))
    c.lever_value_free(a)


def cffi_decode():
    lib.lever_value_type(s_f)
    p = lib.lever_value_string(s_f, n_f)
    return ffi.unpack(p, n_f[0]).decode()


def ctypes_decode():
    c.lever_value_type(s_c)
    p = c.lever_value_string(s_c, ctypes.byref(n_c))
    return ctypes.string_at(p, n_c.value).decode()


def ns(fn):
    return min(timeit.repeat(fn, number=N, repeat=5)) / N * 1e9


print(f"{N} iterations, best of 5 (ns per operation)")
print(f"{'operation':<28}{'cffi API':>10}{'ctypes':>10}")
for name, f_cffi, f_ctypes in [("one call (new_int + free)", cffi_one, ctypes_one),
                               ('encode ["world"]', cffi_encode, ctypes_encode),
                               ('decode "Hello, world!"', cffi_decode, ctypes_decode)]:
    print(f"{name:<28}{ns(f_cffi):>10.0f}{ns(f_ctypes):>10.0f}")
