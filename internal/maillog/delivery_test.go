package maillog

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// parseSeconds turns "0.000996" into an exact duration, so the cases below
// do not depend on floating point as Postfix's own test driver does.
func parseSeconds(t *testing.T, s string) time.Duration {
	t.Helper()
	whole, frac, _ := strings.Cut(s, ".")
	var sec int64
	if whole != "" {
		var err error
		if sec, err = strconv.ParseInt(whole, 10, 64); err != nil {
			t.Fatal(err)
		}
	}
	frac = (frac + "000000")[:6]
	usec, err := strconv.ParseInt(frac, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return time.Duration(sec)*time.Second + time.Duration(usec)*time.Microsecond
}

// TestFormatDelayPostfixVectors runs the cases of Postfix's
// src/util/format_tv.ref (input seconds, significant digits, maximum
// decimals, expected output).
func TestFormatDelayPostfixVectors(t *testing.T) {
	cases := []struct {
		in       string
		sig, max int
		want     string
	}{
		// Three digits in, 2/6 digits out, rounding down.
		{"1110", 2, 6, "1110"}, {"111", 2, 6, "111"}, {"11.1", 2, 6, "11"},
		{"1.11", 2, 6, "1.1"}, {"0.111", 2, 6, "0.11"}, {"0.0111", 2, 6, "0.011"},
		{"0.00111", 2, 6, "0.0011"}, {"0.000111", 2, 6, "0.00011"}, {"0.000011", 2, 6, "0.000011"},
		// One digit in: no spurious digits or trailing zeros.
		{"1000", 2, 6, "1000"}, {"100", 2, 6, "100"}, {"10", 2, 6, "10"}, {"1", 2, 6, "1"},
		{"0.1", 2, 6, "0.1"}, {"0.01", 2, 6, "0.01"}, {"0.001", 2, 6, "0.001"},
		{"0.0001", 2, 6, "0.0001"}, {"0.00001", 2, 6, "0.00001"}, {"0.000001", 2, 6, "0.000001"},
		// Three digits in, 2/6 digits out, rounding up.
		{"996", 2, 6, "996"}, {"99.6", 2, 6, "100"}, {"9.96", 2, 6, "10"}, {".996", 2, 6, "1"},
		{".0996", 2, 6, "0.1"}, {".00996", 2, 6, "0.01"}, {".000996", 2, 6, "0.001"},
		// Three digits in, 1/6 digits out, rounding down.
		{"1110", 1, 6, "1110"}, {"111", 1, 6, "111"}, {"11.1", 1, 6, "11"}, {"1.11", 1, 6, "1"},
		{"0.111", 1, 6, "0.1"}, {"0.0111", 1, 6, "0.01"}, {"0.00111", 1, 6, "0.001"},
		{"0.000111", 1, 6, "0.0001"}, {"0.000011", 1, 6, "0.00001"},
		// One digit in, 1/6.
		{"1000", 1, 6, "1000"}, {"100", 1, 6, "100"}, {"10", 1, 6, "10"}, {"1", 1, 6, "1"},
		{"0.1", 1, 6, "0.1"}, {"0.01", 1, 6, "0.01"}, {"0.001", 1, 6, "0.001"},
		{"0.0001", 1, 6, "0.0001"}, {"0.00001", 1, 6, "0.00001"}, {"0.000001", 1, 6, "0.000001"},
		// Three digits in, 1/6 digits out, rounding up.
		{"996", 1, 6, "996"}, {"99.6", 1, 6, "100"}, {"9.96", 1, 6, "10"}, {".996", 1, 6, "1"},
		{".0996", 1, 6, "0.1"}, {".00996", 1, 6, "0.01"}, {".000996", 1, 6, "0.001"},
	}
	for _, c := range cases {
		got := FormatDelay(parseSeconds(t, c.in), c.sig, c.max)
		if got != c.want {
			t.Errorf("FormatDelay(%s, %d, %d) = %q, want %q", c.in, c.sig, c.max, got, c.want)
		}
	}
}

// TestFormatDelayResolution checks the default delay_logging_resolution_limit
// of 2: values under 0.005s log as "0", as postconf(5) says ("delay values
// below the delay_logging_resolution_limit are logged as 0").
func TestFormatDelayResolution(t *testing.T) {
	cases := []struct {
		d    time.Duration
		max  int
		want string
	}{
		{0, 2, "0"},
		{4 * time.Millisecond, 2, "0"},
		{5 * time.Millisecond, 2, "0.01"},
		{12345 * time.Microsecond, 2, "0.01"},
		{123456 * time.Microsecond, 2, "0.12"},
		{1234567 * time.Microsecond, 2, "1.2"},
		{12345678 * time.Microsecond, 2, "12"},
		{3*time.Hour + 400*time.Millisecond, 2, "10800"},
		{3*time.Hour + 600*time.Millisecond, 2, "10801"},
		{1234567 * time.Microsecond, 0, "1"},
		{1600 * time.Millisecond, 0, "2"},
		{400 * time.Millisecond, 0, "0"},
		{123 * time.Microsecond, 6, "0.00012"},
		{-time.Second, 2, "0"},
		{1234567 * time.Microsecond, 99, "1.2"}, // clamped to 6
	}
	for _, c := range cases {
		if got := FormatDelay(c.d, 2, c.max); got != c.want {
			t.Errorf("FormatDelay(%v, 2, %d) = %q, want %q", c.d, c.max, got, c.want)
		}
	}
}

func TestDelivery(t *testing.T) {
	arrival := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return arrival.Add(time.Duration(ms) * time.Millisecond) }
	cases := []struct {
		name string
		ev   DeliveryEvent
		want string
	}{
		{
			name: "local maildir",
			ev: DeliveryEvent{QueueID: "4dXq8K0Bblz6Vd3", To: "alice@example.com", Relay: "local",
				Arrival: arrival, Active: at(50), Handoff: at(60), Done: at(1260), Resolution: 2,
				DSN: "2.0.0", Status: "sent", Reason: "delivered to maildir"},
			want: "4dXq8K0Bblz6Vd3: to=<alice@example.com>, relay=local, delay=1.3, " +
				"delays=0.05/0.01/0/1.2, dsn=2.0.0, status=sent (delivered to maildir)",
		},
		{
			name: "orig_to differs",
			ev: DeliveryEvent{QueueID: "Q", To: "bob@example.com", OrigTo: "postmaster@example.com",
				Relay: "local", Arrival: arrival, Active: at(0), Handoff: at(0), Done: at(0), Resolution: 2,
				DSN: "2.0.0", Status: "sent", Reason: "delivered to maildir"},
			want: "Q: to=<bob@example.com>, orig_to=<postmaster@example.com>, relay=local, delay=0, " +
				"delays=0/0/0/0, dsn=2.0.0, status=sent (delivered to maildir)",
		},
		{
			name: "orig_to equal but for case is not logged",
			ev: DeliveryEvent{QueueID: "Q", To: "bob@example.com", OrigTo: "Bob@Example.COM",
				Relay: "none", Arrival: arrival, Active: at(0), Handoff: at(0), Done: at(20), Resolution: 2,
				DSN: "2.0.0", Status: "sent", Reason: "example.com"},
			want: "Q: to=<bob@example.com>, relay=none, delay=0.02, delays=0/0/0/0.02, dsn=2.0.0, " +
				"status=sent (example.com)",
		},
		{
			name: "deferred by the queue manager",
			ev: DeliveryEvent{QueueID: "Q", To: "r@remote.example", Relay: "none", Arrival: arrival,
				Active: at(20000), Done: at(20300), Resolution: 2, DSN: "4.3.0", Status: "deferred",
				Reason: "delivery via smtp is not available yet in this version of moat"},
			want: "Q: to=<r@remote.example>, relay=none, delay=20, delays=20/0.3/0/0, dsn=4.3.0, " +
				"status=deferred (delivery via smtp is not available yet in this version of moat)",
		},
		{
			name: "smtp with connection reuse",
			ev: DeliveryEvent{QueueID: "Q", To: "r@remote.example", Relay: "mx.remote.example[192.0.2.1]:25",
				ConnUse: 2, Arrival: arrival, Active: at(100), Handoff: at(110), ConnSetup: at(340),
				Done: at(530), Resolution: 2, DSN: "2.0.0", Status: "sent", Reason: "250 2.0.0 Ok"},
			want: "Q: to=<r@remote.example>, relay=mx.remote.example[192.0.2.1]:25, conn_use=2, delay=0.53, " +
				"delays=0.1/0.01/0.23/0.19, dsn=2.0.0, status=sent (250 2.0.0 Ok)",
		},
		{
			name: "no queue manager",
			ev: DeliveryEvent{QueueID: "Q", To: "x@y", Relay: "none", Arrival: arrival, Done: at(700),
				Resolution: 2, DSN: "5.7.1", Status: "bounced", Reason: "rejected"},
			want: "Q: to=<x@y>, relay=none, delay=0.7, delays=0.7/0/0/0, dsn=5.7.1, status=bounced (rejected)",
		},
		{
			name: "clock went back",
			ev: DeliveryEvent{QueueID: "Q", To: "x@y", Relay: "local", Arrival: at(5000), Active: at(1000),
				Handoff: at(1000), Done: at(1000), Resolution: 2, DSN: "2.0.0", Status: "sent", Reason: "ok"},
			want: "Q: to=<x@y>, relay=local, delay=0, delays=0/0/0/0, dsn=2.0.0, status=sent (ok)",
		},
	}
	for _, c := range cases {
		if got := Delivery(c.ev); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, got, c.want)
		}
	}
}

// FuzzFormatDelay checks that every output is a plain decimal that is
// within half a unit of the last shown digit of the input (or of a whole
// second at 10s and above), with no trailing zeros.
func FuzzFormatDelay(f *testing.F) {
	f.Add(int64(1234567), 2, 2)
	f.Add(int64(999999), 1, 6)
	f.Add(int64(99600000), 2, 6)
	f.Fuzz(func(t *testing.T, usec int64, sig, maxd int) {
		if usec < 0 || usec > 1e12 {
			return
		}
		d := time.Duration(usec) * time.Microsecond
		s := FormatDelay(d, sig, maxd)
		whole, frac, hasFrac := strings.Cut(s, ".")
		if whole == "" || strings.Trim(whole, "0123456789") != "" {
			t.Fatalf("FormatDelay(%v) = %q: bad integer part", d, s)
		}
		if hasFrac && (frac == "" || strings.HasSuffix(frac, "0") || len(frac) > 6 ||
			strings.Trim(frac, "0123456789") != "") {
			t.Fatalf("FormatDelay(%v) = %q: bad fraction", d, s)
		}
		got := parseSeconds(t, s)
		diff := got - d
		if diff < 0 {
			diff = -diff
		}
		if diff > 500*time.Millisecond {
			t.Fatalf("FormatDelay(%v, %d, %d) = %q: off by %v", d, sig, maxd, s, diff)
		}
	})
}
