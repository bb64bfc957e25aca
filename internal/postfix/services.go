package postfix

import (
	"moat/internal/master"
	"moat/internal/smtpd"
)

// servers maps master.cf command names to the servers the master runs on
// inet services (master(5), "command name + arguments").
func servers() map[string]master.ServerFactory {
	return map[string]master.ServerFactory{
		"smtpd": func(d master.ServiceDeps) (master.ConnServer, error) {
			s, err := smtpd.New(smtpd.Deps{
				Config: d.Config, Service: d.Service, Log: d.Log, Queue: d.Queue,
				Committed: d.Committed, Now: d.Now,
			})
			if err != nil {
				return nil, err
			}
			return s, nil
		},
	}
}

// roles are the background roles started with the master and stopped with
// it, after queue recovery and before the first connection: the place for
// the queue manager (qmgr.New wrapped in a master.RoleSpec named "qmgr"),
// which is woken by every smtpd commit through ServiceDeps.Committed.
func roles() []master.RoleSpec {
	return nil
}
