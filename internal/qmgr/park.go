package qmgr

import (
	"context"
	"slices"

	"moat/internal/queue"
)

// Parking: a request whose destination already has maxBlocked requests
// waiting for a slot gives up its worker. The message stays in active/,
// claimed, with what its run decided so far recorded; the limiter calls
// back when a slot could be its, and the message is handed to a worker
// again for the parked recipients only. This is moat's stand-in for
// Postfix's in-memory queue, where mail waiting for a busy destination
// costs no process.

// parking is the Manager's state of parked messages.
type parking struct {
	// jobs are parked messages by queue ID, to resume when called back.
	jobs map[string]job
	// early are messages called back before their run finished parking
	// them: they resume as soon as it does.
	early map[string]bool
	// ready are called-back messages for the Run loop to hand out;
	// signal (capacity 1) tells it there are some.
	ready  []job
	signal chan struct{}
	// open counts the parked jobs holding their queue file open.
	open int
}

// parkFunc is the limiter's call-back for message id. It runs with the
// limiter's lock held, so it only takes m.mu and never blocks.
func (m *Manager) parkFunc(id string) func() {
	return func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		j, ok := m.park.jobs[id]
		if !ok {
			m.park.early[id] = true
			return
		}
		delete(m.park.jobs, id)
		m.readyLocked(j)
	}
}

// maxOpenParked bounds the parked messages whose queue file stays open
// (job.msg): a descriptor each, far below the process's limit; the rest
// are opened again when they resume.
const maxOpenParked = 1024

// closeMsg closes the queue file a parked job kept open, if any.
func (j job) closeMsg() {
	if j.msg != nil {
		j.msg.Close()
	}
}

// reopen returns job j's message, open for update: a parked message's
// file kept open when it is still the one in active/ and unchanged
// (queue.Current), else the file opened and parsed anew.
func (m *Manager) reopen(j job) (*queue.Message, error) {
	if msg := m.takeKept(j); msg != nil {
		if m.q.Current(msg) {
			return msg, nil
		}
		msg.Close()
	}
	return m.q.OpenForUpdate(queue.Active, j.id)
}

// takeKept returns the queue file a resumed job kept open (nil if none),
// no longer counted as a parked one's.
func (m *Manager) takeKept(j job) *queue.Message {
	if j.msg == nil {
		return nil
	}
	m.mu.Lock()
	m.park.open--
	m.mu.Unlock()
	return j.msg
}

// parkJob registers a message whose run parked recipients j.only; it
// stays claimed. Its queue file stays open while fewer than
// maxOpenParked are.
func (m *Manager) parkJob(j job) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if j.msg != nil {
		if m.park.open >= maxOpenParked {
			j.msg.Close()
			j.msg = nil
		} else {
			m.park.open++
		}
	}
	if m.park.early[j.id] {
		delete(m.park.early, j.id)
		m.readyLocked(j)
		return
	}
	m.park.jobs[j.id] = j
}

// readyLocked queues a resumed message for the Run loop; m.mu is held.
func (m *Manager) readyLocked(j job) {
	m.park.ready = append(m.park.ready, j)
	select {
	case m.park.signal <- struct{}{}:
	default:
	}
}

// resume hands the called-back messages to the workers.
func (m *Manager) resume(ctx context.Context, jobs chan<- job) {
	m.mu.Lock()
	ready := m.park.ready
	m.park.ready = nil
	m.mu.Unlock()
	for i, j := range ready {
		select {
		case jobs <- j:
		case <-ctx.Done():
			m.mu.Lock()
			m.park.ready = append(ready[i:], m.park.ready...)
			m.mu.Unlock()
			return
		}
	}
}

// unparkAll moves every parked message back to incoming/ when Run ends,
// so that active/ is empty and the next run starts them afresh (their
// state log keeps what is done).
func (m *Manager) unparkAll() {
	m.mu.Lock()
	var ids []string
	for id, j := range m.park.jobs {
		ids = append(ids, id)
		j.closeMsg()
	}
	for _, j := range m.park.ready {
		ids = append(ids, j.id)
		j.closeMsg()
	}
	m.park.jobs, m.park.ready, m.park.open = map[string]job{}, nil, 0
	m.mu.Unlock()
	slices.Sort(ids)
	for _, id := range slices.Compact(ids) {
		m.moveOrWarn(id, queue.Active, queue.Incoming)
		m.release(id)
	}
}
