package asuser

import (
	"sync"

	"moat/internal/delivery/maildir"
)

// groupSync shares directory fsyncs among concurrent Maildir deliveries
// to one new/ directory by one identity (group commit): moat fsyncs new/
// after each link so that a delivery it reports survives a crash, which
// Postfix's local(8) does not do; deliveries that link while another's
// fsync runs wait for the next one and share it instead of running one
// each. Generations are numbered: a caller needs an fsync that began after
// it linked, so the one running when it arrives does not count.
type groupSync struct {
	mu      sync.Mutex
	cond    *sync.Cond
	users   int    // callers holding it (guarded by the pool's mu)
	started uint64 // generations begun
	done    uint64 // generations ended
	running bool
	failed  uint64 // the last generation whose fsync failed
	err     error
}

// sync returns once an fsync of the directory (do) that began after the
// call has ended, running it itself when no other caller is.
func (g *groupSync) sync(do func() error) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	want := g.started + 1
	for g.done < want {
		if g.running {
			g.cond.Wait()
			continue
		}
		g.running = true
		g.started++
		gen := g.started
		g.mu.Unlock()
		err := do()
		g.mu.Lock()
		g.running = false
		g.done = gen
		if err != nil {
			g.failed, g.err = gen, err
		}
		g.cond.Broadcast()
	}
	if g.failed >= want {
		// A failure of this generation or a later one: reporting it
		// can only cost a retry, never a lost message.
		return g.err
	}
	return nil
}

// syncNew is maildir.Options.SyncNew for deliveries with identity key:
// one groupSync per identity and directory, dropped when no delivery
// holds it. The fsync runs on the calling (credentialed) thread, whose
// identity is key's, like every other step of the delivery.
func (p *threadPool) syncNew(key string) func(string) error {
	return func(dir string) error {
		k := key + "\x00" + dir
		p.mu.Lock()
		if p.syncs == nil {
			p.syncs = map[string]*groupSync{}
		}
		g := p.syncs[k]
		if g == nil {
			g = &groupSync{}
			g.cond = sync.NewCond(&g.mu)
			p.syncs[k] = g
		}
		g.users++
		p.mu.Unlock()
		err := g.sync(func() error { return maildir.SyncDir(dir) })
		p.mu.Lock()
		if g.users--; g.users == 0 {
			delete(p.syncs, k)
		}
		p.mu.Unlock()
		return err
	}
}
