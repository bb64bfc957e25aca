package pipe

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"moat/internal/config"
)

// Flag bits of the flags= attribute (pipe(8), "flags=BDFORXhqu.>").
const (
	flagBlank      = 1 << iota // B: blank line after the message
	flagDelivered              // D: Delivered-To: header, loop check
	flagFrom                   // F: "From sender time" line
	flagOrigRcpt               // O: X-Original-To: header
	flagReturnPath             // R: Return-Path: header
	flagFinal                  // X: final delivery ("delivered", not "relayed")
	flagFoldHost               // h: lower-case domains on the command line
	flagQuote                  // q: quote address local parts on the command line
	flagFoldUser               // u: lower-case local parts on the command line
	flagDot                    // .: dot-stuffing
	flagQuoteFrom              // >: ">From " quoting
)

// attrs is a pipe row's command attributes as written, before the user is
// looked up: what pipe(8)'s get_service_attr() reads.
type attrs struct {
	flags      int
	user       string // user= name part
	group      string // user=name:group, "" when absent
	hasUser    bool
	directory  string
	eol        string
	nullSender string
	sizeLimit  int64
	argv       []string // argv= and every argument after it
}

// parseAttrs reads the attributes after the command name of a master.cf
// pipe row. Names are matched without regard to case, as pipe(8) does;
// argv= must come last because everything after it is the command.
// Where pipe(8) only fails at the first delivery, moat fails here, when
// the service is set up, so a broken row is never half-working.
func parseAttrs(args []string) (*attrs, error) {
	a := &attrs{eol: "\n", nullSender: "MAILER-DAEMON"}
	for i, arg := range args {
		name, value, ok := strings.Cut(arg, "=")
		if !ok {
			return nil, fmt.Errorf("attribute %q: want name=value (flags=, user=, directory=, eol=, null_sender=, size=, argv=)", arg)
		}
		switch strings.ToLower(name) {
		case "flags":
			f, err := parseFlags(value)
			if err != nil {
				return nil, err
			}
			a.flags |= f
		case "user":
			u, g, _ := strings.Cut(value, ":")
			if u == "" {
				return nil, fmt.Errorf("attribute %q: empty user name", arg)
			}
			a.user, a.group, a.hasUser = u, g, true
		case "directory":
			if !strings.HasPrefix(value, "/") {
				// pipe(8) takes any string and chdir()s to it; a
				// relative one would depend on where the agent runs.
				return nil, fmt.Errorf("attribute %q: directory= must be an absolute path", arg)
			}
			a.directory = value
		case "chroot":
			return nil, fmt.Errorf("attribute %q: chroot= is not supported by moat (commands run in the host's file system with the user= identity; use directory= for the working directory)", arg)
		case "eol":
			a.eol = config.Unescape(value)
		case "null_sender":
			a.nullSender = value
		case "size":
			n, err := strconv.ParseInt(value, 10, 64)
			if err != nil || n < 0 || value == "" || value[0] == '+' {
				return nil, fmt.Errorf("attribute %q: bad size= value: want a byte count", arg)
			}
			a.sizeLimit = n
		case "argv":
			if value == "" {
				return nil, fmt.Errorf("attribute %q: argv= needs the command right after the = sign", arg)
			}
			a.argv = append([]string{value}, args[i+1:]...)
			return a, a.check()
		default:
			return nil, fmt.Errorf("unknown attribute name: %q", arg)
		}
	}
	return a, a.check()
}

// check enforces what pipe(8) requires of every row.
func (a *attrs) check() error {
	if !a.hasUser {
		return errors.New("missing user= command-line attribute")
	}
	if a.argv == nil {
		return errors.New("missing argv= command-line attribute")
	}
	return nil
}

// parseFlags reads the letters of flags=; an unknown one is an error, as
// in pipe(8) (which says "(ignored)" but exits).
func parseFlags(s string) (int, error) {
	f := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case 'B':
			f |= flagBlank
		case 'D':
			f |= flagDelivered
		case 'F':
			f |= flagFrom
		case 'O':
			f |= flagOrigRcpt
		case 'R':
			f |= flagReturnPath
		case 'X':
			f |= flagFinal
		case 'h':
			f |= flagFoldHost
		case 'q':
			f |= flagQuote
		case 'u':
			f |= flagFoldUser
		case '.':
			f |= flagDot
		case '>':
			f |= flagQuoteFrom
		default:
			return 0, fmt.Errorf("flags=%s: unknown flag %q (known: B D F O R X h q u . >)", s, s[i])
		}
	}
	return f, nil
}
