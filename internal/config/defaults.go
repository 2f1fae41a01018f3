package config

// PositiveOr returns v when it is above zero, else def: the default of a
// service's setting where zero, and a meaningless negative, stand for the
// default. (cmp.Or serves the settings where only zero does.)
func PositiveOr[T ~int | ~int64 | ~float64](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}
