package postfix

import (
	"context"
	"errors"
	"net"

	"moat/internal/anvil"
	"moat/internal/config"
	"moat/internal/maillog"
	"moat/internal/maps"
	"moat/internal/master"
	"moat/internal/proxymap"
	"moat/internal/qmgr"
	"moat/internal/resolve"
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
// does not start, so moat fails closed. Its proxy: tables go through the
// proxymap service and its client limits through anvil, when the master
// runs them (their sockets are relative to the queue directory, the
// child's working directory in or out of its jail).
func newSMTPD(d master.ServiceDeps) (master.ConnServer, error) {
	log := d.Log
	mo, err := maps.DaemonOptions(d.Config, func(msg string) { log.Warning("%s", msg) })
	if err != nil {
		return nil, err
	}
	mo.ProxySocket = d.ProxySocket
	lists, err := restrict.New(d.Config, mo)
	if err != nil {
		return nil, err
	}
	deps := smtpd.Deps{
		Config: d.Config, Service: d.Service, Log: d.Log, Queue: d.Queue,
		Policy: lists, Committed: d.Committed, Now: d.Now,
	}
	var ac *anvil.Client
	if d.AnvilSocket != "" {
		ac = anvil.NewClient(d.AnvilSocket)
		deps.Anvil = ac
	}
	s, err := smtpd.New(deps)
	if err != nil {
		lists.Close()
		if ac != nil {
			ac.Close()
		}
		return nil, err
	}
	return &smtpdService{Server: s, lists: lists, anvil: ac}, nil
}

// smtpdService closes a generation's restriction tables and its anvil
// connection with its server, so a reload leaves nothing open behind.
type smtpdService struct {
	*smtpd.Server
	lists *restrict.Lists
	anvil *anvil.Client
}

// Close releases the server's and the restriction lists' tables and the
// anvil connection.
func (s *smtpdService) Close() error {
	err := errors.Join(s.Server.Close(), s.lists.Close())
	if s.anvil != nil {
		err = errors.Join(err, s.anvil.Close())
	}
	return err
}

// roles are the services the master runs besides smtpd: the queue
// manager (with its local, discard and error agents), woken through
// public/qmgr by every smtpd commit; anvil (anvil(8)), counting client
// limits for every smtpd process; proxymap (proxymap(8)), serving
// proxy: tables to jailed smtpd processes when master.cf has its row.
func roles() []master.RoleSpec {
	return []master.RoleSpec{{
		Name: "qmgr", Implicit: true,
		New: newQmgr,
	}, {
		Name: "anvil", Implicit: true, Socket: true, ChildOnly: true,
		New: func(d master.RoleDeps) (master.Role, error) {
			return socketRole{d.Listener, d.Config, d.Log, anvil.Serve}, nil
		},
	}, {
		Name: "proxymap", Socket: true, ChildOnly: true,
		New: func(d master.RoleDeps) (master.Role, error) {
			return socketRole{d.Listener, d.Config, d.Log, proxymap.Serve}, nil
		},
	}, {Name: "pickup", ChildOnly: true, New: newPickup}}
}

// newQmgr builds the queue manager; with proxymap running, its proxy:
// tables (relay_domains, virtual_alias_domains, ...) are read through it
// too, as Postfix's trivial-rewrite does, so one open table serves all.
func newQmgr(d master.RoleDeps) (master.Role, error) {
	deps := qmgr.Deps{Config: d.Config, Log: d.Log, Queue: d.Queue}
	if d.ProxySocket == "" {
		return qmgr.New(deps)
	}
	log := d.Log
	mo, err := maps.DaemonOptions(d.Config, func(msg string) { log.Warning("%s", msg) })
	if err != nil {
		return nil, err
	}
	mo.ProxySocket = d.ProxySocket
	r, err := resolve.New(d.Config, mo)
	if err != nil {
		return nil, err
	}
	deps.Classify = r.Domain
	m, err := qmgr.New(deps)
	if err != nil {
		r.Close()
		return nil, err
	}
	return qmgrRole{m, r}, nil
}

// qmgrRole closes the resolver it was given once the manager stops.
type qmgrRole struct {
	*qmgr.Manager
	r *resolve.Resolver
}

// Run runs the manager, then releases the resolver's tables.
func (q qmgrRole) Run(ctx context.Context) error {
	err := q.Manager.Run(ctx)
	return errors.Join(err, q.r.Close())
}

// socketRole runs a service that answers on its private/ socket.
type socketRole struct {
	ln    net.Listener
	cfg   *config.Config
	log   *maillog.Logger
	serve func(context.Context, net.Listener, *config.Config, *maillog.Logger) error
}

// Run serves until ctx ends.
func (r socketRole) Run(ctx context.Context) error {
	if r.ln == nil {
		return errors.New("no socket inherited from the master")
	}
	return r.serve(ctx, r.ln, r.cfg, r.log)
}

// Wake does nothing: these services answer requests, they scan nothing.
func (socketRole) Wake() {}
