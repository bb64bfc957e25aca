package lmtp

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"moat/internal/config"
	"moat/internal/delivery"
	"moat/internal/delivery/smtpclient/clienttest"
	"moat/internal/smtp"
)

const testHost = "mx.example.com"

// newAgent builds an agent from Postfix's defaults with over laid on
// them, as a master.cf row's -o settings would be.
func newAgent(t testing.TB, queueDir string, over map[string]string) *Agent {
	t.Helper()
	o := map[string]string{"myhostname": testHost, "queue_directory": queueDir}
	for k, v := range over {
		o[k] = v
	}
	a, err := New(delivery.Deps{Config: config.Empty(t.TempDir()).WithOverrides(o), Service: "lmtp"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// request, deliver and checkResult are the agents' shared test helpers.
var (
	request     = clienttest.Request
	checkResult = clienttest.Check
)

func deliver(t testing.TB, a *Agent, req *delivery.Request) []delivery.Result {
	t.Helper()
	return clienttest.Deliver(t, a, req)
}

// fakeServer is a scripted LMTP server on a real socket, for the replies
// Dovecot will not give on demand.
type fakeServer struct {
	t    testing.TB
	ln   net.Listener
	addr string
	port string

	greeting string   // default "220 fake LMTP ready"; "none" sends none
	lhlo     []string // keyword lines; nil means PIPELINING and ENHANCEDSTATUSCODES
	mail     string   // default "250 2.1.0 OK"
	rcpt     map[string]string
	data     string   // default "354 go ahead"
	dot      []string // replies after the body, in order; default 250 each
	// hangAfterDot stops answering after the body; dropInData closes the
	// connection after reading this many body lines.
	hangAfterDot bool
	dropInData   int

	mu       sync.Mutex
	conns    []net.Conn
	commands []string
	bodies   [][]byte
	wg       sync.WaitGroup
}

func newFake(t testing.TB) *fakeServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return newFakeOn(t, ln)
}

// newFakeOn serves on ln (a UNIX-domain listener, say).
func newFakeOn(t testing.TB, ln net.Listener) *fakeServer {
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	f := &fakeServer{t: t, ln: ln, addr: ln.Addr().String(), port: port, rcpt: map[string]string{}}
	t.Cleanup(func() {
		ln.Close()
		f.wg.Wait()
	})
	return f
}

// start serves connections until the test ends; call after scripting.
func (f *fakeServer) start() {
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := f.ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conns = append(f.conns, c)
			f.mu.Unlock()
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				f.serve(c)
			}()
		}
	}()
}

// closeAll drops every connection, as a server restart would.
func (f *fakeServer) closeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.conns {
		c.Close()
	}
	f.conns = nil
}

func (f *fakeServer) log(cmd string) {
	f.mu.Lock()
	f.commands = append(f.commands, cmd)
	f.mu.Unlock()
}

func (f *fakeServer) Commands() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.commands...)
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (f *fakeServer) serve(c net.Conn) {
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	reply := func(s string) {
		w.WriteString(s + "\r\n")
	}
	if f.greeting == "none" {
		io.Copy(io.Discard, r)
		return
	}
	reply(or(f.greeting, "220 fake LMTP ready"))
	w.Flush()
	if !strings.HasPrefix(or(f.greeting, "220"), "2") {
		return
	}
	accepted := 0
	for {
		// Replies are flushed only when no more commands are waiting,
		// as a pipelining server does (RFC 2920 section 3.2).
		if r.Buffered() == 0 {
			w.Flush()
		}
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		f.log(line)
		verb := strings.ToUpper(strings.SplitN(line, " ", 2)[0])
		switch {
		case verb == "LHLO":
			kws := f.lhlo
			if kws == nil {
				kws = []string{"PIPELINING", "ENHANCEDSTATUSCODES"}
			}
			lines := append([]string{"fake"}, kws...)
			for i, l := range lines {
				sep := "-"
				if i == len(lines)-1 {
					sep = " "
				}
				reply("250" + sep + l)
			}
		case strings.HasPrefix(strings.ToUpper(line), "MAIL FROM:"):
			reply(or(f.mail, "250 2.1.0 OK"))
		case strings.HasPrefix(strings.ToUpper(line), "RCPT TO:"):
			addr := line[len("RCPT TO:<"):strings.IndexByte(line, '>')]
			rep := or(f.rcpt[addr], "250 2.1.5 OK")
			if rep[0] == '2' {
				accepted++
			}
			reply(rep)
			if strings.HasPrefix(rep, "421") {
				w.Flush()
				return
			}
		case verb == "DATA":
			rep := or(f.data, "354 go ahead")
			reply(rep)
			if !strings.HasPrefix(rep, "354") {
				continue
			}
			w.Flush()
			var body bytes.Buffer
			if f.dropInData > 0 {
				for i := 0; i < f.dropInData; i++ {
					r.ReadString('\n')
				}
				return
			}
			if _, err := smtp.ReadData(r, &body, smtp.DataOptions{}); err != nil {
				return
			}
			f.mu.Lock()
			f.bodies = append(f.bodies, body.Bytes())
			f.mu.Unlock()
			if f.hangAfterDot {
				io.Copy(io.Discard, r)
				return
			}
			for i := 0; i < accepted; i++ {
				if i < len(f.dot) {
					reply(f.dot[i])
				} else {
					reply("250 2.0.0 OK saved")
				}
			}
		case verb == "QUIT":
			reply("221 2.0.0 bye")
			w.Flush()
			return
		case verb == "RSET":
			accepted = 0
			reply("250 2.0.0 OK")
		default:
			reply("500 5.5.2 what?")
		}
	}
}
