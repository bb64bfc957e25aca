package postmap

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"unicode/utf8"

	"moat/internal/aliases"
	"moat/internal/maps"
)

// openTable opens one TYPE:NAME argument for reading, turning errors into
// Postfix's messages.
func (o *opts) openTable(arg string) (maps.Table, string, error) {
	typ, name, err := o.splitSpec(arg, false)
	if err != nil {
		return nil, "", err
	}
	spec := typ + ":" + name
	t, err := o.backend.Open(spec, o.tableOptions())
	if err != nil {
		return nil, "", openError(typ, name, err)
	}
	return t, spec, nil
}

// openError words a failure to open a table as Postfix does: files behind
// a database type are a "database", regexp-style files are just opened.
func openError(typ, name string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) && pe.Op == "open" {
		if indexed(typ) || typ == "texthash" {
			return fatalf("open database %s: %s", pe.Path, strerror(pe.Err))
		}
		return fatalf("open %s: %s", pe.Path, strerror(pe.Err))
	}
	var f *fatal
	if errors.As(err, &f) {
		return err
	}
	return fatalf("%v", err)
}

// lookup asks one table for key and decodes the value under -F.
func (o *opts) lookup(t maps.Table, spec, key string) (string, bool, error) {
	// Message lines (-b, -h) are not checked unless -U asks: mail
	// carries all kinds of bytes, and body_checks sees them as they are.
	if o.utf8 && !utf8.ValidString(key) && (!(o.headers || o.body) || o.forceUTF8) {
		o.env.Warnf(o.prog, "%s: non-UTF-8 key \"%s\": malformed UTF-8 or invalid codepoint",
			o.dictName(spec), aliases.Printable(key, true))
		return "", false, nil
	}
	v, ok, err := t.Lookup(key)
	if err != nil {
		if strings.HasPrefix(spec, "fail:") {
			// fail: exists to fail; Postfix words it as its
			// generic application error.
			return "", false, fatalf("table %s: query error: Application error", spec)
		}
		return "", false, fatalf("table %s: query error: %v", spec, err)
	}
	if ok && v == "" {
		// Postfix names the table by its spec for -q KEY and by its
		// database file for "-q -".
		name := spec
		if o.key == "-" {
			name = o.dictName(spec)
		}
		o.emptyResult(name, key)
	}
	if ok && o.base64 {
		var good bool
		if v, good = o.decode(spec, key, v); !good {
			return "", false, fatalf("table %s: query error", o.dictName(spec))
		}
	}
	return v, ok, nil
}

// emptyResult repeats Postfix's complaint about a table that returns an
// empty value (a stored "k: \\" alias, say); the value is still printed.
func (o *opts) emptyResult(table, key string) {
	o.env.Warnf(o.prog, "table %s: key %s: empty string result is not allowed", table, key)
	o.env.Warnf(o.prog, "table %s should return NO RESULT in case of NOT FOUND", table)
}

// decode base64-decodes a -F value, warning as Postfix does when it is
// not base64.
func (o *opts) decode(spec, key, v string) (string, bool) {
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		o.env.Warnf(o.prog, "table %s: key %s: malformed BASE64 value: %.30s", o.dictName(spec), key, v)
		return "", false
	}
	return string(b), true
}

// dictName is how Postfix names an open table in -F messages: indexed
// tables by their database file.
func (o *opts) dictName(spec string) string {
	typ, name, _ := strings.Cut(spec, ":")
	if indexed(typ) {
		return typ + ":" + o.backend.IndexPath(typ, name)
	}
	return spec
}

// query is -q KEY and -q -. A single key opens the tables one at a time and
// stops at the first that has it, so a later missing table is only an
// error when it is reached; "-q -" opens them all first, as Postfix does.
func (o *opts) query() (int, error) {
	if o.key != "-" {
		for _, arg := range o.files {
			t, spec, err := o.openTable(arg)
			if err != nil {
				return 1, err
			}
			v, ok, err := o.lookup(t, spec, o.key)
			t.Close()
			if err != nil {
				return 1, err
			}
			if ok {
				fmt.Fprintln(o.env.Stdout, v)
				return 0, nil
			}
		}
		return 1, nil
	}
	// Tables are opened when a key first needs them, as Postfix does: a
	// missing second table is no error while the first answers.
	tables := make([]maps.Table, len(o.files))
	specs := make([]string, len(o.files))
	defer closeAll(tables)
	status := 1
	each := func(r io.Reader, fn func(string) error) error { return eachLine(r, fn) }
	if o.headers || o.body {
		each = o.messageKeys
	}
	err := each(o.env.Stdin, func(key string) error {
		for i := range tables {
			if tables[i] == nil {
				t, spec, err := o.openTable(o.files[i])
				if err != nil {
					return err
				}
				tables[i], specs[i] = t, spec
			}
			v, ok, err := o.lookup(tables[i], specs[i], key)
			if err != nil {
				return err
			}
			if ok {
				fmt.Fprintf(o.env.Stdout, "%s%s\t%s\n", key, o.flavor.KeySuffix, v)
				status = 0
				return nil
			}
		}
		return nil
	})
	return status, err
}

func closeAll(ts []maps.Table) {
	for _, t := range ts {
		if t != nil {
			t.Close()
		}
	}
}

// eachLine calls fn with every line of r, newline removed and nothing else:
// Postfix takes keys from stdin verbatim, spaces included.
func eachLine(r io.Reader, fn func(string) error, atEOF ...func() error) error {
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			if err := fn(strings.TrimSuffix(line, "\n")); err != nil {
				return err
			}
		}
		if err == io.EOF {
			for _, f := range atEOF {
				if err := f(); err != nil {
					return err
				}
			}
			return nil
		}
		if err != nil {
			return fatalf("read stdin: %v", err)
		}
	}
}

// sequencer is implemented by tables that can list their entries, for -s.
type sequencer interface {
	Records() ([]maps.Record, error)
}

// dump is -s: list the first table. Postfix lists only the first table
// named, whatever follows.
func (o *opts) dump() (int, error) {
	typ, name, err := o.splitSpec(o.files[0], false)
	if err != nil {
		return 1, err
	}
	spec := typ + ":" + name
	var recs []maps.Record
	switch {
	case indexed(typ):
		idx := o.backend.IndexPath(typ, name)
		recs, err = o.backend.ReadIndex(idx)
		if err != nil {
			return 1, openError(typ, name, err)
		}
	case typ == "texthash":
		recs, err = o.textHash(name)
		if err != nil {
			return 1, err
		}
	default:
		t, _, err := o.openTable(o.files[0])
		if err != nil {
			return 1, err
		}
		defer t.Close()
		s, ok := t.(sequencer)
		if typ == "fail" {
			return 1, fatalf("table %s: sequence error: Application error", spec)
		}
		if !ok {
			return 1, fatalf("table %s: sequence operation is not supported", spec)
		}
		if recs, err = s.Records(); err != nil {
			return 1, fatalf("table %s: sequence error: %v", spec, err)
		}
	}
	for _, r := range recs {
		v := r.Value
		if r.Key == "" {
			o.env.Warnf(o.prog, "table %s: empty lookup key value is not allowed", spec)
		}
		if v == "" {
			o.emptyResult(spec, r.Key)
		}
		if o.base64 {
			var good bool
			if v, good = o.decode(spec, r.Key, v); !good {
				continue
			}
		}
		fmt.Fprintf(o.env.Stdout, "%s%s\t%s\n", r.Key, o.flavor.KeySuffix, v)
	}
	return 0, nil
}

// textHash reads a texthash source for -s the way the texthash table does:
// postmap's format whatever the command, first value of a key wins.
func (o *opts) textHash(name string) ([]maps.Record, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fatalf("open database %s: %s", name, strerror(err))
	}
	// Postfix's texthash names a duplicate key as written, not folded.
	parsed, warns := parseTable(name, data, false, true)
	var recs []maps.Record
	seen := map[string]bool{}
	w := 0
	for _, r := range parsed {
		for ; w < len(warns) && warns[w].Line <= r.Line; w++ {
			o.warnLine(warns[w])
		}
		key := o.fold1(r.Key)
		if seen[key] {
			o.env.Warnf(o.prog, "%s, line %d: duplicate entry: \"%s\"", name, r.Line, r.Key)
			continue
		}
		seen[key] = true
		recs = append(recs, maps.Record{Key: key, Value: r.Value, Line: r.Line})
	}
	for ; w < len(warns); w++ {
		o.warnLine(warns[w])
	}
	return recs, nil
}

// delete is -d KEY and -d -: remove one entry per table for each key.
// With one key Postfix works through the tables in turn, so a missing
// later table stops it after the earlier ones were changed; with "-d -" it
// opens them all before reading a key.
func (o *opts) delete() (int, error) {
	status := 1
	if o.key != "-" {
		for _, arg := range o.files {
			t, err := o.openForUpdate(arg)
			if err != nil {
				return 1, err
			}
			if t.remove(o.fold1(o.key)) {
				status = 0
				if err := o.writeIndex(t.idx, t.recs, t.src); err != nil {
					return 1, err
				}
			}
		}
		return status, nil
	}
	var tables []*updatable
	for _, arg := range o.files {
		t, err := o.openForUpdate(arg)
		if err != nil {
			return 1, err
		}
		tables = append(tables, t)
	}
	err := eachLine(o.env.Stdin, func(key string) error {
		for _, t := range tables {
			if t.remove(o.fold1(key)) {
				status = 0
			}
		}
		return nil
	})
	for _, t := range tables {
		if !t.changed {
			continue
		}
		if werr := o.writeIndex(t.idx, t.recs, t.src); werr != nil && err == nil {
			err = werr
		}
	}
	if err != nil {
		return 1, err
	}
	return status, nil
}

// updatable is an index read into memory for -d.
type updatable struct {
	idx     string
	recs    []maps.Record
	src     source
	changed bool
}

func (o *opts) openForUpdate(arg string) (*updatable, error) {
	typ, name, err := o.splitSpec(arg, false)
	if err != nil {
		return nil, err
	}
	if !indexed(typ) {
		return nil, fatalf("%s:%s map requires O_RDONLY access mode", typ, name)
	}
	idx := o.backend.IndexPath(typ, name)
	recs, err := o.backend.ReadIndex(idx)
	if err != nil {
		return nil, openError(typ, name, err)
	}
	return &updatable{idx: idx, recs: recs, src: statSource(name)}, nil
}

// remove deletes the entry for key, reporting whether there was one.
func (t *updatable) remove(key string) bool {
	for i, r := range t.recs {
		if r.Key == key {
			t.recs = append(t.recs[:i:i], t.recs[i+1:]...)
			t.changed = true
			return true
		}
	}
	return false
}
