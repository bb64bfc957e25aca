package sasl

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Credentials are one user's entry in smtpd_sasl_password_maps: blank
// separated items, each a password hash or a mechanism secret, in the
// syntax Dovecot's `doveadm pw` prints (docs/SASL.md):
//
//	$argon2id$v=19$m=19456,t=2,p=1$SALT$HASH     (or {ARGON2ID}$argon2id$...)
//	$2y$10$...                                    (or {BLF-CRYPT}$2y$..., $2b$, $2a$)
//	{SCRAM-SHA-256}ITER,SALT,STOREDKEY,SERVERKEY (base64; enables SCRAM-SHA-256)
//	{CRAM-MD5}64 hex digits                       (HMAC-MD5 context; enables CRAM-MD5)
//
// A password hash serves PLAIN and LOGIN; the two secrets serve their
// mechanism (and the SCRAM one PLAIN and LOGIN too). Plain-text passwords
// are not accepted.
type Credentials struct {
	hashes []string // argon2id PHC strings and bcrypt hashes
	scram  *scramSecret
	cram   *[32]byte
}

type scramSecret struct {
	iter                 int
	salt                 []byte
	storedKey, serverKey [sha256.Size]byte
}

// ParseCredentials reads a table value. An item it does not understand is
// an error naming the scheme (never the secret), so an admin sees a
// mistyped entry instead of a user who can never log in.
func ParseCredentials(v string) (*Credentials, error) {
	c := &Credentials{}
	items := strings.Fields(v)
	if len(items) == 0 {
		return nil, errors.New("empty credentials")
	}
	for _, it := range items {
		scheme, rest := "", it
		if strings.HasPrefix(it, "{") {
			i := strings.IndexByte(it, '}')
			if i < 0 {
				return nil, errors.New("unterminated {SCHEME}")
			}
			scheme, rest = strings.ToUpper(it[1:i]), it[i+1:]
		}
		switch {
		case scheme == "SCRAM-SHA-256":
			s, err := parseSCRAM(rest)
			if err != nil {
				return nil, fmt.Errorf("{SCRAM-SHA-256}: %w", err)
			}
			c.scram = s
		case scheme == "CRAM-MD5":
			b, err := hex.DecodeString(rest)
			if err != nil || len(b) != 32 {
				return nil, errors.New("{CRAM-MD5}: want 64 hex digits")
			}
			c.cram = (*[32]byte)(b)
		case (scheme == "" || scheme == "ARGON2ID") && strings.HasPrefix(rest, "$argon2id$"):
			if _, err := parseArgon2id(rest); err != nil {
				return nil, fmt.Errorf("argon2id: %w", err)
			}
			c.hashes = append(c.hashes, rest)
		case (scheme == "" || scheme == "BLF-CRYPT") && isBcrypt(rest):
			if _, err := bcrypt.Cost([]byte(rest)); err != nil {
				return nil, fmt.Errorf("bcrypt: %w", err)
			}
			c.hashes = append(c.hashes, rest)
		case scheme != "":
			return nil, fmt.Errorf("unsupported scheme {%s}", scheme)
		default:
			return nil, errors.New("not a password hash (argon2id or bcrypt) nor {SCHEME}value")
		}
	}
	return c, nil
}

func isBcrypt(s string) bool {
	return strings.HasPrefix(s, "$2y$") || strings.HasPrefix(s, "$2b$") || strings.HasPrefix(s, "$2a$")
}

// HasCRAM and HasSCRAM report whether the entry stores the secret the
// mechanism needs; smtpd offers those mechanisms only then.
func (c *Credentials) HasCRAM() bool  { return c.cram != nil }
func (c *Credentials) HasSCRAM() bool { return c.scram != nil }

// VerifyPassword checks a password sent with PLAIN or LOGIN against every
// hash and the SCRAM secret; any one matching is enough.
func (c *Credentials) VerifyPassword(pw []byte) bool {
	for _, h := range c.hashes {
		if strings.HasPrefix(h, "$argon2id$") {
			if a, err := parseArgon2id(h); err == nil && a.verify(pw) {
				return true
			}
			continue
		}
		if bcrypt.CompareHashAndPassword([]byte(h), pw) == nil {
			return true
		}
	}
	if s := c.scram; s != nil {
		_, stored, _ := scramKeys(pw, s.salt, s.iter)
		if subtle.ConstantTimeCompare(stored[:], s.storedKey[:]) == 1 {
			return true
		}
	}
	return false
}

// argon2Params is a parsed PHC string.
type argon2Params struct {
	m    uint32
	t    uint32
	p    uint8
	salt []byte
	hash []byte
}

// Bounds on stored parameters: a table entry must not make one login
// allocate gigabytes or spin for minutes.
const (
	maxArgonMemory = 1 << 20 // KiB: 1 GiB
	maxArgonTime   = 64
	maxSCRAMIter   = 1 << 20
)

func parseArgon2id(s string) (*argon2Params, error) {
	// $argon2id$v=19$m=65536,t=3,p=1$salt$hash
	f := strings.Split(s, "$")
	if len(f) != 6 || f[0] != "" || f[1] != "argon2id" || f[2] != "v=19" {
		return nil, errors.New("want $argon2id$v=19$m=M,t=T,p=P$SALT$HASH")
	}
	a := &argon2Params{}
	for _, kv := range strings.Split(f[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if !ok || err != nil {
			return nil, fmt.Errorf("bad parameter %q", kv)
		}
		switch k {
		case "m":
			a.m = uint32(n)
		case "t":
			a.t = uint32(n)
		case "p":
			if n > 255 {
				return nil, errors.New("p too large")
			}
			a.p = uint8(n)
		default:
			return nil, fmt.Errorf("unknown parameter %q", k)
		}
	}
	if a.m < 8 || a.m > maxArgonMemory || a.t < 1 || a.t > maxArgonTime || a.p < 1 || a.m < 8*uint32(a.p) {
		return nil, errors.New("parameters out of range")
	}
	var err error
	if a.salt, err = base64.RawStdEncoding.DecodeString(f[4]); err != nil || len(a.salt) < 8 {
		return nil, errors.New("bad salt")
	}
	if a.hash, err = base64.RawStdEncoding.DecodeString(f[5]); err != nil || len(a.hash) < 16 || len(a.hash) > 128 {
		return nil, errors.New("bad hash")
	}
	return a, nil
}

func (a *argon2Params) verify(pw []byte) bool {
	got := argon2.IDKey(pw, a.salt, a.t, a.m, a.p, uint32(len(a.hash)))
	return subtle.ConstantTimeCompare(got, a.hash) == 1
}

func parseSCRAM(s string) (*scramSecret, error) {
	f := strings.Split(s, ",")
	if len(f) != 4 {
		return nil, errors.New("want ITER,SALT,STOREDKEY,SERVERKEY")
	}
	iter, err := strconv.Atoi(f[0])
	if err != nil || iter < 4096 || iter > maxSCRAMIter {
		// RFC 7677 §4: at least 4096 iterations.
		return nil, errors.New("iteration count must be 4096..1048576")
	}
	sc := &scramSecret{iter: iter}
	if sc.salt, err = base64.StdEncoding.DecodeString(f[1]); err != nil || len(sc.salt) < 8 {
		return nil, errors.New("bad salt")
	}
	for i, dst := range []*[sha256.Size]byte{&sc.storedKey, &sc.serverKey} {
		b, err := base64.StdEncoding.DecodeString(f[2+i])
		if err != nil || len(b) != sha256.Size {
			return nil, errors.New("bad key")
		}
		copy(dst[:], b)
	}
	return sc, nil
}

// scramKeys derives RFC 5802 §3's ClientKey, StoredKey and ServerKey.
func scramKeys(pw, salt []byte, iter int) (clientKey, storedKey, serverKey [sha256.Size]byte) {
	salted, err := pbkdf2.Key(sha256.New, string(pw), salt, iter, sha256.Size)
	if err != nil {
		// Only reachable in FIPS mode with a short password; such a
		// password cannot match.
		return
	}
	copy(clientKey[:], hmacSHA256(salted, []byte("Client Key")))
	storedKey = sha256.Sum256(clientKey[:])
	copy(serverKey[:], hmacSHA256(salted, []byte("Server Key")))
	return
}

func hmacSHA256(key, msg []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(msg)
	return h.Sum(nil)
}

// cramDigest computes HMAC-MD5(secret, challenge) from Dovecot's stored
// context: the MD5 states after the outer and the inner padded key block,
// four little-endian words each (RFC 2195 §2 explains why a server may keep
// these instead of the password; they are still password-equivalent).
func cramDigest(ctx *[32]byte, challenge []byte) ([]byte, error) {
	inner, err := md5FromState(ctx[16:32])
	if err != nil {
		return nil, err
	}
	inner.Write(challenge)
	outer, err := md5FromState(ctx[0:16])
	if err != nil {
		return nil, err
	}
	outer.Write(inner.Sum(nil))
	return outer.Sum(nil), nil
}

// md5FromState rebuilds an MD5 hash that has consumed one 64-byte block and
// reached state (a, b, c, d little-endian), through crypto/md5's
// encoding.BinaryUnmarshaler form: magic, four big-endian words, the
// buffered block, the length.
func md5FromState(state []byte) (interface {
	Write([]byte) (int, error)
	Sum([]byte) []byte
}, error) {
	var b bytes.Buffer
	b.WriteString("md5\x01")
	for i := 0; i < 4; i++ {
		_ = binary.Write(&b, binary.BigEndian, binary.LittleEndian.Uint32(state[4*i:]))
	}
	b.Write(make([]byte, md5.BlockSize))
	_ = binary.Write(&b, binary.BigEndian, uint64(md5.BlockSize))
	h := md5.New()
	u, ok := h.(interface{ UnmarshalBinary([]byte) error })
	if !ok {
		return nil, errors.New("md5 state cannot be restored")
	}
	if err := u.UnmarshalBinary(b.Bytes()); err != nil {
		return nil, fmt.Errorf("md5 state: %w", err)
	}
	return h, nil
}

// cramContext computes the stored {CRAM-MD5} context for a password:
// outer then inner MD5 state after the padded key block.
func cramContext(pw []byte) ([32]byte, error) {
	var out [32]byte
	key := pw
	if len(key) > md5.BlockSize {
		s := md5.Sum(key)
		key = s[:]
	}
	for half, pad := range []byte{0x5c, 0x36} {
		blk := make([]byte, md5.BlockSize)
		copy(blk, key)
		for i := range blk {
			blk[i] ^= pad
		}
		h := md5.New()
		h.Write(blk)
		m, ok := h.(interface{ MarshalBinary() ([]byte, error) })
		if !ok {
			return out, errors.New("md5 state cannot be saved")
		}
		st, err := m.MarshalBinary()
		if err != nil {
			return out, err
		}
		for i := 0; i < 4; i++ {
			binary.LittleEndian.PutUint32(out[16*half+4*i:], binary.BigEndian.Uint32(st[4+4*i:]))
		}
	}
	return out, nil
}

// The argon2id parameters NewCredentials uses by default (HashOptions).
const (
	defaultArgonMemory  = 19456
	defaultArgonTime    = 2
	defaultArgonThreads = 1
)

// HashOptions choose what NewCredentials stores.
type HashOptions struct {
	// Argon2 parameters: memory in KiB, passes, lanes. Zero values take
	// RFC 9106 §7.4's second recommended option scaled down as OWASP's
	// 2023 guidance does (m=19456, t=2, p=1): a mail server verifies many
	// logins on few cores.
	Memory, Time uint32
	Threads      uint8
	// SCRAM stores a {SCRAM-SHA-256} secret (SCRAM-SHA-256 logins).
	SCRAM bool
	// CRAM stores a {CRAM-MD5} context (CRAM-MD5 logins). It is
	// password-equivalent: whoever reads the table can log in as the
	// user (docs/SASL.md).
	CRAM bool
}

// NewCredentials returns the table value for a password: an argon2id hash,
// plus the secrets opts asks for.
func NewCredentials(pw []byte, opts HashOptions) (string, error) {
	if opts.Memory == 0 {
		opts.Memory = defaultArgonMemory
	}
	if opts.Time == 0 {
		opts.Time = defaultArgonTime
	}
	if opts.Threads == 0 {
		opts.Threads = defaultArgonThreads
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	h := argon2.IDKey(pw, salt, opts.Time, opts.Memory, opts.Threads, 32)
	items := []string{fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$%s$%s", opts.Memory, opts.Time, opts.Threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(h))}
	if opts.SCRAM {
		ssalt := make([]byte, 16)
		if _, err := rand.Read(ssalt); err != nil {
			return "", err
		}
		const iter = 4096
		_, stored, server := scramKeys(pw, ssalt, iter)
		items = append(items, fmt.Sprintf("{SCRAM-SHA-256}%d,%s,%s,%s", iter, base64.StdEncoding.EncodeToString(ssalt),
			base64.StdEncoding.EncodeToString(stored[:]), base64.StdEncoding.EncodeToString(server[:])))
	}
	if opts.CRAM {
		ctx, err := cramContext(pw)
		if err != nil {
			return "", err
		}
		items = append(items, "{CRAM-MD5}"+hex.EncodeToString(ctx[:]))
	}
	return strings.Join(items, " "), nil
}
