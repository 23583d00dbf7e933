package lever

// Values cross liblever's C ABI as msgpack (lever_value_from_msgpack and
// lever_value_to_msgpack, and the *_msgpack calls). This file maps Go values
// to msgpack with reflection, the way encoding/json maps them to JSON:
//
//	nil, nil pointer/slice/map/interface  -> nil
//	bool                                  -> bool
//	int*, uint*                           -> int (smallest encoding)
//	float32, float64                      -> float64
//	string                                -> str
//	[]byte                                -> bin (bytes stay bytes, unlike JSON)
//	other slices and arrays               -> array
//	maps with string, integer or          -> map (keys sorted, integers in decimal)
//	  encoding.TextMarshaler keys
//	structs                               -> map of exported fields, named and
//	                                         omitted by `json` tags
//	encoding.TextMarshaler (time.Time...) -> str
//
// Decoding (msgpack.go's decoder below) goes the other way; into an `any` it
// gives nil, bool, int64 (uint64 above MaxInt64), float64, string, []byte,
// []any and map[string]any.

import (
	"encoding"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
)

const maxDepth = 1000 // nesting limit (cycles, hostile input)

var (
	textMarshalerType   = reflect.TypeFor[encoding.TextMarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// marshal encodes v as one msgpack value.
func marshal(v any) ([]byte, error) {
	return appendValue(nil, reflect.ValueOf(v), 0)
}

// marshalArray encodes vs as a msgpack array (the arguments of a call).
func marshalArray(vs []any) ([]byte, error) {
	b := appendArrayHeader(make([]byte, 0, 64), len(vs))
	var err error
	for _, v := range vs {
		if b, err = appendValue(b, reflect.ValueOf(v), 1); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func appendValue(b []byte, v reflect.Value, depth int) ([]byte, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("lever: value nested deeper than %d levels (a cycle?)", maxDepth)
	}
	if !v.IsValid() {
		return append(b, 0xc0), nil
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface, reflect.Map, reflect.Slice:
		if v.IsNil() {
			return append(b, 0xc0), nil
		}
	}
	if v.Kind() != reflect.Interface && v.Type().Implements(textMarshalerType) {
		text, err := v.Interface().(encoding.TextMarshaler).MarshalText()
		if err != nil {
			return nil, err
		}
		return appendString(b, string(text)), nil
	}
	switch v.Kind() {
	case reflect.Bool:
		if v.Bool() {
			return append(b, 0xc3), nil
		}
		return append(b, 0xc2), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return appendInt(b, v.Int()), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return appendUint(b, v.Uint()), nil
	case reflect.Float32, reflect.Float64:
		b = append(b, 0xcb)
		return appendBE(b, math.Float64bits(v.Float()), 8), nil
	case reflect.String:
		return appendString(b, v.String()), nil
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return appendBytes(b, v.Bytes()), nil
		}
		fallthrough
	case reflect.Array:
		n := v.Len()
		b = appendArrayHeader(b, n)
		var err error
		for i := 0; i < n; i++ {
			if b, err = appendValue(b, v.Index(i), depth+1); err != nil {
				return nil, err
			}
		}
		return b, nil
	case reflect.Map:
		return appendMap(b, v, depth)
	case reflect.Struct:
		return appendStruct(b, v, depth)
	case reflect.Pointer, reflect.Interface:
		return appendValue(b, v.Elem(), depth+1)
	}
	return nil, fmt.Errorf("lever: cannot encode a value of type %s", v.Type())
}

func appendMap(b []byte, v reflect.Value, depth int) ([]byte, error) {
	type kv struct {
		key string
		val reflect.Value
	}
	entries := make([]kv, 0, v.Len())
	iter := v.MapRange()
	for iter.Next() {
		k := iter.Key()
		var ks string
		switch {
		case k.Kind() == reflect.String:
			ks = k.String()
		case k.Type().Implements(textMarshalerType):
			text, err := k.Interface().(encoding.TextMarshaler).MarshalText()
			if err != nil {
				return nil, err
			}
			ks = string(text)
		case k.CanInt():
			ks = strconv.FormatInt(k.Int(), 10)
		case k.CanUint():
			ks = strconv.FormatUint(k.Uint(), 10)
		default:
			return nil, fmt.Errorf("lever: cannot encode a map with keys of type %s", k.Type())
		}
		entries = append(entries, kv{ks, iter.Value()})
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].key < entries[j].key })
	b = appendMapHeader(b, len(entries))
	var err error
	for _, e := range entries {
		b = appendString(b, e.key)
		if b, err = appendValue(b, e.val, depth+1); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func appendStruct(b []byte, v reflect.Value, depth int) ([]byte, error) {
	fields := cachedFields(v.Type())
	vals := make([]reflect.Value, 0, len(fields.list))
	names := make([]string, 0, len(fields.list))
	for _, f := range fields.list {
		fv, ok := fieldByIndex(v, f.index)
		if !ok || (f.omitEmpty && isEmptyValue(fv)) {
			continue
		}
		vals = append(vals, fv)
		names = append(names, f.name)
	}
	b = appendMapHeader(b, len(vals))
	var err error
	for i, fv := range vals {
		b = appendString(b, names[i])
		if b, err = appendValue(b, fv, depth+1); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// fieldByIndex follows index through embedded pointers; false when one is nil.
func fieldByIndex(v reflect.Value, index []int) (reflect.Value, bool) {
	for i, x := range index {
		if i > 0 && v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return reflect.Value{}, false
			}
			v = v.Elem()
		}
		v = v.Field(x)
	}
	return v, true
}

func isEmptyValue(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Array, reflect.Map, reflect.Slice, reflect.String:
		return v.Len() == 0
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Interface, reflect.Pointer:
		return v.IsZero()
	}
	return false
}

func appendBE(b []byte, u uint64, n int) []byte {
	for i := n - 1; i >= 0; i-- {
		b = append(b, byte(u>>(8*uint(i))))
	}
	return b
}

func appendInt(b []byte, i int64) []byte {
	switch {
	case i >= 0:
		return appendUint(b, uint64(i))
	case i >= -32:
		return append(b, byte(i))
	case i >= math.MinInt8:
		return append(b, 0xd0, byte(i))
	case i >= math.MinInt16:
		return appendBE(append(b, 0xd1), uint64(i), 2)
	case i >= math.MinInt32:
		return appendBE(append(b, 0xd2), uint64(i), 4)
	}
	return appendBE(append(b, 0xd3), uint64(i), 8)
}

func appendUint(b []byte, u uint64) []byte {
	switch {
	case u <= 0x7f:
		return append(b, byte(u))
	case u <= math.MaxUint8:
		return append(b, 0xcc, byte(u))
	case u <= math.MaxUint16:
		return appendBE(append(b, 0xcd), u, 2)
	case u <= math.MaxUint32:
		return appendBE(append(b, 0xce), u, 4)
	}
	return appendBE(append(b, 0xcf), u, 8)
}

func appendString(b []byte, s string) []byte {
	n := len(s)
	switch {
	case n <= 31:
		b = append(b, 0xa0|byte(n))
	case n <= math.MaxUint8:
		b = append(b, 0xd9, byte(n))
	case n <= math.MaxUint16:
		b = appendBE(append(b, 0xda), uint64(n), 2)
	default:
		b = appendBE(append(b, 0xdb), uint64(n), 4)
	}
	return append(b, s...)
}

func appendBytes(b []byte, p []byte) []byte {
	n := len(p)
	switch {
	case n <= math.MaxUint8:
		b = append(b, 0xc4, byte(n))
	case n <= math.MaxUint16:
		b = appendBE(append(b, 0xc5), uint64(n), 2)
	default:
		b = appendBE(append(b, 0xc6), uint64(n), 4)
	}
	return append(b, p...)
}

func appendArrayHeader(b []byte, n int) []byte {
	switch {
	case n <= 15:
		return append(b, 0x90|byte(n))
	case n <= math.MaxUint16:
		return appendBE(append(b, 0xdc), uint64(n), 2)
	}
	return appendBE(append(b, 0xdd), uint64(n), 4)
}

func appendMapHeader(b []byte, n int) []byte {
	switch {
	case n <= 15:
		return append(b, 0x80|byte(n))
	case n <= math.MaxUint16:
		return appendBE(append(b, 0xde), uint64(n), 2)
	}
	return appendBE(append(b, 0xdf), uint64(n), 4)
}
