// Package mastercf reads master.cf, the service table of master(5): one
// entry per service with the columns service, type, private, unpriv, chroot,
// wakeup, maxproc and command + args. It keeps each entry's original text and
// order so that `postconf -M/-F/-P` can print the file as Postfix does, and
// it gives each service its `-o name=value` overrides, which later code lays
// over main.cf to build the service's effective parameters.
//
// Where Postfix only warns about (or silently mis-reads) a malformed entry,
// moat refuses it with an error that names the file, the line, what is wrong
// and what is allowed: a mail server must not run with a configuration that
// means something other than what its author wrote.
package mastercf

import (
	"bytes"
	"fmt"
	"os"
	"strings"
)

// File is a parsed master.cf: its services in file order, which postconf
// -M/-F/-P print in and the master starts them in.
type File struct {
	Path     string
	Services []*Service
}

// Service is one master.cf entry (master(5), "SERVICE DEFINITIONS").
type Service struct {
	Name, Type                               string // "smtp", "inet"
	Private, Unpriv, Chroot, Wakeup, Maxproc string // column text as written ("-" kept)
	Command                                  string // "smtpd"
	// Args are the command's arguments as the daemon receives them:
	// `{ ... }` groups have their braces and the whitespace just inside
	// them removed (master(5), Postfix 3.0 and later), and `-o { n = v }`
	// is normalised to `n=v`.
	Args      []string
	Overrides []Override // -o name=value, in order
	Line      int        // line number of the entry's first line
	// Text is the entry's logical line as written, continuation lines
	// joined with their newlines (comment lines between them left out),
	// for tools that reproduce the file.
	Text string
	// display holds Args as `postconf -M` prints them: Postfix wraps some
	// arguments that contain whitespace back in braces and not others.
	display []string
	// optEnd is the index in Args of the first argument after the daemon
	// options (len(Args) when all are options); -Mf folds the two parts
	// differently and -P reads overrides only from the first.
	optEnd int
}

// Override is one "-o name=value" (master(5): "-o name=value: override the
// named main.cf configuration parameter").
type Override struct {
	Name, Value string
	Line        int
}

// serviceTypes are the transport types master(5) allows in column 2.
func serviceTypes() []string { return []string{"inet", "unix", "unix-dgram", "fifo", "pass"} }

// Load reads and validates a master.cf file (master(5)); any error names
// the file and line, so a bad entry stops a start or reload with a
// message the admin can act on.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("master.cf: %w", err)
	}
	return Parse(path, data)
}

// Parse is Load on text already read (tests, fuzzing, config checks);
// path is used only in error messages.
func Parse(path string, data []byte) (*File, error) {
	f := &File{Path: path}
	seen := make(map[string]int)
	for _, ll := range logicalLines(data) {
		if ll.continuation {
			return nil, fmt.Errorf("%s, line %d: a logical line must not start with whitespace "+
				"(continuation lines must follow a service entry): %q", path, ll.line, strings.TrimSpace(ll.text))
		}
		s, err := parseEntry(path, ll)
		if err != nil {
			return nil, err
		}
		key := s.Name + "/" + s.Type
		if first, dup := seen[key]; dup {
			return nil, fmt.Errorf("%s, line %d: duplicate service %q type %q (first defined at line %d); "+
				"each service name/type pair may appear only once", path, s.Line, s.Name, s.Type, first)
		}
		seen[key] = s.Line
		f.Services = append(f.Services, s)
	}
	return f, nil
}

// logicalLine is one entry with its continuation lines (master(5): "A
// logical line starts with non-whitespace text. A line that starts with
// whitespace continues a logical line.").
type logicalLine struct {
	text         string // physical lines joined with '\n'
	parts        []string
	line         int   // first physical line number
	lines        []int // physical line number of each joined line
	continuation bool  // the first physical line started with whitespace
}

// logicalLines splits master.cf into logical lines. Blank lines and lines
// whose first non-blank character is '#' are skipped, also between an entry
// and its continuation lines, as Postfix's reader does.
func logicalLines(data []byte) []logicalLine {
	var out []logicalLine
	lines := bytes.Split(data, []byte("\n"))
	if len(lines) > 0 && len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	for i, raw := range lines {
		l := strings.TrimSuffix(string(raw), "\r")
		trimmed := strings.TrimLeft(l, " \t\r\v\f")
		if trimmed == "" || trimmed[0] == '#' {
			continue
		}
		if trimmed != l && len(out) > 0 && !out[len(out)-1].continuation {
			out[len(out)-1].parts = append(out[len(out)-1].parts, l)
			out[len(out)-1].lines = append(out[len(out)-1].lines, i+1)
			continue
		}
		out = append(out, logicalLine{parts: []string{l}, line: i + 1, lines: []int{i + 1}, continuation: trimmed != l})
	}
	for i := range out {
		out[i].text = strings.Join(out[i].parts, "\n")
		out[i].parts = nil
	}
	return out
}

// parseEntry parses one logical line into a Service.
func parseEntry(path string, ll logicalLine) (*Service, error) {
	where := func(format string, a ...any) error {
		return fmt.Errorf("%s, line %d: %s", path, ll.line, fmt.Sprintf(format, a...))
	}
	toks, err := tokenize(ll.text)
	if err != nil {
		return nil, where("%v", err)
	}
	if len(toks) < 8 {
		return nil, where("too few columns (%d): an entry needs service, type, private, unpriv, "+
			"chroot, wakeup, maxproc and command (use \"-\" for a column's default)", len(toks))
	}
	for _, t := range toks[:8] {
		if t.text[0] == '{' {
			return nil, where("%q: braces group command arguments only, not the first eight columns", t.text)
		}
	}
	s := &Service{
		Name: toks[0].text, Type: toks[1].text,
		Private: toks[2].text, Unpriv: toks[3].text, Chroot: toks[4].text,
		Wakeup: toks[5].text, Maxproc: toks[6].text, Command: toks[7].text,
		Line: ll.line, Text: ll.text,
	}
	if !contains(serviceTypes(), s.Type) {
		return nil, where("service %s: invalid type %q: the type must be one of %s",
			s.Name, s.Type, strings.Join(serviceTypes(), ", "))
	}
	for _, c := range []struct{ name, val string }{
		{"private", s.Private}, {"unpriv", s.Unpriv}, {"chroot", s.Chroot},
	} {
		if c.val != "y" && c.val != "n" && c.val != "-" {
			return nil, where("service %s/%s: invalid %s column %q: use y, n or - (the default)",
				s.Name, s.Type, c.name, c.val)
		}
	}
	if !validWakeup(s.Wakeup) {
		return nil, where("service %s/%s: invalid wakeup column %q: use a number of seconds N, "+
			"N? (wake up only when the service is in use), 0 or - (no wakeup)", s.Name, s.Type, s.Wakeup)
	}
	if s.Maxproc != "-" && !allDigits(s.Maxproc) {
		return nil, where("service %s/%s: invalid maxproc column %q: use a process count "+
			"(0 means no limit) or - (default_process_limit)", s.Name, s.Type, s.Maxproc)
	}
	if line, err := s.parseArgs(toks[8:], ll.lines); err != nil {
		return nil, fmt.Errorf("%s, line %d: service %s/%s: %w", path, line, s.Name, s.Type, err)
	}
	return s, nil
}

func validWakeup(v string) bool {
	if v == "-" {
		return true
	}
	return allDigits(strings.TrimSuffix(v, "?"))
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// OverrideMap returns the service's -o overrides as a map; a name given
// twice takes its last value, as Postfix daemons apply -o in order.
func (s *Service) OverrideMap() map[string]string {
	m := make(map[string]string, len(s.Overrides)+1)
	for _, o := range s.Overrides {
		m[o.Name] = o.Value
	}
	return m
}

// DaemonOverrides is what a daemon of this service runs with on top of
// main.cf: its -o overrides and service_name, which the master tells each
// daemon (postconf(5) service_name, read-only), so Debian's stock
// "-o syslog_name=postfix/$service_name" logs as postfix/submission.
func (s *Service) DaemonOverrides() map[string]string {
	m := s.OverrideMap()
	m["service_name"] = s.Name
	return m
}

// Lookup returns the service with the given name and type, or nil; a
// service is identified by both (master(5): the same name may appear once
// per type, e.g. smtp/inet and smtp/unix).
func (f *File) Lookup(name, typ string) *Service {
	for _, s := range f.Services {
		if s.Name == name && s.Type == typ {
			return s
		}
	}
	return nil
}
