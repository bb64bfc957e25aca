package postsuper

import (
	"errors"
	"fmt"
	"io/fs"

	"moat/internal/cli"
	"moat/internal/queue"
)

// apply runs o over queues: every message for ALL, else each named ID in
// the first of the queues that holds it. A message that is gone by the time
// postsuper reaches it (delivered meanwhile) is not an error, as in Postfix.
func (o *op) apply(env *cli.Env, prog string, q *queue.Queue, queues []string) error {
	if o.all {
		for _, name := range queues {
			ids, err := q.List(name)
			if err != nil {
				return err
			}
			for _, id := range ids {
				if err := o.one(env, prog, q, name, id); err != nil {
					return err
				}
			}
		}
	}
	for _, id := range o.ids {
		if !queue.ValidID(id) {
			env.Warnf(prog, "invalid mail queue id: %s", id)
			continue
		}
		for _, name := range queues {
			done, err := o.try(env, prog, q, name, id)
			if err != nil {
				return err
			}
			if done {
				break
			}
		}
	}
	return nil
}

// try applies o to id in queue name if it is there.
func (o *op) try(env *cli.Env, prog string, q *queue.Queue, name, id string) (bool, error) {
	if _, err := q.Stat(name, id); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		// A damaged file is still the admin's to delete or move.
		env.Warnf(prog, "%s: %v", id, err)
	}
	return true, o.one(env, prog, q, name, id)
}

// one applies o to message id in queue name.
func (o *op) one(env *cli.Env, prog string, q *queue.Queue, name, id string) error {
	var err error
	switch o.flag {
	case 'd':
		err = q.Remove(name, id)
	case 'h':
		if name == queue.Hold {
			return nil
		}
		err = q.Move(id, name, queue.Hold)
	case 'H':
		if name != queue.Hold {
			return nil
		}
		err = q.Move(id, name, queue.Deferred)
	case 'r':
		err = q.Move(id, name, queue.Incoming)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", id, err)
	}
	fmt.Fprintf(env.Stderr, "%s: %s: %s\n", prog, id, o.verb)
	o.count++
	return nil
}
