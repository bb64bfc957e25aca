package postfix

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"

	"moat/internal/anvil"
	"moat/internal/config"
	"moat/internal/delivery"
	"moat/internal/delivery/asuser"
	"moat/internal/delivery/lmtp"
	"moat/internal/delivery/local"
	"moat/internal/delivery/pipe"
	smtpagent "moat/internal/delivery/smtp"
	"moat/internal/delivery/virtual"
	"moat/internal/dns"
	"moat/internal/maillog"
	"moat/internal/maps"
	"moat/internal/master"
	"moat/internal/proxymap"
	"moat/internal/qmgr"
	"moat/internal/resolve"
	"moat/internal/restrict"
	"moat/internal/rewrite"
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
	svc := &smtpdService{}
	fail := func(err error) (master.ConnServer, error) {
		svc.Close()
		return nil, err
	}
	// One resolver per service generation, built before a jailed child
	// enters its chroot (resolv.conf and hosts are read now); its
	// sessions share it, each with its own cache.
	if svc.resolver, err = newResolver(d.Config, mo, log); err != nil {
		return fail(fmt.Errorf("smtpd: service %s: %w", d.Service, err))
	}
	if svc.lists, err = restrict.New(d.Config, mo, svc.resolver); err != nil {
		return fail(err)
	}
	svc.lists.SetLogger(log)
	// cleanup(8)'s address rewriting and smtpd's unlisted-recipient
	// check read their tables with the same options, so a jailed smtpd
	// reaches local_recipient_maps' proxy:unix:passwd.byname through
	// proxymap.
	if svc.rewrite, err = rewrite.New(d.Config, mo); err != nil {
		return fail(err)
	}
	if svc.unlisted, err = smtpd.NewUnlisted(d.Config, mo); err != nil {
		return fail(fmt.Errorf("smtpd: service %s: %w", d.Service, err))
	}
	deps := smtpd.Deps{
		Config: d.Config, Service: d.Service, Log: d.Log, Queue: d.Queue,
		Policy: svc.lists, Committed: d.Committed, Now: d.Now,
		Rewrite: svc.rewrite, Unlisted: svc.unlisted,
		Resolver: svc.resolver, ProxySocket: d.ProxySocket,
	}
	if d.AnvilSocket != "" {
		svc.anvil = anvil.NewClient(d.AnvilSocket)
		deps.Anvil = svc.anvil
	}
	if svc.Server, err = smtpd.New(deps); err != nil {
		return fail(err)
	}
	return svc, nil
}

// smtpdService closes a generation's restriction, rewriting and
// unlisted-recipient tables and its anvil connection with its server, so a
// reload leaves nothing open behind.
type smtpdService struct {
	*smtpd.Server
	lists    *restrict.Lists
	rewrite  *rewrite.Rewriter
	unlisted *smtpd.Unlisted
	anvil    *anvil.Client
	resolver *dns.Resolver
}

// Close releases the server's, the restriction lists', the rewriter's and
// the unlisted check's tables and the anvil connection.
func (s *smtpdService) Close() error {
	var errs []error
	if s.Server != nil {
		errs = append(errs, s.Server.Close())
	}
	if s.lists != nil {
		errs = append(errs, s.lists.Close())
	}
	errs = append(errs, s.rewrite.Close(), s.unlisted.Close())
	if s.anvil != nil {
		errs = append(errs, s.anvil.Close())
	}
	if s.resolver != nil {
		errs = append(errs, s.resolver.Close())
	}
	return errors.Join(errs...)
}

// newResolver is dns.FromConfig with the reply filter's "ignoring DNS RR"
// records logged at info level, as Postfix logs them.
func newResolver(cfg *config.Config, mo maps.Options, log *maillog.Logger) (*dns.Resolver, error) {
	o, err := dns.OptionsFromConfig(cfg, mo, func(m string) { log.Warning("%s", m) })
	if err != nil {
		return nil, err
	}
	o.Info = func(m string) { log.Info("%s", m) }
	r, err := dns.New(o)
	if err != nil && o.ReplyFilter != nil {
		o.ReplyFilter.Close()
	}
	return r, err
}

// roles are the services the master runs besides smtpd: the queue
// manager (with its local, discard and error agents), woken through
// public/qmgr by every smtpd commit; anvil (anvil(8)), counting client
// limits for every smtpd process; proxymap (proxymap(8)), serving
// proxy: tables to jailed smtpd processes when master.cf has its row;
// pickup; and local, the root executor that writes mailboxes, runs
// commands and reads .forward files as the recipient for the queue
// manager's agents (the manager runs as mail_owner), with or without a
// row.
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
	}, {Name: "pickup", ChildOnly: true, New: newPickup}, {
		Name: "local", Implicit: true, Socket: true, ChildOnly: true,
		New: newLocalExec,
	}}
}

// newLocalExec is master.cf's local service: the root executor that runs
// the delivery agents' work as the recipient (mailbox writes, commands,
// .forward reads) for the queue manager, which runs as mail_owner. Only
// root, mail_owner and the executor's own uid may ask (asuser.Serve).
func newLocalExec(d master.RoleDeps) (master.Role, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("locating the moat binary: %w", err)
	}
	var peers []uint32
	if uid, ok := d.Config.MailOwnerUID(); ok {
		peers = append(peers, uint32(uid))
	}
	serve := func(ctx context.Context, ln net.Listener, _ *config.Config, log *maillog.Logger) error {
		return asuser.Serve(ctx, ln, self, log, peers...)
	}
	return socketRole{d.Listener, d.Config, d.Log, serve}, nil
}

// newQmgr builds the queue manager with its delivery agents; with
// proxymap running, its proxy: tables (relay_domains,
// virtual_alias_domains, ...) and the agents' are read through it too, as
// Postfix's trivial-rewrite does, so one open table serves all. Mail the
// agents submit (local(8) forwarding) is rewritten as cleanup rewrites
// mail from smtpd.
func newQmgr(d master.RoleDeps) (master.Role, error) {
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
	rw, err := rewrite.New(d.Config, mo)
	if err != nil {
		r.Close()
		return nil, err
	}
	m, err := qmgr.New(qmgr.Deps{
		Config: d.Config, Log: d.Log, Queue: d.Queue,
		Classify: r.Domain, Rewrite: rw.Envelope, ProxySocket: d.ProxySocket,
		SpawnSocket: d.SpawnSocket,
		Agents:      agents(),
	})
	if err != nil {
		r.Close()
		rw.Close()
		return nil, err
	}
	return qmgrRole{m, func() error { return errors.Join(r.Close(), rw.Close()) }}, nil
}

// agents are the delivery agents by master.cf command.
func agents() map[string]qmgr.AgentFactory {
	return map[string]qmgr.AgentFactory{
		"local":   delivery.Factory(local.New),
		"lmtp":    delivery.Factory(lmtp.New),
		"pipe":    delivery.Factory(pipe.New),
		"smtp":    delivery.Factory(smtpagent.New),
		"virtual": delivery.Factory(virtual.New),
	}
}

// qmgrRole releases the tables it was given once the manager stops.
type qmgrRole struct {
	*qmgr.Manager
	close func() error
}

// Run runs the manager, then releases the tables.
func (q qmgrRole) Run(ctx context.Context) error {
	err := q.Manager.Run(ctx)
	return errors.Join(err, q.close())
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
