// Package maillogtest holds a maillog.Sink for other packages' tests: it
// keeps the records in memory, and each test formats them the way its
// assertions read best.
package maillogtest

import (
	"sync"

	"moat/internal/maillog"
)

// Sink keeps every record written to it. The zero value is ready to use
// and safe for concurrent use (the logger writes from its own goroutine).
type Sink struct {
	mu   sync.Mutex
	recs []maillog.Record
}

// Write keeps a copy of r.
func (s *Sink) Write(r *maillog.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recs = append(s.recs, *r)
	return nil
}

// Reopen does nothing: there is no file.
func (s *Sink) Reopen() error { return nil }

// Close does nothing.
func (s *Sink) Close() error { return nil }

// Lines returns the records so far, each formatted by format.
func (s *Sink) Lines(format func(maillog.Record) string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(s.recs))
	for i, r := range s.recs {
		out[i] = format(r)
	}
	return out
}

// Text is the record's text with the severity word Postfix logs before
// it ("warning: ..."), none for informational records: the line as it
// appears after "postfix/daemon[pid]: ".
func Text(r maillog.Record) string {
	if r.Severity != maillog.Info {
		return r.Severity.String() + ": " + r.Text
	}
	return r.Text
}
