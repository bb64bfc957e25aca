package queue

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// UpdateRecipients appends state records and fsyncs them before returning
// (unless every one is Replayable).
// A delivery agent calls it right after the next hop accepted (or refused)
// the message and before reporting success upward, so that after a crash the
// recipient is not delivered twice. The window between the hop's acceptance
// and this fsync remains: there a crash means one duplicate, never a loss
// (RFC 5321 section 6.1 prefers duplicates to losses).
//
// Updates of one file are serialized with flock(2), so concurrent delivery
// agents working on different recipients of one message are safe.
func (q *Queue) UpdateRecipients(name, id string, updates []RecipientUpdate) error {
	m, err := q.OpenForUpdate(name, id)
	if err != nil {
		return fmt.Errorf("update %s: %w", id, err)
	}
	defer m.Close()
	return m.UpdateRecipients(updates)
}

// MarkWarned records in message id's state log that its delay warning was
// sent at at, and fsyncs it, so that the queue manager sends one warning
// per message even across restarts (postconf(5) delay_warning_time;
// Postfix's qmgr updates the queue file's WARN record in place for the
// same reason). The queue manager calls it after the warning itself is
// queued: a crash in between repeats the warning, never loses it.
// Like UpdateRecipients it appends under flock(2) and cuts off a torn
// record first.
func (q *Queue) MarkWarned(name, id string, at time.Time) error {
	m, err := q.OpenForUpdate(name, id)
	if err != nil {
		return fmt.Errorf("mark %s warned: %w", id, err)
	}
	defer m.Close()
	return m.MarkWarned(at)
}

// OpenForUpdate is Open with the file open for writing as well, so that
// the queue manager records its results through the message it is
// delivering (Message.UpdateRecipients, Message.MarkWarned) instead of
// opening and parsing the file again for each record: seven system calls
// per delivery less (docs/BENCHMARKS.md, issue 5, sixth pass).
func (q *Queue) OpenForUpdate(name, id string) (*Message, error) {
	return q.open(name, id, syscall.O_RDWR)
}

// UpdateRecipients is Queue.UpdateRecipients on a message opened with
// OpenForUpdate.
func (m *Message) UpdateRecipients(updates []RecipientUpdate) error {
	var buf []byte
	durable := false
	for _, u := range updates {
		durable = durable || !u.Replayable
		if u.Index < 0 || u.Index >= len(m.Envelope.Recipients) {
			return fmt.Errorf("queue: update %s: no recipient %d", m.ID, u.Index)
		}
		if u.State == RcptPending || u.State > RcptDeferred {
			return fmt.Errorf("queue: update %s: bad state %v", m.ID, u.State)
		}
		if err := validField("reason", u.Reason); err != nil {
			return fmt.Errorf("queue: update %s: %w", m.ID, err)
		}
		buf = append(buf, stateRecord(u.Index, u.State, u.Reason)...)
	}
	if err := m.appendState(buf, durable); err != nil {
		return fmt.Errorf("queue: update %s: %w", m.ID, err)
	}
	// The envelope in memory follows, as a parse of the file would
	// (decodeStateLog): a message kept open goes on from it.
	for _, u := range updates {
		rc := &m.Envelope.Recipients[u.Index]
		if rc.State != RcptDelivered && rc.State != RcptBounced {
			rc.State, rc.Reason = u.State, u.Reason
		}
	}
	return nil
}

// MarkWarned is Queue.MarkWarned on a message opened with OpenForUpdate.
func (m *Message) MarkWarned(at time.Time) error {
	if err := m.appendState(warnRecord(at), true); err != nil {
		return fmt.Errorf("queue: mark %s warned: %w", m.ID, err)
	}
	m.Envelope.Warned = at
	return nil
}

// appendState appends records to the state log under flock(2), cutting
// off a torn record first, and fsyncs them when durable. Another process
// may have appended since the message was parsed (the lock serializes
// writers, not readers): a file whose size is not the one last seen is
// parsed again for the end of its log.
func (m *Message) appendState(buf []byte, durable bool) error {
	if m.f == nil || !m.writable {
		return errors.New("queue file not open for update")
	}
	fd := int(m.f.Fd())
	if err := syscall.Flock(fd, syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	defer syscall.Flock(fd, syscall.LOCK_UN)
	st, err := m.f.Stat()
	if err != nil {
		return err
	}
	if size := st.Size(); size != m.fileSize {
		fresh, err := parseFile(m.f, size)
		if err != nil {
			return err
		}
		m.stateEnd, m.fileSize = fresh.stateEnd, size
	}
	if m.stateEnd < m.fileSize {
		// A torn record from an earlier crash: cut it off so that the
		// log stays readable past it.
		if err := m.f.Truncate(m.stateEnd); err != nil {
			return err
		}
		m.fileSize = m.stateEnd
	}
	if _, err := m.f.WriteAt(buf, m.stateEnd); err != nil {
		// Part of buf may be on disk: the next append parses again.
		m.fileSize = -1
		return err
	}
	m.stateEnd += int64(len(buf))
	m.fileSize = m.stateEnd
	if !durable {
		return nil
	}
	if err := m.f.Sync(); err != nil {
		return fmt.Errorf("fsync: %w", err)
	}
	return nil
}

// Current reports whether m, opened earlier, still describes its queue
// file: the file is still at its place in m's queue, is the one m has
// open, and has grown no record since m last read or wrote it. The queue
// manager then resumes a parked message from what it parsed, with a stat
// instead of an open and a parse; a message deleted, moved (postsuper) or
// updated by another process meanwhile is opened again.
func (q *Queue) Current(m *Message) bool {
	if m.f == nil || m.fileSize < 0 {
		return false
	}
	p, err := q.path(m.Queue, m.ID)
	if err != nil {
		return false
	}
	on, err := os.Stat(p)
	if err != nil {
		return false
	}
	open, err := m.f.Stat()
	return err == nil && os.SameFile(on, open) && open.Size() == m.fileSize
}
