package smtp

import (
	"strconv"
	"strings"
)

// Options says which extensions the session offered (EHLO keywords left
// after smtpd_discard_ehlo_keywords) and which parameters apply; parsing
// refuses parameters of extensions not offered, as Postfix does.
type Options struct {
	// Strict is strict_rfc821_envelopes: the address must be in <> with
	// no comment or phrase.
	Strict bool
	// SMTPUTF8 is smtputf8_enable (RFC 6531).
	SMTPUTF8 bool
	// DSN: RET, ENVID, NOTIFY and ORCPT (RFC 3461) are accepted.
	DSN bool
	// BinaryMIME: BODY=BINARYMIME (RFC 3030 §3) is accepted; Postfix
	// never offers it.
	BinaryMIME bool
	// Auth: AUTH= (RFC 4954 §5) is accepted; without it the parameter is
	// refused as Postfix does when SASL is off.
	Auth bool
	// SizeLimit is message_size_limit; a larger SIZE= is refused with
	// 552 5.3.4 (RFC 1870 §6.2). 0 means no limit.
	SizeLimit int64
}

// Mail is a parsed MAIL FROM command (RFC 5321 §4.1.1.2).
type Mail struct {
	From     Path
	Size     int64  // SIZE= (RFC 1870), -1 when absent
	Body     string // "", "7BIT", "8BITMIME" (RFC 6152) or "BINARYMIME" (RFC 3030)
	SMTPUTF8 bool   // RFC 6531 §3.4
	Ret      string // "", "FULL" or "HDRS" (RFC 3461 §4.3)
	EnvID    string // ENVID, xtext-decoded (RFC 3461 §4.4)
	Auth     string // AUTH=, xtext-decoded; "<>" when the client sent <>
	HasAuth  bool
}

// Notify is the RFC 3461 §4.1 NOTIFY set.
type Notify uint8

// NOTIFY keywords; NotifyNever excludes the others.
const (
	NotifyNever Notify = 1 << iota
	NotifySuccess
	NotifyFailure
	NotifyDelay
)

// String renders the set as the NOTIFY parameter value.
func (n Notify) String() string {
	var parts []string
	for _, k := range []struct {
		f Notify
		s string
	}{{NotifyNever, "NEVER"}, {NotifySuccess, "SUCCESS"}, {NotifyFailure, "FAILURE"}, {NotifyDelay, "DELAY"}} {
		if n&k.f != 0 {
			parts = append(parts, k.s)
		}
	}
	return strings.Join(parts, ",")
}

// Rcpt is a parsed RCPT TO command (RFC 5321 §4.1.1.3).
type Rcpt struct {
	To        Path
	Notify    Notify // 0 when absent
	ORcptType string // ORCPT addr-type, e.g. "rfc822" or "utf-8"
	ORcpt     string // ORCPT address, decoded; "" when absent
	HasORcpt  bool
}

// Replies Postfix's smtpd sends for MAIL and RCPT syntax errors.
var (
	mailSyntaxReply = NewReply(501, "5.5.4", "Syntax: MAIL FROM:<address>")
	rcptSyntaxReply = NewReply(501, "5.5.4", "Syntax: RCPT TO:<address>")
	badSenderReply  = NewReply(501, "5.1.7", "Bad sender address syntax")
	badRcptReply    = NewReply(501, "5.1.3", "Bad recipient address syntax")
)

var unicodeAddressReply = NewReply(553, "5.6.7", "Must declare SMTPUTF8 to send unicode address")

// UnicodeAddressReply is Postfix's refusal, under strict_smtputf8, of a
// non-ASCII address in a transaction without the SMTPUTF8 parameter
// (RFC 6531 §3.4); smtpd checks Path.ASCII and Mail.SMTPUTF8.
func UnicodeAddressReply() Reply { return unicodeAddressReply }

func syntaxErr(r Reply) error { return &ProtocolError{Err: ErrSyntax, Reply: r} }

// ParseMail parses the tokens of a whole MAIL command line (Tokenize's
// result, verb included). Refusals carry Postfix's replies: 501 5.5.4
// "Syntax: MAIL FROM:<address>", 501 5.1.7 "Bad sender address syntax",
// 501 5.5.4 "Bad message size syntax", 552 5.3.4 "Message size exceeds fixed
// limit", 501 5.5.4 "Bad RET parameter syntax", 501 5.5.4 "Bad ENVID
// parameter syntax", 555 5.5.4 "Unsupported option: X".
func ParseMail(toks []Token, o Options) (Mail, error) {
	m := Mail{Size: -1}
	if len(toks) < 3 || !strings.EqualFold(toks[1].Value, "from:") {
		return m, syntaxErr(mailSyntaxReply)
	}
	p, err := parsePath(toks[2], o.Strict, true)
	if err != nil {
		return m, syntaxErr(badSenderReply)
	}
	m.From = p
	for _, t := range toks[3:] {
		arg := t.Value
		key, val, hasVal := strings.Cut(arg, "=")
		switch k := strings.ToUpper(key); {
		case k == "BODY" && hasVal:
			switch v := strings.ToUpper(val); {
			case v == "7BIT" || v == "8BITMIME":
				m.Body = v
			case v == "BINARYMIME" && o.BinaryMIME:
				m.Body = v
			default:
				return m, unsupported(arg)
			}
		case k == "SIZE" && hasVal:
			if !isDigits(val) {
				return m, syntaxErr(NewReply(501, "5.5.4", "Bad message size syntax"))
			}
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil {
				return m, &ProtocolError{Err: ErrTooBig, Reply: NewReply(552, "5.3.4", "Message size exceeds file system imposed limit")}
			}
			m.Size = n
		case k == "SMTPUTF8" && !hasVal && o.SMTPUTF8:
			m.SMTPUTF8 = true
		case k == "AUTH" && hasVal && o.Auth:
			if m.HasAuth {
				return m, syntaxErr(NewReply(501, "5.5.4", "Bad AUTH parameter syntax"))
			}
			if val == "<>" {
				m.Auth = val
			} else if m.Auth, err = XtextDecode(val); err != nil || val == "" {
				return m, syntaxErr(NewReply(501, "5.5.4", "Bad AUTH parameter syntax"))
			}
			m.HasAuth = true
		case k == "RET" && hasVal && o.DSN:
			v := strings.ToUpper(val)
			if m.Ret != "" || (v != "FULL" && v != "HDRS") {
				return m, syntaxErr(NewReply(501, "5.5.4", "Bad RET parameter syntax"))
			}
			m.Ret = v
		case k == "ENVID" && hasVal && o.DSN:
			dec, err := XtextDecode(val)
			if m.EnvID != "" || err != nil || dec == "" || !printable(dec) {
				return m, syntaxErr(NewReply(501, "5.5.4", "Bad ENVID parameter syntax"))
			}
			m.EnvID = dec
		default:
			return m, unsupported(arg)
		}
	}
	if o.SizeLimit > 0 && m.Size > o.SizeLimit {
		return m, &ProtocolError{Err: ErrTooBig, Reply: NewReply(552, "5.3.4", "Message size exceeds fixed limit")}
	}
	return m, nil
}

// ParseRcpt parses the tokens of a whole RCPT command line. Refusals: 501
// 5.5.4 "Syntax: RCPT TO:<address>", 501 5.1.3 "Bad recipient address
// syntax", 501 5.5.4 "Error: Bad NOTIFY parameter syntax", 501 5.5.4
// "Error: Bad ORCPT parameter syntax", 555 5.5.4 "Unsupported option: X".
func ParseRcpt(toks []Token, o Options) (Rcpt, error) {
	var r Rcpt
	if len(toks) < 3 || !strings.EqualFold(toks[1].Value, "to:") {
		return r, syntaxErr(rcptSyntaxReply)
	}
	p, err := parsePath(toks[2], o.Strict, false)
	if err != nil {
		return r, syntaxErr(badRcptReply)
	}
	r.To = p
	for _, t := range toks[3:] {
		arg := t.Value
		key, val, hasVal := strings.Cut(arg, "=")
		switch k := strings.ToUpper(key); {
		case k == "NOTIFY" && hasVal && o.DSN:
			n, ok := parseNotify(val)
			if r.Notify != 0 || !ok {
				return r, syntaxErr(NewReply(501, "5.5.4", "Error: Bad NOTIFY parameter syntax"))
			}
			r.Notify = n
		case k == "ORCPT" && hasVal && o.DSN:
			typ, addr, ok := strings.Cut(val, ";")
			bad := r.HasORcpt || !ok || typ == "" || !atomText(typ)
			var dec string
			if !bad {
				if strings.EqualFold(typ, "utf-8") {
					dec, err = UTF8XtextDecode(addr)
				} else {
					dec, err = XtextDecode(addr)
				}
				bad = err != nil
			}
			if bad {
				return r, syntaxErr(NewReply(501, "5.5.4", "Error: Bad ORCPT parameter syntax"))
			}
			r.ORcptType, r.ORcpt, r.HasORcpt = typ, dec, true
		default:
			return r, unsupported(arg)
		}
	}
	return r, nil
}

func unsupported(arg string) error {
	return syntaxErr(NewReply(555, "5.5.4", "Unsupported option: "+arg))
}

// parsePath applies Postfix's extract_addr rules: with strict set the
// argument must start with '<' and hold nothing but the address;
// otherwise RFC 822 forms are tolerated. An empty address is allowed only
// for MAIL FROM.
func parsePath(t Token, strict, allowEmpty bool) (Path, error) {
	if t.Type == TokenError {
		return Path{}, ErrSyntax
	}
	addr, extra, ok := extractAddress(t.Value)
	if !ok || (strict && (extra || !strings.HasPrefix(t.Value, "<"))) {
		return Path{}, ErrSyntax
	}
	if addr == "" && !allowEmpty {
		return Path{}, ErrSyntax
	}
	return Path{Addr: addr, Raw: t.Value}, nil
}

// parseNotify reads "NEVER" or a comma list of SUCCESS, FAILURE, DELAY
// (RFC 3461 §4.1), case-insensitively.
func parseNotify(v string) (Notify, bool) {
	var n Notify
	for _, w := range strings.Split(v, ",") {
		switch strings.ToUpper(w) {
		case "NEVER":
			n |= NotifyNever
		case "SUCCESS":
			n |= NotifySuccess
		case "FAILURE":
			n |= NotifyFailure
		case "DELAY":
			n |= NotifyDelay
		default:
			return 0, false
		}
	}
	if n&NotifyNever != 0 && n != NotifyNever {
		return 0, false
	}
	return n, true
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// atomText checks an ORCPT addr-type (RFC 3461 §4.2: an atom).
func atomText(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c > '~' || strings.IndexByte(`()<>@,;:\".[]`, c) >= 0 {
			return false
		}
	}
	return true
}
