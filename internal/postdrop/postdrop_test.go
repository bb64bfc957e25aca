package postdrop

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"moat/internal/config"
	"moat/internal/maildrop"
)

func loadConfig(t *testing.T, extra string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "spool"), 0o755)
	os.Mkdir(filepath.Join(dir, "spool", "maildrop"), 0o700)
	cf := "queue_directory = " + dir + "/spool\nmessage_size_limit = 1000\n" + extra
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(cf), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func stream(t *testing.T, env *maildrop.Envelope, content string) []byte {
	var b bytes.Buffer
	w, err := maildrop.NewWriter(&b, env, 0)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, content)
	w.Close()
	return b.Bytes()
}

func TestDrop(t *testing.T) {
	cfg := loadConfig(t, "")
	me := Submitter{UID: 1234, Login: "joe"}
	name, err := Drop(cfg, me, bytes.NewReader(stream(t, &maildrop.Envelope{Sender: "joe", Recipients: []string{"a"}}, "hi\r\n")))
	if err != nil || !maildrop.IsFinal(name) {
		t.Fatalf("Drop = %q, %v", name, err)
	}
	dir := filepath.Join(cfg.Get("queue_directory"), "maildrop")
	for _, c := range []struct {
		name   string
		in     []byte
		status int
		msg    string
	}{
		{"garbage", []byte("hello"), ExDataErr, "malformed input"},
		{"truncated", stream(t, &maildrop.Envelope{Sender: "joe", Recipients: []string{"a"}}, "hi\r\n")[:40], ExDataErr, "malformed input"},
		{"forged login", stream(t, &maildrop.Envelope{Sender: "root", Recipients: []string{"a"}}, "x\r\n"), ExDataErr, "not the login name"},
		{"too big", stream(t, &maildrop.Envelope{Sender: "joe", Recipients: []string{"a"}}, strings.Repeat("x", 1001)), ExDataErr, "malformed input"},
	} {
		_, err := Drop(cfg, me, bytes.NewReader(c.in))
		if Status(err) != c.status || err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v (status %d)", c.name, err, Status(err))
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("maildrop/ holds %v, want only the good file", ents)
	}
}

func TestAuthorize(t *testing.T) {
	cfg := loadConfig(t, "authorized_submit_users = !joe, static:anyone\n")
	if err := Authorize(cfg, Submitter{UID: 5, Login: "joe"}); Status(err) != ExNoPerm || !strings.Contains(err.Error(), "User joe(5) is not allowed to submit mail") {
		t.Errorf("joe: %v", err)
	}
	if err := Authorize(cfg, Submitter{UID: 6, Login: "amy"}); err != nil {
		t.Errorf("amy: %v", err)
	}
	cfg = loadConfig(t, "authorized_submit_users =\n")
	if err := Authorize(cfg, Submitter{UID: 6, Login: "amy"}); err == nil {
		t.Error("an empty list let amy submit")
	}
}

func TestCheckSender(t *testing.T) {
	cfg := loadConfig(t, "recipient_delimiter = +\nlocal_login_sender_maps = inline:{ { root = * }, { joe = joe, @joe.example, <> } }\n")
	for _, c := range []struct {
		login, sender string
		ok            bool
	}{
		{"root", "anyone@anywhere", true},
		{"joe", "joe", true},
		{"joe", "Joe+tag", true},
		{"joe", "x@joe.example", true},
		{"joe", "", true},
		{"joe", "root", false},
		{"joe", "x@other.example", false},
		{"amy", "amy", false}, // no entry: nothing allowed
		{"", "x", false},
	} {
		err := CheckSender(cfg, Submitter{UID: 9, Login: c.login}, c.sender)
		if (err == nil) != c.ok {
			t.Errorf("%s as %q: %v", c.login, c.sender, err)
		}
	}
}

func TestTrustedConfigDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root-owned files")
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "main.cf"), nil, 0o644)
	if err := TrustedConfigDir(dir); err != nil {
		t.Errorf("root's 0755 directory: %v", err)
	}
	os.Chmod(filepath.Join(dir, "main.cf"), 0o666)
	if err := TrustedConfigDir(dir); err == nil {
		t.Error("a world-writable main.cf was trusted")
	}
	os.Chmod(filepath.Join(dir, "main.cf"), 0o644)
	os.Chown(filepath.Join(dir, "main.cf"), 1000, 1000)
	if err := TrustedConfigDir(dir); err == nil {
		t.Error("a user's main.cf was trusted")
	}
	if err := TrustedConfigDir("/tmp"); err == nil {
		t.Error("/tmp was trusted")
	}
}
