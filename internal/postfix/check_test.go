package postfix

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"moat/internal/cli"
	"moat/internal/maps"
	"moat/internal/queue"
	"moat/internal/testutil"
)

// Test accounts: a dedicated mail_owner and setgid_group, as Postfix's
// INSTALL asks for, in private passwd/group files so the tests do not
// depend on the host's accounts.
const (
	testUID   = 4242
	testGID   = 4242
	testGroup = 4243
)

const testPasswd = "root:x:0:0:root:/root:/bin/bash\n" +
	"moat:x:4242:4242::/nonexistent:/usr/sbin/nologin\n" +
	"shelly:x:4244:4244::/home/shelly:/bin/bash\n"

const testGroups = "root:x:0:\nmoat:x:4242:\nmoatdrop:x:4243:\n"

// fixture is a clean configuration: main.cf, master.cf, a queue and two
// tables, which `postfix check` must pass silently.
type fixture struct {
	t                   *testing.T
	root, conf, q       string
	passwd, group       string
	mainExtra, master   string
	header, access      string
	owner, sgid         string
	qowner              int
	headerPath, accPath string
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("owner checks need root (CI runs as root)")
	}
}

func newFixture(t *testing.T) *fixture {
	needRoot(t)
	root := t.TempDir()
	f := &fixture{t: t, root: root, conf: filepath.Join(root, "etc"), q: filepath.Join(root, "spool")}
	f.passwd = filepath.Join(root, "passwd")
	f.group = filepath.Join(root, "group")
	f.headerPath = filepath.Join(f.conf, "header_checks")
	f.accPath = filepath.Join(f.conf, "access")
	f.master = "smtp inet n - n - - smtpd\n  -o smtpd_helo_required=yes\n"
	f.header = "/^Subject: spam/ REJECT\n"
	f.access = "example.com REJECT\n"
	f.owner, f.sgid, f.qowner = "moat", "moatdrop", testUID
	return f
}

func (f *fixture) write(path, data string, mode os.FileMode) {
	f.t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		f.t.Fatal(err)
	}
}

// build writes the files; tests change fields (or files) in between.
func (f *fixture) build() {
	f.t.Helper()
	f.write(f.passwd, testPasswd, 0o644)
	f.write(f.group, testGroups, 0o644)
	lib := filepath.Join(f.root, "lib")
	if err := os.MkdirAll(lib, 0o700); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Chown(lib, f.qowner, testGID); err != nil {
		f.t.Fatal(err)
	}
	main := fmt.Sprintf("queue_directory = %s\ndata_directory = %s\nmail_owner = %s\nsetgid_group = %s\n"+
		"header_checks = regexp:%s\n"+
		"smtpd_recipient_restrictions = check_recipient_access texthash:%s,\n"+
		"    check_policy_service unix:private/policy, reject_unauth_destination\n%s",
		f.q, lib, f.owner, f.sgid, f.headerPath, f.accPath, f.mainExtra)
	f.write(filepath.Join(f.conf, "main.cf"), main, 0o644)
	f.write(filepath.Join(f.conf, "master.cf"), f.master, 0o644)
	f.write(f.headerPath, f.header, 0o644)
	f.write(f.accPath, f.access, 0o644)
	if err := os.Mkdir(f.q, 0o755); err != nil && !os.IsExist(err) {
		f.t.Fatal(err)
	}
	if _, err := queue.Open(f.q, queue.Options{Create: true, HashQueues: []string{"deferred"}, HashDepth: 1}); err != nil {
		f.t.Fatal(err)
	}
	err := filepath.WalkDir(f.q, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == f.q {
			return err
		}
		return os.Chown(p, f.qowner, testGID)
	})
	if err != nil {
		f.t.Fatal(err)
	}
}

// run runs the check as root would and returns its output and status.
func (f *fixture) run() (string, int) {
	f.t.Helper()
	probs := Check(f.conf, Options{Dir: f.root, Passwd: f.passwd, Group: f.group, EuidSet: true})
	var out bytes.Buffer
	st := Report(&cli.Env{Stderr: &out, Stdout: &out}, "postfix", probs)
	return strings.ReplaceAll(out.String(), f.root, "ROOT"), st
}

func TestCheckClean(t *testing.T) {
	f := newFixture(t)
	f.build()
	out, st := f.run()
	if out != "" || st != 0 {
		t.Fatalf("clean configuration: status %d, output:\n%s", st, out)
	}
}

func TestCheckProblems(t *testing.T) {
	old := time.Now().Add(-time.Hour)
	cases := []struct {
		name   string
		setup  func(f *fixture)
		after  func(f *fixture)
		status int
		want   string
	}{
		{name: "main.cf bad value", setup: func(f *fixture) { f.mainExtra = "message_size_limit = lots\n" }, status: 1, want: "postfix: fatal: ROOT/etc/main.cf, line 8: parameter message_size_limit: bad value \"lots\": expected an integer\n"},
		{name: "main.cf obsolete", setup: func(f *fixture) { f.mainExtra = "virtual_maps = hash:/x\n" }, status: 1, want: "postfix: fatal: ROOT/etc/main.cf, line 8: parameter virtual_maps is obsolete: use virtual_alias_maps\n"},
		{name: "main.cf unused", setup: func(f *fixture) { f.mainExtra = "no_such_thing = 1\n" }, want: "postfix/postfix-script: warning: ROOT/etc/main.cf: unused parameter: no_such_thing=1\n"},
		{name: "master.cf spaced -o", setup: func(f *fixture) {
			f.master = "smtp inet n - n - - smtpd\n  -o smtpd_helo_restrictions = permit_mynetworks, reject\n"
		}, status: 1, want: "postfix: fatal: ROOT/etc/master.cf, line 2: service smtp/inet: \"-o smtpd_helo_restrictions = permit_mynetworks, reject\": whitespace separates master.cf arguments, so this does not set smtpd_helo_restrictions; write -o smtpd_helo_restrictions=permit_mynetworks,reject or -o { smtpd_helo_restrictions = permit_mynetworks, reject }\n"},
		{name: "master.cf uses main.cf name", setup: func(f *fixture) {
			f.mainExtra = "submission_client = permit_mynetworks, reject\n"
			f.master = "smtp inet n - n - - smtpd\n  -o smtpd_client_restrictions=$submission_client\n"
		}},
		{name: "master.cf bad override", setup: func(f *fixture) {
			f.master = "smtp inet n - n - - smtpd\n  -o smtpd_helo_required=maybe\n"
		}, status: 1, want: "postfix: fatal: ROOT/etc/master.cf, line 2: service smtp/inet: parameter smtpd_helo_required: bad value \"maybe\": expected yes or no\n"},
		{name: "master.cf override table", setup: func(f *fixture) {
			f.master = "smtp inet n - n - - smtpd\n  -o smtpd_client_restrictions=check_client_access,cidr:/nonexistent/c\n"
		}, status: 1, want: "postfix: fatal: ROOT/etc/master.cf, line 2: service smtp/inet: smtpd_client_restrictions: table cidr:/nonexistent/c: open /nonexistent/c: no such file or directory\n"},
		{name: "restriction unknown", setup: func(f *fixture) {
			f.master = "smtp inet n - n - - smtpd\n  -o smtpd_helo_restrictions=permit_mynetworks,reject_unknown_helo\n"
		}, status: 1, want: "postfix: fatal: ROOT/etc/master.cf, line 1: service smtp/inet: parameter smtpd_helo_restrictions: unknown restriction \"reject_unknown_helo\" (not a Postfix restriction or a smtpd_restriction_classes name)\n"},
		{name: "restriction open relay", setup: func(f *fixture) {
			f.master = "smtp inet n - n - - smtpd\n  -o smtpd_relay_restrictions=permit\n  -o smtpd_recipient_restrictions=permit\n"
		}, status: 1, want: "postfix: fatal: ROOT/etc/master.cf, line 1: service smtp/inet: in parameter smtpd_relay_restrictions or smtpd_recipient_restrictions, specify at least one working instance of: reject_unauth_destination, defer_unauth_destination, reject, defer, defer_if_permit or check_relay_domains (without one the server is an open relay)\n"},
		{name: "tls certificate missing", setup: func(f *fixture) {
			f.master = "smtp inet n - n - - smtpd\n  -o smtpd_tls_security_level=may\n  -o smtpd_tls_cert_file=/nonexistent/cert.pem\n  -o smtpd_tls_key_file=/nonexistent/cert.key\n"
		}, status: 1, want: "postfix: fatal: ROOT/etc/master.cf, line 1: service smtp/inet: smtpd_tls_cert_file: open /nonexistent/cert.pem: no such file or directory\n"},
		{name: "queue missing dir", after: func(f *fixture) { os.RemoveAll(filepath.Join(f.q, "deferred")) }, want: "postfix/postfix-script: warning: missing queue directory ROOT/spool/deferred: postfix start creates it\n"},
		{name: "queue mode", after: func(f *fixture) { os.Chmod(filepath.Join(f.q, "hold"), 0o755) }, status: 1, want: "postfix: fatal: queue: ROOT/spool/hold has mode 0755, want 0700: chmod 0700 ROOT/spool/hold\n"},
		{name: "queue owner", after: func(f *fixture) { os.Chown(filepath.Join(f.q, "active"), 0, 0) }, status: 1, want: "postfix: fatal: queue: ROOT/spool/active is owned by uid 0, want 4242: chown 4242 ROOT/spool/active\n"},
		{name: "queue absent", after: func(f *fixture) { os.RemoveAll(f.q) }, status: 1, want: "postfix: fatal: queue_directory ROOT/spool: no such file or directory: create it (mkdir -m 0755 ROOT/spool) or set queue_directory in ROOT/etc/main.cf\n"},
		{name: "table missing", after: func(f *fixture) { os.Remove(f.accPath) }, status: 1, want: "postfix: fatal: smtpd_recipient_restrictions: table texthash:ROOT/etc/access: open ROOT/etc/access: no such file or directory\n"},
		{name: "table owner", after: func(f *fixture) { os.Chown(f.accPath, 1234, 0) }, status: 1, want: "postfix: fatal: smtpd_recipient_restrictions: table texthash:ROOT/etc/access: table ROOT/etc/access is owned by uid 1234, not root or mail_owner: run chown root ROOT/etc/access\n"},
		{name: "table writable", after: func(f *fixture) { os.Chmod(f.headerPath, 0o666) }, status: 1, want: "postfix: fatal: header_checks: table regexp:ROOT/etc/header_checks: table ROOT/etc/header_checks is writable by group or others (mode 0666): run chmod go-w ROOT/etc/header_checks\n"},
		{name: "table unsupported", setup: func(f *fixture) { f.mainExtra = "alias_maps = nis:mail.aliases\n" }, status: 1, want: "postfix: fatal: alias_maps: table nis:mail.aliases: unsupported dictionary type: use one of btree, cdb, cidr, environ, fail, hash, inline, lmdb, pcre, proxy, regexp, static, texthash, unix\n"},
		{name: "list table", setup: func(f *fixture) { f.mainExtra = "mydestination = localhost, hash:/nonexistent/domains\n" }, status: 1,
			want: "postfix: fatal: mydestination: table hash:/nonexistent/domains: open database /nonexistent/domains.db: open /nonexistent/domains.db: no such file or directory\n"},
		{name: "table no db", setup: func(f *fixture) {
			src := filepath.Join(f.conf, "virtual")
			f.mainExtra = "virtual_alias_maps = hash:" + src + "\n"
			f.write(src, "a@example.com b@example.com\n", 0o644)
		}, status: 1, want: "postfix: fatal: virtual_alias_maps: table hash:ROOT/etc/virtual: open database ROOT/etc/virtual.db: open ROOT/etc/virtual.db: no such file or directory (build it: moat postmap hash:ROOT/etc/virtual)\n"},
		{name: "restriction class table", setup: func(f *fixture) {
			f.mainExtra = "smtpd_restriction_classes = strict\nstrict = check_sender_access texthash:/nonexistent/s, reject\n"
		}, status: 1, want: "postfix: fatal: strict: table texthash:/nonexistent/s: open /nonexistent/s: no such file or directory\n"},
		{name: "table pcre RE2", setup: func(f *fixture) {
			f.mainExtra = "body_checks = pcre:" + filepath.Join(f.conf, "body") + "\n"
			f.write(filepath.Join(f.conf, "body"), "/(a)\\1/ REJECT\n", 0o644)
		}, status: 1, want: "postfix: fatal: body_checks: table pcre:ROOT/etc/body: pcre:ROOT/etc/body line 1: backreference \\1 is not supported by moat's RE2 engine; RE2 cannot match repeated text; rewrite the pattern without it\n"},
		{name: "table stale db", setup: func(f *fixture) {
			src := filepath.Join(f.conf, "virtual")
			f.mainExtra = "virtual_alias_maps = hash:" + src + "\n"
			f.write(src, "a@example.com b@example.com\n", 0o644)
			if err := maps.WriteIndex(src+".db", []maps.Record{{Key: "a@example.com", Value: "b@example.com"}}); err != nil {
				t.Fatal(err)
			}
			os.Chtimes(src, old, old)
			os.Chtimes(src+".db", old.Add(-time.Hour), old.Add(-time.Hour))
		}, want: "postfix/postfix-script: warning: hash:ROOT/etc/virtual: database ROOT/etc/virtual.db is older than source file ROOT/etc/virtual\n"},
		{name: "mail_owner unknown", setup: func(f *fixture) { f.owner = "nobody" }, status: 1, want: "postfix: fatal: file ROOT/etc/main.cf: parameter mail_owner: unknown user name value: nobody (create the account or set mail_owner)\n"},
		{name: "mail_owner root", setup: func(f *fixture) { f.owner = "root" }, status: 1, want: "postfix: fatal: file ROOT/etc/main.cf: parameter mail_owner: user root has privileged user ID: set mail_owner to a dedicated unprivileged account\n"},
		{name: "mail_owner shell", setup: func(f *fixture) { f.owner, f.qowner = "shelly", 4244 }, want: "postfix/postfix-script: warning: mail_owner shelly has login shell /bin/bash: set it to /usr/sbin/nologin (usermod -s /usr/sbin/nologin shelly)\n"},
		{name: "setgid_group unknown", setup: func(f *fixture) { f.sgid = "nogroup" }, status: 1, want: "postfix: fatal: file ROOT/etc/main.cf: parameter setgid_group: unknown group name: nogroup (create the group or set setgid_group)\n"},
		{name: "setgid_group same as mail_owner", setup: func(f *fixture) { f.sgid = "moat" }, status: 1, want: "postfix: fatal: file ROOT/etc/main.cf: parameter setgid_group: group moat has same group ID as mail_owner group ID: give setgid_group its own group\n"},
		{name: "mail_owner shared uid", after: func(f *fixture) {
			f.write(f.passwd, testPasswd+"twin:x:4242:4242::/:/usr/sbin/nologin\n", 0o644)
		}, status: 1, want: "postfix: fatal: file ROOT/etc/main.cf: parameter mail_owner: user moat has same user ID as twin: give mail_owner a user ID of its own\n"},
		{name: "queue top not root's", after: func(f *fixture) { os.Chown(f.q, testUID, testGID) }, status: 1,
			want: "postfix: fatal: queue_directory ROOT/spool is owned by uid 4242, not root: chown root ROOT/spool\n"},
		{name: "queue top writable", after: func(f *fixture) { os.Chmod(f.q, 0o777) }, status: 1,
			want: "postfix: fatal: queue: ROOT/spool has mode 0777, writable by others: chmod go-w ROOT/spool\n"},
		{name: "queue file not mail_owner's", after: func(f *fixture) { f.write(filepath.Join(f.q, "incoming", "x"), "", 0o600) }, status: 1,
			want: "postfix: fatal: 1 entries under ROOT/spool/incoming are not owned by moat, first ROOT/spool/incoming/x: chown -R moat ROOT/spool/incoming\n"},
		{name: "private not mail_owner's", after: func(f *fixture) { os.Mkdir(filepath.Join(f.q, "private"), 0o700) }, status: 1,
			want: "postfix: fatal: not owned by moat: ROOT/spool/private is owned by uid 0 (chown moat ROOT/spool/private)\n"},
		{name: "jail etc writable", after: func(f *fixture) {
			os.Mkdir(filepath.Join(f.q, "etc"), 0o755)
			os.Chmod(filepath.Join(f.q, "etc"), 0o777)
		}, status: 1, want: "postfix: fatal: ROOT/spool/etc has mode 0777, writable by group or others: chmod go-w ROOT/spool/etc\n"},
		{name: "data_directory owner", after: func(f *fixture) { os.Chown(filepath.Join(f.root, "lib"), 0, 0) }, want: "postfix/postfix-script: warning: not owned by moat: ROOT/lib (chown moat ROOT/lib)\n"},
		{name: "config not root", after: func(f *fixture) { os.Chown(filepath.Join(f.conf, "master.cf"), testUID, 0) }, want: "postfix/postfix-script: warning: not owned by root: ROOT/etc/master.cf (chown root ROOT/etc/master.cf)\n"},
		{name: "config writable", after: func(f *fixture) { os.Chmod(filepath.Join(f.conf, "main.cf"), 0o664) }, want: "postfix/postfix-script: warning: group or other writable: ROOT/etc/main.cf (chmod go-w ROOT/etc/main.cf)\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			if tc.setup != nil {
				tc.setup(f)
			}
			f.build()
			if tc.after != nil {
				tc.after(f)
			}
			out, st := f.run()
			if out != tc.want || st != tc.status {
				t.Errorf("status %d, want %d; output:\n%s\nwant:\n%s", st, tc.status, out, tc.want)
			}
		})
	}
}

// TestCheckPostfixDB: a hash table built by Postfix's own postmap is a
// Berkeley DB file moat cannot read; check names it and the fix.
func TestCheckPostfixDB(t *testing.T) {
	postmap := testutil.PostfixTool(t, "postmap")
	f := newFixture(t)
	src := filepath.Join(f.conf, "virtual")
	f.mainExtra = "virtual_alias_maps = hash:" + src + "\n"
	f.build()
	f.write(src, "a@example.com b@example.com\n", 0o644)
	pconf := t.TempDir() // Postfix's postmap wants a main.cf it accepts
	f.write(filepath.Join(pconf, "main.cf"), "", 0o644)
	if out, err := exec.Command(postmap, "-c", pconf, "hash:"+src).CombinedOutput(); err != nil {
		t.Fatalf("postmap: %v\n%s", err, out)
	}
	out, st := f.run()
	want := "postfix: fatal: virtual_alias_maps: table hash:ROOT/etc/virtual: ROOT/etc/virtual.db is not a moat index; rebuild it with `moat postmap hash:ROOT/etc/virtual`\n"
	if st != 1 || out != want {
		t.Errorf("status %d, output:\n%s\nwant:\n%s", st, out, want)
	}
}
