package proxymap

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"moat/internal/maps"
)

// jailEnv tells a re-executed test binary to act as the jailed client.
const jailEnv = "MOAT_PROXYMAP_JAIL_CHILD"

// jailResult is what the jailed child reports for one lookup.
type jailResult struct {
	Spec, Key, Value, Err string
	Found                 bool
}

// jailReport is the child's whole answer.
type jailReport struct {
	UID, GID   int
	PasswdSeen bool // whether /etc/passwd exists inside the jail
	Results    []jailResult
}

// TestJailedChild is the client half of TestChrootedClient, run in a
// child process; in a normal run it does nothing. Like a jailed daemon it
// opens its tables first, then chroots into its working directory and
// drops to mail_owner, and only then looks up: the lookups must reach the
// passwd file through the proxymap socket, the only thing in the jail.
func TestJailedChild(t *testing.T) {
	if os.Getenv(jailEnv) == "" {
		t.Skip("run by TestChrootedClient")
	}
	uid, _ := strconv.Atoi(os.Getenv(jailEnv + "_UID"))
	gid, _ := strconv.Atoi(os.Getenv(jailEnv + "_GID"))
	opts := maps.DefaultOptions().WithProxySocket("private/proxymap")
	type tab struct {
		spec string
		t    maps.Table
	}
	var tabs []tab
	for _, spec := range []string{"proxy:unix:passwd.byname", "proxy:unix:group.byname", "unix:passwd.byname"} {
		o := opts
		if !strings.HasPrefix(spec, "proxy:") {
			o.ProxySocket = ""
		}
		tb, err := maps.Open(spec, o)
		if err != nil {
			t.Fatalf("open %s before chroot: %v", spec, err)
		}
		tabs = append(tabs, tab{spec, tb})
	}
	if err := syscall.Chroot("."); err != nil {
		t.Fatalf("chroot: %v", err)
	}
	if err := os.Chdir("/"); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Setgroups(nil); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Setgid(gid); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Setuid(uid); err != nil {
		t.Fatal(err)
	}
	rep := jailReport{UID: os.Getuid(), GID: os.Getgid()}
	_, err := os.Stat("/etc/passwd")
	rep.PasswdSeen = err == nil
	for _, tb := range tabs {
		for _, key := range []string{"root", "postfix", "no-such-user-xyz"} {
			v, ok, err := tb.t.Lookup(key)
			r := jailResult{Spec: tb.spec, Key: key, Value: v, Found: ok}
			if err != nil {
				r.Err = err.Error()
			}
			rep.Results = append(rep.Results, r)
		}
	}
	b, _ := json.Marshal(rep)
	fmt.Printf("JAILREPORT %s\n", b)
}

// TestChrootedClient is the seed's use case (proxymap(8): a chrooted smtpd
// with local_recipient_maps = proxy:unix:passwd.byname $alias_maps): a
// client chrooted into a directory holding only the proxymap socket, and
// running as mail_owner, gets the passwd entries of root and postfix from
// the server outside, while a table not in proxy_read_maps is refused.
func TestChrootedClient(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chroot needs root")
	}
	pf, err := user.Lookup("postfix")
	if err != nil {
		t.Skipf("no postfix account: %v", err)
	}
	jail := filepath.Join(t.TempDir(), "jail")
	if err := os.Mkdir(jail, 0o755); err != nil {
		t.Fatal(err)
	}
	f := startServer(t, jail, "local_recipient_maps = proxy:unix:passwd.byname $alias_maps\n")
	// private/ as Postfix makes it: mail_owner's, closed to others.
	puid, _ := strconv.Atoi(pf.Uid)
	pgid, _ := strconv.Atoi(pf.Gid)
	if err := os.Chown(filepath.Join(jail, "private"), puid, pgid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(jail, "private"), 0o700); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(jail)
	if len(entries) != 1 {
		t.Fatalf("jail holds %d entries, want only private/", len(entries))
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestJailedChild$", "-test.count=1", "-test.v")
	cmd.Dir = jail
	cmd.Env = append(os.Environ(), jailEnv+"=1", jailEnv+"_UID="+pf.Uid, jailEnv+"_GID="+pf.Gid)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("jailed child: %v\n%s", err, out)
	}
	var rep jailReport
	for _, line := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(line, "JAILREPORT "); ok {
			if err := json.Unmarshal([]byte(rest), &rep); err != nil {
				t.Fatal(err)
			}
		}
	}
	if rep.Results == nil {
		t.Fatalf("no report from the child:\n%s", out)
	}
	t.Logf("jailed child: %+v", rep)
	if rep.UID != puid || rep.GID != pgid || rep.PasswdSeen {
		t.Errorf("child ran as %d:%d, /etc/passwd visible %v; want %d:%d, not visible", rep.UID, rep.GID, rep.PasswdSeen, puid, pgid)
	}

	// What the table gives outside the jail is what the child must get.
	direct, err := maps.Open("unix:passwd.byname", maps.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Results {
		switch r.Spec {
		case "proxy:unix:passwd.byname":
			want, found, _ := direct.Lookup(r.Key)
			if r.Err != "" || r.Found != found || r.Value != want {
				t.Errorf("jailed %s %q = %q found=%v err=%q; want %q found=%v", r.Spec, r.Key, r.Value, r.Found, r.Err, want, found)
			}
			if (r.Key == "root" && !strings.HasPrefix(r.Value, "root:x:0:0:")) ||
				(r.Key == "postfix" && !strings.HasPrefix(r.Value, "postfix:x:"+pf.Uid+":"+pf.Gid+":")) {
				t.Errorf("%s: unexpected entry %q", r.Key, r.Value)
			}
		case "proxy:unix:group.byname":
			if !strings.Contains(r.Err, `proxymap service is not configured for table "unix:group.byname"`) {
				t.Errorf("unapproved table in the jail: %+v", r)
			}
		case "unix:passwd.byname":
			// Opened directly, the table cannot see the passwd file from
			// inside the jail: the proxy is what makes it work.
			if r.Err == "" {
				t.Errorf("direct lookup inside the jail succeeded: %+v", r)
			}
		}
	}
	if !f.log.has(`warning: request for unapproved table: "unix:group.byname"`) {
		t.Errorf("refusal not logged:\n%s", f.log)
	}
}
