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
