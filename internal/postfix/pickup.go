package postfix

import (
	"context"
	"errors"
	"syscall"

	"moat/internal/cleanup"
	"moat/internal/maps"
	"moat/internal/master"
	"moat/internal/pickup"
	"moat/internal/rewrite"
)

// newPickup builds pickup(8) for master.cf's pickup row (stock: "pickup
// unix n - y 60 1 pickup", mail_owner, jailed): its header_checks tables
// and the queue manager's FIFO are opened here, before the child chroots
// and drops privileges, and the tables go through proxymap when it runs.
func newPickup(d master.RoleDeps) (master.Role, error) {
	log := d.Log
	mo, err := maps.DaemonOptions(d.Config, func(msg string) { log.Warning("%s", msg) })
	if err != nil {
		return nil, err
	}
	mo.ProxySocket = d.ProxySocket
	cs, err := cleanup.FromConfig(d.Config, mo)
	if err != nil {
		return nil, err
	}
	// cleanup(8)'s envelope rewriting (canonical, virtual alias), as smtpd
	// applies it to mail it receives.
	rw, err := rewrite.New(d.Config, mo)
	if err != nil {
		cs.Close()
		return nil, err
	}
	fd, err := master.OpenTrigger(d.Config.Get("queue_directory"))
	if err != nil {
		log.Warning("%v: the queue manager finds picked-up mail at its next scan", err)
	}
	p, err := pickup.New(pickup.Deps{
		Config: d.Config, Log: d.Log, Queue: d.Queue, Cleanup: cs, Rewrite: rw.Envelope,
		Wake: func() { master.Trigger(fd, master.TriggerIncoming) },
	})
	if err != nil {
		cs.Close()
		rw.Close()
		if fd >= 0 {
			syscall.Close(fd)
		}
		return nil, err
	}
	return pickupRole{p, cs, rw, fd}, nil
}

// pickupRole releases the tables and the FIFO once pickup stops.
type pickupRole struct {
	*pickup.Pickup
	cs *cleanup.Settings
	rw *rewrite.Rewriter
	fd int
}

// Run runs pickup, then closes what newPickup opened.
func (r pickupRole) Run(ctx context.Context) error {
	err := r.Pickup.Run(ctx)
	if r.fd >= 0 {
		syscall.Close(r.fd)
	}
	return errors.Join(err, r.cs.Close(), r.rw.Close())
}
