package sendmail

import (
	"fmt"
	"strings"
)

// Modes of operation (sendmail(1) -b...).
const (
	modeDeliver = 'm' // -bm, the default
	modeQueue   = 'p' // -bp, mailq
	modeAliases = 'i' // -bi, -I, newaliases
	modeSMTP    = 's' // -bs
	modeVerify  = 'v' // -bv
	modeDaemon  = 'd' // -bd, -bl
	modeFlush   = 'q' // -q, -qI, -qR
)

// options is a parsed sendmail command line.
type options struct {
	mode        byte
	configDir   string // -C (a main.cf path is reduced to its directory)
	sender      string
	senderGiven bool
	fullName    string
	fullGiven   bool
	dotEnds     bool // a line with only "." ends the message (no -i/-oi)
	extract     bool // -t
	body        string
	notify      string
	ret         string
	envID       string
	verbose     int
	flushID     string // -qIqueueid
	flushSite   string // -qRsite
	recipients  []string
}

// usageError is a command line Postfix's sendmail refuses.
type usageError string

func (e usageError) Error() string { return string(e) }

// withArg are the options that take an argument, as Postfix's sendmail
// declares them to getopt ("A:B:C:F:GIL:N:O:R:UV:X:b:ce:fh:imno:p:r:q:tvx",
// with -f taking its sender).
const withArg = "ABCFLNORVXbefhopqr"

// parseArgs reads the command line the way Postfix's sendmail does: POSIX
// getopt with "+" (options stop at the first operand or "--"), options
// that Sendmail has and Postfix ignores accepted and ignored, and "-q" with
// its argument glued on or absent.
func parseArgs(args []string) (*options, error) {
	o := &options{mode: modeDeliver, dotEnds: true}
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			i++
			break
		}
		if len(a) < 2 || a[0] != '-' {
			break
		}
		for j := 1; j < len(a); j++ {
			c := a[j]
			var arg string
			if strings.IndexByte(withArg, c) >= 0 {
				switch {
				case j+1 < len(a):
					arg = a[j+1:]
				case c == 'q':
					// "-q" alone: flush the queue.
				case i+1 < len(args):
					i++
					arg = args[i]
				default:
					return nil, usageError(fmt.Sprintf("option requires an argument -- '%c'", c))
				}
				j = len(a)
			}
			skip, err := o.apply(c, arg)
			if err != nil {
				return nil, err
			}
			if skip && i+1 < len(args) {
				i++ // "-o x value": the value is ignored too
			}
		}
	}
	o.recipients = args[i:]
	return o, nil
}

// apply records one option; skip asks to ignore the next argument.
func (o *options) apply(c byte, arg string) (skip bool, err error) {
	switch c {
	case 'A', 'L', 'O', 'X', 'e', 'h', 'p', 'G', 'U', 'c', 'm', 'n', 'x':
		// Ignored, as sendmail(1) lists them (Postfix has no use for
		// them: logging labels, hop counts, gateway submission, ...).
	case 'B':
		switch strings.ToUpper(arg) {
		case "7BIT", "8BITMIME":
			o.body = strings.ToUpper(arg)
		default:
			return false, usageError("-B option needs 8BITMIME or 7BIT")
		}
	case 'C':
		o.configDir = arg
	case 'F':
		o.fullName, o.fullGiven = arg, true
	case 'I':
		o.mode = modeAliases
	case 'N':
		o.notify = arg
	case 'R':
		switch strings.ToUpper(arg) {
		case "FULL", "HDRS":
			o.ret = strings.ToUpper(arg)
		default:
			return false, usageError("-R option needs 'full' or 'hdrs'")
		}
	case 'V':
		o.envID = arg
	case 'b':
		switch arg {
		case "d", "l":
			o.mode = modeDaemon
		case "h", "H":
		case "i":
			o.mode = modeAliases
		case "m":
			o.mode = modeDeliver
		case "p":
			o.mode = modeQueue
		case "s":
			o.mode = modeSMTP
		case "v":
			o.mode = modeVerify
		default:
			return false, usageError(fmt.Sprintf("unsupported: -b%s", arg))
		}
	case 'f', 'r':
		o.sender, o.senderGiven = unbracket(arg), true
	case 'i':
		o.dotEnds = false
	case 'o':
		switch {
		case arg == "":
		case arg[0] == 'i':
			o.dotEnds = false
		case arg[0] == 'A', arg[0] == '7', arg[0] == '8', arg[0] == 'm':
		default:
			return len(arg) == 1, nil
		}
	case 'q':
		switch {
		case arg == "":
			o.mode = modeFlush
		case arg[0] == 'I':
			o.mode, o.flushID = modeFlush, arg[1:]
		case arg[0] == 'R':
			o.mode, o.flushSite = modeFlush, arg[1:]
		case arg[0] == 'S':
			return false, usageError("-qS is not implemented")
		case arg[0] >= '0' && arg[0] <= '9':
			// -q30m: a queue run interval, ignored.
		default:
			return false, usageError(fmt.Sprintf("-q%s is not implemented", arg))
		}
	case 't':
		o.extract = true
	case 'v':
		o.verbose++
	default:
		return false, usageError("usage")
	}
	return false, nil
}

// unbracket strips one pair of angle brackets and blanks: "-f <a@b>" and
// "-f '<>'" are common.
func unbracket(s string) string {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && s[0] == '<' && s[len(s)-1] == '>' {
		s = strings.TrimSpace(s[1 : len(s)-1])
	}
	return s
}
