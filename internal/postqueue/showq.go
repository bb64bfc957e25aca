package postqueue

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"moat/internal/queue"
	"moat/internal/smtp"
)

// ScanOrder returns the queues mailq lists, in order. Postfix's showq(8)
// visits maildrop, hold, incoming, active and deferred; moat does the same
// so that listings of the same mail line up with Postfix's.
func ScanOrder() []string {
	return []string{queue.Maildrop, queue.Hold, queue.Incoming, queue.Active, queue.Deferred}
}

// Scan reads the envelope of every message in the queues mailq lists.
// A message that vanishes between listing and reading (delivered or moved
// meanwhile) is skipped silently, as showq(8) does; any other problem with
// one file is reported through warn and the scan goes on, so that one
// damaged file does not hide the rest of the queue.
func Scan(q queue.Consumer, warn func(format string, args ...any)) ([]queue.Info, error) {
	var out []queue.Info
	for _, name := range ScanOrder() {
		ids, err := q.List(name)
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			in, err := q.Stat(name, id)
			if err != nil {
				if !errors.Is(err, fs.ErrNotExist) && warn != nil {
					warn("%s: %v", id, err)
				}
				continue
			}
			out = append(out, in)
		}
	}
	return out, nil
}

// Format controls how a listing looks.
type Format struct {
	// EmptySender replaces the null sender <>, postconf(5)
	// empty_address_recipient ("MAILER-DAEMON"), as showq(8) shows it.
	EmptySender string
	// Location is the time zone of the arrival time (time.Local for the
	// command; tests fix it).
	Location *time.Location
}

// Postfix's mailq layouts for long queue IDs (postqueue(1); the
// enable_long_queue_ids format of Postfix 2.9 and later). moat's IDs are
// always long, so the short-ID layout (an 11-column ID field) would misalign
// every row.
const (
	stringFormat = "%-17s %8s %-19s %s\n"
	senderFormat = "%-17s %8d %19.19s %s\n"
)

// WriteMailq writes infos in Postfix's mailq (postqueue -p) format: the
// header, one block per message (ID marked '*' when active and '!' when
// held, size, arrival time, sender), its undelivered recipients with the
// deferral reason in parentheses above each run of recipients that share
// it, a blank line between messages and the "-- N Kbytes in M Requests."
// footer, or "Mail queue is empty".
func WriteMailq(w io.Writer, infos []queue.Info, f Format) error {
	var b strings.Builder
	var total int64
	for i, in := range infos {
		if i == 0 {
			fmt.Fprintf(&b, stringFormat, "----Queue ID-----", "--Size--", "---Arrival Time----", "--Sender/Recipient------")
		} else {
			b.WriteByte('\n')
		}
		id := in.ID
		switch {
		case in.Active:
			id += "*"
		case in.Held:
			id += "!"
		}
		fmt.Fprintf(&b, senderFormat, id, in.Size, asctime(in.Arrival, f.Location), f.sender(in.Sender))
		saved := ""
		for _, r := range in.Recipients {
			if why := printable(r.Reason); why != saved {
				saved = why
				show := saved
				if show == "" {
					show = "reason unavailable"
				}
				pad := 76 - len(show)
				if pad < 0 {
					pad = 0
				}
				fmt.Fprintf(&b, "%*s(%s)\n", pad, "", show)
			}
			fmt.Fprintf(&b, stringFormat, "", "", "", external(r.Address))
		}
		total += in.Size
		if b.Len() > 64<<10 {
			if _, err := io.WriteString(w, b.String()); err != nil {
				return err
			}
			b.Reset()
		}
	}
	if len(infos) == 0 {
		b.WriteString("Mail queue is empty\n")
	} else {
		s := "s"
		if len(infos) == 1 {
			s = ""
		}
		fmt.Fprintf(&b, "\n-- %d Kbytes in %d Request%s.\n", total/1024, len(infos), s)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes infos as postqueue -j does (postqueue(1) "JSON OBJECT
// FORMAT"): one object per line with queue_name, queue_id, arrival_time,
// message_size, forced_expire, sender and recipients (address and, when
// known, delay_reason), members in Postfix's order and spacing so that
// tools written against Postfix (jq filters, postqf) parse it unchanged.
func WriteJSON(w io.Writer, infos []queue.Info, f Format) error {
	var b strings.Builder
	for _, in := range infos {
		b.WriteString(`{"queue_name": `)
		quoteJSON(&b, in.Queue)
		b.WriteString(`, "queue_id": `)
		quoteJSON(&b, in.ID)
		b.WriteString(`, "arrival_time": `)
		b.WriteString(strconv.FormatInt(in.Arrival.Unix(), 10))
		b.WriteString(`, "message_size": `)
		b.WriteString(strconv.FormatInt(in.Size, 10))
		b.WriteString(`, "forced_expire": false, "sender": `)
		quoteJSON(&b, f.sender(in.Sender))
		b.WriteString(`, "recipients": [`)
		for i, r := range in.Recipients {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(`{"address": `)
			quoteJSON(&b, external(r.Address))
			if r.Reason != "" {
				b.WriteString(`, "delay_reason": `)
				quoteJSON(&b, printable(r.Reason))
			}
			b.WriteByte('}')
		}
		b.WriteString("]}\n")
		if b.Len() > 64<<10 {
			if _, err := io.WriteString(w, b.String()); err != nil {
				return err
			}
			b.Reset()
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func (f Format) sender(s string) string {
	if s == "" {
		if f.EmptySender == "" {
			return "MAILER-DAEMON"
		}
		return printable(f.EmptySender)
	}
	return external(s)
}

// printable replaces what a terminal could act on with '?': control
// characters and bytes that are not UTF-8, as Postfix's showq(8) passes
// every string through printable() before postqueue shows it. Addresses
// and deferral reasons come from remote hosts; without this a hostile
// reply could send escape sequences to the admin's terminal.
func printable(s string) string {
	ok := true
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError || unicode.IsControl(r) {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r < 0x20 || r == 0x7f || r == utf8.RuneError || unicode.IsControl(r) {
			b.WriteByte('?')
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// external quotes an address's local part when it is not a dot-string
// (RFC 5321 section 4.1.2), as showq(8) shows addresses in "externalized
// RFC 5321 form".
func external(addr string) string {
	return printable(smtp.Path{Addr: addr}.Quoted())
}

// asctime formats t as asctime(3) does, without the newline: the layout
// mailq and postcat print arrival times in.
func asctime(t time.Time, loc *time.Location) string {
	if loc == nil {
		loc = time.Local
	}
	return t.In(loc).Format("Mon Jan _2 15:04:05 2006")
}

// quoteJSON writes s as a JSON string: quotes, backslashes and control
// characters escaped, other bytes (UTF-8) as they are, as Postfix's
// showq_json does.
func quoteJSON(b *strings.Builder, s string) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\t':
			b.WriteString(`\t`)
		case c < 0x20 || c == 0x7f:
			b.WriteString(`\u00`)
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
}
