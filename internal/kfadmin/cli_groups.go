package kfadmin

import (
	"context"
	"io"
	"strings"
)

func runGroupList(ctx context.Context, inv *invocation) error {
	list, err := inv.admin.listGroups(ctx)
	if err != nil {
		return err
	}
	return inv.emit(list, func(w io.Writer) error {
		if err := writeGroups(w, list.Groups); err != nil {
			return err
		}
		return writeMemberStatus(w, list.MemberStatus)
	})
}

// groupArgs checks the group name and accounts of a group command, so that
// a typo is a usage error rather than a failure.
func (inv *invocation) groupArgs() (string, []string, error) {
	name := inv.args[0]
	if err := ValidateGroupName(name); err != nil {
		return "", nil, inv.usagef("%v", err)
	}
	accounts := inv.args[1:]
	for _, a := range accounts {
		if err := ValidateAccount(a); err != nil {
			return "", nil, inv.usagef("%v", err)
		}
	}
	return name, accounts, nil
}

func runGroupCreate(ctx context.Context, inv *invocation) error {
	name, _, err := inv.groupArgs()
	if err != nil {
		return err
	}
	grp, err := inv.admin.createGroup(ctx, name, SplitKeywords(inv.flag("keywords")), nil)
	return inv.group("created", grp, err)
}

func runGroupAdd(ctx context.Context, inv *invocation) error {
	name, accounts, err := inv.groupArgs()
	if err != nil {
		return err
	}
	grp, err := inv.admin.addMembers(ctx, name, accounts)
	return inv.group("updated", grp, err)
}

func runGroupRemove(ctx context.Context, inv *invocation) error {
	name, accounts, err := inv.groupArgs()
	if err != nil {
		return err
	}
	grp, err := inv.admin.removeMembers(ctx, name, accounts)
	return inv.group("updated", grp, err)
}

func runGroupKeywords(ctx context.Context, inv *invocation) error {
	name, _, err := inv.groupArgs()
	if err != nil {
		return err
	}
	grp, err := inv.admin.setKeywords(ctx, name, SplitKeywords(inv.flag("keywords")))
	return inv.group("updated", grp, err)
}

func runGroupDelete(ctx context.Context, inv *invocation) error {
	name, _, err := inv.groupArgs()
	if err != nil {
		return err
	}
	out, err := inv.admin.deleteGroup(ctx, name)
	return inv.outcome(out, err)
}

// SplitKeywords splits a keyword list on ',' and the full-width '，' that a
// Chinese keyboard types; empty entries are dropped.
func SplitKeywords(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '，' })
}
