// Package confedit edits main.cf as `postconf -e`, `-X` and `-#` do.
// (Placeholder API; the real package replaces it.)
package confedit

import "errors"

var errNotYet = errors.New("confedit: not implemented yet")

// Set implements `postconf -e name=value...`.
func Set(path string, assignments []string) error { return errNotYet }

// Remove implements `postconf -X name...`.
func Remove(path string, names []string) error { return errNotYet }

// Comment implements `postconf -# name...`.
func Comment(path string, names []string) error { return errNotYet }
