// Package postsuper implements postsuper(1), the super-user's queue
// maintenance command: delete (-d), hold (-h), release (-H) and requeue
// (-r) messages by queue ID, for ALL messages, or for IDs read from
// standard input ("-"), optionally limited to named queues. It works on
// the queue through internal/queue's consumer API: a delete, hold or
// release is one atomic rename or unlink, and the command fsyncs each
// directory it changed once (queue.Batch) before it reports the totals; a
// requeue is a rewritten copy in a new queue file (requeue.go).
//
// As in Postfix, the ALL operations run first, in one pass over the
// queues in which each message gets the first that applies (delete,
// requeue, hold, release) and nothing is reported per message; then the
// operations by ID run in the order delete, requeue, hold, release, each
// reporting "ID: removed" (and so on); last come the totals.
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
const usage = "usage: postsuper [-c config_dir] [-d queue_id (delete)] [-h queue_id (hold)] [-H queue_id (un-hold)] [-p (purge temporary files)] [-r queue_id (requeue)] [-s (structure fix)] [-S (redundant structure fix)][-v (verbose)] [queue...]"

// Default queues (postsuper(1)): deleting and requeueing look everywhere,
// holding in the queues that feed delivery, releasing in hold.
func allQueues() []string {
	return []string{queue.Maildrop, queue.Incoming, queue.Active, queue.Deferred, queue.Hold}
}
func holdQueues() []string    { return []string{queue.Incoming, queue.Active, queue.Deferred} }
func releaseQueues() []string { return []string{queue.Hold} }

// op is one of postsuper's queue operations.
type op struct {
	flag     byte
	defaults []string // queues searched for IDs when the command line names none
	verb     string   // per-message report: "ID: removed"
	summary  string   // final report: "Deleted: N messages"
	args     []string // IDs and "-" in command-line order
	all      bool
	count    int
}

// newOps returns the operations in the order postsuper runs them by ID.
func newOps() []*op {
	return []*op{
		{flag: 'd', defaults: allQueues(), verb: "removed", summary: "Deleted"},
		{flag: 'r', defaults: allQueues(), verb: "requeued", summary: "Requeued"},
		{flag: 'h', defaults: holdQueues(), verb: "placed on hold", summary: "Placed on hold"},
		{flag: 'H', defaults: releaseQueues(), verb: "released from hold", summary: "Released from hold"},
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
	for _, p := range parsed {
		switch p.Flag {
		case 'c':
			if !strings.HasPrefix(p.Arg, "/") {
				return env.Fatalf(prog, "-c requires absolute pathname")
			}
			cdir = p.Arg
		case 'd', 'h', 'H', 'r':
			o := byFlag[p.Flag]
			if p.Arg == "ALL" {
				o.all = true
			} else {
				o.args = append(o.args, p.Arg)
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
	for _, o := range ops {
		if o.all && len(o.args) > 0 {
			env.Warnf(prog, "option \"-%c ALL\" will ignore other command line queue IDs", o.flag)
			o.args = nil
		}
	}
	q, cfg, err := postqueue.OpenQueue(env.ConfigDir(cdir))
	if err != nil {
		return env.Fatalf(prog, "%v", err)
	}
	var rq *requeuer
	if r := byFlag['r']; r.all || len(r.args) > 0 {
		if rq, err = newRequeuer(q, cfg, func(msg string) { env.Warnf(prog, "%s", msg) }); err != nil {
			return env.Fatalf(prog, "%v", err)
		}
		defer rq.close()
	}
	// One batch for the whole command: every move and removal is one
	// rename or unlink, and their directories are fsynced once each
	// before the totals are reported (queue.Batch says why).
	b := q.NewBatch()
	if err := massOps(q, b, rq, byFlag, names); err != nil {
		return env.Fatalf(prog, "%v", err)
	}
	stdin := env.Stdin
	for _, o := range ops {
		queues := names
		if len(queues) == 0 {
			queues = o.defaults
		}
		for _, a := range o.args {
			ids := []string{a}
			if a == "-" {
				// Standard input is read once; a second "-" finds it at
				// its end, as in Postfix.
				if ids, err = readIDs(stdin); err != nil {
					return env.Fatalf(prog, "read standard input: %v", err)
				}
				stdin = nil
			}
			for _, id := range ids {
				if err := o.byID(env, prog, q, b, rq, queues, id); err != nil {
					return env.Fatalf(prog, "%v", err)
				}
			}
		}
	}
	if err := b.Sync(); err != nil {
		return env.Fatalf(prog, "%v", err)
	}
	if byFlag['r'].count > 0 {
		postqueue.WakeQmgr(q.Dir())
	}
	for _, f := range []byte{'r', 'd', 'h', 'H'} {
		if o := byFlag[f]; o.count > 0 {
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
	for _, q := range allQueues() {
		if n == q {
			return true
		}
	}
	return false
}

// readIDs reads queue IDs for "-d -" and friends, one per line as Postfix
// does: the whole line, so a line that is not exactly an ID is reported as
// an invalid ID rather than guessed at.
func readIDs(r io.Reader) ([]string, error) {
	if r == nil {
		return nil, nil
	}
	var ids []string
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			ids = append(ids, strings.TrimSuffix(line, "\n"))
		}
		if err == io.EOF {
			return ids, nil
		}
		if err != nil {
			return ids, err
		}
	}
}
