package privsep

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"moat/internal/queue"
)

// newQueue builds a queue directory as `postfix start` leaves it when run
// as root: the top root's, the queues mail_owner's.
func newQueue(t *testing.T, a Account) string {
	t.Helper()
	dir := newJail(t)
	if _, err := queue.Open(dir, queue.Options{Create: true, Owner: a.UID, OwnerSet: true}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"private", "public"} {
		p := filepath.Join(dir, d)
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, a.UID, a.GID); err != nil {
			t.Fatal(err)
		}
	}
	if err := PrepareJail(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestCheckQueue(t *testing.T) {
	needRoot(t)
	a := Account{Name: "moat", UID: 4242, GID: 4242}
	cases := []struct {
		name  string
		setup func(dir string)
		want  []string // substrings, one per problem, with DIR for the queue
		kind  ProblemKind
	}{
		{name: "clean"},
		{name: "top not root's", kind: ProblemOwner, setup: func(dir string) { os.Chown(dir, a.UID, a.GID) },
			want: []string{"queue_directory DIR is owned by uid 4242, not root: chown root DIR"}},
		{name: "top writable", kind: ProblemMode, setup: func(dir string) { os.Chmod(dir, 0o775) },
			want: []string{"queue_directory DIR is writable by group or others (mode 0775): chmod go-w DIR"}},
		{name: "queue dir root's", kind: ProblemOwner, setup: func(dir string) { os.Chown(filepath.Join(dir, "active"), 0, 0) },
			want: []string{"not owned by moat: DIR/active is owned by uid 0 (chown moat DIR/active)"}},
		{name: "queue dir symlink", kind: ProblemType, setup: func(dir string) {
			os.Remove(filepath.Join(dir, "hold"))
			os.Symlink("/tmp", filepath.Join(dir, "hold"))
		}, want: []string{"DIR/hold is not a directory (a symbolic link would let a daemon write elsewhere)"}},
		{name: "files not mail_owner's", kind: ProblemBelow, setup: func(dir string) {
			for _, n := range []string{"a", "b", "c"} {
				os.WriteFile(filepath.Join(dir, "incoming", n), nil, 0o600)
			}
		}, want: []string{"3 entries under DIR/incoming are not owned by moat, first DIR/incoming/a: chown -R moat DIR/incoming"}},
		{name: "maildrop not descended", setup: func(dir string) {
			os.WriteFile(filepath.Join(dir, "maildrop", "x"), nil, 0o600)
		}},
		{name: "sockets skipped", setup: func(dir string) {
			l, err := net.Listen("unix", filepath.Join(dir, "private", "anvil"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
		}},
		{name: "jail etc writable", kind: ProblemBelow, setup: func(dir string) { os.Chmod(filepath.Join(dir, "etc", "hosts"), 0o666) },
			want: []string{"1 entries under DIR/etc are writable by group or others, first DIR/etc/hosts"}},
		{name: "jail etc not root's", kind: ProblemOwner, setup: func(dir string) { os.Chown(filepath.Join(dir, "etc"), a.UID, a.GID) },
			want: []string{"DIR/etc is owned by uid 4242, not root: chown root DIR/etc"}},
		{name: "pid dir", kind: ProblemOwner, setup: func(dir string) {
			os.Mkdir(filepath.Join(dir, "pid"), 0o755)
			os.Chown(filepath.Join(dir, "pid"), a.UID, a.GID)
		}, want: []string{"DIR/pid is owned by uid 4242, not root: chown root DIR/pid"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := newQueue(t, a)
			if tc.setup != nil {
				tc.setup(dir)
			}
			errs := CheckQueue(dir, a)
			if len(errs) != len(tc.want) {
				t.Fatalf("problems %v, want %d", errs, len(tc.want))
			}
			for i, e := range errs {
				got := strings.ReplaceAll(e.Error(), dir, "DIR")
				if !strings.Contains(got, tc.want[i]) {
					t.Errorf("problem %q, want %q", got, tc.want[i])
				}
				if p, ok := e.(*QueueProblem); !ok || p.Kind != tc.kind {
					t.Errorf("%#v: want a *QueueProblem of kind %d", e, tc.kind)
				}
			}
		})
	}
	if errs := CheckQueue("/nonexistent/queue", a); len(errs) != 1 {
		t.Errorf("missing queue: %v", errs)
	}
}
