package queue

import (
	"fmt"
	"strings"
	"time"
)

// idAlphabet is Postfix's 52-character long-queue-ID alphabet (postconf(5),
// enable_long_queue_ids): digits, then upper- and lower-case consonants. The
// vowels are left out so that no ID spells a word. The characters are in
// ASCII order, so fixed-width encodings compare like the numbers they encode.
const idAlphabet = "0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz"

// idInodeAlphabet is the first 51 characters of idAlphabet. The inode part
// never contains 'z', which therefore separates the time from the inode.
const idInodeAlphabet = "0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxy"

const (
	idSecDigits  = 6 // 52^6 seconds reaches the year 2594
	idUsecDigits = 4 // 52^4 > 10^6
)

// idValue returns the value of one alphabet character, or -1.
func idValue(c byte, alphabet string) int {
	return strings.IndexByte(alphabet, c)
}

// appendFixed appends v in base len(alphabet) using exactly width digits,
// most significant first, so that IDs sort by time as strings.
func appendFixed(b []byte, v uint64, width int, alphabet string) []byte {
	base := uint64(len(alphabet))
	start := len(b)
	for i := 0; i < width; i++ {
		b = append(b, '0')
	}
	for i := width - 1; i >= 0; i-- {
		b[start+i] = alphabet[v%base]
		v /= base
	}
	return b
}

// appendVar appends v in base len(alphabet) with as many digits as needed.
func appendVar(b []byte, v uint64, alphabet string) []byte {
	var tmp [24]byte
	i := len(tmp)
	base := uint64(len(alphabet))
	for {
		i--
		tmp[i] = alphabet[v%base]
		v /= base
		if v == 0 {
			break
		}
	}
	return append(b, tmp[i:]...)
}

// MakeID builds a queue ID in Postfix's long format (postconf(5),
// enable_long_queue_ids): at least 6 characters of seconds since the epoch and
// exactly 4 of microseconds in the 52-character alphabet, the separator 'z',
// then the inode number of the queue file in the first 51 characters of the
// alphabet, e.g. "4dXq8K0Bblz6Vd3". IDs made by one Queue sort in arrival
// order (the writer keeps time strictly increasing within the process); the
// inode, unique among live files on the file system, keeps IDs from
// different processes apart.
func MakeID(t time.Time, inode uint64) string {
	sec := t.Unix()
	if sec < 0 {
		sec = 0
	}
	b := make([]byte, 0, 24)
	b = appendFixed(b, uint64(sec), idSecDigits, idAlphabet)
	if uint64(sec) >= 19770609664 { // 52^6: keep the width growing, not wrapping
		b = appendVar(b[:0], uint64(sec), idAlphabet)
	}
	b = appendFixed(b, uint64(t.Nanosecond()/1000), idUsecDigits, idAlphabet)
	b = append(b, 'z')
	b = appendVar(b, inode, idInodeAlphabet)
	return string(b)
}

// ParseID checks that id is a long queue ID and returns its time and inode.
// Every file name in a queue directory that ParseID rejects is not a message
// (a temporary file, or something an admin left there), so scans skip it.
func ParseID(id string) (time.Time, uint64, error) {
	z := strings.LastIndexByte(id, 'z')
	if z < idSecDigits+idUsecDigits || z == len(id)-1 || len(id) > 40 {
		return time.Time{}, 0, fmt.Errorf("queue ID %q: not a long queue ID", id)
	}
	var sec, usec, inode uint64
	for i := 0; i < z; i++ {
		v := idValue(id[i], idAlphabet)
		if v < 0 {
			return time.Time{}, 0, fmt.Errorf("queue ID %q: bad character %q", id, id[i])
		}
		if i < z-idUsecDigits {
			if sec > (1<<62)/52 {
				return time.Time{}, 0, fmt.Errorf("queue ID %q: time out of range", id)
			}
			sec = sec*52 + uint64(v)
		} else {
			usec = usec*52 + uint64(v)
		}
	}
	if usec >= 1000000 {
		return time.Time{}, 0, fmt.Errorf("queue ID %q: microseconds out of range", id)
	}
	for i := z + 1; i < len(id); i++ {
		v := idValue(id[i], idInodeAlphabet)
		if v < 0 {
			return time.Time{}, 0, fmt.Errorf("queue ID %q: bad inode character %q", id, id[i])
		}
		if inode > (1<<63)/51 {
			return time.Time{}, 0, fmt.Errorf("queue ID %q: inode out of range", id)
		}
		inode = inode*51 + uint64(v)
	}
	if sec > 1<<40 {
		return time.Time{}, 0, fmt.Errorf("queue ID %q: time out of range", id)
	}
	t := time.Unix(int64(sec), int64(usec)*1000)
	if MakeID(t, inode) != id {
		// Leading zero digits would break the order of IDs as strings.
		return time.Time{}, 0, fmt.Errorf("queue ID %q: not in canonical form", id)
	}
	return t, inode, nil
}

// ValidID reports whether id is a long queue ID: safe as a file name (only
// the alphabet's letters and digits) and decodable.
func ValidID(id string) bool {
	_, _, err := ParseID(id)
	return err == nil
}
