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
	return normalize(rv).Interface()
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

// normalize returns a copy of v with its times passed through Time.
func normalize(v reflect.Value) reflect.Value {
	t := v.Type()
	if t == timeType {
		return reflect.ValueOf(Time(v.Interface().(time.Time)))
	}
	if !hasTime(t) {
		return v
	}
	switch t.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return v
		}
		p := reflect.New(t.Elem())
		p.Elem().Set(normalize(v.Elem()))
		return p
	case reflect.Interface:
		if v.IsNil() {
			return v
		}
		out := reflect.New(t).Elem()
		out.Set(normalize(v.Elem()))
		return out
	case reflect.Slice:
		if v.IsNil() {
			return v
		}
		out := reflect.MakeSlice(t, v.Len(), v.Len())
		for i := range v.Len() {
			out.Index(i).Set(normalize(v.Index(i)))
		}
		return out
	case reflect.Array:
		out := reflect.New(t).Elem()
		for i := range v.Len() {
			out.Index(i).Set(normalize(v.Index(i)))
		}
		return out
	case reflect.Map:
		if v.IsNil() {
			return v
		}
		out := reflect.MakeMapWithSize(t, v.Len())
		for it := v.MapRange(); it.Next(); {
			out.SetMapIndex(it.Key(), normalize(it.Value()))
		}
		return out
	case reflect.Struct:
		out := reflect.New(t).Elem()
		out.Set(v)
		for i := range t.NumField() {
			f := out.Field(i)
			if !f.CanSet() {
				if !t.Field(i).Anonymous {
					// Unexported: encoding/json does not write it.
					continue
				}
				// An embedded struct of an unexported type: encoding/json
				// writes its exported fields, so they are normalized
				// too, through the copy's own memory.
				f = reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem()
			}
			f.Set(normalize(f))
		}
		return out
	}
	return v
}
