package maps

import "errors"

// Placeholders replaced by the real implementations.

var errNotYet = errors.New("not implemented yet")

func openIndexed(typ, name string, opts Options) (Table, error) { return nil, errNotYet }
func openTexthash(name string, opts Options) (Table, error)     { return nil, errNotYet }
func openInline(name string, opts Options) (Table, error)       { return nil, errNotYet }
func openStatic(name string, opts Options) (Table, error)       { return nil, errNotYet }
func openUnix(name string, opts Options) (Table, error)         { return nil, errNotYet }
func openFail(name string, opts Options) (Table, error)         { return nil, errNotYet }
func openEnviron(name string, opts Options) (Table, error)      { return nil, errNotYet }

// Record is one key/value pair of a table, with the source line it came from.
type Record struct {
	Key, Value string
	Line       int
}

// ParseSource reads the postmap(1) input format (key, whitespace, value;
// "#" comments; continuation lines start with whitespace) from data, naming
// path in errors. Keys are lowercased when fold is set. Records come back in
// file order, duplicates included.
func ParseSource(path string, data []byte, fold bool) ([]Record, error) { return nil, errNotYet }

// IndexPath is the index file that serves typ:name (NAME.db).
func IndexPath(typ, name string) string { return name + ".db" }

// ReadIndex returns every record of an index file (for postmap -s and -i).
func ReadIndex(path string) ([]Record, error) { return nil, errNotYet }

// WriteIndex atomically replaces the index file at path with recs: temp
// file, fsync, rename, fsync of the directory. Keys must be unique.
func WriteIndex(path string, recs []Record) error { return errNotYet }
