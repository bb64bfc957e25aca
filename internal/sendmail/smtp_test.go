package sendmail

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"moat/internal/cli"
	"moat/internal/maildrop"
)

// TestStandAloneSMTP runs -bs in-process as root (who writes maildrop/
// directly) and reads back the maildrop files it made.
func TestStandAloneSMTP(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("root writes maildrop/ in-process; others need the installed postdrop")
	}
	dir := t.TempDir()
	drop := filepath.Join(dir, "spool", "maildrop")
	os.MkdirAll(drop, 0o700)
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte("myhostname = mx.example\nqueue_directory = "+dir+"/spool\nmessage_size_limit = 2000\n"), 0o644)
	in := strings.Join([]string{
		"MAIL FROM:<early@x>",
		"EHLO client",
		"RCPT TO:<nobody@x>",
		"MAIL FROM:<a@x> BODY=8BITMIME RET=HDRS ENVID=e1",
		"MAIL FROM:<b@x>",
		"DATA",
		"RCPT TO:<r1@x> NOTIFY=NEVER",
		"RCPT TO:<r2@x>",
		"DATA",
		"Subject: one",
		"",
		"..dot-stuffed",
		".",
		"MAIL FROM:<c@x>",
		"RCPT TO:<big@x>",
		"DATA",
		strings.Repeat("x", 3000),
		".",
		"NOOP",
		"VRFY x",
		"QUIT",
		"",
	}, "\r\n")
	var out, errs strings.Builder
	env := &cli.Env{Stdin: strings.NewReader(in), Stdout: &out, Stderr: &errs, Getenv: func(string) string { return "" }}
	if code := Main(env, "sendmail", []string{"-C", dir, "-bs"}); code != 0 {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	want := []string{
		"220 mx.example ESMTP",
		"503 5.5.1 Error: send HELO/EHLO first",
		"250-mx.example", "250-PIPELINING", "250-SIZE 2000", "250 DSN",
		"503 5.5.1 Error: need MAIL command",
		"250 2.1.0 Ok",
		"503 5.5.1 Error: nested MAIL command",
		"554 5.5.1 Error: no valid recipients",
		"250 2.1.5 Ok", "250 2.1.5 Ok",
		"354 End data with <CR><LF>.<CR><LF>",
		"250 2.0.0 Ok: queued",
		"552 5.3.4 Message size exceeds fixed limit",
		"250 2.0.0 Ok",
		"502 5.5.1 VRFY command is disabled",
		"221 2.0.0 Bye",
	}
	got := out.String()
	pos := 0
	for _, w := range want {
		i := strings.Index(got[pos:], w)
		if i < 0 {
			t.Fatalf("reply %q missing (in order) from:\n%s", w, got)
		}
		pos += i + len(w)
	}
	ents, _ := os.ReadDir(drop)
	if len(ents) != 1 {
		t.Fatalf("maildrop/ holds %v", ents)
	}
	f, err := os.Open(filepath.Join(drop, ents[0].Name()))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	mf, err := maildrop.Read(f, st.Size(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if mf.Sender != "a@x" || !mf.SenderGiven || mf.Body != "8BITMIME" || mf.Ret != "HDRS" || mf.EnvID != "e1" || len(mf.Recipients) != 2 || mf.Notify != "never" {
		t.Errorf("envelope %+v", mf.Envelope)
	}
	b := make([]byte, mf.ContentLen)
	mf.Content(f).Read(b)
	if string(b) != "Subject: one\r\n\r\n.dot-stuffed\r\n" {
		t.Errorf("content %q", b)
	}
}

// TestDeliverRefused: postdrop's refusal reaches the caller with its exit
// status and reason (in-process, as root).
func TestDeliverRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("root writes maildrop/ in-process")
	}
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "spool", "maildrop"), 0o700)
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte("queue_directory = "+dir+"/spool\nlocal_login_sender_maps = inline:{ { root = root } }\n"), 0o644)
	var out, errs strings.Builder
	env := &cli.Env{Stdin: strings.NewReader("Subject: x\n\nbody\n"), Stdout: &out, Stderr: &errs, Getenv: func(string) string { return "" }}
	code := Main(env, "sendmail", []string{"-C", dir, "-f", "boss@example", "someone"})
	if code != 77 || !strings.Contains(errs.String(), "sendmail: fatal: not authorized to use sender='boss@example'") {
		t.Errorf("exit %d, stderr %q", code, errs.String())
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "spool", "maildrop")); len(ents) != 0 {
		t.Errorf("maildrop/ holds %v", ents)
	}
	errs.Reset()
	env.Stdin = strings.NewReader("Subject: x\n\nbody\n")
	if code := Main(env, "sendmail", []string{"-C", dir, "someone"}); code != 0 {
		t.Errorf("as root: exit %d %q", code, errs.String())
	}
}
