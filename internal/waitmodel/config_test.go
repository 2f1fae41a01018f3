package waitmodel

import (
	"reflect"
	"testing"
	"time"
)

// SetDefaults fills every zero field but Model (whose zero is Kefu) with a
// valid default, and keeps the fields the caller set.
func TestSetDefaultsFillsZeroFieldsAndKeepsSetOnes(t *testing.T) {
	def := DefaultConfig()
	if err := def.Validate(); err != nil {
		t.Fatalf("the defaults do not validate: %v", err)
	}
	v := reflect.ValueOf(def)
	for i := range v.NumField() {
		if name := v.Type().Field(i).Name; name != "Model" && v.Field(i).IsZero() {
			t.Errorf("%s has no default", name)
		}
	}

	set := Config{HalfLife: 5 * time.Hour, ChangeZ: 1.5, ShapeSamples: 7, Quantile: 0.8, ScheduleMinDays: -1}
	got := set
	got.SetDefaults()
	if got.HalfLife != set.HalfLife || got.ChangeZ != set.ChangeZ || got.ShapeSamples != set.ShapeSamples ||
		got.Quantile != set.Quantile || got.ScheduleMinDays != set.ScheduleMinDays {
		t.Errorf("SetDefaults changed fields that were set: %+v from %+v", got, set)
	}
	if got.ShortHalfLife != def.ShortHalfLife || got.MaxWait != def.MaxWait {
		t.Errorf("SetDefaults left zero fields: %+v", got)
	}
}
