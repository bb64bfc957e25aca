package smtpclient

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"time"

	"moat/internal/delivery"
	"moat/internal/smtp"
)

// Conn is one connection to an SMTP or LMTP server with what its
// handshake learned. It is owned by one delivery at a time or idle in a
// Cache; Postfix's smtp(8) keeps the same per-connection state in its
// SMTP_SESSION.
type Conn struct {
	c  net.Conn
	br *bufio.Reader
	bw *bufio.Writer
	// wtimeout bounds each write, as Postfix's per-I/O timeouts do; the
	// protocol phase sets it.
	wtimeout time.Duration

	// Host is the server's name as the next hop or MX record gave it (the
	// Remote-MTA of a future DSN); Namaddr is "host[addr]" for the "host
	// H said" texts; Relay is relay= in the log, "host[addr]:port" (or
	// "host[path]" for a UNIX-domain socket).
	Host, Namaddr, Relay string
	// Ext is what the EHLO or LHLO reply offered.
	Ext smtp.Extensions
	// Born and Uses feed the reuse limits
	// (*_connection_reuse_time_limit, lmtp_connection_reuse_count_limit).
	Born time.Time
	Uses int
	// helloDone says the greeting and EHLO/LHLO have been exchanged.
	helloDone bool
	// sevenBit says the current transaction sends the body downgraded.
	sevenBit bool

	// TLS is the destination's TLS policy, set by the agent before the
	// first Session; nil means no STARTTLS (level none, or LMTP).
	TLS *TLSPolicy
	// TLSState is the completed handshake after STARTTLS, nil in clear.
	TLSState *tls.ConnectionState
	// RetryPlain says a STARTTLS handshake failed at level "may": the
	// agent connects again without TLS, as Postfix's smtp(8) does
	// (smtp_connect.c), and no recipient has an outcome from this try.
	RetryPlain bool
	// tc is the TLS layer over c once STARTTLS completed; deadlines
	// are still set on c, which tls.Conn reads and writes through.
	tc *tls.Conn
}

// NewConn wraps a connected socket; host, namaddr and relay are as in
// Conn.
func NewConn(c net.Conn, host, namaddr, relay string, born time.Time) *Conn {
	w := &Conn{c: c, br: bufio.NewReaderSize(c, 4096), Host: host, Namaddr: namaddr, Relay: relay, Born: born}
	w.bw = bufio.NewWriterSize(deadlineWriter{w}, 32*1024)
	return w
}

// Close closes the socket without QUIT.
func (w *Conn) Close() error { return w.c.Close() }

// deadlineWriter renews the write deadline before each write to the
// connection.
type deadlineWriter struct{ w *Conn }

func (d deadlineWriter) Write(p []byte) (int, error) {
	setDeadline(d.w.c.SetWriteDeadline, d.w.wtimeout)
	if d.w.tc != nil {
		return d.w.tc.Write(p)
	}
	return d.w.c.Write(p)
}

func setDeadline(set func(time.Time) error, d time.Duration) {
	if d > 0 {
		set(time.Now().Add(d))
	} else {
		set(time.Time{})
	}
}

// read reads one reply within timeout.
func (w *Conn) read(timeout time.Duration) (smtp.Reply, error) {
	setDeadline(w.c.SetReadDeadline, timeout)
	return smtp.ReadReply(w.br, 0)
}

// send queues one command line; flush sends what is queued.
func (w *Conn) send(line string, timeout time.Duration) {
	w.wtimeout = timeout
	w.bw.WriteString(line)
	w.bw.WriteString("\r\n")
}

func (w *Conn) flush(timeout time.Duration) error {
	w.wtimeout = timeout
	return w.bw.Flush()
}

// QuitAndClose ends a connection: QUIT, its reply awaited for at most
// timeout, then close.
func (w *Conn) QuitAndClose(timeout time.Duration) {
	w.send("QUIT", timeout)
	if w.flush(timeout) == nil {
		w.read(timeout)
	}
	w.c.Close()
}

// ConnErr is %m for a failed connect, as Postfix logs it in "connect to
// host[addr]:port: REASON"; Go reports a dial timeout as its own error,
// which the kernel would have called ETIMEDOUT.
func ConnErr(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "Connection timed out"
	}
	return delivery.Strerror(err)
}
