package postfix

import (
	"errors"

	"moat/internal/maps"
	"moat/internal/master"
	"moat/internal/qmgr"
	"moat/internal/restrict"
	"moat/internal/smtpd"
)

// servers maps master.cf command names to the servers the master runs on
// inet services (master(5), "command name + arguments").
func servers() map[string]master.ServerFactory {
	return map[string]master.ServerFactory{
		"smtpd": newSMTPD,
	}
}

// newSMTPD builds one smtpd service generation with its restriction lists:
// a service whose lists cannot be evaluated (or would make an open relay)
// does not start, so moat fails closed.
func newSMTPD(d master.ServiceDeps) (master.ConnServer, error) {
	log := d.Log
	mo, err := maps.DaemonOptions(d.Config, func(msg string) { log.Warning("%s", msg) })
	if err != nil {
		return nil, err
	}
	lists, err := restrict.New(d.Config, mo)
	if err != nil {
		return nil, err
	}
	s, err := smtpd.New(smtpd.Deps{
		Config: d.Config, Service: d.Service, Log: d.Log, Queue: d.Queue,
		Policy: lists, Committed: d.Committed, Now: d.Now,
	})
	if err != nil {
		lists.Close()
		return nil, err
	}
	return &smtpdService{Server: s, lists: lists}, nil
}

// smtpdService closes a generation's restriction tables with its server.
type smtpdService struct {
	*smtpd.Server
	lists *restrict.Lists
}

// Close releases the server's and the restriction lists' tables.
func (s *smtpdService) Close() error {
	return errors.Join(s.Server.Close(), s.lists.Close())
}

// roles are the background roles started with the master and stopped with
// it, after queue recovery and before the first connection: the queue
// manager, woken by every smtpd commit through ServiceDeps.Committed.
func roles() []master.RoleSpec {
	return []master.RoleSpec{{
		Name: "qmgr",
		New: func(d master.RoleDeps) (master.Role, error) {
			return qmgr.New(qmgr.Deps{Config: d.Config, Log: d.Log, Queue: d.Queue})
		},
	}}
}
