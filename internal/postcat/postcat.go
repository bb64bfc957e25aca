// Package postcat implements postcat(1): it shows a queue file for an
// admin, in Postfix's sections (*** ENVELOPE RECORDS ***, *** MESSAGE
// CONTENTS ***, *** HEADER EXTRACTED ***, *** MESSAGE FILE END ***).
//
// moat's queue file is not Postfix's (see internal/queue/format.go), so the
// envelope section lists moat's records in postcat's "name: value" style,
// reusing Postfix's record names where one means the same thing:
//
//	message_size: N                content bytes (Postfix prints more fields)
//	message_arrival_time: DATE     asctime(3) form
//	sender: ADDR                   empty for the null sender, as in Postfix
//	named_attribute: NAME=VALUE    client_name, client_address, helo_name,
//	                               protocol_name, sasl_username,
//	                               envelope_id, dsn_ret, message_id, flags
//	content_filter: TRANSPORT:NEXTHOP  content_filter / FILTER, if any
//	original_recipient: ADDR       the address before rewriting, before
//	                               its recipient
//	dsn_orig_rcpt: TYPE;ADDR       RFC 3461 ORCPT, before its recipient
//	dsn_notify: N                  RFC 3461 NOTIFY, Postfix's bit values
//	recipient: ADDR                still to be delivered
//	done_recipient: ADDR           delivered or bounced
//	recipient_status: STATE[: WHY] moat's state log (deferred, bounced, ...)
//
// moat keeps no records after the content, so the HEADER EXTRACTED
// section is always empty.
package postcat

import (
	"bufio"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"moat/internal/cli"
	"moat/internal/getopt"
	"moat/internal/postqueue"
	"moat/internal/queue"
)

// usage is Postfix's postcat usage text.
const usage = "usage: postcat [-b (body text)] [-c config_dir] [-e (envelope records)] [-h (header text)] [-q (access queue)] [-v] [file(s)...]"

// Sections selects what Write prints.
type Sections struct {
	Envelope, Header, Body bool
}

// all reports whether every section is selected: only then does postcat
// print the "*** ... ***" markers, so that `postcat -hq ID` output is the
// bare header, ready for grep.
func (s Sections) all() bool { return s.Envelope && s.Header && s.Body }

// Main runs postcat with args (without the program name) and returns the
// exit status.
func Main(env *cli.Env, prog string, args []string) int {
	return run(env, prog, args, time.Local)
}

func run(env *cli.Env, prog string, args []string, loc *time.Location) int {
	parsed, files, err := getopt.Parse(args, "bc:dehoqrs:v")
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", prog, err)
		return env.Fatalf(prog, "%s", usage)
	}
	var sec Sections
	var cdir string
	byID := false
	for _, p := range parsed {
		switch p.Flag {
		case 'b':
			sec.Body = true
		case 'e':
			sec.Envelope = true
		case 'h':
			sec.Header = true
		case 'c':
			cdir = p.Arg
		case 'q':
			byID = true
		case 'd', 'o', 's':
			// Record types, file offsets and seeking are properties of
			// Postfix's record format, which moat's queue file does not have.
			return env.Fatalf(prog, "-%c is not supported for moat queue files", p.Flag)
		case 'r', 'v':
			// moat's records are always shown in file order.
		}
	}
	if !sec.Envelope && !sec.Header && !sec.Body {
		sec = Sections{Envelope: true, Header: true, Body: true}
	}
	if len(files) == 0 {
		return env.Fatalf(prog, "%s", usage)
	}
	q, _, err := postqueue.OpenQueue(env.ConfigDir(cdir))
	if err != nil {
		return env.Fatalf(prog, "%v", err)
	}
	for _, arg := range files {
		name, id, err := locate(q, arg, byID)
		if err != nil {
			return env.Fatalf(prog, "%v", err)
		}
		m, err := q.Open(name, id)
		if err != nil {
			return env.Fatalf(prog, "open queue file %s: %v", arg, err)
		}
		err = Write(env.Stdout, m, sec, loc)
		m.Close()
		if err != nil {
			return env.Fatalf(prog, "%s: %v", arg, err)
		}
	}
	return 0
}

// locate finds the queue holding arg: a queue ID with -q, else the path of
// a file inside the queue directory (moat reads its queue files only
// through the queue, which knows their layout and checks their sums).
func locate(q *queue.Queue, arg string, byID bool) (string, string, error) {
	id := arg
	if !byID {
		id = filepath.Base(arg)
	}
	if !queue.ValidID(id) {
		if byID {
			return "", "", fmt.Errorf("open queue file %s: invalid queue ID", arg)
		}
		return "", "", fmt.Errorf("%s: not a moat queue file name", arg)
	}
	name, err := q.Find(id)
	if err != nil {
		return "", "", fmt.Errorf("open queue file %s: %s", arg, "No such file or directory")
	}
	if byID {
		return name, id, nil
	}
	// The file given must be that message, not another file that merely
	// has the same name.
	st, err := os.Stat(arg)
	if err != nil {
		return "", "", fmt.Errorf("open queue file %s: %w", arg, err)
	}
	for _, cand := range candidates(q, name, id) {
		if cst, err := os.Stat(cand); err == nil && os.SameFile(st, cst) {
			return name, id, nil
		}
	}
	return "", "", fmt.Errorf("%s: not a file in the queue directory %s", arg, q.Dir())
}

// candidates lists the paths message id may have in queue name: flat or
// hashed up to the deepest hash_queue_depth.
func candidates(q *queue.Queue, name, id string) []string {
	var out []string
	err := filepath.WalkDir(filepath.Join(q.Dir(), name), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if !d.IsDir() && d.Name() == id {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		return nil
	}
	return out
}

// Write prints message m in postcat's sections.
func Write(w io.Writer, m *queue.Message, sec Sections, loc *time.Location) error {
	bw := bufio.NewWriter(w)
	path := m.Queue + "/" + m.ID
	marker := func(what string) {
		if sec.all() {
			fmt.Fprintf(bw, "*** %s %s ***\n", what, path)
		}
	}
	if sec.Envelope {
		marker("ENVELOPE RECORDS")
		writeEnvelope(bw, &m.Envelope, loc)
	}
	if sec.Header || sec.Body {
		marker("MESSAGE CONTENTS")
		if err := writeContent(bw, m.Content(), sec); err != nil {
			bw.Flush()
			return err
		}
	}
	if sec.Envelope {
		marker("HEADER EXTRACTED")
	}
	marker("MESSAGE FILE END")
	return bw.Flush()
}
