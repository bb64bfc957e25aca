package postsuper

import (
	"errors"
	"fmt"
	"io/fs"

	"moat/internal/cli"
	"moat/internal/queue"
)

// massOps runs the ALL operations in one pass over the queues, in batch
// b: each message gets the first operation that applies to its queue, and
// only the totals are reported. The queues are those named on the command line, else
// the hold queues when -h ALL is the only operation, the hold queue when
// -H ALL is, and every queue otherwise.
func massOps(q *queue.Queue, b *queue.Batch, rq *requeuer, by map[byte]*op, names []string) error {
	del, req, hold, rel := by['d'], by['r'], by['h'], by['H']
	if !del.all && !req.all && !hold.all && !rel.all {
		return nil
	}
	only := func(o *op) bool {
		n := 0
		for _, x := range []*op{del, req, hold, rel} {
			if x.all || len(x.args) > 0 {
				n++
			}
		}
		return o.all && n == 1
	}
	queues := names
	switch {
	case len(queues) > 0:
	case only(hold):
		queues = holdQueues()
	case only(rel):
		queues = releaseQueues()
	default:
		queues = allQueues()
	}
	for _, name := range queues {
		ids, err := q.List(name)
		if err != nil {
			return err
		}
		for _, id := range ids {
			var o *op
			var to string
			switch {
			case del.all:
				o = del
			case req.all && name != queue.Maildrop:
				o, to = req, queue.Incoming
			case hold.all && name != queue.Maildrop && name != queue.Hold:
				o, to = hold, queue.Hold
			case rel.all && name == queue.Hold:
				o, to = rel, queue.Deferred
			default:
				continue
			}
			// One at a time: the batch fsyncs each directory once at the
			// end, so there is no fsync to share by running moves side by
			// side (the earlier 64 concurrent moves still made ~4300
			// fsyncs for 5000 messages).
			done, err := apply(q, b, rq, name, id, to)
			if err != nil {
				return fmt.Errorf("%s: %w", id, err)
			}
			if done {
				o.count++
			}
		}
	}
	return nil
}

// byID applies o to message id in the first of queues that holds it and to
// which o applies, reporting it as Postfix does. An invalid ID is warned
// about and skipped; an ID found nowhere (delivered meanwhile, or a typo) is
// silently not counted.
func (o *op) byID(env *cli.Env, prog string, q *queue.Queue, b *queue.Batch, rq *requeuer, queues []string, id string) error {
	if !queue.ValidID(id) {
		env.Warnf(prog, "invalid mail queue id: %s", id)
		return nil
	}
	for _, name := range queues {
		var to string
		switch o.flag {
		case 'd':
		case 'r':
			if name == queue.Maildrop {
				continue
			}
			to = queue.Incoming
		case 'h':
			if name == queue.Maildrop || name == queue.Hold {
				continue
			}
			to = queue.Hold
		case 'H':
			if name != queue.Hold {
				continue
			}
			to = queue.Deferred
		}
		done, err := apply(q, b, rq, name, id, to)
		if err != nil {
			return fmt.Errorf("%s: %w", id, err)
		}
		if done {
			fmt.Fprintf(env.Stderr, "%s: %s: %s\n", prog, id, o.verb)
			o.count++
			return nil
		}
	}
	return nil
}

// apply removes message id from queue name (to == "") or moves it to queue
// to, as part of batch b, which the caller syncs; a requeue (to ==
// incoming) goes through rq instead. It reports false when the message is
// not there, which is not an error: the scheduler may have delivered or
// moved it meanwhile.
func apply(q *queue.Queue, b *queue.Batch, rq *requeuer, name, id, to string) (bool, error) {
	if to == queue.Incoming {
		return rq.requeue(name, id)
	}
	var err error
	if to == "" {
		err = b.Remove(name, id)
	} else {
		err = b.Move(id, name, to)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil && to != "" {
		// Move checks the target first: a message that is already in the
		// target queue makes a move from a queue it is not in fail.
		if _, serr := q.Stat(name, id); errors.Is(serr, fs.ErrNotExist) {
			return false, nil
		}
	}
	return err == nil, err
}
