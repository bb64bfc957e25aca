package pipe

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"moat/internal/config"
)

// debianRows are the pipe rows of Debian's stock master.cf
// (/usr/share/postfix/master.cf.dist), arguments as master.cf splits them.
var debianRows = map[string]string{
	"maildrop":          "flags=DRXhu user=vmail argv=/usr/bin/maildrop -d ${recipient}",
	"cyrus":             "flags=DRX user=cyrus argv=/cyrus/bin/deliver -e -r ${sender} -m ${extension} ${user}",
	"old-cyrus":         "flags=R user=cyrus argv=/cyrus/bin/deliver -e -m ${extension} ${user}",
	"uucp":              "flags=Fqhu user=uucp argv=uux -r -n -z -a$sender - $nexthop!rmail ($recipient)",
	"ifmail":            "flags=F user=ftn argv=/usr/lib/ifmail/ifmail -r $nexthop ($recipient)",
	"bsmtp":             "flags=Fq. user=bsmtp argv=/usr/lib/bsmtp/bsmtp -t$nexthop -f$sender $recipient",
	"scalemail-backend": "flags=R user=scalemail argv=/usr/lib/scalemail/bin/scalemail-store ${nexthop} ${user} ${extension}",
	"mailman":           "flags=FRX user=list argv=/usr/lib/mailman/bin/postfix-to-mailman.py ${nexthop} ${user}",
	"dovecot":           "flags=DRhu user=vmail:vmail argv=/usr/lib/dovecot/dovecot-lda -f ${sender} -d ${recipient}",
}

func TestDebianRowsParse(t *testing.T) {
	for name, row := range debianRows {
		a, err := parseAttrs(strings.Fields(row))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if _, err := compileArgv(a.argv); err != nil {
			t.Errorf("%s: argv: %v", name, err)
		}
	}
}

func TestParseAttrs(t *testing.T) {
	a, err := parseAttrs([]string{"FLAGS=BDFORXhqu.>", "User=vmail:mail", "directory=/var/tmp",
		`eol=\r\n`, "null_sender=", "size=1000", "argv=/bin/cat", "-", "user=x"})
	if err != nil {
		t.Fatal(err)
	}
	want := &attrs{
		flags: flagBlank | flagDelivered | flagFrom | flagOrigRcpt | flagReturnPath | flagFinal |
			flagFoldHost | flagQuote | flagFoldUser | flagDot | flagQuoteFrom,
		user: "vmail", group: "mail", hasUser: true, directory: "/var/tmp", eol: "\r\n",
		nullSender: "", sizeLimit: 1000, argv: []string{"/bin/cat", "-", "user=x"},
	}
	if !reflect.DeepEqual(a, want) {
		t.Errorf("got %+v\nwant %+v", a, want)
	}
}

func TestParseAttrsErrors(t *testing.T) {
	for _, tc := range []struct{ row, want string }{
		{"argv=/bin/cat", "missing user="},
		{"user=nobody", "missing argv="},
		{"user=nobody flags=Z argv=/bin/cat", "unknown flag 'Z'"},
		{"user=nobody chroot=/x argv=/bin/cat", "chroot= is not supported"},
		{"user=nobody size=-1 argv=/bin/cat", "bad size="},
		{"user=nobody size=1k argv=/bin/cat", "bad size="},
		{"user=nobody directory=tmp argv=/bin/cat", "absolute"},
		{"user=nobody bogus=1 argv=/bin/cat", "unknown attribute"},
		{"user=nobody argv= /bin/cat", "argv= needs"},
		{"user=nobody noequals argv=/bin/cat", "want name=value"},
		{"user=:grp argv=/bin/cat", "empty user"},
	} {
		_, err := parseAttrs(strings.Fields(tc.row))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.row, err, tc.want)
		}
	}
}

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{
		`\n`: "\n", `\r\n`: "\r\n", `\a\b\f\t\v`: "\a\b\f\t\v", `\\`: `\`,
		`\101\0x`: "A\x00x", `\1234`: "S4", `\q`: `\q`, `x\`: `x\`, ``: ``,
	} {
		if got := config.Unescape(in); got != want {
			t.Errorf("unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCommandEnv(t *testing.T) {
	t.Setenv("TZ", "Europe/Paris")
	t.Setenv("MAIL_CONFIG", "")
	os.Unsetenv("MAIL_CONFIG")
	t.Setenv("SECRET", "x")
	dir := t.TempDir()
	cfg := config.Empty(dir)
	env, err := commandEnv(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lang, hasLang := os.LookupEnv("LANG")
	wantEnv := []string{"TZ=Europe/Paris", "MAIL_CONFIG=" + dir}
	if hasLang {
		wantEnv = append(wantEnv, "LANG="+lang)
	}
	wantEnv = append(wantEnv, "PATH=/usr/bin:/bin")
	if !reflect.DeepEqual(env, wantEnv) {
		t.Errorf("default: %q, want %q", env, wantEnv)
	}
	env, err = commandEnv(cfg.WithOverrides(map[string]string{
		"export_environment": "TZ, PATH=/usr/sbin:/usr/bin:/bin { FOO=a b } SECRET"}))
	if err != nil {
		t.Fatal(err)
	}
	wantEnv = []string{"TZ=Europe/Paris", "FOO=a b", "SECRET=x", "PATH=/usr/sbin:/usr/bin:/bin"}
	if !reflect.DeepEqual(env, wantEnv) {
		t.Errorf("explicit: %q, want %q", env, wantEnv)
	}
}

func TestTimeLimitParam(t *testing.T) {
	cfg := config.Empty(t.TempDir())
	cfg.AddServiceParams("svc", "pipe")
	for _, tc := range []struct {
		over map[string]string
		want time.Duration
	}{
		{nil, 1000 * time.Second},
		{map[string]string{"command_time_limit": "2m"}, 2 * time.Minute},
		{map[string]string{"svc_time_limit": "30"}, 30 * time.Second},
		{map[string]string{"svc_time_limit": "${command_time_limit}", "command_time_limit": "1h"}, time.Hour},
	} {
		got, err := timeLimit(cfg.WithOverrides(tc.over), "svc")
		if err != nil || got != tc.want {
			t.Errorf("%v: got %v %v, want %v", tc.over, got, err, tc.want)
		}
	}
}
