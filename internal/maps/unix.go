package maps

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// unixTable is unix:passwd.byname or unix:group.byname (DATABASE_README):
// the entry for a user or group name, formatted as the system file line
// ("root:x:0:0:root:/root:/bin/bash", "mail:x:8:"), which is what Postfix's
// getpwnam()/getgrnam() based table returns. moat reads the files
// directly: it is built without cgo, so NSS modules (LDAP, sss) are not
// consulted. The file is read at each lookup, so edits are seen at once.
type unixTable struct {
	path   string
	fields int // 7 for passwd, 4 for group
	opts   Options
}

func openUnix(name string, opts Options) (Table, error) {
	switch name {
	case "passwd.byname":
		return &unixTable{path: "/etc/passwd", fields: 7, opts: opts}, nil
	case "group.byname":
		return &unixTable{path: "/etc/group", fields: 4, opts: opts}, nil
	}
	return nil, fmt.Errorf("unknown table: unix:%s", name)
}

// Lookup implements Table.
func (t *unixTable) Lookup(key string) (string, bool, error) {
	key = t.opts.fold(key)
	data, err := os.ReadFile(t.path)
	if err != nil {
		return "", false, fmt.Errorf("unix table %s: %w", t.path, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' || line[0] == '+' || line[0] == '-' {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) != t.fields || f[0] != key {
			continue
		}
		// Numeric fields are printed as numbers, the way Postfix formats
		// the struct it gets back ("%ld"), so "007" reads as "7".
		numeric := []int{2, 3} // uid, gid
		if t.fields == 4 {
			numeric = []int{2} // gid
		}
		for _, i := range numeric {
			n, err := strconv.ParseInt(f[i], 10, 64)
			if err != nil {
				return "", false, fmt.Errorf("unix table %s: bad number %q for %s", t.path, f[i], key)
			}
			f[i] = strconv.FormatInt(n, 10)
		}
		return strings.Join(f, ":"), true, nil
	}
	if err := sc.Err(); err != nil {
		return "", false, fmt.Errorf("unix table %s: %w", t.path, err)
	}
	return "", false, nil
}

// Pattern implements Table.
func (t *unixTable) Pattern() bool { return false }

// Close implements Table.
func (t *unixTable) Close() error { return nil }
