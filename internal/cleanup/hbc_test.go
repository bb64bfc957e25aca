package cleanup

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"moat/internal/maillog"
	"moat/internal/maps"
	"moat/internal/testutil"
)

// hbcDriver reproduces the output of Postfix's header_body_checks test
// program (global/header_body_checks.c with -DTEST) from this package's
// parser and checks, so the .ref files check both. Its log format is the
// driver's own: "header_body_checks: test-queueID: ACTION: CLASS CONTENT:
// TEXT", the action's log line printed before the record it concerns.
type hbcDriver struct {
	c   *Checks
	out strings.Builder
	n   int // the record counter; suppressed records count too
}

func (d *hbcDriver) log(v Verdict, class, content string) {
	fmt.Fprintf(&d.out, "header_body_checks: test-queueID: %s: %s %s", v.Action.LogName(), class,
		Printable(content[:min(len(content), maillog.MaxContentShown)]))
	if v.Text != "" {
		fmt.Fprintf(&d.out, ": %s", v.Text)
	}
	d.out.WriteString("\n")
}

func (d *hbcDriver) Header(class Class, h []byte, off int64) error {
	v, err := d.c.CheckHeader(class, string(h))
	if err != nil {
		return err
	}
	text := string(h)
	switch v.Action {
	case ActIgnore:
		d.n++
		return nil
	case ActStrip:
		d.log(v, "header", string(h))
		d.n++
		return nil
	case ActPrepend:
		d.log(v, "header", string(h))
		d.out.WriteString(v.Text + "\n")
	case ActReplace:
		d.log(v, "header", string(h))
		text = v.Text
	case "":
	default:
		d.log(v, "header", string(h))
	}
	fmt.Fprintf(&d.out, "%d %s %d\t|%s\n", d.count(), class, off, text)
	return nil
}

func (d *hbcDriver) count() int {
	d.n++
	return d.n - 1
}

func (d *hbcDriver) HeaderEnd() error { d.out.WriteString("HEADER END\n"); return nil }

func (d *hbcDriver) Body(rec byte, line []byte, off int64) error {
	v, err := d.c.CheckBody(string(line))
	if err != nil {
		return err
	}
	text := string(line)
	switch v.Action {
	case ActIgnore:
		d.n++
		return nil
	case ActStrip:
		d.log(v, "body", text)
		d.n++
		return nil
	case ActPrepend:
		d.log(v, "body", text)
		d.out.WriteString(v.Text + "\n")
	case ActReplace:
		d.log(v, "body", text)
		text = v.Text
	case "":
	default:
		d.log(v, "body", text)
	}
	fmt.Fprintf(&d.out, "%d BODY %c %d\t|%s\n", d.count(), rec, off, text)
	return nil
}

func (d *hbcDriver) Warn(msg string) { d.out.WriteString("header_body_checks: warning: " + msg + "\n") }

func regexpTable(t *testing.T, rule string) maps.Table {
	t.Helper()
	tab, err := maps.ParseRegexpTable("test", []byte(rule+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

func staticTable(t *testing.T, v string) maps.Table {
	t.Helper()
	tab, err := maps.Open("static:"+v, maps.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

// TestHeaderBodyChecksVectors runs Postfix's global/mime_test.in through
// the driver with the tables of global/Makefile.in and compares with each
// header_body_checks_*.ref byte for byte.
// There are no differences.
func TestHeaderBodyChecksVectors(t *testing.T) {
	dir := testutil.PostfixTests(t)
	in, err := os.ReadFile(filepath.Join(dir, "global", "mime_test.in"))
	if err != nil {
		t.Fatal(err)
	}
	type four [4]string // HDR MIME NEST BODY
	re := func(action string, f four) [4]maps.Table {
		var out [4]maps.Table
		for i, text := range f {
			out[i] = regexpTable(t, "/./ "+action+" "+text)
		}
		return out
	}
	st := func(v string) [4]maps.Table {
		s := staticTable(t, v)
		return [4]maps.Table{s, s, s, s}
	}
	for name, tabs := range map[string][4]maps.Table{
		"null":    st("dunno"),
		"warn":    st("warn"),
		"ignore":  st("ignore"),
		"prepend": re("prepend", four{"header: head", "header: mime", "header: nest", "body"}),
		"replace": re("replace", four{"header: head", "header: mime", "header: nest", "body"}),
		"strip":   re("strip", four{"header line", "mime header line", "nested header", "body line"}),
	} {
		t.Run(name, func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join(dir, "global", "header_body_checks_"+name+".ref"))
			if err != nil {
				t.Fatal(err)
			}
			d := &hbcDriver{c: &Checks{
				Header: []maps.Table{tabs[0]}, MIME: []maps.Table{tabs[1]},
				Nested: []maps.Table{tabs[2]}, Body: []maps.Table{tabs[3]},
			}}
			p := NewParser(d, DefaultLimits())
			if _, err := p.Write(in); err != nil {
				t.Fatal(err)
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			d.out.WriteString("BODY END\n")
			for _, e := range p.Errors().Text() {
				d.out.WriteString("header_body_checks: warning: " + e + "\n")
			}
			if got := d.out.String(); got != string(want) {
				t.Errorf("mismatch with %s.ref\n%s", name, "want:\n"+string(want)+"\ngot:\n"+got)
			}
		})
	}
}
