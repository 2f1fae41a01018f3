package kfadmin

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/kefu-io/kefu/internal/wechat"
)

func runAccountList(ctx context.Context, inv *invocation) error {
	list, err := inv.admin.accounts(ctx)
	if err != nil {
		return err
	}
	return inv.emit(list, func(w io.Writer) error { return writeAccounts(w, list) })
}

func runAccountSave(ctx context.Context, inv *invocation) error {
	in := wechat.KfAccountInput{KfAccount: inv.args[0], Nickname: inv.flag("nickname"), Password: inv.flag("password")}
	if strings.TrimSpace(in.Nickname) == "" {
		return inv.usagef("--nickname must not be empty")
	}
	if err := ValidateAccount(in.KfAccount); err != nil {
		return inv.usagef("%v", err)
	}
	out, err := inv.admin.saveAccount(ctx, inv.cmd.path == "account update", in)
	return inv.outcome(out, err)
}

func runAccountDelete(ctx context.Context, inv *invocation) error {
	if err := ValidateAccount(inv.args[0]); err != nil {
		return inv.usagef("%v", err)
	}
	out, err := inv.admin.deleteAccount(ctx, inv.args[0])
	return inv.outcome(out, err)
}

func runAccountInvite(ctx context.Context, inv *invocation) error {
	account, wx := inv.args[0], inv.args[1]
	if err := ValidateAccount(account); err != nil {
		return inv.usagef("%v", err)
	}
	if err := ValidateWeChatID(wx); err != nil {
		return inv.usagef("%v", err)
	}
	out, err := inv.admin.inviteWorker(ctx, account, wx)
	return inv.outcome(out, err)
}

func runAccountAvatar(ctx context.Context, inv *invocation) error {
	account, file := inv.args[0], inv.args[1]
	if err := ValidateAccount(account); err != nil {
		return inv.usagef("%v", err)
	}
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("upload avatar of %s: %w", account, err)
	}
	defer f.Close()
	out, err := inv.admin.uploadAvatar(ctx, account, filepath.Base(file), f)
	return inv.outcome(out, err)
}

func runOnline(ctx context.Context, inv *invocation) error {
	list, err := inv.admin.online(ctx)
	if err != nil {
		return err
	}
	return inv.emit(list, func(w io.Writer) error { return writeOnline(w, list) })
}

func runWaiting(ctx context.Context, inv *invocation) error {
	list, err := inv.admin.waiting(ctx)
	if err != nil {
		return err
	}
	return inv.emit(list, func(w io.Writer) error { return writeWaiting(w, list, inv.now()) })
}

func runSessionGet(ctx context.Context, inv *invocation) error {
	s, err := inv.admin.session(ctx, inv.args[0])
	if err != nil {
		return err
	}
	return inv.emit(s, func(w io.Writer) error { return writeSession(w, s, inv.now()) })
}

func runSessionList(ctx context.Context, inv *invocation) error {
	if err := ValidateAccount(inv.flag("kf")); err != nil {
		return inv.usagef("--kf: %v", err)
	}
	list, err := inv.admin.sessions(ctx, inv.flag("kf"))
	if err != nil {
		return err
	}
	return inv.emit(list, func(w io.Writer) error { return writeSessions(w, list, inv.now()) })
}

func runSessionCreate(ctx context.Context, inv *invocation) error {
	req := SessionRequest{OpenID: inv.flag("openid"), KfAccount: inv.flag("kf"), Group: inv.flag("group"), Text: inv.flag("text")}
	switch {
	case strings.TrimSpace(req.OpenID) == "":
		return inv.usagef("--openid must not be empty")
	case inv.has("kf") == inv.has("group"):
		return inv.usagef("give exactly one of --kf and --group")
	case inv.has("kf"):
		if err := ValidateAccount(req.KfAccount); err != nil {
			return inv.usagef("--kf: %v", err)
		}
	default:
		if err := ValidateGroupName(req.Group); err != nil {
			return inv.usagef("--group: %v", err)
		}
	}
	out, err := inv.admin.createSession(ctx, req)
	return inv.outcome(out, err)
}

func runSessionClose(ctx context.Context, inv *invocation) error {
	if strings.TrimSpace(inv.flag("openid")) == "" {
		return inv.usagef("--openid must not be empty")
	}
	if err := ValidateAccount(inv.flag("kf")); err != nil {
		return inv.usagef("--kf: %v", err)
	}
	out, err := inv.admin.closeSession(ctx, inv.flag("openid"), inv.flag("kf"), inv.flag("text"))
	return inv.outcome(out, err)
}
