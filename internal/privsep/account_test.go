package privsep

import (
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"moat/internal/config/configtest"
)

const basePasswd = "root:x:0:0:root:/root:/bin/bash\n" +
	"moat:x:4242:4242::/nonexistent:/usr/sbin/nologin\n" +
	"+nis::::::\n" +
	"broken:x:y:0::/:/bin/sh\n"

const baseGroup = "root:x:0:\nmoat:x:4242:\nmoatdrop:x:4243:\n"

func writeDB(t *testing.T, passwd, group string) Databases {
	t.Helper()
	dir := t.TempDir()
	db := Databases{Passwd: filepath.Join(dir, "passwd"), Group: filepath.Join(dir, "group")}
	if err := os.WriteFile(db.Passwd, []byte(passwd), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(db.Group, []byte(group), 0o644); err != nil {
		t.Fatal(err)
	}
	return db
}

func TestAccounts(t *testing.T) {
	cases := []struct {
		name, owner, sgid, passwd, group string
		after                            bool
		want                             []string // error texts after "file MAIN: "
		uid                              int
	}{
		{name: "clean", owner: "moat", sgid: "moatdrop", uid: 4242},
		{name: "unknown", owner: "nobody", sgid: "moatdrop", uid: -1,
			want: []string{"parameter mail_owner: unknown user name value: nobody (create the account or set mail_owner)"}},
		{name: "numeric is not a name", owner: "4242", sgid: "moatdrop", uid: -1,
			want: []string{"parameter mail_owner: unknown user name value: 4242 (create the account or set mail_owner)"}},
		{name: "root", owner: "root", sgid: "moatdrop", uid: 0,
			want: []string{"parameter mail_owner: user root has privileged user ID: set mail_owner to a dedicated unprivileged account"}},
		{name: "gid 0", owner: "wheely", sgid: "moatdrop", uid: 4250, passwd: "wheely:x:4250:0::/:/usr/sbin/nologin\n",
			want: []string{"parameter mail_owner: user wheely has privileged group ID: give wheely its own group (usermod -g GROUP wheely)"}},
		{name: "shared uid listed first", owner: "moat", sgid: "moatdrop", uid: 4242, passwd: "alias:x:4242:100::/:/bin/sh\n",
			want: []string{"parameter mail_owner: user moat has same user ID as alias: give mail_owner a user ID of its own"}},
		{name: "shared uid listed after", owner: "moat", sgid: "moatdrop", uid: 4242, passwd: "late:x:4242:100::/:/bin/sh\n", after: true,
			want: []string{"parameter mail_owner: user moat has same user ID as late: give mail_owner a user ID of its own"}},
		{name: "sgid unknown", owner: "moat", sgid: "postdrop", uid: 4242,
			want: []string{"parameter setgid_group: unknown group name: postdrop (create the group or set setgid_group)"}},
		{name: "sgid root", owner: "moat", sgid: "root", uid: 4242,
			want: []string{"parameter setgid_group: group root has privileged group ID: set setgid_group to a dedicated group"}},
		{name: "sgid is owner's group", owner: "moat", sgid: "moat", uid: 4242,
			want: []string{"parameter setgid_group: group moat has same group ID as mail_owner group ID: give setgid_group its own group"}},
		{name: "sgid shared", owner: "moat", sgid: "moatdrop", uid: 4242, group: "other:x:4243:\n", after: true,
			want: []string{"parameter setgid_group: group moatdrop has same group ID as other: give setgid_group a group ID of its own"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			passwd, group := tc.passwd+basePasswd, baseGroup+tc.group
			if tc.after {
				passwd = basePasswd + tc.passwd
			}
			db := writeDB(t, passwd, group)
			cfg := configtest.Load(t, "mail_owner = "+tc.owner+"\nsetgid_group = "+tc.sgid+"\n")
			a, errs := Accounts(cfg, db)
			var got []string
			for _, e := range errs {
				got = append(got, strings.TrimPrefix(e.Error(), "file "+cfg.Path+": "))
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			if a.UID != tc.uid || a.Name != tc.owner {
				t.Errorf("account %+v, want uid %d", a, tc.uid)
			}
		})
	}
}

func TestAccountsMissingDatabase(t *testing.T) {
	cfg := configtest.Load(t, "mail_owner = moat\n")
	_, errs := Accounts(cfg, Databases{Passwd: "/nonexistent/passwd", Group: "/nonexistent/group"})
	if len(errs) != 1 || !errors.Is(errs[0], os.ErrNotExist) {
		t.Fatalf("errors %v", errs)
	}
}

// TestMailOwnerHost resolves the host's Debian postfix account, which CI
// has (the postfix package), with the system databases.
func TestMailOwnerHost(t *testing.T) {
	u, err := user.Lookup("postfix")
	if err != nil {
		t.Skip("no postfix account on this host")
	}
	if _, err := user.LookupGroup("postdrop"); err != nil {
		t.Skip("no postdrop group on this host")
	}
	cfg := configtest.Load(t, "mail_owner = postfix\nsetgid_group = postdrop\n")
	a, err := MailOwner(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if strconv.Itoa(a.UID) != u.Uid || strconv.Itoa(a.GID) != u.Gid || a.Name != "postfix" {
		t.Errorf("account %+v, want %s/%s", a, u.Uid, u.Gid)
	}
	cfg = configtest.Load(t, "mail_owner = root\nsetgid_group = postdrop\n")
	if a, err := MailOwner(cfg); err == nil || a != (Account{}) {
		t.Errorf("root accepted: %+v %v", a, err)
	}
}

func TestParsePasswdGroup(t *testing.T) {
	pw := ParsePasswd([]byte(basePasswd + "big:x:4294967295:1::/:/bin/sh\nneg:x:-1:1::/:/bin/sh\nsp ace:x:5:5::/:/bin/sh\nok:x:4294967294:7::/:/bin/sh"))
	if len(pw) != 3 || pw[1].Name != "moat" || pw[1].UID != 4242 || pw[1].GID != 4242 ||
		pw[2] != (PasswdEntry{"ok", 4294967294, 7, "/", "/bin/sh"}) {
		t.Errorf("passwd: %+v", pw)
	}
	gr := ParseGroup([]byte(baseGroup + "broken:x::\n-x:x:1:\n"))
	if len(gr) != 3 || gr[2] != (GroupEntry{"moatdrop", 4243}) {
		t.Errorf("group: %+v", gr)
	}
}

func FuzzParsePasswd(f *testing.F) {
	f.Add([]byte(basePasswd))
	f.Add([]byte("a:b:1:2:c:d:e\n\n::::::\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, e := range ParsePasswd(data) {
			if e.Name == "" || e.UID < 0 || e.GID < 0 || strings.ContainsAny(e.Name, ":\n") {
				t.Fatalf("bad entry %+v", e)
			}
		}
	})
}

func FuzzParseGroup(f *testing.F) {
	f.Add([]byte(baseGroup))
	f.Add([]byte("a:b:1:x,y\n:::\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, e := range ParseGroup(data) {
			if e.Name == "" || e.GID < 0 || strings.ContainsAny(e.Name, ":\n") {
				t.Fatalf("bad entry %+v", e)
			}
		}
	})
}
