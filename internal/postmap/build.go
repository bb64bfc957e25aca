package postmap

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"unicode/utf8"

	"moat/internal/aliases"
	"moat/internal/maps"
)

// source is what postmap knows about the file a table is built from: its
// owner and mode decide the owner and mode of the index (postmap(1) -o, -p).
type source struct {
	uid, gid int
	perm     fs.FileMode
	exists   bool
}

func statSource(name string) source {
	fi, err := os.Stat(name)
	if err != nil {
		return source{perm: 0o644}
	}
	s := source{perm: fi.Mode().Perm(), exists: true}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.uid, s.gid = int(st.Uid), int(st.Gid)
	}
	return s
}

// build creates (or, with -i, updates) the index for one TYPE:FILE.
func (o *opts) build(arg string) error {
	typ, name, err := o.splitSpec(arg, true)
	if err != nil {
		return err
	}
	var data []byte
	srcName := name
	if !o.incremental {
		data, err = os.ReadFile(name)
		if err != nil {
			return fatalf("open %s: %s", name, strerror(err))
		}
	}
	if !indexed(typ) {
		return fatalf("unsupported dictionary type: %s does not support bulk-mode creation.", typ)
	}
	if o.incremental {
		data, err = io.ReadAll(o.env.Stdin)
		if err != nil {
			return fatalf("read stdin: %v", err)
		}
		srcName = "stdin"
	}
	src := statSource(name)
	idx := o.backend.IndexPath(typ, name)
	if err := o.checkWritable(idx, src); err != nil {
		return err
	}
	var recs []maps.Record
	if o.incremental {
		recs, err = o.backend.ReadIndex(idx)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fatalf("open database %s: %s", idx, strerror(err))
		}
	}
	parsed, warns := o.flavor.Parse(srcName, data, false)
	parsed, warns = o.checkUTF8(srcName, data, parsed, warns)
	for i := range parsed {
		parsed[i].Key = o.fold1(parsed[i].Key)
	}
	if o.base64 {
		parsed, warns = fileValues(srcName, parsed, warns)
	}
	sentinel := maps.Record{Key: "@", Value: "@", Line: 1 << 30}
	if o.flavor.Sentinel && !o.incremental {
		// Stored like any entry, so a source "@" alias wins with a
		// duplicate warning (unless -r), as in Postfix.
		parsed = append(parsed, sentinel)
	}
	recs = o.merge(dupLabel(typ, name, idx), recs, parsed, warns)
	if o.flavor.Sentinel && o.incremental {
		// An update replaces the entry silently.
		recs = put(recs, sentinel)
	}
	return o.writeIndex(idx, recs, src)
}

// fileValues implements postmap -F: each value names files (separated by
// commas and/or whitespace) whose contents, joined with a newline, are
// stored base64-encoded, so certificates and keys can live in a table
// (postmap(1) "INPUT FILE FORMAT"). An unreadable file skips the entry
// with a warning, as Postfix does.
func fileValues(path string, recs []maps.Record, warns []Warning) ([]maps.Record, []Warning) {
	var out []maps.Record
	for _, r := range recs {
		names := strings.FieldsFunc(r.Value, func(c rune) bool {
			return c == ',' || c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'
		})
		var buf []byte
		ok := true
		for i, n := range names {
			data, err := os.ReadFile(n)
			if err != nil {
				warns = append(warns, Warning{r.Line, fmt.Sprintf("%s, line %d: open %s: %s: skipping this entry",
					path, r.Line, n, strerror(err))})
				ok = false
				break
			}
			if i > 0 {
				buf = append(buf, '\n')
			}
			buf = append(buf, data...)
		}
		if ok {
			r.Value = base64.StdEncoding.EncodeToString(buf)
			out = append(out, r)
		}
	}
	sortWarnings(warns)
	return out, warns
}

// checkUTF8 drops, with Postfix's warning, every logical line that is
// not valid UTF-8 when smtputf8_enable is on; Postfix refuses such lines
// before it parses them, so their other warnings go too.
func (o *opts) checkUTF8(path string, data []byte, recs []maps.Record, warns []Warning) ([]maps.Record, []Warning) {
	if !o.utf8 || utf8.Valid(data) {
		return recs, warns
	}
	lines, _ := maps.SourceLines(data)
	bad := map[int]bool{}
	var out []Warning
	for _, l := range lines {
		if !utf8.ValidString(l.Text) {
			bad[l.Num] = true
			out = append(out, Warning{l.Num, fmt.Sprintf("%s, line %d: non-UTF-8 input \"%s\" -- ignoring this line",
				path, l.Num, aliases.PrintableUTF8(l.Text))})
		}
	}
	for _, w := range warns {
		if !bad[w.Line] {
			out = append(out, w)
		}
	}
	var kept []maps.Record
	for _, r := range recs {
		if !bad[r.Line] {
			kept = append(kept, r)
		}
	}
	sortWarnings(out)
	return kept, out
}

// dupLabel is how Postfix names a table in "duplicate entry" warnings; it
// differs by database type, and moat keeps the spelling of each.
func dupLabel(typ, name, idx string) string {
	switch typ {
	case "lmdb":
		return typ + ":" + name
	case "cdb":
		return name
	}
	return idx
}

// merge adds parsed records to recs in source order, printing the source
// warnings where Postfix would (as it reaches their line). A duplicate key
// keeps the first value and warns, unless -r (replace silently) or -w
// (keep the first silently) was given.
func (o *opts) merge(label string, recs, parsed []maps.Record, warns []Warning) []maps.Record {
	at := make(map[string]int, len(recs)+len(parsed))
	for i, r := range recs {
		at[r.Key] = i
	}
	w := 0
	for _, r := range parsed {
		for ; w < len(warns) && warns[w].Line <= r.Line; w++ {
			o.warnLine(warns[w])
		}
		if i, ok := at[r.Key]; ok {
			switch {
			case o.dupReplace:
				recs[i].Value = r.Value
			case !o.dupQuiet:
				o.env.Warnf(o.prog, "%s: duplicate entry: \"%s\"", label, aliases.Printable(r.Key, o.utf8))
			}
			continue
		}
		at[r.Key] = len(recs)
		recs = append(recs, r)
	}
	for ; w < len(warns); w++ {
		o.warnLine(warns[w])
	}
	return recs
}

// put sets r.Key to r.Value, replacing an existing entry.
func put(recs []maps.Record, r maps.Record) []maps.Record {
	for i := range recs {
		if recs[i].Key == r.Key {
			recs[i].Value = r.Value
			return recs
		}
	}
	return append(recs, r)
}

// checkWritable refuses to build an index the source file's owner could not
// create. Postfix's postmap, run as root on a file owned by someone else,
// drops to that owner's identity before touching the database (-o keeps
// root); moat stays one process and checks the directory's permission
// bits for that identity instead, with the same message.
func (o *opts) checkWritable(idx string, src source) error {
	if os.Geteuid() != 0 || o.keepRoot || !src.exists || src.uid == 0 {
		return nil
	}
	fi, err := os.Stat(filepath.Dir(idx))
	if err != nil {
		return nil // the write itself will report it
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	perm := fi.Mode().Perm()
	var can bool
	switch {
	case int(st.Uid) == src.uid:
		can = perm&0o300 == 0o300
	case int(st.Gid) == src.gid:
		can = perm&0o030 == 0o030
	default:
		can = perm&0o003 == 0o003
	}
	if !can {
		return fatalf("open database %s: Permission denied", idx)
	}
	return nil
}

// writeIndex replaces the index and gives it the owner and mode postmap
// would: an existing index keeps its own; a new one gets the source file's
// owner (unless -o) and the source's permissions (unless -p, then 0644),
// never writable by group or others, because whoever can write a table
// can change mail policy.
func (o *opts) writeIndex(idx string, recs []maps.Record, src source) error {
	uid, gid, perm := src.uid, src.gid, src.perm&0o644
	if o.defaultPerms || !src.exists {
		perm = 0o644
	}
	if o.keepRoot || !src.exists {
		uid, gid = os.Geteuid(), os.Getegid()
	}
	created := false
	if fi, err := os.Stat(idx); err == nil {
		perm = fi.Mode().Perm() &^ 0o022
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			uid, gid = int(st.Uid), int(st.Gid)
		}
	} else {
		// maps.WriteIndex gives the new file the mode of the one it
		// replaces, so an empty placeholder with the right mode makes
		// sure a table of secrets (sasl_passwd) is never readable by
		// others, not even between the rename and a later chmod.
		if err := o.placeholder(idx, perm, uid, gid); err != nil {
			return err
		}
		created = true
	}
	if err := o.backend.WriteIndex(idx, recs); err != nil {
		if created {
			os.Remove(idx)
		}
		return fatalf("%s: %v", idx, err)
	}
	if err := os.Chmod(idx, perm); err != nil {
		return fatalf("chmod %s: %s", idx, strerror(err))
	}
	if os.Geteuid() == 0 {
		if err := os.Lchown(idx, uid, gid); err != nil {
			return fatalf("chown %s: %s", idx, strerror(err))
		}
	}
	return nil
}

// placeholder creates an empty idx with the given mode and owner.
func (o *opts) placeholder(idx string, perm os.FileMode, uid, gid int) error {
	f, err := os.OpenFile(idx, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fatalf("open database %s: %s", idx, strerror(err))
	}
	defer f.Close()
	if err := f.Chmod(perm); err != nil {
		return fatalf("chmod %s: %s", idx, strerror(err))
	}
	if os.Geteuid() == 0 {
		if err := f.Chown(uid, gid); err != nil {
			return fatalf("chown %s: %s", idx, strerror(err))
		}
	}
	return nil
}

// strerror gives the C library's wording of err's errno ("No such file or
// directory"), which Postfix prints; Go's is the same text in lower case.
func strerror(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		s := errno.Error()
		if s != "" && s[0] >= 'a' && s[0] <= 'z' {
			s = string(s[0]-'a'+'A') + s[1:]
		}
		return s
	}
	return err.Error()
}

// warnLine prints a source-file warning. The line text some warnings quote
// goes through Postfix's printable(), so a log line never carries control
// characters (or, without smtputf8_enable, bytes outside ASCII).
func (o *opts) warnLine(w Warning) {
	o.env.Warnf(o.prog, "%s", aliases.Printable(w.Text, o.utf8))
}
