// Package getopt parses command-line flags the way Postfix's commands do:
// POSIX getopt(3) with the "+" prefix Postfix uses on Linux, so option
// parsing stops at the first operand. Admins' scripts and cron jobs call
// `postconf -nf`, `postmap -q KEY hash:/etc/postfix/x` and `postsuper -d ALL
// deferred`; the standard flag package cannot read grouped short options, so
// this small parser keeps those spellings working.
package getopt

import "fmt"

// Option is one parsed flag. Arg is set for options declared with a colon.
type Option struct {
	Flag byte
	Arg  string
}

// Error reports a command line that getopt(3) would refuse, in the words
// getopt itself prints, so usage errors read like Postfix's.
type Error struct {
	Flag    byte
	Missing bool // the option needs an argument and none was given
}

func (e *Error) Error() string {
	if e.Missing {
		return fmt.Sprintf("option requires an argument -- '%c'", e.Flag)
	}
	return fmt.Sprintf("invalid option -- '%c'", e.Flag)
}

// Parse reads options from args (without the program name) according to spec,
// getopt's option string: each letter is a flag, a letter followed by ':'
// takes an argument. It returns the options in order and the operands after
// them. "--" ends the options; so does the first word not starting with '-'.
func Parse(args []string, spec string) ([]Option, []string, error) {
	takesArg := map[byte]bool{}
	known := map[byte]bool{}
	for i := 0; i < len(spec); i++ {
		c := spec[i]
		if c == ':' || c == '+' {
			continue
		}
		known[c] = true
		if i+1 < len(spec) && spec[i+1] == ':' {
			takesArg[c] = true
		}
	}
	var opts []Option
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
			if !known[c] {
				return nil, nil, &Error{Flag: c}
			}
			if !takesArg[c] {
				opts = append(opts, Option{Flag: c})
				continue
			}
			if j+1 < len(a) {
				opts = append(opts, Option{Flag: c, Arg: a[j+1:]})
			} else if i+1 < len(args) {
				i++
				opts = append(opts, Option{Flag: c, Arg: args[i]})
			} else {
				return nil, nil, &Error{Flag: c, Missing: true}
			}
			break
		}
	}
	return opts, args[i:], nil
}
