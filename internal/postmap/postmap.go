// Package postmap implements the postmap(1) command, and the engine that
// postalias(1) shares with it: building an indexed table from a source
// file, incremental updates (-i), deletions (-d), queries (-q, also of a
// whole message's headers and body lines with -h/-b/-m, to test
// header_checks and body_checks) and dumps (-s). Output, warnings and exit
// statuses follow Debian's Postfix 3.7 byte for byte, so scripts and cron
// jobs written for Postfix keep working.
package postmap

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"moat/internal/cli"
	"moat/internal/config"
	"moat/internal/getopt"
	"moat/internal/maps"
)

// Flavor is what differs between postmap and postalias.
type Flavor struct {
	// Spec is the getopt option string; Usage the synopsis printed after
	// "fatal: usage: ".
	Spec, Usage string
	// Parse reads the source format.
	Parse func(path string, data []byte, fold bool) ([]maps.Record, []Warning)
	// KeySuffix follows each key in -s and "-q -" output: postalias
	// prints "name:<TAB>value", the aliases(5) spelling.
	KeySuffix string
	// Sentinel adds the "@" -> "@" entry Sendmail's newaliases stores to
	// tell readers a rebuilt database is complete; postalias(1) keeps it.
	Sentinel bool
}

// PostmapFlavor is postmap(1).
func PostmapFlavor() Flavor {
	return Flavor{
		Spec:  "bc:d:fFhimnNopq:rsuUvw",
		Usage: "[-bfFhimnNoprsuUvw] [-c config_dir] [-d key] [-q key] [map_type:]file...",
		Parse: ParseTable,
	}
}

// Main runs postmap with args (without the program name) and returns the
// exit status.
func Main(env *cli.Env, prog string, args []string) int {
	return Run(env, prog, args, PostmapFlavor(), RealBackend())
}

// Backend is the table storage the commands use. Production code uses
// RealBackend (moat's maps package); tests can substitute their own.
type Backend struct {
	Open       func(spec string, opts maps.Options) (maps.Table, error)
	ReadIndex  func(path string) ([]maps.Record, error)
	WriteIndex func(path string, recs []maps.Record) error
	IndexPath  func(typ, name string) string
}

// RealBackend returns the maps package's implementation.
func RealBackend() Backend {
	return Backend{Open: maps.Open, ReadIndex: maps.ReadIndex, WriteIndex: maps.WriteIndex, IndexPath: maps.IndexPath}
}

// fatal carries a msg_fatal text up to Run, which prints it once.
type fatal struct{ msg string }

func (f *fatal) Error() string { return f.msg }

func fatalf(format string, args ...any) error {
	return &fatal{fmt.Sprintf(format, args...)}
}

// opts is the parsed command line.
type opts struct {
	configDir     string
	mode          byte // 0 (build), 'q', 's' or 'd'
	key           string
	fold          bool
	incremental   bool
	dupReplace    bool
	dupQuiet      bool
	keepRoot      bool
	defaultPerms  bool
	base64        bool
	headers, body bool // -h, -b: stdin is a message
	mime          bool
	noUTF8        bool // -u
	forceUTF8     bool // -U: check -b/-h keys too
	// utf8 is smtputf8_enable (unless -u): keys must be valid UTF-8 and
	// fold with full Unicode case folding, as Postfix's dict_utf8 layer
	// does.
	utf8        bool
	files       []string
	defaultType string
	trustedUIDs []int
	flavor      Flavor
	backend     Backend
	env         *cli.Env
	prog        string
}

// Run is the command shared by postmap and postalias.
func Run(env *cli.Env, prog string, args []string, fl Flavor, be Backend) int {
	o := &opts{fold: true, flavor: fl, backend: be, env: env, prog: prog}
	status, err := o.run(args)
	if err != nil {
		var f *fatal
		if errors.As(err, &f) {
			return env.Fatalf(prog, "%s", f.msg)
		}
		return env.Fatalf(prog, "%v", err)
	}
	return status
}

func (o *opts) usage() error {
	return fatalf("usage: %s %s", o.prog, o.flavor.Usage)
}

func (o *opts) run(args []string) (int, error) {
	parsed, files, err := getopt.Parse(args, o.flavor.Spec)
	if err != nil {
		fmt.Fprintf(o.env.Stderr, "%s: %v\n", o.prog, err)
		return 1, o.usage()
	}
	for _, p := range parsed {
		switch p.Flag {
		case 'c':
			o.configDir = p.Arg
		case 'q', 's', 'd':
			// Postfix refuses the second of these as soon as it sees
			// it, even the same one twice (-q a -q b).
			if o.mode != 0 && !(o.mode == 's' && p.Flag == 's') {
				return 1, fatalf("specify only one of -s -q or -d")
			}
			o.mode, o.key = p.Flag, p.Arg
		case 'f':
			o.fold = false
		case 'i':
			o.incremental = true
		case 'r':
			// -r and -w cancel each other; the last one counts.
			o.dupReplace, o.dupQuiet = true, false
		case 'w':
			o.dupReplace, o.dupQuiet = false, true
		case 'o':
			o.keepRoot = true
		case 'p':
			o.defaultPerms = true
		case 'F':
			o.base64 = true
		case 'b':
			o.body = true
		case 'h':
			o.headers = true
		case 'm':
			o.mime = true
		case 'u':
			o.noUTF8 = true
		case 'U':
			o.forceUTF8 = true
		case 'N', 'n', 'v':
			// -N/-n choose whether Berkeley DB keys carry a trailing
			// null; moat's index stores exact strings and finds a key
			// either way, so there is nothing to choose. Verbose
			// logging (-v) is accepted and changes nothing.
		}
	}
	if err := o.loadConfig(); err != nil {
		return 1, err
	}
	if (o.headers || o.body || o.mime) && !(o.mode == 'q' && o.key == "-") {
		return 1, fatalf("specify -b -h or -m only with \"-q -\"")
	}
	if len(files) == 0 {
		return 1, o.usage()
	}
	o.files = files
	switch o.mode {
	case 'q':
		return o.query()
	case 's':
		return o.dump()
	case 'd':
		return o.delete()
	}
	for _, f := range files {
		if err := o.build(f); err != nil {
			return 1, err
		}
	}
	return 0, nil
}

// loadConfig reads what the commands need from main.cf: the default table
// type and mail_owner, whose files are trusted like root's. It uses
// config.Open, not Load: like Postfix's postmap, building a table must not
// fail over an unrelated main.cf problem that the daemons will report.
func (o *opts) loadConfig() error {
	cfg, err := config.Open(o.env.ConfigDir(o.configDir))
	if err != nil {
		return fatalf("%v", err)
	}
	if o.defaultType, err = cfg.GetErr("default_database_type"); err != nil {
		return fatalf("%v", err)
	}
	if !o.noUTF8 {
		if o.utf8, err = cfg.Bool("smtputf8_enable"); err != nil {
			return fatalf("%v", err)
		}
	}
	if _, err := cfg.GetErr("mail_owner"); err != nil {
		return fatalf("%v", err)
	}
	if uid, ok := cfg.MailOwnerUID(); ok {
		o.trustedUIDs = append(o.trustedUIDs, uid)
	}
	return nil
}

// indexed reports whether typ is one of the types moat serves from its own
// index file built by postmap.
func indexed(typ string) bool {
	switch typ {
	case "hash", "btree", "lmdb", "cdb":
		return true
	}
	return false
}

// splitSpec applies the default type to a bare file name and checks the
// type, with Postfix's messages.
func (o *opts) splitSpec(arg string, build bool) (typ, name string, err error) {
	typ, name = o.defaultType, arg
	if i := strings.IndexByte(arg, ':'); i > 0 {
		typ, name = arg[:i], arg[i+1:]
	}
	if name == "" && !(build && !o.incremental) {
		// Building opens the (empty) source name first and fails
		// there, as Postfix does.
		return "", "", fatalf("open dictionary: expecting \"type:name\" form instead of \"%s\"", arg)
	}
	if !slices.Contains(maps.Types, typ) {
		if build {
			return "", "", fatalf("unsupported dictionary type: %s. Is the postfix-%s package installed?", typ, typ)
		}
		return "", "", fatalf("unsupported dictionary type: %s", typ)
	}
	return typ, name, nil
}

func (o *opts) tableOptions() maps.Options {
	// Postfix asks its tables for UTF-8 handling (checks and Unicode
	// folding) except for message lines (-b, -h) unless -U insists.
	utf8 := o.utf8 && (!(o.headers || o.body) || o.forceUTF8)
	return maps.Options{Fold: o.fold, UTF8: utf8, TrustedUIDs: o.trustedUIDs,
		Warn: func(msg string) { o.env.Warnf(o.prog, "%s", msg) }}
}

func (o *opts) fold1(key string) string {
	if !o.fold {
		return key
	}
	return maps.FoldKey(key, o.utf8)
}
