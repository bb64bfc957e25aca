// Command gen writes internal/config/params_table.go, moat's one table of
// main.cf parameters, from Debian's Postfix 3.7 `postconf -d` (the raw
// defaults) and postconf(5) (which parameters take a time value and its
// default unit). It is run by hand (go generate ./internal/config) on a
// machine with Postfix installed; the output is committed so builds do not
// need Postfix.
//
// Usage: go run ./internal/config/gen -o internal/config/params_table.go
package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"flag"
	"fmt"
	"go/format"
	"io"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// computed lists defaults Postfix computes on the running host; the table
// records them so config computes them at run time instead of freezing the
// generating machine's values.
var computedNames = []string{"myhostname", "mydomain", "mynetworks", "process_id", "process_name", "config_directory"}

// longNames are Postfix's long-valued (64-bit) size parameters.
var longNames = []string{"message_size_limit", "mailbox_size_limit", "virtual_mailbox_limit",
	"queue_minfree", "berkeley_db_create_buffer_size", "berkeley_db_read_buffer_size",
	"lmdb_map_size", "header_size_limit", "smtpd_proxy_buffer_size"}

// enums are hand-written value sets (postconf(5) for each name).
var enums = map[string][]string{
	"smtpd_tls_security_level":     {"", "none", "may", "encrypt"},
	"smtp_tls_security_level":      {"", "none", "may", "encrypt", "dane", "dane-only", "fingerprint", "verify", "secure"},
	"lmtp_tls_security_level":      {"", "none", "may", "encrypt", "dane", "dane-only", "fingerprint", "verify", "secure"},
	"smtp_dns_support_level":       {"", "disabled", "enabled", "dnssec"},
	"lmtp_dns_support_level":       {"", "disabled", "enabled", "dnssec"},
	"mynetworks_style":             {"host", "subnet", "class"},
	"smtpd_tls_fingerprint_digest": {"md5", "sha1", "sha224", "sha256", "sha384", "sha512"},
	"smtp_tls_fingerprint_digest":  {"md5", "sha1", "sha224", "sha256", "sha384", "sha512"},
	"lmtp_tls_fingerprint_digest":  {"md5", "sha1", "sha224", "sha256", "sha384", "sha512"},
	"smtpd_tls_ciphers":            {"export", "low", "medium", "high", "null"},
	"smtpd_tls_mandatory_ciphers":  {"export", "low", "medium", "high", "null"},
	"smtp_tls_ciphers":             {"export", "low", "medium", "high", "null"},
	"smtp_tls_mandatory_ciphers":   {"export", "low", "medium", "high", "null"},
	// Postfix 3.9's values; Debian's 3.7.11 backport takes yes/no, and
	// its "no" default would otherwise make it look like a boolean.
	"smtpd_forbid_bare_newline": {"yes", "no", "normalize", "reject"},
}

func main() {
	out := flag.String("o", "params_table.go", "output file")
	postconf := flag.String("postconf", "/usr/sbin/postconf", "Postfix's postconf")
	man := flag.String("man", "/usr/share/man/man5/postconf.5.gz", "postconf(5) source")
	flag.Parse()
	if err := run(*out, *postconf, *man); err != nil {
		fmt.Fprintf(os.Stderr, "gen: %v\n", err)
		os.Exit(1)
	}
}

type param struct {
	name, def, typ string
	unit           byte
	min            int64
	enum           []string
	computed       bool
	raw, readOnly  bool
}

// probeRaw finds the parameters Postfix never expands (their values hold
// run-time macros such as $rbl_code) and the read-only ones, by setting
// every parameter to "$mail_name" and asking postconf -x: a raw parameter
// prints "$mail_name" unchanged, a read-only one draws a warning.
func probeRaw(postconf, dir, defaults string) (map[string]bool, map[string]bool, error) {
	var mc strings.Builder
	for _, line := range strings.Split(strings.TrimSpace(defaults), "\n") {
		name, _, _ := strings.Cut(line, " =")
		if name != "mail_name" && name != "config_directory" {
			fmt.Fprintf(&mc, "%s = $mail_name\n", name)
		}
	}
	if err := os.WriteFile(dir+"/main.cf", []byte(mc.String()), 0o644); err != nil {
		return nil, nil, err
	}
	defer os.Remove(dir + "/main.cf")
	cmd := exec.Command(postconf, "-c", dir, "-x")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, nil, fmt.Errorf("%s -x: %w: %s", postconf, err, errb.String())
	}
	raw, ro := map[string]bool{}, map[string]bool{}
	for _, line := range strings.Split(out.String(), "\n") {
		if name, ok := strings.CutSuffix(line, " = $mail_name"); ok {
			raw[name] = true
		}
	}
	for _, line := range strings.Split(errb.String(), "\n") {
		if _, rest, ok := strings.Cut(line, "read-only parameter assignment: "); ok {
			name, _, _ := strings.Cut(rest, "=")
			ro[name] = true
		}
	}
	return raw, ro, nil
}

func run(out, postconf, man string) error {
	empty, err := os.MkdirTemp("", "moatgen")
	if err != nil {
		return err
	}
	defer os.RemoveAll(empty)
	// An empty config directory (no master.cf) gives only the built-in
	// parameters, not Debian's per-transport ones.
	cmd := exec.Command(postconf, "-c", empty, "-d")
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s -d: %w", postconf, err)
	}
	units, err := timeUnits(man)
	if err != nil {
		return err
	}
	raw, readOnly, err := probeRaw(postconf, empty, stdout.String())
	if err != nil {
		return err
	}
	var params []param
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		name, def, ok := strings.Cut(sc.Text(), " =")
		if !ok {
			return fmt.Errorf("bad postconf line %q", sc.Text())
		}
		def = strings.TrimPrefix(def, " ")
		p := classify(name, def, units)
		p.raw, p.readOnly = raw[name], readOnly[name]
		params = append(params, p)
	}
	sort.Slice(params, func(i, j int) bool { return params[i].name < params[j].name })
	var b bytes.Buffer
	b.WriteString("// Code generated by internal/config/gen from Debian's Postfix 3.7 `postconf -d` and postconf(5); DO NOT EDIT.\n\npackage config\n\n")
	b.WriteString("// builtinParams returns every parameter Postfix 3.7 defines, with its raw\n// default exactly as `postconf -d` prints it, its type and validation.\nfunc builtinParams() []Param {\n\treturn []Param{\n")
	for _, p := range params {
		fmt.Fprintf(&b, "\t\t{Name: %q, Default: %q, Type: %s", p.name, p.def, p.typ)
		if p.unit != 0 {
			fmt.Fprintf(&b, ", Unit: '%c'", p.unit)
		}
		if p.min != 0 {
			fmt.Fprintf(&b, ", Min: %d", p.min)
		}
		if p.enum != nil {
			fmt.Fprintf(&b, ", Enum: %#v", p.enum)
		}
		if p.computed {
			b.WriteString(", Computed: true")
		}
		if p.raw {
			b.WriteString(", Raw: true")
		}
		if p.readOnly {
			b.WriteString(", ReadOnly: true")
		}
		b.WriteString("},\n")
	}
	b.WriteString("\t}\n}\n")
	src, err := format.Source(b.Bytes())
	if err != nil {
		return fmt.Errorf("gofmt: %w", err)
	}
	return os.WriteFile(out, src, 0o644)
}

var digits = regexp.MustCompile(`^[0-9]+$`)
var timeVal = regexp.MustCompile(`^[0-9]+[smhdw]$`)

func classify(name, def string, units map[string]byte) param {
	if name == "process_id" {
		def = "" // differs on every run
	}
	p := param{name: name, def: def, typ: "TypeString"}
	for _, c := range computedNames {
		if c == name {
			p.computed = true
		}
	}
	if u, ok := units[name]; ok && (timeVal.MatchString(def) || strings.HasSuffix(def, "}"+string(u))) {
		p.typ, p.unit = "TypeTime", u
		return p
	}
	if e, ok := enums[name]; ok {
		p.enum = e
		return p
	}
	switch {
	case def == "yes" || def == "no" || strings.HasSuffix(def, "{no} : {yes}}") || strings.HasSuffix(def, "{yes} : {no}}") ||
		strings.HasSuffix(def, "{yes}:{no}}}}"):
		p.typ = "TypeBool"
		return p
	case contains(longNames, name):
		p.typ = "TypeLong"
		return p
	case digits.MatchString(def) && name != "mail_release_date" && name != "process_id" && name != "compatibility_level":
		// Postfix's integer parameters are counts, limits and codes:
		// none is negative (Param.Min is 0 unless set).
		p.typ = "TypeInt"
		if n, _ := strconv.ParseInt(def, 10, 64); n > 2147483647 {
			p.typ = "TypeLong"
		}
		return p
	case timeVal.MatchString(def):
		p.typ, p.unit = "TypeTime", def[len(def)-1]
		return p
	}
	switch {
	case strings.HasSuffix(name, "_maps") || strings.HasSuffix(name, "_checks"):
		p.typ = "TypeMapList"
	case strings.HasSuffix(name, "_restrictions"):
		p.typ = "TypeRestrictions"
	case strings.HasSuffix(name, "_domains") || strings.HasSuffix(name, "_networks") ||
		strings.HasSuffix(name, "_interfaces") || strings.HasSuffix(name, "_protocols") ||
		strings.HasSuffix(name, "_classes") || name == "mydestination" || name == "mynetworks" ||
		strings.HasSuffix(name, "_clients") || strings.HasSuffix(name, "_exclude_ciphers"):
		p.typ = "TypeList"
	}
	return p
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

var shLine = regexp.MustCompile(`^\.SH ([a-z0-9_]+) \(default:`)
var unitLine = regexp.MustCompile(`default time unit is ([a-z])`)

// timeUnits reads postconf(5): a parameter whose section speaks of a "time
// unit" is a time value, and "The default time unit is X" gives its unit.
func timeUnits(man string) (map[string]byte, error) {
	f, err := os.Open(man)
	if err != nil {
		return nil, fmt.Errorf("postconf(5): %w", err)
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(man, ".gz") {
		gz, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", man, err)
		}
		r = gz
	}
	units := map[string]byte{}
	var cur []string
	var body strings.Builder
	flush := func() {
		text := strings.ReplaceAll(body.String(), "\n", " ")
		if strings.Contains(text, "time unit") && !strings.Contains(text, "per time unit") {
			u := byte('s')
			if m := unitLine.FindStringSubmatch(text); m != nil {
				u = m[1][0]
			}
			for _, n := range cur {
				units[n] = u
			}
		}
		cur = nil
		body.Reset()
	}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if m := shLine.FindStringSubmatch(line); m != nil {
			if body.Len() > 0 || len(cur) > 0 {
				flush()
			}
			cur = append(cur, m[1])
			continue
		}
		if strings.HasPrefix(line, ".SH") {
			flush()
			continue
		}
		body.WriteString(line)
		body.WriteByte('\n')
	}
	flush()
	return units, sc.Err()
}
