package config

import (
	"fmt"
	"io"
)

// DefaultText is a row's default as the help prints it: the value Load
// takes when the variable is unset, or "unset".
func (v Var) DefaultText() string {
	if v.Default == "" {
		return "unset"
	}
	return v.Default
}

// Usage is a role flag's help: the row's help, its variable and its default.
func (v Var) Usage() string {
	return v.Help + " (" + v.Name + ", default " + v.DefaultText() + ")"
}

// WriteHelp writes the table as `kefu help` shows it, one variable a line
// with its help and its default.
func WriteHelp(w io.Writer) {
	for _, v := range Vars {
		fmt.Fprintf(w, "  %-26s %s (default %s)\n", v.Name, v.Help, v.DefaultText())
	}
}
