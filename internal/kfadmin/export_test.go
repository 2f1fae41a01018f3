package kfadmin

import "time"

// CommandPaths are the paths of the command table, e.g. "account add",
// for tests that must cover every command.
func CommandPaths() []string {
	paths := make([]string, len(commandTable))
	for i, c := range commandTable {
		paths[i] = c.path
	}
	return paths
}

// SetGroupsClock sets the clock of a groups store, so that two stores
// stamp the same updated_at.
func SetGroupsClock(g *Groups, now func() time.Time) { g.now = now }
