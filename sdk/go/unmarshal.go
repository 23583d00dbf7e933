package lever

import (
	"encoding"
	"encoding/binary"
	"fmt"
	"math"
	"reflect"
	"strconv"
)

// The msgpack decoder (the encoder and the type mapping are in msgpack.go).
// It copies every string and byte slice out of its input, so the input may be
// C memory released right after.

type mpKind int

const (
	mpNil mpKind = iota
	mpBool
	mpInt   // fits int64
	mpUint  // above MaxInt64
	mpFloat // float32 or float64
	mpStr
	mpBin
	mpArray
	mpMap
)

var mpKindNames = [...]string{"nil", "bool", "integer", "integer", "float", "string", "bytes", "array", "map"}

// token is one decoded msgpack header: a scalar, or the length of a string,
// bytes, array or map.
type token struct {
	kind mpKind
	b    bool
	i    int64
	u    uint64
	f    float64
	n    int // str/bin length, array elements, map entries
}

type decoder struct {
	data  []byte
	off   int
	depth int
}

// unmarshal decodes one msgpack value in data into target (a non-nil pointer).
func unmarshal(data []byte, target any) error {
	rv := reflect.ValueOf(target)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("lever: decode target must be a non-nil pointer, not %T", target)
	}
	d := &decoder{data: data}
	if err := d.value(rv.Elem()); err != nil {
		return err
	}
	if d.off != len(d.data) {
		return fmt.Errorf("lever: %d bytes of trailing data after a msgpack value", len(d.data)-d.off)
	}
	return nil
}

// unmarshalAny decodes one msgpack value into its generic Go form.
func unmarshalAny(data []byte) (any, error) {
	var v any
	err := unmarshal(data, &v)
	return v, err
}

var errTruncated = fmt.Errorf("lever: truncated msgpack data")

func (d *decoder) need(n int) ([]byte, error) {
	if n < 0 || len(d.data)-d.off < n {
		return nil, errTruncated
	}
	p := d.data[d.off : d.off+n]
	d.off += n
	return p, nil
}

func (d *decoder) uintN(n int) (uint64, error) {
	p, err := d.need(n)
	if err != nil {
		return 0, err
	}
	switch n {
	case 1:
		return uint64(p[0]), nil
	case 2:
		return uint64(binary.BigEndian.Uint16(p)), nil
	case 4:
		return uint64(binary.BigEndian.Uint32(p)), nil
	}
	return binary.BigEndian.Uint64(p), nil
}

func (d *decoder) length(n int) (int, error) {
	u, err := d.uintN(n)
	if err != nil {
		return 0, err
	}
	// Every element takes at least one byte: a length above what is left is
	// corrupt (and must not size an allocation).
	if u > uint64(len(d.data)-d.off) {
		return 0, errTruncated
	}
	return int(u), nil
}

func (d *decoder) next() (token, error) {
	p, err := d.need(1)
	if err != nil {
		return token{}, err
	}
	c := p[0]
	switch {
	case c <= 0x7f:
		return token{kind: mpInt, i: int64(c)}, nil
	case c >= 0xe0:
		return token{kind: mpInt, i: int64(int8(c))}, nil
	case c >= 0xa0 && c <= 0xbf:
		n, err := d.length0(int(c & 0x1f))
		return token{kind: mpStr, n: n}, err
	case c >= 0x90 && c <= 0x9f:
		n, err := d.length0(int(c & 0x0f))
		return token{kind: mpArray, n: n}, err
	case c >= 0x80 && c <= 0x8f:
		n, err := d.length0(int(c & 0x0f))
		return token{kind: mpMap, n: n}, err
	}
	t := token{}
	var u uint64
	switch c {
	case 0xc0:
		t.kind = mpNil
	case 0xc2, 0xc3:
		t.kind, t.b = mpBool, c == 0xc3
	case 0xcc, 0xcd, 0xce, 0xcf:
		if u, err = d.uintN(1 << (c - 0xcc)); err != nil {
			return t, err
		}
		if u > math.MaxInt64 {
			t.kind, t.u = mpUint, u
		} else {
			t.kind, t.i = mpInt, int64(u)
		}
	case 0xd0, 0xd1, 0xd2, 0xd3:
		n := 1 << (c - 0xd0)
		if u, err = d.uintN(n); err != nil {
			return t, err
		}
		t.kind = mpInt
		switch n {
		case 1:
			t.i = int64(int8(u))
		case 2:
			t.i = int64(int16(u))
		case 4:
			t.i = int64(int32(u))
		default:
			t.i = int64(u)
		}
	case 0xca:
		if u, err = d.uintN(4); err != nil {
			return t, err
		}
		t.kind, t.f = mpFloat, float64(math.Float32frombits(uint32(u)))
	case 0xcb:
		if u, err = d.uintN(8); err != nil {
			return t, err
		}
		t.kind, t.f = mpFloat, math.Float64frombits(u)
	case 0xd9, 0xda, 0xdb:
		t.kind = mpStr
		t.n, err = d.length(1 << (c - 0xd9))
	case 0xc4, 0xc5, 0xc6:
		t.kind = mpBin
		t.n, err = d.length(1 << (c - 0xc4))
	case 0xdc, 0xdd:
		t.kind = mpArray
		t.n, err = d.length(2 << (c - 0xdc))
	case 0xde, 0xdf:
		t.kind = mpMap
		t.n, err = d.length(2 << (c - 0xde))
	default:
		return t, fmt.Errorf("lever: unsupported msgpack type byte 0x%02x", c)
	}
	return t, err
}

func (d *decoder) length0(n int) (int, error) {
	if n > len(d.data)-d.off {
		return 0, errTruncated
	}
	return n, nil
}

func (d *decoder) raw(n int) ([]byte, error) { return d.need(n) }

func mismatch(t token, typ reflect.Type) error {
	return fmt.Errorf("lever: cannot decode a msgpack %s into a Go value of type %s", mpKindNames[t.kind], typ)
}

// value decodes the next value into v (settable).
func (d *decoder) value(v reflect.Value) error {
	d.depth++
	defer func() { d.depth-- }()
	if d.depth > maxDepth {
		return fmt.Errorf("lever: msgpack nested deeper than %d levels", maxDepth)
	}
	t, err := d.next()
	if err != nil {
		return err
	}
	return d.into(t, v)
}

func (d *decoder) into(t token, v reflect.Value) error {
	if t.kind == mpNil {
		switch v.Kind() {
		case reflect.Pointer, reflect.Interface, reflect.Map, reflect.Slice:
			v.SetZero()
		}
		return nil // like encoding/json: null leaves other values unchanged
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		return d.into(t, v.Elem())
	}
	if t.kind == mpStr && v.CanAddr() && v.Kind() != reflect.String && reflect.PointerTo(v.Type()).Implements(textUnmarshalerType) {
		p, err := d.raw(t.n)
		if err != nil {
			return err
		}
		return v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText(append([]byte(nil), p...))
	}
	if v.Kind() == reflect.Interface {
		if v.NumMethod() != 0 {
			return fmt.Errorf("lever: cannot decode into interface type %s", v.Type())
		}
		g, err := d.generic(t)
		if err != nil {
			return err
		}
		if g == nil {
			v.SetZero()
		} else {
			v.Set(reflect.ValueOf(g))
		}
		return nil
	}
	switch t.kind {
	case mpBool:
		if v.Kind() != reflect.Bool {
			return mismatch(t, v.Type())
		}
		v.SetBool(t.b)
	case mpInt, mpUint, mpFloat:
		return setNumber(t, v)
	case mpStr, mpBin:
		p, err := d.raw(t.n)
		if err != nil {
			return err
		}
		switch {
		case v.Kind() == reflect.String:
			v.SetString(string(p))
		case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Uint8:
			v.SetBytes(append(make([]byte, 0, len(p)), p...))
		case v.Kind() == reflect.Array && v.Type().Elem().Kind() == reflect.Uint8 && t.kind == mpBin:
			if len(p) != v.Len() {
				return fmt.Errorf("lever: cannot decode %d bytes into %s", len(p), v.Type())
			}
			reflect.Copy(v, reflect.ValueOf(p))
		default:
			return mismatch(t, v.Type())
		}
	case mpArray:
		switch v.Kind() {
		case reflect.Slice:
			s := reflect.MakeSlice(v.Type(), t.n, t.n)
			for i := 0; i < t.n; i++ {
				if err := d.value(s.Index(i)); err != nil {
					return err
				}
			}
			v.Set(s)
		case reflect.Array:
			for i := 0; i < t.n; i++ {
				if i < v.Len() {
					if err := d.value(v.Index(i)); err != nil {
						return err
					}
				} else if err := d.skip(); err != nil {
					return err
				}
			}
			for i := t.n; i < v.Len(); i++ {
				v.Index(i).SetZero()
			}
		default:
			return mismatch(t, v.Type())
		}
	case mpMap:
		switch v.Kind() {
		case reflect.Map:
			return d.intoMap(t, v)
		case reflect.Struct:
			return d.intoStruct(t, v)
		default:
			return mismatch(t, v.Type())
		}
	}
	return nil
}

func setNumber(t token, v reflect.Value) error {
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		var i int64
		switch t.kind {
		case mpInt:
			i = t.i
		case mpUint:
			return fmt.Errorf("lever: %d overflows %s", t.u, v.Type())
		case mpFloat:
			if t.f != math.Trunc(t.f) || t.f < -(1<<63) || t.f >= 1<<63 {
				return fmt.Errorf("lever: cannot decode %v into %s", t.f, v.Type())
			}
			i = int64(t.f)
		}
		if v.OverflowInt(i) {
			return fmt.Errorf("lever: %d overflows %s", i, v.Type())
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		var u uint64
		switch t.kind {
		case mpInt:
			if t.i < 0 {
				return fmt.Errorf("lever: %d overflows %s", t.i, v.Type())
			}
			u = uint64(t.i)
		case mpUint:
			u = t.u
		case mpFloat:
			if t.f != math.Trunc(t.f) || t.f < 0 || t.f >= 1<<64 {
				return fmt.Errorf("lever: cannot decode %v into %s", t.f, v.Type())
			}
			u = uint64(t.f)
		}
		if v.OverflowUint(u) {
			return fmt.Errorf("lever: %d overflows %s", u, v.Type())
		}
		v.SetUint(u)
	case reflect.Float32, reflect.Float64:
		switch t.kind {
		case mpInt:
			v.SetFloat(float64(t.i))
		case mpUint:
			v.SetFloat(float64(t.u))
		default:
			v.SetFloat(t.f)
		}
	default:
		return mismatch(t, v.Type())
	}
	return nil
}

func (d *decoder) key() (string, error) {
	t, err := d.next()
	if err != nil {
		return "", err
	}
	if t.kind != mpStr && t.kind != mpBin {
		return "", fmt.Errorf("lever: map key is a msgpack %s, not a string", mpKindNames[t.kind])
	}
	p, err := d.raw(t.n)
	return string(p), err
}

func (d *decoder) intoMap(t token, v reflect.Value) error {
	kt, et := v.Type().Key(), v.Type().Elem()
	if v.IsNil() {
		v.Set(reflect.MakeMapWithSize(v.Type(), t.n))
	}
	for i := 0; i < t.n; i++ {
		ks, err := d.key()
		if err != nil {
			return err
		}
		kv := reflect.New(kt).Elem()
		switch {
		case kt.Kind() == reflect.String:
			kv.SetString(ks)
		case reflect.PointerTo(kt).Implements(textUnmarshalerType):
			if err := kv.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(ks)); err != nil {
				return err
			}
		case kv.CanInt():
			n, err := strconv.ParseInt(ks, 10, 64)
			if err != nil || kv.OverflowInt(n) {
				return fmt.Errorf("lever: map key %q is not a %s", ks, kt)
			}
			kv.SetInt(n)
		case kv.CanUint():
			n, err := strconv.ParseUint(ks, 10, 64)
			if err != nil || kv.OverflowUint(n) {
				return fmt.Errorf("lever: map key %q is not a %s", ks, kt)
			}
			kv.SetUint(n)
		default:
			return fmt.Errorf("lever: cannot decode into a map with keys of type %s", kt)
		}
		ev := reflect.New(et).Elem()
		if err := d.value(ev); err != nil {
			return err
		}
		v.SetMapIndex(kv, ev)
	}
	return nil
}

func (d *decoder) intoStruct(t token, v reflect.Value) error {
	fields := cachedFields(v.Type())
	for i := 0; i < t.n; i++ {
		ks, err := d.key()
		if err != nil {
			return err
		}
		f, ok := fields.lookup(ks)
		if !ok {
			if err := d.skip(); err != nil {
				return err
			}
			continue
		}
		fv := v
		for j, x := range f.index {
			if j > 0 && fv.Kind() == reflect.Pointer {
				if fv.IsNil() {
					if !fv.CanSet() {
						return fmt.Errorf("lever: cannot set embedded pointer to unexported struct in %s", v.Type())
					}
					fv.Set(reflect.New(fv.Type().Elem()))
				}
				fv = fv.Elem()
			}
			fv = fv.Field(x)
		}
		if err := d.value(fv); err != nil {
			return fmt.Errorf("%w (field %s)", err, f.name)
		}
	}
	return nil
}

// generic decodes the value of t into nil, bool, int64, uint64, float64,
// string, []byte, []any or map[string]any.
func (d *decoder) generic(t token) (any, error) {
	switch t.kind {
	case mpNil:
		return nil, nil
	case mpBool:
		return t.b, nil
	case mpInt:
		return t.i, nil
	case mpUint:
		return t.u, nil
	case mpFloat:
		return t.f, nil
	case mpStr:
		p, err := d.raw(t.n)
		return string(p), err
	case mpBin:
		p, err := d.raw(t.n)
		return append(make([]byte, 0, len(p)), p...), err
	case mpArray:
		a := make([]any, t.n)
		for i := range a {
			if err := d.value(reflect.ValueOf(&a[i]).Elem()); err != nil {
				return nil, err
			}
		}
		return a, nil
	}
	m := make(map[string]any, t.n)
	for i := 0; i < t.n; i++ {
		k, err := d.key()
		if err != nil {
			return nil, err
		}
		var e any
		if err := d.value(reflect.ValueOf(&e).Elem()); err != nil {
			return nil, err
		}
		m[k] = e
	}
	return m, nil
}

// skip consumes the next value.
func (d *decoder) skip() error {
	var sink any
	return d.value(reflect.ValueOf(&sink).Elem())
}

// arrayElements splits a msgpack array into its elements' raw encodings.
func arrayElements(data []byte) ([][]byte, error) {
	d := &decoder{data: data}
	t, err := d.next()
	if err != nil {
		return nil, err
	}
	if t.kind != mpArray {
		return nil, fmt.Errorf("lever: expected a msgpack array, got %s", mpKindNames[t.kind])
	}
	out := make([][]byte, t.n)
	for i := range out {
		start := d.off
		if err := d.skip(); err != nil {
			return nil, err
		}
		out[i] = d.data[start:d.off]
	}
	return out, nil
}
