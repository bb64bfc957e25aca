package anvil

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"moat/internal/config"
	"moat/internal/maillog"
)

// connIdle closes a client connection that sends nothing for this long;
// smtpd clients reconnect on their next event, so an abandoned connection
// does not hold a goroutine forever.
const connIdle = 10 * time.Minute

// Serve runs the anvil service on ln until ctx is done: one Table for every
// smtpd process of the host, its idle entries expired once per
// anvil_rate_time_unit and its "statistics:" lines logged every
// anvil_status_update_time and when the service stops (anvil(8)).
func Serve(ctx context.Context, ln net.Listener, cfg *config.Config, log *maillog.Logger) error {
	unit, status, err := times(cfg)
	if err != nil {
		return err
	}
	return ServeTable(ctx, ln, NewTable(Options{Unit: unit}), status, log)
}

// times reads anvil_rate_time_unit and anvil_status_update_time.
func times(cfg *config.Config) (unit, status time.Duration, err error) {
	if unit, err = cfg.Duration("anvil_rate_time_unit"); err != nil {
		return 0, 0, fmt.Errorf("anvil: %w", err)
	}
	if status, err = cfg.Duration("anvil_status_update_time"); err != nil {
		return 0, 0, fmt.Errorf("anvil: %w", err)
	}
	if unit <= 0 || status <= 0 {
		return 0, 0, errors.New("anvil: anvil_rate_time_unit and anvil_status_update_time must be positive")
	}
	return unit, status, nil
}

// Local is the anvil service for a master that runs every smtpd session in
// its own process: one Table shared by all services and generations (pass
// it as smtpd.Deps.Anvil), with the same expiry and "statistics:" lines as
// Serve, until ctx is done. log should be tagged "anvil", as the service's
// lines are in Postfix.
func Local(ctx context.Context, cfg *config.Config, log *maillog.Logger) (*Table, error) {
	unit, status, err := times(cfg)
	if err != nil {
		return nil, err
	}
	t := NewTable(Options{Unit: unit})
	go housekeep(ctx, t, status, log)
	return t, nil
}

// ServeTable is Serve with a table and status period chosen by the caller
// (tests use short periods and small caps).
func ServeTable(ctx context.Context, ln net.Listener, t *Table, status time.Duration, log *maillog.Logger) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	stopAccept := context.AfterFunc(ctx, func() {
		_ = ln.Close()
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
	})
	defer stopAccept()

	wg.Add(1)
	go func() {
		defer wg.Done()
		housekeep(ctx, t, status, log)
	}()

	var err error
	for {
		c, aerr := ln.Accept()
		if aerr != nil {
			if ctx.Err() == nil {
				err = fmt.Errorf("anvil: accept: %w", aerr)
			}
			break
		}
		mu.Lock()
		conns[c] = true
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			serveConn(c, t, log)
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
		}()
	}
	cancel()
	wg.Wait()
	return err
}

// housekeep expires idle entries once per unit and logs statistics every
// status period, and once more at the end as Postfix's anvil does on exit.
func housekeep(ctx context.Context, t *Table, status time.Duration, log *maillog.Logger) {
	exp := time.NewTicker(t.unit)
	defer exp.Stop()
	st := time.NewTicker(status)
	defer st.Stop()
	dump := func() {
		for _, l := range t.Statistics() {
			log.Info("%s", l)
		}
	}
	for {
		select {
		case <-ctx.Done():
			dump()
			return
		case <-exp.C:
			t.Expire()
		case <-st.C:
			dump()
		}
	}
}

// serveConn answers one smtpd client's requests until it hangs up or
// sends something that is not a request.
//
// It remembers the connections this client counted and has not yet
// uncounted, as Postfix's anvil does per client stream: when the stream
// ends (the smtpd process exited or crashed), they are uncounted, so a
// dead process's sessions do not hold their clients' concurrency forever.
// A DISCONNECT this stream never counted (a session that began before the
// client reconnected) is ignored, so a count is never taken twice.
func serveConn(c net.Conn, l Limiter, log *maillog.Logger) {
	held := map[Request]int{}
	defer func() {
		for r, n := range held {
			for range n {
				_ = l.Disconnect(r.Service, r.Addr)
			}
		}
	}()
	defer c.Close()
	br := bufio.NewReaderSize(c, MaxLine)
	bw := bufio.NewWriterSize(c, MaxLine)
	for {
		_ = c.SetReadDeadline(time.Now().Add(connIdle))
		line, err := br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				log.Warning("anvil: request longer than %d bytes; closing", MaxLine)
			}
			return
		}
		req, perr := ParseRequest(strings.TrimSuffix(string(line), "\n"))
		var rep Reply
		if perr != nil {
			log.Warning("unrecognized request: %v", perr)
			rep = Reply{Err: "bad request"}
		} else {
			rep = applyHeld(l, req, held)
		}
		_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := bw.WriteString(oneLine(rep.String()) + "\n"); err != nil {
			return
		}
		// Reply when no further request is already buffered, so a
		// pipelining client gets its replies in one write.
		if br.Buffered() == 0 || perr != nil {
			if err := bw.Flush(); err != nil {
				return
			}
		}
		if perr != nil {
			return
		}
	}
}

// applyHeld is Apply with the stream's record of counted connections.
func applyHeld(l Limiter, req Request, held map[Request]int) Reply {
	k := Request{Service: req.Service, Addr: req.Addr}
	switch req.Verb {
	case verbDisconnect:
		if held[k] == 0 {
			return Reply{}
		}
		if held[k]--; held[k] == 0 {
			delete(held, k)
		}
	case "CONNECT":
		rep := Apply(l, req)
		if rep.Err == "" {
			held[k]++
		}
		return rep
	}
	return Apply(l, req)
}

// oneLine keeps reply text on one line and within MaxLine.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r > '~' {
			return '?'
		}
		return r
	}, s)
	if len(s) > MaxLine-1 {
		s = s[:MaxLine-1]
	}
	return s
}
