package mastercf

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strings"

	"moat/internal/cli"
)

// columns are the start positions postconf -M gives the first eight
// fields, matching the layout of Postfix's stock master.cf; a field that
// runs past the next column is followed by one space instead.
func columns() [8]int { return [8]int{0, 11, 17, 25, 33, 41, 49, 57} }

// foldLimit is the width postconf -Mf keeps continuation lines under.
const foldLimit = cli.FoldWidth

// fieldNames are the attribute names of postconf -F (postconf(1), "-F"),
// in the order Postfix prints them.
func fieldNames() []string {
	return []string{"service", "type", "private", "unprivileged", "chroot", "wakeup", "process_limit", "command"}
}

// filter is one "service[/type[/name]]" argument; "*" and "" match all.
type filter struct {
	arg                 string
	service, typ, third string
}

func (fl filter) matches(s *Service) bool {
	return (fl.service == "*" || fl.service == s.Name) &&
		(fl.typ == "" || fl.typ == "*" || fl.typ == s.Type)
}

// parseFilters validates filter arguments up front, as postconf does before
// printing anything. max is the number of '/'-separated parts allowed.
func parseFilters(opt string, args []string, max int, usage string) ([]filter, error) {
	var out []filter
	for _, a := range args {
		if a == "" || a[0] == '/' {
			return nil, fmt.Errorf("%s option requires %s", opt, usage)
		}
		var parts []string
		for _, p := range strings.Split(a, "/") {
			if p != "" {
				parts = append(parts, p)
			}
		}
		if len(parts) > max {
			return nil, fmt.Errorf("%s option requires %s", opt, usage)
		}
		for _, p := range parts {
			if p != "*" && strings.Contains(p, "*") {
				return nil, fmt.Errorf("%s option requires %s", opt, usage)
			}
		}
		fl := filter{arg: a, service: parts[0]}
		if len(parts) > 1 {
			fl.typ = parts[1]
		}
		if len(parts) > 2 {
			fl.third = parts[2]
		}
		out = append(out, fl)
	}
	return out, nil
}

// Unmatched returns the filter arguments that select nothing, for which
// postconf warns `unmatched request: "ARG"`. kind is 'M', 'F' or 'P'.
// Invalid filters are reported by the Write methods, not here.
func (f *File) Unmatched(kind byte, filters []string) []string {
	var out []string
	for _, a := range filters {
		var buf strings.Builder
		var err error
		switch kind {
		case 'M':
			err = f.WriteM(&buf, false, []string{a})
		case 'F':
			err = f.WriteF(&buf, []string{a})
		default:
			err = f.WriteP(&buf, []string{a})
		}
		if err == nil && buf.Len() == 0 {
			out = append(out, a)
		}
	}
	return out
}

// selected calls fn for each service and each filter selecting it, in file
// order then filter order, as postconf does (a service matched by two
// filters is printed twice). No filters select every service once.
func (f *File) selected(filters []filter, fn func(*Service, filter) error) error {
	for _, s := range f.Services {
		if len(filters) == 0 {
			if err := fn(s, filter{}); err != nil {
				return err
			}
			continue
		}
		for _, fl := range filters {
			if fl.matches(s) {
				if err := fn(s, fl); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// WriteM prints services as `postconf -M` (fold: `-Mf`), byte for byte as
// Postfix 3.7 does, so admins' and scripts' habits keep working (postconf(1),
// -M); filters are "service" or "service/type" arguments, "*" matching any.
func (f *File) WriteM(w io.Writer, fold bool, filters []string) error {
	fls, err := parseFilters("-M", filters, 2, "service_name[/type]")
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(w)
	err = f.selected(fls, func(s *Service, _ filter) error {
		_, err := bw.WriteString(s.format(fold))
		return err
	})
	if err != nil {
		return fmt.Errorf("print master.cf: %w", err)
	}
	return bw.Flush()
}

// head lays out the eight columns.
func (s *Service) head() string {
	var b strings.Builder
	cols := columns()
	for i, v := range []string{s.Name, s.Type, s.Private, s.Unpriv, s.Chroot, s.Wakeup, s.Maxproc, s.Command} {
		if i > 0 {
			pad := cols[i] - b.Len()
			if pad < 1 {
				pad = 1
			}
			b.WriteString(strings.Repeat(" ", pad))
		}
		b.WriteString(v)
	}
	return b.String()
}

// format returns the entry as postconf -M prints it, newline included.
// Folded, each "-o name=value" in the daemon options gets its own line, the
// argument after one starts a new line, and other arguments fill lines
// kept under foldLimit columns, continuing with four spaces of indent.
func (s *Service) format(fold bool) string {
	line := s.head()
	if !fold {
		if len(s.display) > 0 {
			line += " " + strings.Join(s.display, " ")
		}
		return line + "\n"
	}
	return s.foldArgs(line)
}

// foldArgs appends the arguments to start (the entry's columns, or -Ff's
// "service/type/command = command") folding as -Mf does, and returns the
// text with a final newline.
func (s *Service) foldArgs(start string) string {
	const indent = "    "
	var b strings.Builder
	line := start
	if k := strings.LastIndexByte(start, '\n'); k >= 0 {
		b.WriteString(start[:k+1])
		line = start[k+1:]
	}
	breakNext := false
	for j := 0; j < len(s.display); j++ {
		tok := s.display[j]
		if j < s.optEnd && tok == "-o" && j+1 < s.optEnd {
			b.WriteString(line + "\n")
			line = indent + "-o " + s.display[j+1]
			j++
			breakNext = true
			continue
		}
		// Postfix measures an argument before wrapping it back in braces,
		// so "{a b}" counts as three columns when deciding to fold.
		if breakNext || (len(line) > len(indent) && len(line)+1+len(s.Args[j]) >= foldLimit) {
			b.WriteString(line + "\n")
			line = indent + tok
			breakNext = false
			continue
		}
		if line == indent {
			line += tok // after an empty argument: no separator yet
			continue
		}
		line += " " + tok
	}
	b.WriteString(line + "\n")
	return b.String()
}

// fields returns the -F attributes in Postfix's order.
func (s *Service) fields() []string {
	cmd := s.Command
	if len(s.display) > 0 {
		cmd += " " + strings.Join(s.display, " ")
	}
	return []string{s.Name, s.Type, s.Private, s.Unpriv, s.Chroot, s.Wakeup, s.Maxproc, cmd}
}

// WriteF prints fields as `postconf -F` (`service/type/field = value`,
// postconf(1), -F), as Postfix 3.7 does; filters are
// "service[/type[/field]]".
func (f *File) WriteF(w io.Writer, filters []string) error {
	return f.WriteFields(w, false, filters)
}

// WriteFields is WriteF with postconf's -f: the command field's arguments
// fold as in -Mf (`postconf -Ff`).
func (f *File) WriteFields(w io.Writer, fold bool, filters []string) error {
	fls, err := parseFilters("-F", filters, 3, "service_name[/type[/field]]")
	if err != nil {
		return err
	}
	for _, fl := range fls {
		if fl.third != "" && fl.third != "*" && !contains(fieldNames(), fl.third) {
			return fmt.Errorf("invalid service attribute name: %q", fl.third)
		}
	}
	names := fieldNames()
	bw := bufio.NewWriter(w)
	err = f.selected(fls, func(s *Service, fl filter) error {
		for i, v := range s.fields() {
			if fl.third != "" && fl.third != "*" && fl.third != names[i] {
				continue
			}
			prefix := s.Name + "/" + s.Type + "/" + names[i] + " = "
			first := v
			if names[i] == "command" {
				first = s.Command
			}
			// postconf moves the value to an indented line of its own when
			// its first word would end past column 80; later words of the
			// command are never folded without -f.
			if len(prefix)+len(first) > foldLimit {
				prefix += "\n    "
			}
			text := prefix + v + "\n"
			if fold && names[i] == "command" {
				text = s.foldArgs(prefix + s.Command)
			}
			if _, err := bw.WriteString(text); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("print master.cf: %w", err)
	}
	return bw.Flush()
}

// effective returns the service's overrides with the last value of each
// name, sorted by name as postconf -P prints them.
func (s *Service) effective() []Override {
	m := s.OverrideMap()
	out := make([]Override, 0, len(m))
	for k, v := range m {
		out = append(out, Override{Name: k, Value: v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// WriteP prints per-service parameters as `postconf -P`
// (`service/type/parameter = value`, postconf(1), -P), sorted by name and
// each name once with its last value, as Postfix 3.7 does; filters are
// "service[/type[/parameter]]". Like postconf, it shows each value with
// runs of whitespace collapsed to one space.
func (f *File) WriteP(w io.Writer, filters []string) error {
	return f.WriteParams(w, false, filters)
}

// WriteParams is WriteP with postconf's -f (`postconf -Pf`): words wrap
// onto lines indented by four spaces, none ending past column 80.
func (f *File) WriteParams(w io.Writer, fold bool, filters []string) error {
	fls, err := parseFilters("-P", filters, 3, "service_name[/type[/parameter]]")
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(w)
	err = f.selected(fls, func(s *Service, fl filter) error {
		for _, o := range s.effective() {
			if fl.third != "" && fl.third != "*" && fl.third != o.Name {
				continue
			}
			words := append([]string{s.Name + "/" + s.Type + "/" + o.Name, "="}, strings.Fields(o.Value)...)
			if _, err := bw.WriteString(cli.FoldWords(words, fold)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("print master.cf: %w", err)
	}
	return bw.Flush()
}
