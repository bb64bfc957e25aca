package sasl

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"

	"moat/internal/maps"
)

// Builtin is moat's own backend (smtpd_sasl_type = moat): users and their
// Credentials in a lookup table (smtpd_sasl_password_maps), any table type,
// proxy: included. CRAM-MD5 and SCRAM-SHA-256 are listed because some users
// may have their secrets; a user without one fails those mechanisms as a
// wrong password would (the EHLO list is per server, not per user).
type Builtin struct {
	table maps.Table
	// localDomain is smtpd_sasl_local_domain: a login name without "@"
	// is looked up as name@domain.
	localDomain string
	hostname    string // in CRAM-MD5 challenges
	// fakeKey makes SCRAM's salt for an unknown user stable and
	// unguessable, so the first challenge does not reveal who exists.
	fakeKey []byte
}

// NewBuiltin serves logins from table (already open; Close closes it).
func NewBuiltin(table maps.Table, localDomain, hostname string) (*Builtin, error) {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("sasl: %w", err)
	}
	return &Builtin{table: table, localDomain: localDomain, hostname: hostname, fakeKey: k}, nil
}

// Mechanisms lists the four mechanisms with Dovecot's flags for them, so
// the security options treat both backends alike.
func (b *Builtin) Mechanisms(context.Context) ([]Mech, error) {
	return []Mech{
		{SCRAMSHA256, FlagMutualAuth},
		{CRAMMD5, FlagDictionary | FlagActive},
		{Plain, FlagPlaintext},
		{Login, FlagPlaintext},
	}, nil
}

// Start begins an exchange.
func (b *Builtin) Start(_ context.Context, mech string, _ ConnInfo) (Exchange, error) {
	switch strings.ToUpper(mech) {
	case Plain:
		return &plainEx{b: b}, nil
	case Login:
		return &loginEx{b: b}, nil
	case CRAMMD5:
		return &cramEx{b: b}, nil
	case SCRAMSHA256:
		return &scramEx{b: b}, nil
	}
	return nil, ErrNoMech
}

// Close closes the table.
func (b *Builtin) Close() error { return b.table.Close() }

// lookup returns a user's credentials: nil without an entry (or with one
// that does not parse, which is logged by the caller through the error).
func (b *Builtin) lookup(user string) (*Credentials, error) {
	key := user
	if b.localDomain != "" && !strings.Contains(key, "@") {
		key += "@" + b.localDomain
	}
	v, found, err := b.table.Lookup(key)
	if err != nil {
		return nil, &Failure{Reason: "password table lookup failed", Temporary: true}
	}
	if !found {
		return nil, nil
	}
	c, err := ParseCredentials(v)
	if err != nil {
		return nil, &Failure{Reason: fmt.Sprintf("bad smtpd_sasl_password_maps entry for %s: %v", key, err), Temporary: true}
	}
	return c, nil
}

// checkPassword is PLAIN's and LOGIN's end.
func (b *Builtin) checkPassword(user string, pw []byte) error {
	c, err := b.lookup(user)
	if err != nil {
		return err
	}
	if c == nil {
		// As much work as a known user's default hash, so the reply's
		// timing does not tell which users exist.
		argon2.IDKey(pw, b.fakeKey[:16], defaultArgonTime, defaultArgonMemory, defaultArgonThreads, 32)
		return failed()
	}
	if !c.VerifyPassword(pw) {
		return failed()
	}
	return nil
}

// plainEx is PLAIN (RFC 4616): one message "authzid NUL authcid NUL
// passwd".
type plainEx struct {
	b    *Builtin
	user string
}

func (e *plainEx) Step(_ context.Context, resp []byte) ([]byte, bool, error) {
	if resp == nil {
		// No initial response: RFC 4954 §4 empty challenge.
		return []byte{}, false, nil
	}
	authz, authc, pw, err := ParsePlain(resp)
	if err != nil {
		return nil, false, &Failure{Reason: err.Error()}
	}
	e.user = authc
	if authz != "" && authz != authc {
		// No proxy authorization: a user acts as themself only.
		return nil, false, failed()
	}
	if err := e.b.checkPassword(authc, pw); err != nil {
		return nil, false, err
	}
	return nil, true, nil
}

func (e *plainEx) User() string { return e.user }
func (e *plainEx) Close()       {}

// ParsePlain splits a PLAIN message (RFC 4616 §2): exactly two NULs, a
// non-empty authentication identity and password, UTF-8 throughout.
func ParsePlain(msg []byte) (authzid, authcid string, passwd []byte, err error) {
	f := bytes.Split(msg, []byte{0})
	if len(f) != 3 {
		return "", "", nil, fmt.Errorf("malformed PLAIN message")
	}
	if len(f[1]) == 0 || len(f[2]) == 0 || len(f[1]) > 255 || len(f[0]) > 255 {
		return "", "", nil, fmt.Errorf("malformed PLAIN message")
	}
	return string(f[0]), string(f[1]), f[2], nil
}

// loginEx is LOGIN (draft-murchison-sasl-login): "Username:", then
// "Password:"; an initial response is the user name.
type loginEx struct {
	b     *Builtin
	user  string
	state int
}

func (e *loginEx) Step(_ context.Context, resp []byte) ([]byte, bool, error) {
	switch e.state {
	case 0:
		e.state = 1
		if resp == nil {
			return []byte("Username:"), false, nil
		}
		fallthrough
	case 1:
		if len(resp) == 0 || len(resp) > 255 {
			return nil, false, failed()
		}
		e.user = string(resp)
		e.state = 2
		return []byte("Password:"), false, nil
	default:
		if err := e.b.checkPassword(e.user, resp); err != nil {
			return nil, false, err
		}
		return nil, true, nil
	}
}

func (e *loginEx) User() string { return e.user }
func (e *loginEx) Close()       {}

// cramEx is CRAM-MD5 (RFC 2195): a unique challenge, then "user digest".
type cramEx struct {
	b         *Builtin
	user      string
	challenge []byte
}

func (e *cramEx) Step(_ context.Context, resp []byte) ([]byte, bool, error) {
	if e.challenge == nil {
		if len(resp) > 0 {
			return nil, false, &Failure{Reason: "unexpected initial response"}
		}
		n := make([]byte, 8)
		if _, err := rand.Read(n); err != nil {
			return nil, false, &Failure{Reason: "no randomness", Temporary: true}
		}
		e.challenge = fmt.Appendf(nil, "<%s.%d@%s>", hex.EncodeToString(n), time.Now().Unix(), e.b.hostname)
		return e.challenge, false, nil
	}
	sp := bytes.LastIndexByte(resp, ' ')
	if sp <= 0 || len(resp)-sp-1 != 32 {
		return nil, false, &Failure{Reason: "malformed CRAM-MD5 response"}
	}
	e.user = string(resp[:sp])
	got, err := hex.DecodeString(strings.ToLower(string(resp[sp+1:])))
	if err != nil {
		return nil, false, &Failure{Reason: "malformed CRAM-MD5 response"}
	}
	c, err := e.b.lookup(e.user)
	if err != nil {
		return nil, false, err
	}
	if c == nil || c.cram == nil {
		return nil, false, failed()
	}
	want, err := cramDigest(c.cram, e.challenge)
	if err != nil {
		return nil, false, &Failure{Reason: err.Error(), Temporary: true}
	}
	if subtle.ConstantTimeCompare(got, want) != 1 {
		return nil, false, failed()
	}
	return nil, true, nil
}

func (e *cramEx) User() string { return e.user }
func (e *cramEx) Close()       {}

// scramEx is SCRAM-SHA-256 (RFC 5802 §5, RFC 7677) without channel
// binding: client-first, server-first, client-final, server-final (sent as
// a last 334 challenge, RFC 4954 §4, answered by an empty line).
type scramEx struct {
	b                    *Builtin
	user                 string
	state                int
	gs2, clientFirstBare string
	serverFirst, nonce   string
	sec                  *scramSecret
	known                bool
	serverSignature      []byte
}

func (e *scramEx) Step(_ context.Context, resp []byte) ([]byte, bool, error) {
	switch e.state {
	case 0:
		if resp == nil {
			return []byte{}, false, nil
		}
		cf, err := ParseSCRAMClientFirst(string(resp))
		if err != nil {
			return nil, false, &Failure{Reason: err.Error()}
		}
		e.user, e.gs2, e.clientFirstBare = cf.User, cf.GS2Header, cf.Bare
		if cf.AuthzID != "" && cf.AuthzID != cf.User {
			return nil, false, failed()
		}
		c, err := e.b.lookup(e.user)
		if err != nil {
			return nil, false, err
		}
		if c != nil && c.scram != nil {
			e.sec, e.known = c.scram, true
		} else {
			// Go on with a made-up salt and fail at the end, so the
			// challenge does not tell which users exist.
			m := hmacSHA256(e.b.fakeKey, []byte(e.user))
			e.sec = &scramSecret{iter: 4096, salt: m[:16]}
		}
		n := make([]byte, 18)
		if _, err := rand.Read(n); err != nil {
			return nil, false, &Failure{Reason: "no randomness", Temporary: true}
		}
		e.nonce = cf.Nonce + base64.RawStdEncoding.EncodeToString(n)
		e.serverFirst = fmt.Sprintf("r=%s,s=%s,i=%d", e.nonce, base64.StdEncoding.EncodeToString(e.sec.salt), e.sec.iter)
		e.state = 1
		return []byte(e.serverFirst), false, nil
	case 1:
		withoutProof, proof, err := parseSCRAMClientFinal(string(resp), e.gs2, e.nonce)
		if err != nil {
			return nil, false, &Failure{Reason: err.Error()}
		}
		authMsg := []byte(e.clientFirstBare + "," + e.serverFirst + "," + withoutProof)
		sig := hmacSHA256(e.sec.storedKey[:], authMsg)
		if len(proof) != len(sig) || !e.known {
			return nil, false, failed()
		}
		clientKey := make([]byte, len(sig))
		for i := range sig {
			clientKey[i] = proof[i] ^ sig[i]
		}
		stored := sha256.Sum256(clientKey)
		if subtle.ConstantTimeCompare(stored[:], e.sec.storedKey[:]) != 1 {
			return nil, false, failed()
		}
		e.serverSignature = hmacSHA256(e.sec.serverKey[:], authMsg)
		e.state = 2
		return []byte("v=" + base64.StdEncoding.EncodeToString(e.serverSignature)), false, nil
	default:
		if len(resp) != 0 {
			return nil, false, &Failure{Reason: "unexpected data after server-final-message"}
		}
		return nil, true, nil
	}
}

func (e *scramEx) User() string { return e.user }
func (e *scramEx) Close()       {}

// SCRAMClientFirst is a parsed client-first-message (RFC 5802 §7).
type SCRAMClientFirst struct {
	GS2Header string // "n,," or "y,," with its authzid, as sent
	AuthzID   string
	User      string // saslname decoded (=2C, =3D)
	Nonce     string
	Bare      string // client-first-message-bare, for AuthMessage
}

// ParseSCRAMClientFirst parses the client's first message. Channel binding
// ("p=") is refused: moat's SCRAM has no -PLUS variant.
func ParseSCRAMClientFirst(m string) (*SCRAMClientFirst, error) {
	bad := fmt.Errorf("malformed SCRAM client-first-message")
	if len(m) > 1024 {
		return nil, bad
	}
	cf := &SCRAMClientFirst{}
	f := strings.SplitN(m, ",", 3)
	if len(f) != 3 {
		return nil, bad
	}
	switch {
	case f[0] == "n" || f[0] == "y":
	case strings.HasPrefix(f[0], "p="):
		return nil, fmt.Errorf("channel binding not supported")
	default:
		return nil, bad
	}
	if f[1] != "" {
		if !strings.HasPrefix(f[1], "a=") {
			return nil, bad
		}
		z, err := decodeSASLName(f[1][2:])
		if err != nil {
			return nil, bad
		}
		cf.AuthzID = z
	}
	cf.GS2Header = f[0] + "," + f[1] + ","
	cf.Bare = f[2]
	attrs := strings.Split(f[2], ",")
	if len(attrs) < 2 || strings.HasPrefix(attrs[0], "m=") {
		return nil, bad
	}
	if !strings.HasPrefix(attrs[0], "n=") || !strings.HasPrefix(attrs[1], "r=") {
		return nil, bad
	}
	u, err := decodeSASLName(attrs[0][2:])
	if err != nil || u == "" {
		return nil, bad
	}
	cf.User = u
	cf.Nonce = attrs[1][2:]
	if cf.Nonce == "" || strings.ContainsAny(cf.Nonce, ",") || !printableASCII(cf.Nonce) {
		return nil, bad
	}
	return cf, nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// decodeSASLName undoes RFC 5802 §5.1's "=2C" and "=3D".
func decodeSASLName(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '=':
			if i+3 > len(s) {
				return "", fmt.Errorf("bad escape")
			}
			switch s[i+1 : i+3] {
			case "2C":
				b.WriteByte(',')
			case "3D":
				b.WriteByte('=')
			default:
				return "", fmt.Errorf("bad escape")
			}
			i += 2
		case ',', 0:
			return "", fmt.Errorf("bad character")
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// parseSCRAMClientFinal checks channel-binding data and nonce and returns
// the message without its proof, and the proof.
func parseSCRAMClientFinal(m, gs2, nonce string) (string, []byte, error) {
	bad := fmt.Errorf("malformed SCRAM client-final-message")
	i := strings.LastIndex(m, ",p=")
	if i < 0 || len(m) > 1024 {
		return "", nil, bad
	}
	without := m[:i]
	proof, err := base64.StdEncoding.DecodeString(m[i+3:])
	if err != nil {
		return "", nil, bad
	}
	attrs := strings.Split(without, ",")
	if len(attrs) < 2 || attrs[0] != "c="+base64.StdEncoding.EncodeToString([]byte(gs2)) {
		return "", nil, fmt.Errorf("SCRAM channel binding mismatch")
	}
	if attrs[1] != "r="+nonce {
		return "", nil, fmt.Errorf("SCRAM nonce mismatch")
	}
	return without, proof, nil
}
