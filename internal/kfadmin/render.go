package kfadmin

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// The human forms of the CLI's results: aligned tables for lists, one
// sentence for a change.

func newTable(w io.Writer, header ...string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	return tw
}

func row(tw *tabwriter.Writer, cols ...string) {
	for i, c := range cols {
		if c == "" {
			cols[i] = "-"
		}
	}
	fmt.Fprintln(tw, strings.Join(cols, "\t"))
}

// writeTable writes one row of cols per item under header, or the line
// none when there is no item.
func writeTable[T any](w io.Writer, items []T, none string, header []string, cols func(T) []string) error {
	if len(items) == 0 {
		_, err := fmt.Fprintln(w, none)
		return err
	}
	tw := newTable(w, header...)
	for _, it := range items {
		row(tw, cols(it)...)
	}
	return tw.Flush()
}

func writeAccounts(w io.Writer, list AccountList) error {
	return writeTable(w, list.Accounts, "no kf accounts", []string{"ACCOUNT", "NICKNAME", "ID", "WECHAT", "INVITATION"}, func(a Account) []string {
		invite := ""
		if a.InviteWx != "" {
			invite = a.InviteWx + " (" + a.InviteStatus
			if a.InviteStatus == "waiting" && a.InviteExpireTime > 0 {
				invite += " until " + time.Unix(a.InviteExpireTime, 0).UTC().Format(time.RFC3339)
			}
			invite += ")"
		}
		return []string{a.KfAccount, a.KfNick, a.KfID, a.KfWx, invite}
	})
}

// statusText names getonlinekflist's status bits.
func statusText(s int) string {
	switch s {
	case 1:
		return "pc"
	case 2:
		return "mobile"
	case 3:
		return "pc+mobile"
	case 0:
		return "offline"
	}
	return fmt.Sprintf("status %d", s)
}

func writeOnline(w io.Writer, list OnlineList) error {
	return writeTable(w, list.Online, "no agent is online", []string{"ACCOUNT", "ID", "STATUS", "SESSIONS", "AUTO_ACCEPT"}, func(a OnlineAgent) []string {
		return []string{a.KfAccount, a.KfID, statusText(a.Status), fmt.Sprint(a.AcceptedCase), fmt.Sprint(a.AutoAccept)}
	})
}

// clock formats a Unix time as RFC 3339 in now's location, with its
// offset, so the time is never ambiguous; 0 is unknown.
func clock(unix int64, now time.Time) string {
	if unix == 0 {
		return "-"
	}
	return time.Unix(unix, 0).In(now.Location()).Format(time.RFC3339)
}

// since is the time elapsed from unix to now, to the second.
func since(unix int64, now time.Time) string {
	if unix == 0 {
		return "-"
	}
	d := now.Sub(time.Unix(unix, 0)).Truncate(time.Second)
	if d < 0 {
		d = 0
	}
	return d.String()
}

func writeWaiting(w io.Writer, list WaitingList, now time.Time) error {
	switch {
	case list.Count == 0:
		_, err := fmt.Fprintln(w, "no customer is waiting")
		return err
	case list.Count > list.Listed:
		fmt.Fprintf(w, "%d customers waiting; WeChat lists only the %d who have waited longest\n", list.Count, list.Listed)
	default:
		fmt.Fprintf(w, "%d customers waiting\n", list.Count)
	}
	if list.Listed == 0 {
		return nil
	}
	tw := newTable(w, "OPENID", "FOR", "SINCE", "WAITED")
	for _, c := range list.Cases {
		kf := c.KfAccount
		if kf == "" {
			kf = "any agent"
		}
		row(tw, c.OpenID, kf, clock(c.CreateTime, now), since(c.CreateTime, now))
	}
	return tw.Flush()
}

func writeSession(w io.Writer, s SessionState, now time.Time) error {
	var err error
	if s.KfAccount == "" {
		_, err = fmt.Fprintf(w, "%s is not served by any agent (waiting in the queue, or no session)\n", s.OpenID)
	} else {
		_, err = fmt.Fprintf(w, "%s is served by %s since %s (%s)\n", s.OpenID, s.KfAccount, clock(s.CreateTime, now), since(s.CreateTime, now))
	}
	return err
}

func writeSessions(w io.Writer, list SessionList, now time.Time) error {
	return writeTable(w, list.Sessions, list.KfAccount+" serves no session", []string{"OPENID", "SINCE", "DURATION"}, func(s SessionItem) []string {
		return []string{s.OpenID, clock(s.CreateTime, now), since(s.CreateTime, now)}
	})
}

func writeGroups(w io.Writer, groups []Group) error {
	return writeTable(w, groups, "no groups", []string{"GROUP", "MEMBERS", "KEYWORDS", "UPDATED"}, func(g Group) []string {
		updated := ""
		if !g.UpdatedAt.IsZero() {
			updated = g.UpdatedAt.Format(time.RFC3339)
		}
		return []string{g.Name, strings.Join(g.Members, ","), strings.Join(g.Keywords, ","), updated}
	})
}

func writeOutcome(w io.Writer, o Outcome) error {
	var msg string
	switch o.Action {
	case "account.added":
		msg = "kf account " + o.KfAccount + " added"
	case "account.updated":
		msg = "kf account " + o.KfAccount + " updated"
	case "account.deleted":
		msg = "kf account " + o.KfAccount + " deleted"
		if len(o.RemovedFromGroups) > 0 {
			msg += "; removed from group " + strings.Join(o.RemovedFromGroups, ", ")
		}
	case "account.avatar_uploaded":
		msg = "avatar of " + o.KfAccount + " uploaded"
	case "account.invited":
		msg = "invitation to bind " + o.KfAccount + " sent to WeChat user " + o.InviteWx + "; it shows in `kefu kf account list` until accepted"
	case "session.created":
		msg = "session created: " + o.OpenID + " → " + o.KfAccount
		if o.Picked != nil {
			msg += fmt.Sprintf(" (least-loaded online member of group %s: serving %d, auto-accept %d)",
				o.Group, o.Picked.AcceptedCase, o.Picked.AutoAccept)
		}
	case "session.closed":
		msg = "session closed: " + o.OpenID + " with " + o.KfAccount
	case "group.deleted":
		msg = "group " + o.Group + " deleted"
	default:
		msg = o.Action
	}
	if o.Warning != "" {
		msg += "\nwarning: " + o.Warning
	}
	_, err := fmt.Fprintln(w, msg)
	return err
}

// writeMemberStatus lists the groups' members as WeChat sees them.
func writeMemberStatus(w io.Writer, members []MemberStatus) error {
	if len(members) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw := newTable(w, "MEMBER", "NICKNAME", "ID", "STATUS", "SESSIONS", "AUTO_ACCEPT", "NOTE")
	for _, m := range members {
		note := ""
		switch {
		case !m.Known:
			note = "not a kf account (getkflist)"
		case !m.Bound:
			note = "no WeChat user bound"
		}
		load, limit := "", ""
		if m.Status != 0 {
			load, limit = fmt.Sprint(m.AcceptedCase), fmt.Sprint(m.AutoAccept)
		}
		row(tw, m.KfAccount, m.KfNick, m.KfID, statusText(m.Status), load, limit, note)
	}
	return tw.Flush()
}
