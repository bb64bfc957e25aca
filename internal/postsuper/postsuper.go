// Package postsuper implements postsuper(1), the super-user's queue
// maintenance command: delete (-d), hold (-h), release (-H) and requeue
// (-r) messages by queue ID, for ALL messages, or for IDs read from
// standard input ("-"), optionally limited to named queues. It works on
// the queue through internal/queue's consumer API, so every change is one
// atomic rename or unlink made durable before the command reports it.
package postsuper

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"moat/internal/cli"
	"moat/internal/getopt"
	"moat/internal/postqueue"
	"moat/internal/queue"
)

// usage is Postfix's postsuper usage text.
const usage = "usage: postsuper [-c config_dir] [-d queue_id (delete)] [-h queue_id (hold)] [-H queue_id (un-hold)] [-p (purge temporary files)] [-r queue_id (requeue)] [-s (structure fix)] [-S (stream mode)] [-v (verbose)] [queue...]"

// op is one of postsuper's queue operations.
type op struct {
	flag     byte
	defaults []string // queues searched when the command line names none
	verb     string   // per-message report: "ID: removed"
	summary  string   // final report: "Deleted: N messages"
	ids      []string
	all      bool
	count    int
}

// Operations run in this order, each over the queues it applies to,
// so that "-d ID -h ALL" deletes before holding what is left.
func newOps() []*op {
	all := []string{queue.Hold, queue.Incoming, queue.Active, queue.Deferred}
	return []*op{
		{flag: 'd', defaults: all, verb: "removed", summary: "Deleted"},
		{flag: 'h', defaults: []string{queue.Incoming, queue.Active, queue.Deferred}, verb: "placed on hold", summary: "Placed on hold"},
		{flag: 'H', defaults: []string{queue.Hold}, verb: "released from hold", summary: "Released from hold"},
		{flag: 'r', defaults: all, verb: "requeued", summary: "Requeued"},
	}
}

// Main runs postsuper with args (without the program name) and returns the
// exit status. Only the super-user may run it, as in Postfix: it deletes
// and moves other people's mail.
func Main(env *cli.Env, prog string, args []string) int {
	return run(env, prog, args, os.Getuid())
}

func run(env *cli.Env, prog string, args []string, uid int) int {
	if uid != 0 {
		return env.Fatalf(prog, "use of this command is reserved for the superuser")
	}
	parsed, names, err := getopt.Parse(args, "c:d:e:f:h:H:pr:sSv")
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", prog, err)
		return env.Fatalf(prog, "%s", usage)
	}
	ops := newOps()
	byFlag := map[byte]*op{}
	for _, o := range ops {
		byFlag[o.flag] = o
	}
	var cdir string
	stdinUsed := false
	for _, p := range parsed {
		switch p.Flag {
		case 'c':
			cdir = p.Arg
		case 'd', 'h', 'H', 'r':
			o := byFlag[p.Flag]
			switch p.Arg {
			case "ALL":
				o.all = true
			case "-":
				if stdinUsed {
					return env.Fatalf(prog, "specify \"-%c -\" at most once", p.Flag)
				}
				stdinUsed = true
				ids, err := readIDs(env.Stdin)
				if err != nil {
					return env.Fatalf(prog, "read standard input: %v", err)
				}
				o.ids = append(o.ids, ids...)
			default:
				o.ids = append(o.ids, p.Arg)
			}
		case 'e', 'f':
			return env.Fatalf(prog, "-%c: forced expiration is not supported by moat", p.Flag)
		case 'p', 's', 'S', 'v':
			// -s and -p repair the queue structure and remove temporary
			// files; moat's queue does both when the mail system starts
			// (queue.Recover), which is the only time it is safe.
		}
	}
	for _, n := range names {
		if !queueName(n) {
			return env.Fatalf(prog, "invalid directory name: %s", n)
		}
	}
	q, _, err := postqueue.OpenQueue(env.ConfigDir(cdir))
	if err != nil {
		return env.Fatalf(prog, "%v", err)
	}
	for _, o := range ops {
		queues := names
		if len(queues) == 0 {
			queues = o.defaults
		}
		if err := o.apply(env, prog, q, queues); err != nil {
			return env.Fatalf(prog, "%v", err)
		}
	}
	for _, o := range ops {
		if o.count > 0 {
			s := "s"
			if o.count == 1 {
				s = ""
			}
			fmt.Fprintf(env.Stderr, "%s: %s: %d message%s\n", prog, o.summary, o.count, s)
		}
	}
	return 0
}

// queueName reports whether n names a queue postsuper may work on.
func queueName(n string) bool {
	switch n {
	case queue.Hold, queue.Incoming, queue.Active, queue.Deferred, queue.Maildrop:
		return true
	}
	return false
}

// readIDs reads queue IDs for "-d -" and friends: the first word of each
// line, so that output filtered from mailq works, blank lines skipped.
func readIDs(r io.Reader) ([]string, error) {
	if r == nil {
		return nil, nil
	}
	var ids []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 0 {
			ids = append(ids, f[0])
		}
	}
	return ids, sc.Err()
}
