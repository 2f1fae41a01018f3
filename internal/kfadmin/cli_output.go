package kfadmin

import (
	"encoding/json"
	"fmt"
	"io"
)

// emit prints v as JSON, or as the human form.
func (inv *invocation) emit(v any, human func(w io.Writer) error) error {
	if inv.json {
		enc := json.NewEncoder(inv.out)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(v)
	}
	return human(inv.out)
}

func (inv *invocation) outcome(out Outcome, err error) error {
	if err != nil {
		return err
	}
	return inv.emit(out, func(w io.Writer) error { return writeOutcome(w, out) })
}

func (inv *invocation) group(verb string, grp Group, err error) error {
	if err != nil {
		return err
	}
	return inv.emit(grp, func(w io.Writer) error {
		fmt.Fprintf(w, "group %s %s\n", grp.Name, verb)
		return writeGroups(w, []Group{grp})
	})
}
