package sasl

import (
	"crypto/hmac"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// clientMechs are the mechanisms the SMTP client (smtp(8) with
// smtp_sasl_auth_enable) can run, strongest first: Cyrus SASL, which
// Postfix's client uses, prefers a mechanism that keeps the password off
// the wire, so CRAM-MD5 comes before the two plaintext ones.
var clientMechs = []Mech{
	{CRAMMD5, FlagDictionary},
	{Plain, FlagPlaintext},
	{Login, FlagPlaintext},
}

// ClientMechFlags returns the security properties of a mechanism the
// client can run, and false for one it cannot (so it is never chosen).
func ClientMechFlags(name string) (Flags, bool) {
	for _, m := range clientMechs {
		if strings.EqualFold(m.Name, name) {
			return m.Flags, true
		}
	}
	return 0, false
}

// ChooseClientMech picks the mechanism to use from what the server
// offered (its EHLO AUTH line, already through smtp_sasl_mechanism_filter)
// and what o allows: the first of the client's own order that both sides
// have, or "" when none is (Cyrus's "no mechanism available"), in which
// case no credentials may be sent.
func ChooseClientMech(offered []string, o SecurityOptions) string {
	for _, m := range clientMechs {
		if !o.Allows(m.Flags) {
			continue
		}
		for _, s := range offered {
			if strings.EqualFold(s, m.Name) {
				return m.Name
			}
		}
	}
	return ""
}

// Client is the client half of one exchange: Start gives the initial
// response for the AUTH command (RFC 4954 section 4), Next answers each
// 334 challenge. Responses and challenges are raw bytes; base64 is the
// SMTP layer's business, as on the server side.
type Client struct {
	mech       string
	user, pass string
	step       int
}

// NewClient begins an exchange for mech with one login's credentials
// (smtp_sasl_password_maps' "user:password").
func NewClient(mech, user, pass string) (*Client, error) {
	if _, ok := ClientMechFlags(mech); !ok {
		return nil, fmt.Errorf("SASL client: %w: %s", ErrNoMech, mech)
	}
	if strings.ContainsRune(user, 0) || strings.ContainsRune(pass, 0) {
		// PLAIN separates its fields with NUL (RFC 4616 section 2).
		return nil, errors.New("SASL client: NUL in user name or password")
	}
	return &Client{mech: strings.ToUpper(mech), user: user, pass: pass}, nil
}

// Mech is the mechanism's name for the AUTH command.
func (c *Client) Mech() string { return c.mech }

// Initial returns the initial response to send with AUTH, or nil when
// the mechanism waits for the server to speak first (LOGIN, CRAM-MD5).
func (c *Client) Initial() []byte {
	if c.mech == Plain {
		c.step = 1
		// RFC 4616 section 2: empty authzid, authcid, passwd.
		return []byte("\x00" + c.user + "\x00" + c.pass)
	}
	return nil
}

// Next answers one server challenge. A challenge the mechanism does not
// expect is an error, and the caller cancels the exchange with "*".
func (c *Client) Next(challenge []byte) ([]byte, error) {
	c.step++
	switch c.mech {
	case Login:
		// The de-facto LOGIN mechanism (draft-murchison-sasl-login):
		// user name, then password, whatever the prompts say.
		switch c.step {
		case 1:
			return []byte(c.user), nil
		case 2:
			return []byte(c.pass), nil
		}
	case CRAMMD5:
		if c.step == 1 {
			// RFC 2195 section 2: user, space, hex HMAC-MD5 of the
			// challenge keyed with the password.
			h := hmac.New(md5.New, []byte(c.pass))
			h.Write(challenge)
			return []byte(c.user + " " + hex.EncodeToString(h.Sum(nil))), nil
		}
	}
	return nil, fmt.Errorf("SASL client: unexpected challenge %d for %s", c.step, c.mech)
}

// ParseClientPassword splits an smtp_sasl_password_maps value,
// "username:password", at the first colon as Postfix's
// smtp_sasl_passwd_lookup() does, so a password may hold colons and a
// user name may not; a value without a colon is a user with an empty
// password, as there.
func ParseClientPassword(v string) (user, pass string) {
	user, pass, _ = strings.Cut(v, ":")
	return user, pass
}
