package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
)

// The relay benchmark (issue 8, item 6: smtp-source → server → smtp-sink)
// ends when Postfix's smtp-sink(1) instances have received every message.
// smtp-sink -c writes a running counter line ("sess=N quit=N mesg=N",
// each ended by "\r") to its stdout whenever a session ends, QUIT arrives
// or "." is received; bench/relay sends that to a file per sink, and the
// last "mesg=" figure of each file is what that sink has taken.

// maxSinkTail bounds how much of a sink's counter file is read: the last
// counter line is always within the final few hundred bytes.
const maxSinkTail = 4096

// parseSinkCount returns the last "mesg=N" counter of smtp-sink -c output
// (smtp-sink(1), -c), or 0 when no counter line has been written yet. A
// counter that is not a number is an error: the file is then not what
// smtp-sink writes, and waiting on it would wait for ever.
func parseSinkCount(b []byte) (int, error) {
	i := bytes.LastIndex(b, []byte("mesg="))
	if i < 0 {
		return 0, nil
	}
	rest := b[i+len("mesg="):]
	end := 0
	for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
		end++
	}
	if end == 0 {
		// A line cut in the middle of being written ("mesg=" then
		// nothing yet) is not an error if nothing else follows it.
		if len(bytes.TrimSpace(rest)) == 0 {
			return parseSinkCount(b[:i])
		}
		return 0, fmt.Errorf("sink counter %q is not a number", truncate(rest, 20))
	}
	if end > 9 {
		return 0, fmt.Errorf("sink counter %q is too large", truncate(rest, 20))
	}
	n, err := strconv.Atoi(string(rest[:end]))
	if err != nil {
		return 0, fmt.Errorf("sink counter: %w", err)
	}
	return n, nil
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// sinkCount reads the tail of one sink's counter file. A counter line can
// be cut at the start of the tail; parseSinkCount only looks at the last
// "mesg=", which is whole unless the writer is mid-line, handled there.
func sinkCount(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("sink %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("sink %s: %w", path, err)
	}
	off := max(st.Size()-maxSinkTail, 0)
	b := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("sink %s: %w", path, err)
	}
	n, err := parseSinkCount(b)
	if err != nil {
		return 0, fmt.Errorf("sink %s: %w", path, err)
	}
	return n, nil
}

// sinkTotal sums the counters of every sink file.
func sinkTotal(paths []string) ([]int, int, error) {
	per := make([]int, len(paths))
	total := 0
	for i, p := range paths {
		n, err := sinkCount(p)
		if err != nil {
			return nil, 0, err
		}
		per[i] = n
		total += n
	}
	return per, total, nil
}

// relayMeasure is measure for the relay benchmark: it runs the load
// generator after "--" and reports the server tree's CPU and peak RSS,
// but the run ends when the sinks (-sinks, counter files of smtp-sink -c)
// have received -sent more messages than when it began and the queue is
// empty, not when a Maildir has filled. The clock runs from the
// generator's start to that moment (issue 8, item 6).
func relayMeasure(args []string, out io.Writer) error {
	fl := flag.NewFlagSet("relay", flag.ContinueOnError)
	lf := addLoadFlags(fl)
	sinks := fl.String("sinks", "", "comma-separated smtp-sink -c output files")
	if err := fl.Parse(args); err != nil {
		return err
	}
	cmdArgs := fl.Args()
	if *lf.pid <= 0 || len(cmdArgs) == 0 || *sinks == "" {
		return errors.New("relay: need -pid, -sinks and a command after --")
	}
	files := strings.Split(*sinks, ",")
	basePer, base, err := sinkTotal(files)
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	var per []int
	received, left := 0, 0
	r, err := measureLoad(lf, cmdArgs, func(rc int) (bool, error) {
		p, total, err := sinkTotal(files)
		if err != nil {
			return false, err
		}
		per, received = p, total-base
		left = queued(*lf.queue)
		return (rc != 0 || received >= *lf.sent) && left == 0, nil
	})
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	spread := make([]string, len(per))
	for i := range per {
		spread[i] = strconv.Itoa(per[i] - basePer[i])
	}
	fmt.Fprintf(out, "%s received=%d queued=%d per_sink=%s\n", r.fields(), received, left, strings.Join(spread, ","))
	return nil
}

// freePorts prints a TCP port that was free a moment ago on every address
// of -addrs, so that ten smtp-sink instances on 127.0.0.11–20 can share
// one port (one smtp_tcp_port-style number in the transport table).
func freePorts(args []string, out io.Writer) error {
	fl := flag.NewFlagSet("freeports", flag.ContinueOnError)
	addrs := fl.String("addrs", "127.0.0.1", "comma-separated addresses")
	if err := fl.Parse(args); err != nil {
		return err
	}
	for range 50 {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("freeports: %w", err)
		}
		port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
		l.Close()
		ok := true
		var held []net.Listener
		for _, a := range strings.Split(*addrs, ",") {
			h, err := net.Listen("tcp4", net.JoinHostPort(a, port))
			if err != nil {
				ok = false
				break
			}
			held = append(held, h)
		}
		for _, h := range held {
			h.Close()
		}
		if ok {
			fmt.Fprintln(out, port)
			return nil
		}
	}
	return errors.New("freeports: no port free on every address")
}
