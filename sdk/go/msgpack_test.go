package lever

import (
	"bytes"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

type inner struct {
	X int `json:"x"`
}

type Embedded struct {
	E string
}

type sample struct {
	Embedded
	Name    string           `json:"name"`
	Skip    string           `json:"-"`
	Empty   string           `json:"empty,omitempty"`
	Nums    []int            `json:"nums"`
	Strs    []string         `json:"strs"`
	Blob    []byte           `json:"blob"`
	Map     map[string]inner `json:"map"`
	IntKeys map[int]bool     `json:"intKeys"`
	Ptr     *inner           `json:"ptr"`
	Any     any              `json:"any"`
	When    time.Time        `json:"when"`
	F32     float32          `json:"f32"`
	U64     uint64           `json:"u64"`
	unexp   int
}

// Go -> msgpack -> liblever's codec -> JSON: the bytes are what the C side
// understands.
func TestMsgpackAgainstLiblever(t *testing.T) {
	when := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	v := sample{Embedded: Embedded{"e"}, Name: "n", Skip: "s", Nums: []int{1, -1, 200, -200, 70000, -70000, 1 << 40},
		Strs: []string{"a", strings.Repeat("b", 40)}, Blob: []byte{0, 255}, Map: map[string]inner{"b": {2}, "a": {1}},
		IntKeys: map[int]bool{3: true}, Any: []any{nil, true, 1.5}, When: when, F32: 0.5, U64: math.MaxUint64}
	b, err := marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	got, err := msgpackToJSONForTest(b)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"E":"e","name":"n","nums":[1,-1,200,-200,70000,-70000,1099511627776],"strs":["a","` + strings.Repeat("b", 40) +
		`"],"blob":"AP8=","map":{"a":{"x":1},"b":{"x":2}},"intKeys":{"3":true},"ptr":null,"any":[null,true,1.5],` +
		`"when":"2026-01-02T03:04:05Z","f32":0.5,"u64":18446744073709551615}`
	if got != want {
		t.Fatalf("liblever reads\n%s\nwant\n%s", got, want)
	}
	var back sample
	if err := unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	v.Skip = ""
	if !reflect.DeepEqual(back, v) {
		t.Fatalf("round trip:\n%+v\n%+v", back, v)
	}
}

func TestMsgpackRoundTrips(t *testing.T) {
	long := strings.Repeat("x", 70000)
	cases := []any{nil, true, false, int64(0), int64(-33), int64(math.MinInt64), int64(math.MaxInt64), uint64(math.MaxUint64),
		1.25, "", "héllo", long, []byte{}, bytes.Repeat([]byte{7}, 300), bytes.Repeat([]byte{7}, 70000),
		[]any{}, []any{int64(1), "a", []any{nil}}, map[string]any{}, map[string]any{"k": map[string]any{"z": 2.5}}}
	big := make([]any, 20)
	for i := range big {
		big[i] = int64(i)
	}
	cases = append(cases, big)
	for _, c := range cases {
		b, err := marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := unmarshalAny(b)
		if err != nil {
			t.Fatalf("%T: %v", c, err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("round trip of %#v gave %#v", c, got)
		}
		if _, err := msgpackToJSONForTest(b); err != nil {
			t.Fatalf("liblever rejects our encoding of %T: %v", c, err)
		}
	}
}

func TestMsgpackConversions(t *testing.T) {
	enc := func(v any) []byte {
		b, err := marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var i8 int8
	if err := unmarshal(enc(300), &i8); err == nil {
		t.Error("300 into int8")
	}
	var u uint
	if err := unmarshal(enc(-1), &u); err == nil {
		t.Error("-1 into uint")
	}
	var n int
	if err := unmarshal(enc(3.0), &n); err != nil || n != 3 { // integral doubles (proto-JSON callers)
		t.Errorf("3.0 into int: %d %v", n, err)
	}
	if err := unmarshal(enc(3.5), &n); err == nil {
		t.Error("3.5 into int")
	}
	var f float32
	if err := unmarshal(enc(7), &f); err != nil || f != 7 {
		t.Errorf("7 into float32: %v %v", f, err)
	}
	var s string
	if err := unmarshal(enc([]byte("ab")), &s); err != nil || s != "ab" {
		t.Errorf("bytes into string: %q %v", s, err)
	}
	var arr [2]int
	if err := unmarshal(enc([]int{1, 2, 3}), &arr); err != nil || arr != [2]int{1, 2} {
		t.Errorf("array: %v %v", arr, err)
	}
	var m map[uint16]string
	if err := unmarshal(enc(map[string]string{"5": "five"}), &m); err != nil || m[5] != "five" {
		t.Errorf("uint keys: %v %v", m, err)
	}
	// Case-insensitive field match, unknown fields skipped, null keeps values.
	var in inner
	in.X = 9
	if err := unmarshal(enc(map[string]any{"X": nil, "other": []any{1, map[string]any{}}}), &in); err != nil || in.X != 9 {
		t.Errorf("struct: %+v %v", in, err)
	}
	if err := unmarshal(enc(map[string]any{"X": 4}), &in); err != nil || in.X != 4 {
		t.Errorf("struct fold: %+v %v", in, err)
	}
	var p *inner
	if err := unmarshal(enc(inner{5}), &p); err != nil || p == nil || p.X != 5 {
		t.Errorf("pointer: %+v %v", p, err)
	}
	if err := unmarshal(enc("x"), &in); err == nil {
		t.Error("string into struct")
	}
	if _, err := marshal(make(chan int)); err == nil {
		t.Error("encoded a chan")
	}
	type cyc struct{ Next any }
	c := &cyc{}
	c.Next = c
	if _, err := marshal(c); err == nil {
		t.Error("encoded a cycle")
	}
	// Corrupt input: errors, never panics or huge allocations.
	for _, bad := range [][]byte{{}, {0xdd, 0xff, 0xff, 0xff, 0xff}, {0xc6, 0x7f, 0xff, 0xff, 0xff}, {0xd9}, {0xc1},
		{0x92, 0x01}, {0x81, 0x01, 0x02}, {0x01, 0x02}} {
		var v any
		if err := unmarshal(bad, &v); err == nil {
			t.Errorf("decoded % x", bad)
		}
	}
	if err := unmarshal(enc(1), nil); err == nil {
		t.Error("nil target")
	}
}

func FuzzUnmarshal(f *testing.F) {
	f.Add([]byte{0x93, 0x01, 0xa1, 'a', 0xc0})
	f.Add([]byte{0x81, 0xa1, 'x', 0xcb, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var v any
		if unmarshal(b, &v) == nil {
			if _, err := marshal(v); err != nil {
				t.Fatal(err)
			}
		}
		var s sample
		_ = unmarshal(b, &s)
	})
}
