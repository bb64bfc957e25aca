// Package proxymap is moat's proxymap(8) server: read-only table lookups
// on behalf of daemons that run in a chroot jail (a chrooted smtpd cannot
// read /etc/passwd, so local_recipient_maps = proxy:unix:passwd.byname
// asks this server instead), and one open table shared by every client
// (one database connection instead of one per smtpd).
//
// The server runs as the master.cf "proxymap" service, unjailed, on a
// UNIX socket (private/proxymap); clients are maps.Open("proxy:TYPE:NAME")
// with maps.Options.ProxySocket set. Requests and replies use the framed
// protocol of package wire.
//
// Only the tables that proxy_read_maps approves are opened (postconf(5),
// proxymap(8) SECURITY); others are refused with Postfix's warnings. Write
// requests (Postfix's proxywrite service, proxy_write_maps) are refused:
// moat has no daemon that updates a table through the proxy yet.
package proxymap

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	stdmaps "maps"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"moat/internal/config"
	"moat/internal/maillog"
	"moat/internal/maps"
	"moat/internal/proxymap/wire"
)

// writeTimeout bounds sending one reply. A client that stops reading is
// dropped rather than allowed to hold a goroutine and a buffer forever
// (Postfix's ipc_timeout serves the same purpose).
const writeTimeout = 30 * time.Second

// recheckInterval bounds how often a file-backed table's file is checked
// for changes, as the maps package does for indexed files.
const recheckInterval = time.Second

// openRetryDelay is how long a failure to open a table is repeated to
// clients before the open is tried again, so a missing file costs one
// open attempt (and one warning) a second, not one per request.
const openRetryDelay = time.Second

// Serve answers proxymap requests on ln until ctx ends, then closes the
// listener, the client connections and the tables, and returns nil. cfg is
// the proxymap service's parameter view (its proxy_read_maps decides what
// is approved, and its table options — key folding, trusted owners —
// apply); log receives Postfix's warnings and must not be nil. An error
// means the listener failed.
func Serve(ctx context.Context, ln net.Listener, cfg *config.Config, log *maillog.Logger) error {
	s, err := newServer(cfg, log)
	if err != nil {
		return err
	}
	return s.serve(ctx, ln)
}

// server is one proxymap service: the approved names and the open tables.
type server struct {
	log      *maillog.Logger
	approved map[string]bool
	base     maps.Options
	recheck  time.Duration // recheckInterval; tests shorten it

	mu     sync.Mutex
	tables map[tableKey]*entry
	conns  map[net.Conn]struct{}

	opens atomic.Int64 // tables opened, for tests: one open serves all clients
}

// tableKey names one open instance: the table and the key handling its
// clients asked for (Postfix opens one instance per name and flags).
type tableKey struct {
	name  string
	flags wire.Flags
}

func newServer(cfg *config.Config, log *maillog.Logger) (*server, error) {
	if log == nil {
		return nil, errors.New("proxymap: no logger")
	}
	base, err := maps.DaemonOptions(cfg, func(msg string) { log.Warning("%s", msg) })
	if err != nil {
		return nil, fmt.Errorf("proxymap: %w", err)
	}
	// The server opens the inner tables itself; it must never proxy them.
	base.ProxySocket = ""
	approved := approvedTables(cfg.Get("proxy_read_maps"), "proxy_read_maps", log.Warning)
	// Postfix names each approved table in verbose mode (-v in master.cf).
	for _, name := range slices.Sorted(stdmaps.Keys(approved)) {
		log.Verbose("allowlisting %s from %s", name, "proxy_read_maps")
	}
	return &server{
		log:      log,
		approved: approved,
		base:     base,
		recheck:  recheckInterval,
		tables:   make(map[tableKey]*entry),
	}, nil
}

func (s *server) serve(ctx context.Context, ln net.Listener) error {
	s.mu.Lock()
	s.conns = make(map[net.Conn]struct{})
	s.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer s.closeTables()
	defer wg.Wait()
	defer s.closeConns()
	backoff := 5 * time.Millisecond
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Out of descriptors or similar: wait and try again, as
				// net/http does, instead of exiting with clients queued.
				time.Sleep(backoff)
				backoff = min(2*backoff, time.Second)
				continue
			}
			return fmt.Errorf("proxymap: accept: %w", err)
		}
		backoff = 5 * time.Millisecond
		if !s.track(c) {
			c.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.untrack(c)
			s.serveConn(c)
		}()
	}
}

func (s *server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns == nil {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *server) untrack(c net.Conn) {
	s.mu.Lock()
	if s.conns != nil {
		delete(s.conns, c)
	}
	s.mu.Unlock()
	c.Close()
}

// closeConns ends every client connection; their goroutines then return.
func (s *server) closeConns() {
	s.mu.Lock()
	conns := s.conns
	s.conns = nil
	s.mu.Unlock()
	for c := range conns {
		c.Close()
	}
}

func (s *server) closeTables() {
	s.mu.Lock()
	tables := s.tables
	s.tables = make(map[tableKey]*entry)
	s.mu.Unlock()
	for _, e := range tables {
		e.close()
	}
}

// serveConn answers one client's requests in order until it hangs up.
// Clients keep their connection between lookups (there is no close
// request, as in Postfix: tables stay open for the next client).
func (s *server) serveConn(c net.Conn) {
	r := bufio.NewReader(c)
	for {
		req, err := wire.ReadRequest(r)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.log.Warning("proxymap: bad request from client: %v", err)
			}
			return
		}
		rep := s.handle(req)
		if err := c.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
			return
		}
		if err := wire.WriteReply(c, rep); err != nil {
			return
		}
	}
}

// handle answers one request (proxymap.c: proxymap_service and its
// per-request functions).
func (s *server) handle(req wire.Request) wire.Reply {
	switch req.Op {
	case wire.OpOpen, wire.OpLookup:
	case wire.OpUpdate, wire.OpDelete:
		s.log.Warning("refusing %s %s request on non-%s service", req.Table, req.Op, "proxywrite")
		return wire.Reply{Status: wire.StatusDeny}
	default:
		s.log.Warning("unrecognized request: \"%s\", ignored", req.Op)
		return wire.Reply{Status: wire.StatusBad}
	}
	name := stripProxy(req.Table)
	if !strings.Contains(name, ":") {
		return wire.Reply{Status: wire.StatusBad}
	}
	if !s.approved[name] {
		s.log.Warning("request for unapproved table: \"%s\"", name)
		s.log.Warning("to approve this table for %s access, list %s%s in %s:%s",
			"read-only", proxyPrefix, name, "main.cf", "proxy_read_maps")
		return wire.Reply{Status: wire.StatusDeny}
	}
	e := s.entry(tableKey{name: name, flags: req.Flags & (wire.FlagFold | wire.FlagUTF8)})
	if req.Op == wire.OpOpen {
		pattern, err := e.open()
		if err != nil {
			return wire.Reply{Status: wire.StatusRetry, Value: err.Error()}
		}
		return wire.Reply{Status: wire.StatusOK, Flags: kindFlag(pattern)}
	}
	value, found, pattern, err := e.lookup(req.Key)
	switch {
	case err != nil:
		return wire.Reply{Status: wire.StatusRetry, Value: err.Error()}
	case found:
		return wire.Reply{Status: wire.StatusOK, Flags: kindFlag(pattern), Value: value}
	}
	return wire.Reply{Status: wire.StatusNoKey, Flags: kindFlag(pattern)}
}

func kindFlag(pattern bool) wire.Flags {
	if pattern {
		return wire.FlagPattern
	}
	return 0
}

// entry finds or creates the shared instance for k; the table itself is
// opened by the first request that needs it.
func (s *server) entry(k tableKey) *entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.tables[k]
	if e == nil {
		opts := s.base
		opts.Fold = k.flags&wire.FlagFold != 0
		opts.UTF8 = k.flags&wire.FlagUTF8 != 0
		e = &entry{srv: s, name: k.name, opts: opts, file: watchedFile(k.name)}
		s.tables[k] = e
	}
	return e
}
