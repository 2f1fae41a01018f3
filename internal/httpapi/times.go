package httpapi

import (
	"encoding/json"
	"reflect"
	"sync"
	"time"
	"unsafe"
)

// TimeFormat is the format of every time in kefu's HTTP answers: RFC 3339
// in UTC with whole seconds, e.g. 2026-12-05T07:14:59Z.
const TimeFormat = time.RFC3339

// Time is t as kefu's HTTP answers write it: UTC, whole seconds. The zero
// time stays zero (leave it out with omitzero).
func Time(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC().Truncate(time.Second)
}

var (
	timeType      = reflect.TypeFor[time.Time]()
	marshalerType = reflect.TypeFor[json.Marshaler]()
)

// Times returns v with every time.Time in it — in fields, pointers, slices,
// arrays and maps — passed through Time, so that encoding/json writes it as
// TimeFormat (time.Time writes RFC 3339 in UTC without a fraction when its
// zone is UTC and it has no fraction). v itself is not changed: what holds a
// time is copied. A value of a type with no time in it is returned as it is,
// as are types with their own MarshalJSON.
func Times(v any) any {
	if v == nil {
		return nil
	}
	rv := reflect.ValueOf(v)
	if !hasTime(rv.Type()) {
		return v
	}
	out := reflect.New(rv.Type()).Elem()
	out.Set(rv)
	fix(out)
	return out.Interface()
}

// hasTimeCache remembers, per type, whether a time.Time can be reached.
var hasTimeCache sync.Map // reflect.Type → bool

func hasTime(t reflect.Type) bool {
	if v, ok := hasTimeCache.Load(t); ok {
		return v.(bool)
	}
	found := reachesTime(t, map[reflect.Type]bool{})
	hasTimeCache.Store(t, found)
	return found
}

func reachesTime(t reflect.Type, seen map[reflect.Type]bool) bool {
	if t == timeType {
		return true
	}
	if t.Kind() == reflect.Pointer {
		// *T has T's methods: look at T.
		return reachesTime(t.Elem(), seen)
	}
	if seen[t] || t.Implements(marshalerType) {
		return false
	}
	seen[t] = true
	switch t.Kind() {
	case reflect.Slice, reflect.Array:
		return reachesTime(t.Elem(), seen)
	case reflect.Map:
		return reachesTime(t.Elem(), seen)
	case reflect.Interface:
		// What an interface holds is only known at run time.
		return true
	case reflect.Struct:
		for i := range t.NumField() {
			if reachesTime(t.Field(i).Type, seen) {
				return true
			}
		}
	}
	return false
}

// fix passes the times in v through Time, in place. v is addressable and
// settable, and is a copy: what it shares with the original (the targets of
// pointers, slices and maps) is copied before it is changed.
func fix(v reflect.Value) {
	t := v.Type()
	if t == timeType {
		p := (*time.Time)(v.Addr().UnsafePointer())
		*p = Time(*p)
		return
	}
	if !hasTime(t) {
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return
		}
		n := reflect.New(t.Elem())
		n.Elem().Set(v.Elem())
		fix(n.Elem())
		v.Set(n)
	case reflect.Interface:
		if v.IsNil() {
			return
		}
		e := v.Elem()
		n := reflect.New(e.Type()).Elem()
		n.Set(e)
		fix(n)
		v.Set(n)
	case reflect.Slice:
		if v.IsNil() {
			return
		}
		n := reflect.MakeSlice(t, v.Len(), v.Len())
		reflect.Copy(n, v)
		for i := range n.Len() {
			fix(n.Index(i))
		}
		v.Set(n)
	case reflect.Array:
		for i := range v.Len() {
			fix(v.Index(i))
		}
	case reflect.Map:
		if v.IsNil() {
			return
		}
		n := reflect.MakeMapWithSize(t, v.Len())
		for it := v.MapRange(); it.Next(); {
			e := reflect.New(t.Elem()).Elem()
			e.Set(it.Value())
			fix(e)
			n.SetMapIndex(it.Key(), e)
		}
		v.Set(n)
	case reflect.Struct:
		for _, i := range fieldsWithTime(t) {
			f := v.Field(i)
			if !f.CanSet() {
				// An embedded struct of an unexported type: encoding/json
				// writes its exported fields, so they are fixed too,
				// through the copy's own memory.
				f = reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem()
			}
			fix(f)
		}
	}
}

// fieldsCache remembers, per struct type, fieldsWithTime.
var fieldsCache sync.Map // reflect.Type → []int

// fieldsWithTime are the fields of struct type t that encoding/json writes
// (exported, or embedded) and that can hold a time.
func fieldsWithTime(t reflect.Type) []int {
	if v, ok := fieldsCache.Load(t); ok {
		return v.([]int)
	}
	var out []int
	for i := range t.NumField() {
		f := t.Field(i)
		if (f.IsExported() || f.Anonymous) && hasTime(f.Type) {
			out = append(out, i)
		}
	}
	fieldsCache.Store(t, out)
	return out
}
