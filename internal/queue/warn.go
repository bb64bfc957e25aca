package queue

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"syscall"
	"time"
)

// warnType is the state-log record that says the delay warning went out
// (format.go).
const warnType = 'w'

// warnRecord encodes a 'w' state-log record for time at.
func warnRecord(at time.Time) []byte {
	p := binary.AppendUvarint(nil, uint64(max(at.UnixMicro(), 0)))
	b := []byte{warnType}
	b = binary.AppendUvarint(b, uint64(len(p)))
	b = append(b, p...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

// decodeWarn applies a 'w' record's payload to e, reporting whether it
// was well formed.
func decodeWarn(p []byte, e *Envelope) bool {
	v, err := payloadUint(p)
	if err != nil || v > 1<<62 {
		return false
	}
	e.Warned = time.UnixMicro(int64(v))
	return true
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
	p, err := q.path(name, id)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("queue: mark %s warned: %w", id, err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("queue: mark %s warned: lock: %w", id, err)
	}
	m, err := openFile(f)
	if err != nil {
		return fmt.Errorf("queue: mark %s warned: %w", id, err)
	}
	if m.stateEnd < m.fileSize {
		if err := f.Truncate(m.stateEnd); err != nil {
			return fmt.Errorf("queue: mark %s warned: %w", id, err)
		}
	}
	if _, err := f.WriteAt(warnRecord(at), m.stateEnd); err != nil {
		return fmt.Errorf("queue: mark %s warned: %w", id, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("queue: mark %s warned: fsync: %w", id, err)
	}
	return nil
}
