package lever

import (
	"reflect"
	"strings"
	"sync"
)

// field is one msgpack map entry of a struct, named as encoding/json names it.
type field struct {
	name      string
	index     []int
	typ       reflect.Type
	omitEmpty bool
}

type structFields struct {
	list   []field
	byName map[string]int // exact names
	byFold map[string]int // lower-cased names, for encoding/json's case-insensitive match
}

var fieldCache sync.Map // reflect.Type -> *structFields

// cachedFields returns the fields of struct type t by encoding/json's rules:
// exported fields, `json:"name,omitempty"` tags, `json:"-"` skips, and the
// fields of untagged embedded structs promoted (the shallowest name wins;
// equally deep duplicates are dropped).
func cachedFields(t reflect.Type) *structFields {
	if f, ok := fieldCache.Load(t); ok {
		return f.(*structFields)
	}
	type cand struct {
		field
		depth  int
		tagged bool
	}
	var cands []cand
	var walk func(t reflect.Type, index []int, depth int, seen map[reflect.Type]bool)
	walk = func(t reflect.Type, index []int, depth int, seen map[reflect.Type]bool) {
		if seen[t] {
			return
		}
		seen[t] = true
		defer delete(seen, t)
		for i := 0; i < t.NumField(); i++ {
			sf := t.Field(i)
			tag := sf.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			idx := append(append([]int(nil), index...), i)
			ft := sf.Type
			if sf.Anonymous {
				et := ft
				if et.Kind() == reflect.Pointer {
					et = et.Elem()
				}
				if name == "" && et.Kind() == reflect.Struct {
					if !sf.IsExported() && ft.Kind() == reflect.Pointer {
						continue // encoding/json cannot set unexported embedded pointers either
					}
					walk(et, idx, depth+1, seen)
					continue
				}
			}
			if !sf.IsExported() {
				continue
			}
			tagged := name != ""
			if name == "" {
				name = sf.Name
			}
			cands = append(cands, cand{field{name, idx, ft, strings.Contains(","+opts+",", ",omitempty,")}, depth, tagged})
		}
	}
	walk(t, nil, 0, map[reflect.Type]bool{})

	// Resolve duplicate names: the shallowest wins; at equal depth a tagged
	// field wins; otherwise the name is dropped (encoding/json's rule).
	groups := map[string][]cand{}
	var order []string
	for _, c := range cands {
		if _, ok := groups[c.name]; !ok {
			order = append(order, c.name)
		}
		groups[c.name] = append(groups[c.name], c)
	}
	sf := &structFields{byName: map[string]int{}, byFold: map[string]int{}}
	for _, name := range order {
		g := groups[name]
		best := -1
		ambiguous := false
		for i, c := range g {
			switch {
			case best < 0:
				best = i
			case c.depth < g[best].depth || (c.depth == g[best].depth && c.tagged && !g[best].tagged):
				best, ambiguous = i, false
			case c.depth == g[best].depth && c.tagged == g[best].tagged:
				ambiguous = true
			}
		}
		if ambiguous {
			continue
		}
		sf.byName[name] = len(sf.list)
		if _, ok := sf.byFold[strings.ToLower(name)]; !ok {
			sf.byFold[strings.ToLower(name)] = len(sf.list)
		}
		sf.list = append(sf.list, g[best].field)
	}
	f, _ := fieldCache.LoadOrStore(t, sf)
	return f.(*structFields)
}

func (s *structFields) lookup(name string) (field, bool) {
	if i, ok := s.byName[name]; ok {
		return s.list[i], true
	}
	if i, ok := s.byFold[strings.ToLower(name)]; ok {
		return s.list[i], true
	}
	return field{}, false
}
