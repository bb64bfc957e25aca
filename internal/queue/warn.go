package queue

import (
	"encoding/binary"
	"hash/crc32"
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
