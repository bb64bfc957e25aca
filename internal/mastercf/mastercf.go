// Package mastercf reads master.cf. (Placeholder API; the real package replaces it.)
package mastercf

import (
	"errors"
	"io"
)

// File is a parsed master.cf.
type File struct {
	Path     string
	Services []*Service
}

// Service is one master.cf entry.
type Service struct {
	Name, Type                               string // "smtp", "inet"
	Private, Unpriv, Chroot, Wakeup, Maxproc string // column text as written ("-" kept)
	Command                                  string // "smtpd"
	Args                                     []string
	Overrides                                []Override // -o name=value, in order
	Line                                     int
}

// Override is one "-o name=value".
type Override struct {
	Name, Value string
	Line        int
}

var errNotYet = errors.New("mastercf: not implemented yet")

// Load reads a master.cf file.
func Load(path string) (*File, error) { return nil, errNotYet }

// WriteM prints services as `postconf -M` (fold: `-Mf`); filters are
// "service" or "service/type" arguments.
func (f *File) WriteM(w io.Writer, fold bool, filters []string) error { return errNotYet }

// WriteF prints fields as `postconf -F`.
func (f *File) WriteF(w io.Writer, filters []string) error { return errNotYet }

// WriteP prints per-service parameters as `postconf -P`.
func (f *File) WriteP(w io.Writer, filters []string) error { return errNotYet }
