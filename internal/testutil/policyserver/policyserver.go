// Package policyserver is a minimal Postfix policy delegation server
// (SMTPD_POLICY_README) on loopback for tests of check_policy_service: it
// records each request and answers with the action a test function gives.
package policyserver

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// Server records requests and answers them.
type Server struct {
	ln    net.Listener
	reply func(map[string]string) string
	reqs  chan map[string]string

	mu   sync.Mutex
	last map[string]string
}

// Start serves on a free 127.0.0.1 port until the test ends; reply gives
// the action (without "action=") for each request's attributes. Each
// connection answers at most 100 requests within 60 seconds.
func Start(t testing.TB, reply func(map[string]string) string) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return Serve(t, ln, reply)
}

// Serve is Start on a listener the test made (a UNIX-domain socket in a
// jail's private/ directory, say); it closes ln when the test ends.
func Serve(t testing.TB, ln net.Listener, reply func(map[string]string) string) *Server {
	s := &Server{ln: ln, reply: reply, reqs: make(chan map[string]string, 100)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s
}

// Addr is the server's "host:port".
func (s *Server) Addr() string { return s.ln.Addr().String() }

func (s *Server) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	br := bufio.NewReader(c)
	for range 100 {
		req := map[string]string{}
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimSuffix(line, "\n")
			if line == "" {
				break
			}
			k, v, _ := strings.Cut(line, "=")
			req[k] = v
		}
		s.mu.Lock()
		s.last = req
		s.mu.Unlock()
		select {
		case s.reqs <- req:
		default:
		}
		if _, err := fmt.Fprintf(c, "action=%s\n\n", s.reply(req)); err != nil {
			return
		}
	}
}

// Last is the most recent request, nil before the first.
func (s *Server) Last() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// Next returns the next request in arrival order, failing the test after
// 20 seconds without one.
func (s *Server) Next(t testing.TB) map[string]string {
	t.Helper()
	select {
	case r := <-s.reqs:
		return r
	case <-time.After(20 * time.Second):
		t.Fatal("no policy request within 20s")
		return nil
	}
}
