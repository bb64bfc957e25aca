package maillog

import (
	"strconv"
	"strings"
	"time"
)

// DeliveryEvent is one recipient's delivery attempt as Postfix's delivery
// agents and queue manager log it (Postfix's log_adhoc): the record
// pflogsumm counts as delivered, deferred or bounced, and that admins grep
// for "status=".
//
// The time stamps give delay= and delays=a/b/c/d (postconf(5),
// delay_logging_resolution_limit): a from Arrival to Active, b from Active to
// Handoff, c from Handoff to ConnSetup, d from ConnSetup (or Handoff, for an
// agent without a network connection) to Done. A zero Active, Handoff or
// ConnSetup means that stage did not happen, and the missing stages log as 0,
// as Postfix logs them for mail the queue manager deferred itself.
type DeliveryEvent struct {
	QueueID string
	// To is the recipient; OrigTo the original recipient, logged as
	// orig_to= only when it is set and differs from To other than in case.
	To     string
	OrigTo string
	// Relay is "local", "none" (discard, or no agent), "virtual" or
	// "host[addr]:port".
	Relay string
	// ConnUse is how many deliveries a reused SMTP connection has carried,
	// this one included; above 1 it is logged as conn_use=.
	ConnUse int

	Arrival   time.Time // the message entered the queue (delay= starts here)
	Active    time.Time // it last entered the active queue
	Handoff   time.Time // a delivery agent took it
	ConnSetup time.Time // the agent's connection was set up
	Done      time.Time // the attempt ended; zero means time.Now()

	// Resolution is delay_logging_resolution_limit, the most digits
	// logged after the decimal point (0..6; out of range is clamped).
	Resolution int

	DSN    string // RFC 3463 status, e.g. "2.0.0"
	Status string // "sent", "deferred", "bounced", "expired"
	Reason string // the text inside status=...( )
}

// delaySignificantDigits is how many significant digits Postfix logs for
// small delays (postconf(5) delay_logging_resolution_limit: "delay values
// under 100s are logged with at most two-digit precision").
const delaySignificantDigits = 2

// Delivery returns the record "QUEUEID: to=<rcpt>, orig_to=<orig>,
// relay=R, delay=D, delays=a/b/c/d, dsn=X.Y.Z, status=S (reason)", the line
// of Postfix's local, virtual, smtp, discard, error and qmgr that pflogsumm
// and every Postfix log tool parse.
func Delivery(e DeliveryEvent) string {
	var b strings.Builder
	b.WriteString(e.QueueID)
	b.WriteString(": to=<")
	b.WriteString(e.To)
	b.WriteString(">")
	if e.OrigTo != "" && !strings.EqualFold(e.OrigTo, e.To) {
		b.WriteString(", orig_to=<")
		b.WriteString(e.OrigTo)
		b.WriteString(">")
	}
	b.WriteString(", relay=")
	b.WriteString(e.Relay)
	if e.ConnUse > 1 {
		b.WriteString(", conn_use=")
		b.WriteString(strconv.Itoa(e.ConnUse))
	}

	done := e.Done
	if done.IsZero() {
		done = time.Now()
	}
	var a, bd, c, d time.Duration
	switch {
	case e.Active.IsZero():
		// No queue manager: everything is time before the active queue.
		a = done.Sub(e.Arrival)
	case e.Handoff.IsZero():
		// Deferred or bounced by the queue manager itself.
		a = e.Active.Sub(e.Arrival)
		bd = done.Sub(e.Active)
	case e.ConnSetup.IsZero():
		// A delivery agent without a network connection (local, discard).
		a = e.Active.Sub(e.Arrival)
		bd = e.Handoff.Sub(e.Active)
		d = done.Sub(e.Handoff)
	default:
		a = e.Active.Sub(e.Arrival)
		bd = e.Handoff.Sub(e.Active)
		c = e.ConnSetup.Sub(e.Handoff)
		d = done.Sub(e.ConnSetup)
	}
	res := min(max(e.Resolution, 0), 6)
	b.WriteString(", delay=")
	b.WriteString(FormatDelay(done.Sub(e.Arrival), delaySignificantDigits, res))
	b.WriteString(", delays=")
	for i, x := range []time.Duration{a, bd, c, d} {
		if i > 0 {
			b.WriteByte('/')
		}
		b.WriteString(FormatDelay(x, delaySignificantDigits, res))
	}
	b.WriteString(", dsn=")
	b.WriteString(e.DSN)
	b.WriteString(", status=")
	b.WriteString(e.Status)
	b.WriteString(" (")
	b.WriteString(e.Reason)
	b.WriteString(")")
	return b.String()
}

// FormatDelay formats a delay in seconds the way Postfix's format_tv does
// for delay= and delays= (postconf(5), delay_logging_resolution_limit):
// values of 10s and more as whole seconds, smaller ones with at most sigDigits
// significant digits and at most maxDigits digits after the decimal point,
// rounded half up, without trailing zeros. A negative delay (the clock went
// back) logs as 0, as in Postfix. sigDigits is clamped to 1..6 and maxDigits
// to 0..6.
func FormatDelay(delay time.Duration, sigDigits, maxDigits int) string {
	const million = 1_000_000
	if delay < 0 {
		delay = 0
	}
	sigDigits = min(max(sigDigits, 1), 6)
	maxDigits = min(max(maxDigits, 0), 6)
	sec := int64(delay / time.Second)
	usec := int64(delay%time.Second) / int64(time.Microsecond)

	// unit is the value of the last digit shown, in microseconds.
	unit := int64(million)
	for range maxDigits {
		unit /= 10
	}
	span := pow10(sigDigits) // sigDigits digits cover unit..span*unit
	if unit < million {
		if sec > 0 {
			// Significant digits start in the seconds: keep what is
			// left of sigDigits for the fraction, possibly none.
			n := int64(1)
			for sec >= n && n <= span/10 {
				n *= 10
			}
			unit = (million / span) * n
		} else {
			for usec >= span*unit {
				unit *= 10
			}
		}
	}
	if unit > 1 {
		usec += unit / 2
		if usec >= million {
			sec++
			usec -= million
		}
	}
	out := strconv.FormatInt(sec, 10)
	if usec < unit {
		return out
	}
	frac := make([]byte, 0, 6)
	for rem, place := usec, int64(million/10); rem >= unit && place > 0; place /= 10 {
		frac = append(frac, byte('0'+rem/place))
		rem %= place
	}
	return out + "." + string(frac)
}

func pow10(n int) int64 {
	p := int64(1)
	for range n {
		p *= 10
	}
	return p
}
