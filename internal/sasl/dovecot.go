package sasl

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Dovecot is the client side of Dovecot's authentication protocol 1.x
// (Dovecot's doc "Authentication Protocol"; Postfix's xsasl_dovecot_server.c
// speaks the same): smtpd_sasl_type = dovecot, smtpd_sasl_path naming the
// auth service's client socket.
//
// Each AUTH command gets its own connection and handshake, so a session never
// shares a half-finished exchange with another and a restarted Dovecot is
// picked up at the next login. The mechanism list for EHLO is cached for
// mechTTL.
type Dovecot struct {
	network, addr string
	timeout       time.Duration

	mu      sync.Mutex
	mechs   []Mech
	fetched time.Time
}

// mechTTL bounds how stale the EHLO AUTH list may be after Dovecot's
// auth_mechanisms change.
const mechTTL = time.Minute

// maxLine bounds one protocol line from the auth server; Dovecot's own
// limit for a request is 8 KiB of base64 plus fields.
const maxLine = 64 * 1024

// NewDovecot returns a client for path: "inet:host:port", "unix:PATH" or a
// socket path (relative ones resolve against the working directory when
// connecting, which is the queue directory inside or outside the jail, as
// in Postfix: smtpd_sasl_path = private/auth).
func NewDovecot(path string, timeout time.Duration) (*Dovecot, error) {
	d := &Dovecot{network: "unix", addr: path, timeout: timeout}
	switch {
	case strings.HasPrefix(path, "inet:"):
		d.network, d.addr = "tcp", strings.TrimPrefix(path, "inet:")
		if _, _, err := net.SplitHostPort(d.addr); err != nil {
			return nil, fmt.Errorf("smtpd_sasl_path %q: %w", path, err)
		}
	case strings.HasPrefix(path, "unix:"):
		d.addr = strings.TrimPrefix(path, "unix:")
	}
	if d.addr == "" {
		return nil, fmt.Errorf("smtpd_sasl_path is empty")
	}
	if d.timeout <= 0 {
		d.timeout = 30 * time.Second
	}
	return d, nil
}

// Close has nothing to release: connections live for one exchange.
func (d *Dovecot) Close() error { return nil }

// Mechanisms returns Dovecot's advertised mechanisms (auth_mechanisms),
// cached for a minute.
func (d *Dovecot) Mechanisms(ctx context.Context) ([]Mech, error) {
	d.mu.Lock()
	if d.mechs != nil && time.Since(d.fetched) < mechTTL {
		m := d.mechs
		d.mu.Unlock()
		return m, nil
	}
	d.mu.Unlock()
	c, err := d.connect(ctx)
	if err != nil {
		return nil, err
	}
	c.conn.Close()
	return c.mechs, nil
}

// dcConn is one handshaken connection.
type dcConn struct {
	conn  net.Conn
	r     *bufio.Reader
	mechs []Mech
}

func (d *Dovecot) connect(ctx context.Context) (*dcConn, error) {
	dl := net.Dialer{Timeout: d.timeout}
	conn, err := dl.DialContext(ctx, d.network, d.addr)
	if err != nil {
		return nil, fmt.Errorf("SASL: Connect to Dovecot auth socket '%s' failed: %w", d.addr, err)
	}
	c := &dcConn{conn: conn, r: bufio.NewReaderSize(conn, 4096)}
	d.deadline(ctx, conn)
	if _, err := fmt.Fprintf(conn, "VERSION\t1\t2\nCPID\t%d\n", os.Getpid()); err != nil {
		conn.Close()
		return nil, fmt.Errorf("SASL: Couldn't send handshake: %w", err)
	}
	h := handshake{}
	for !h.done {
		line, err := readLine(c.r)
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("SASL: reading handshake from %s: %w", d.addr, err)
		}
		if err := h.add(line); err != nil {
			conn.Close()
			return nil, fmt.Errorf("SASL: %s: %w", d.addr, err)
		}
	}
	c.mechs = h.mechs
	d.mu.Lock()
	d.mechs, d.fetched = h.mechs, time.Now()
	d.mu.Unlock()
	return c, nil
}

func (d *Dovecot) deadline(ctx context.Context, c net.Conn) {
	t := time.Now().Add(d.timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(t) {
		t = dl
	}
	_ = c.SetDeadline(t)
}

// readLine reads one LF-terminated line of at most maxLine bytes.
func readLine(r *bufio.Reader) (string, error) {
	var b []byte
	for {
		frag, err := r.ReadSlice('\n')
		b = append(b, frag...)
		if len(b) > maxLine {
			return "", errors.New("line too long")
		}
		if err == nil {
			return strings.TrimSuffix(string(b[:len(b)-1]), "\r"), nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return "", err
		}
	}
}

// handshake collects the server's VERSION, MECH ... DONE lines.
type handshake struct {
	version bool
	mechs   []Mech
	done    bool
}

func (h *handshake) add(line string) error {
	f := strings.Split(line, "\t")
	switch f[0] {
	case "VERSION":
		if len(f) < 3 {
			return errors.New("bad VERSION line")
		}
		if f[1] != "1" {
			return fmt.Errorf("protocol version mismatch (%s vs. 1)", f[1])
		}
		h.version = true
	case "MECH":
		if len(f) < 2 || f[1] == "" {
			return errors.New("bad MECH line")
		}
		m := Mech{Name: strings.ToUpper(f[1])}
		private := false
		for _, fl := range f[2:] {
			switch fl {
			case "plaintext":
				m.Flags |= FlagPlaintext
			case "dictionary":
				m.Flags |= FlagDictionary
			case "active":
				m.Flags |= FlagActive
			case "anonymous":
				m.Flags |= FlagAnonymous
			case "mutual-auth":
				m.Flags |= FlagMutualAuth
			case "private":
				private = true
			}
		}
		if !private {
			h.mechs = append(h.mechs, m)
		}
	case "DONE":
		if !h.version {
			return errors.New("no VERSION before DONE")
		}
		h.done = true
	case "SPID", "CUID", "COOKIE":
	case "":
		return errors.New("empty handshake line")
	default:
		if f[0] == "MUX" || strings.HasPrefix(f[0], "USER") {
			return errors.New("connected to wrong auth socket (auth-master instead of auth-client)")
		}
	}
	return nil
}

// Start connects and begins an exchange for mech; the AUTH request goes
// out at the first Step, with the initial response if there is one.
func (d *Dovecot) Start(ctx context.Context, mech string, ci ConnInfo) (Exchange, error) {
	c, err := d.connect(ctx)
	if err != nil {
		return nil, err
	}
	mech = strings.ToUpper(mech)
	found := false
	for _, m := range c.mechs {
		found = found || m.Name == mech
	}
	if !found {
		c.conn.Close()
		return nil, ErrNoMech
	}
	return &dcExchange{d: d, c: c, mech: mech, ci: ci}, nil
}

type dcExchange struct {
	d       *Dovecot
	c       *dcConn
	mech    string
	ci      ConnInfo
	started bool
	user    string
	// last is the last challenge, base64 as sent to the client: Postfix
	// reports it as the failure reason when FAIL gives none (the
	// "SASL LOGIN authentication failed: UGFzc3dvcmQ6" everyone greps).
	last string
}

func (e *dcExchange) Step(ctx context.Context, resp []byte) ([]byte, bool, error) {
	e.d.deadline(ctx, e.c.conn)
	var req string
	if !e.started {
		e.started = true
		var b strings.Builder
		fmt.Fprintf(&b, "AUTH\t1\t%s\tservice=%s\tnologin", e.mech, tabEscape(e.ci.Service))
		if e.ci.LocalAddr.IsValid() {
			fmt.Fprintf(&b, "\tlip=%s", e.ci.LocalAddr.Unmap())
		}
		if e.ci.ClientAddr.IsValid() {
			fmt.Fprintf(&b, "\trip=%s", e.ci.ClientAddr.Unmap())
		}
		if e.ci.LocalPort != 0 {
			fmt.Fprintf(&b, "\tlport=%d", e.ci.LocalPort)
		}
		if e.ci.ClientPort != 0 {
			fmt.Fprintf(&b, "\trport=%d", e.ci.ClientPort)
		}
		if e.ci.Secured {
			b.WriteString("\tsecured")
		}
		if resp != nil {
			b.WriteString("\tresp=" + base64.StdEncoding.EncodeToString(resp))
		}
		req = b.String()
	} else {
		req = "CONT\t1\t" + base64.StdEncoding.EncodeToString(resp)
	}
	if _, err := e.c.conn.Write([]byte(req + "\n")); err != nil {
		return nil, false, &Failure{Reason: "Connection lost to authentication server", Temporary: true}
	}
	line, err := readLine(e.c.r)
	if err != nil {
		return nil, false, &Failure{Reason: "Connection lost to authentication server", Temporary: true}
	}
	r, err := ParseDovecotReply(line)
	if err != nil || r.ID != "1" {
		return nil, false, &Failure{Reason: "Connection lost to authentication server", Temporary: true}
	}
	if r.User != "" {
		e.user = r.User
	}
	switch r.Cmd {
	case "CONT":
		ch, err := base64.StdEncoding.DecodeString(r.Data)
		if err != nil {
			return nil, false, &Failure{Reason: "bad challenge from authentication server", Temporary: true}
		}
		e.last = r.Data
		return ch, false, nil
	case "OK":
		return nil, true, nil
	default: // FAIL
		reason := e.last
		if r.Reason != "" {
			reason = r.Reason
		}
		return nil, false, &Failure{Reason: reason, Temporary: r.Temp}
	}
}

func (e *dcExchange) User() string { return e.user }
func (e *dcExchange) Close()       { e.c.conn.Close() }

// DovecotReply is one server reply to AUTH or CONT: "OK\tID\targs",
// "CONT\tID\tbase64", "FAIL\tID\targs".
type DovecotReply struct {
	Cmd, ID string
	Data    string // CONT's challenge, base64
	User    string // user=
	Reason  string // reason=
	Temp    bool   // temp (a temporary failure: 454)
}

// ParseDovecotReply parses one reply line; anything else is an error.
func ParseDovecotReply(line string) (*DovecotReply, error) {
	f := strings.Split(line, "\t")
	if len(f) < 2 || f[1] == "" {
		return nil, errors.New("malformed reply")
	}
	if _, err := strconv.ParseUint(f[1], 10, 32); err != nil {
		return nil, errors.New("malformed request id")
	}
	r := &DovecotReply{Cmd: f[0], ID: f[1]}
	switch r.Cmd {
	case "CONT":
		if len(f) != 3 {
			return nil, errors.New("malformed CONT")
		}
		r.Data = f[2]
		return r, nil
	case "OK", "FAIL":
	default:
		return nil, fmt.Errorf("unexpected reply %q", printableCmd(r.Cmd))
	}
	for _, a := range f[2:] {
		k, v, _ := strings.Cut(a, "=")
		switch k {
		case "user":
			r.User = tabUnescape(v)
		case "reason":
			r.Reason = tabUnescape(v)
		case "temp":
			r.Temp = true
		}
	}
	return r, nil
}

func printableCmd(s string) string {
	if len(s) > 20 {
		s = s[:20]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '?'
		}
		return r
	}, s)
}

// tabEscape and tabUnescape are Dovecot's str_tabescape: \001 is the escape
// character, so values can hold tabs and newlines.
func tabEscape(s string) string {
	return strings.NewReplacer("\001", "\0011", "\t", "\001t", "\r", "\001r", "\n", "\001n", "\000", "\0010").Replace(s)
}

func tabUnescape(s string) string {
	if !strings.Contains(s, "\001") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\001' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch s[i] {
		case '1':
			b.WriteByte('\001')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case 'n':
			b.WriteByte('\n')
		case '0':
			b.WriteByte(0)
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}
