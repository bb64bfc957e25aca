package maps

import (
	"fmt"

	"moat/internal/config"
)

// DaemonOptions are the Options every daemon opens main.cf's tables with:
// keys folded (Postfix's DICT_FLAG_FOLD_FIX) with Unicode rules when
// smtputf8_enable is on, so that postmap and the daemons agree; table files
// trusted when owned by root or mail_owner; warnings to warn (the mail log).
// One place decides this, so smtpd, the queue manager and `postfix check`
// cannot disagree about which table files they accept.
func DaemonOptions(cfg *config.Config, warn func(msg string)) (Options, error) {
	o := DefaultOptions()
	utf8, err := cfg.Bool("smtputf8_enable")
	if err != nil {
		return o, fmt.Errorf("smtputf8_enable: %w", err)
	}
	o.UTF8 = utf8
	if uid, ok := cfg.MailOwnerUID(); ok && uid > 0 {
		o.TrustedUIDs = []int{uid}
	}
	o.Warn = warn
	return o, nil
}
