package asuser

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestRunIdentityAndOwnership(t *testing.T) {
	cr := account(t)
	cr.Groups = []uint32{cr.GID}
	d := userDir(t, cr)
	res := Run(context.Background(), Command{
		Creds:       cr,
		Argv:        []string{"/bin/sh", "-c", `id -u; id -g; id -G; echo hi > "$D/out"`},
		Env:         []string{"D=" + d, "PATH=/usr/bin:/bin"},
		TimeLimit:   10 * time.Second,
		OutputLimit: 1000,
	})
	if res.Err != nil || res.Status != 0 {
		t.Fatalf("run: %+v", res)
	}
	want := strconv.Itoa(int(cr.UID)) + "\n" + strconv.Itoa(int(cr.GID)) + "\n" + strconv.Itoa(int(cr.GID)) + "\n"
	if res.Output != want {
		t.Errorf("output %q, want %q (uid, gid, groups: root's groups must be gone)", res.Output, want)
	}
	fi, err := os.Stat(filepath.Join(d, "out"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != cr.UID || st.Gid != cr.GID {
		t.Errorf("out owned by %d:%d, want %d:%d", st.Uid, st.Gid, cr.UID, cr.GID)
	}
}

func TestRunRefusesRoot(t *testing.T) {
	res := Run(context.Background(), Command{Argv: []string{"/bin/true"}})
	if res.Err == nil {
		t.Fatal("uid 0 command ran")
	}
}

func TestRunEnvDirStdin(t *testing.T) {
	cr := account(t)
	in := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	res := Run(context.Background(), Command{
		Creds:       cr,
		Argv:        []string{"sh", "-c", `pwd; env | sort; wc -c`},
		Env:         []string{"PATH=/usr/bin:/bin", "X=1"},
		Stdin:       bytes.NewReader(in),
		TimeLimit:   10 * time.Second,
		OutputLimit: 1000,
	})
	if res.Err != nil || res.Status != 0 {
		t.Fatalf("run: %+v", res)
	}
	lines := strings.Fields(res.Output)
	// sh itself adds PWD (and dash no more), so only check ours arrive and
	// nothing of the test's own environment leaks in.
	if lines[0] != "/" {
		t.Errorf("dir %q, want /", lines[0])
	}
	if !strings.Contains(res.Output, "X=1\n") || strings.Contains(res.Output, "HOME=") || strings.Contains(res.Output, "GOPATH") {
		t.Errorf("environment not exactly ours:\n%s", res.Output)
	}
	if lines[len(lines)-1] != strconv.Itoa(len(in)) {
		t.Errorf("stdin bytes %s, want %d", lines[len(lines)-1], len(in))
	}
}

func TestRunStatusAndSignal(t *testing.T) {
	cr := account(t)
	res := Run(context.Background(), Command{Creds: cr, Argv: []string{"/bin/sh", "-c", "echo no >&2; exit 75"}, OutputLimit: 100})
	if res.Status != 75 || res.Signal != 0 || res.Output != "no\n" || res.TimedOut {
		t.Errorf("exit 75: %+v", res)
	}
	res = Run(context.Background(), Command{Creds: cr, Argv: []string{"/bin/sh", "-c", "kill -TERM $$"}})
	if res.Signal != int(syscall.SIGTERM) {
		t.Errorf("signal: %+v", res)
	}
	res = Run(context.Background(), Command{Creds: cr, Argv: []string{"/nonexistent/cmd"}})
	if res.Err == nil {
		t.Errorf("missing command: %+v", res)
	}
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func TestRunTimeLimitKillsGroup(t *testing.T) {
	noLeak(t)
	cr := account(t)
	start := time.Now()
	res := Run(context.Background(), Command{
		Creds:       cr,
		Argv:        []string{"/bin/sh", "-c", "sleep 100 & echo $!; sleep 100"},
		TimeLimit:   500 * time.Millisecond,
		OutputLimit: 100,
	})
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("took %v", el)
	}
	if !res.TimedOut || res.Signal != int(syscall.SIGKILL) {
		t.Fatalf("not killed: %+v", res)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(res.Output))
	if err != nil {
		t.Fatalf("background pid: %q", res.Output)
	}
	for i := 0; i < 50 && alive(pid); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if alive(pid) {
		t.Errorf("background sleep %d survived the time limit", pid)
	}
}

func TestRunContextCancel(t *testing.T) {
	noLeak(t)
	cr := account(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	res := Run(ctx, Command{Creds: cr, Argv: []string{"/bin/sleep", "100"}})
	if !res.TimedOut || res.Signal != int(syscall.SIGKILL) {
		t.Fatalf("not killed: %+v", res)
	}
}

func TestRunOutputLimit(t *testing.T) {
	noLeak(t)
	cr := account(t)
	res := Run(context.Background(), Command{
		Creds:       cr,
		Argv:        []string{"/bin/sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' x; exit 3"},
		TimeLimit:   20 * time.Second,
		OutputLimit: 10,
	})
	if res.Err != nil || res.Status != 3 || res.Output != "xxxxxxxxxx" {
		t.Fatalf("run: status %d err %v output %q", res.Status, res.Err, res.Output)
	}
}

func TestRunIgnoresUnreadStdin(t *testing.T) {
	noLeak(t)
	cr := account(t)
	in := bytes.NewReader(make([]byte, 8<<20))
	res := Run(context.Background(), Command{Creds: cr, Argv: []string{"/bin/true"}, Stdin: in, TimeLimit: 10 * time.Second})
	if res.Err != nil || res.Status != 0 || res.TimedOut {
		t.Fatalf("run: %+v", res)
	}
}

func TestRunBadArgs(t *testing.T) {
	for _, c := range []Command{
		{Creds: Creds{UID: 1}},
		{Creds: Creds{UID: 1}, Argv: []string{"/bin/echo", "a\x00b"}},
	} {
		if res := Run(context.Background(), c); res.Err == nil {
			t.Errorf("%q ran", c.Argv)
		}
	}
}
