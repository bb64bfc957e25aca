package anvil

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The wire protocol between smtpd and the anvil service is one request line
// and one reply line per event, over a UNIX stream socket:
//
//	request: VERB SP service SP address LF
//	         VERB is CONNECT, DISCONNECT, MAIL, RCPT, NEWTLS, NEWTLS_STATUS
//	         or AUTH
//	reply:   "OK" SP count SP rate LF     (count is 0 except for CONNECT)
//	         "ERR" SP text LF
//
// Lines are short ASCII: a client that sends anything else gets ERR and
// the connection is closed, so a confused peer cannot desynchronise it.

// MaxLine bounds a request or reply line, LF included.
const MaxLine = 512

// maxField bounds a service name or address (a master.cf service name such
// as "[2001:db8::1]:2525" or an IPv6 address with a zone fits easily).
const maxField = 200

// verbs maps request verbs to events; DISCONNECT is handled apart.
var verbs = map[string]Event{
	"CONNECT": EvConnect,
	"MAIL":    EvMail,
	"RCPT":    EvRcpt,
	"NEWTLS":  EvNewTLS,
	"AUTH":    EvAuth,
}

// verbDisconnect is the one request that counts down, verbTLSStatus the
// one that counts nothing.
const (
	verbDisconnect = "DISCONNECT"
	verbTLSStatus  = "NEWTLS_STATUS"
)

// Request is one parsed request line.
type Request struct {
	Verb    string
	Service string
	Addr    string
}

// String renders the request as its wire line, without the LF.
func (r Request) String() string { return r.Verb + " " + r.Service + " " + r.Addr }

// errBadRequest is wrapped by every ParseRequest error.
var errBadRequest = errors.New("bad anvil request")

// ParseRequest parses a request line (without its LF).
func ParseRequest(line string) (Request, error) {
	f := strings.Split(line, " ")
	if len(f) != 3 {
		return Request{}, fmt.Errorf("%w: want 3 fields, got %d", errBadRequest, len(f))
	}
	r := Request{Verb: f[0], Service: f[1], Addr: f[2]}
	if _, ok := verbs[r.Verb]; !ok && r.Verb != verbDisconnect && r.Verb != verbTLSStatus {
		return Request{}, fmt.Errorf("%w: unknown verb %q", errBadRequest, truncate(r.Verb))
	}
	for _, v := range f[1:] {
		if err := checkField(v); err != nil {
			return Request{}, err
		}
	}
	return r, nil
}

// checkField accepts a non-empty printable ASCII field without blanks.
func checkField(v string) error {
	if v == "" || len(v) > maxField {
		return fmt.Errorf("%w: field length %d", errBadRequest, len(v))
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c <= ' ' || c > '~' {
			return fmt.Errorf("%w: byte 0x%02x in field", errBadRequest, c)
		}
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 20 {
		return s[:20]
	}
	return s
}

// Reply is one parsed reply line.
type Reply struct {
	Count, Rate int
	Err         string // non-empty for an ERR reply
}

// String renders the reply as its wire line, without the LF.
func (r Reply) String() string {
	if r.Err != "" {
		return "ERR " + r.Err
	}
	return "OK " + strconv.Itoa(r.Count) + " " + strconv.Itoa(r.Rate)
}

// ParseReply parses a reply line (without its LF).
func ParseReply(line string) (Reply, error) {
	if rest, ok := strings.CutPrefix(line, "ERR "); ok {
		if rest == "" {
			return Reply{}, errors.New("bad anvil reply: empty ERR text")
		}
		return Reply{Err: rest}, nil
	}
	f := strings.Split(line, " ")
	if len(f) != 3 || f[0] != "OK" {
		return Reply{}, fmt.Errorf("bad anvil reply %q", truncate(line))
	}
	var n [2]int
	for i, v := range f[1:] {
		x, err := strconv.Atoi(v)
		if err != nil || x < 0 || x > maxCount || v != strconv.Itoa(x) {
			return Reply{}, fmt.Errorf("bad anvil reply number %q", truncate(v))
		}
		n[i] = x
	}
	return Reply{Count: n[0], Rate: n[1]}, nil
}

// Apply runs a request against a Limiter and returns its reply.
func Apply(l Limiter, r Request) Reply {
	var rep Reply
	var err error
	switch r.Verb {
	case verbDisconnect:
		err = l.Disconnect(r.Service, r.Addr)
	case "CONNECT":
		rep.Count, rep.Rate, err = l.Connect(r.Service, r.Addr)
	case "MAIL":
		rep.Rate, err = l.Mail(r.Service, r.Addr)
	case "RCPT":
		rep.Rate, err = l.Rcpt(r.Service, r.Addr)
	case "NEWTLS":
		rep.Rate, err = l.NewTLS(r.Service, r.Addr)
	case verbTLSStatus:
		rep.Rate, err = l.NewTLSStatus(r.Service, r.Addr)
	case "AUTH":
		rep.Rate, err = l.Auth(r.Service, r.Addr)
	default:
		err = fmt.Errorf("unknown verb %q", truncate(r.Verb))
	}
	if err != nil {
		return Reply{Err: err.Error()}
	}
	return rep
}
