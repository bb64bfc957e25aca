package restrict

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"moat/internal/maps"
	"moat/internal/smtpd"
)

// harness drives a standalone Session the way Postfix's smtpd_check test
// program does: client, helo, mail and rcpt commands against one View,
// printing "OK" or the reply, collecting the log.
type harness struct {
	t    *testing.T
	l    *Lists
	s    *Session
	v    smtpd.View
	logs []string
}

const hbase = "myhostname = mx.moat.test\nmydomain = moat.test\nmydestination = $myhostname, localhost\n" +
	"mynetworks = 127.0.0.0/8\ninet_interfaces = loopback-only\nalias_maps =\nlocal_recipient_maps =\n" +
	"smtpd_delay_reject = no\nsmtpd_relay_restrictions =\n"

// newHarness builds the lists from main.cf text; files are written into
// the config directory first and "@DIR@" in mainCF names it.
func newHarness(t *testing.T, mainCF string, files map[string]string) *harness {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := load(t, hbase+strings.ReplaceAll(mainCF, "@DIR@", dir))
	l, err := NewStandalone(cfg, maps.DefaultOptions(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	h := &harness{t: t, l: l}
	l.SetLog(func(warning bool, text string) {
		if warning {
			text = "warning: " + text
		}
		h.logs = append(h.logs, text)
	})
	h.s = l.NewSession(nil)
	h.s.Standalone = true
	h.v = smtpd.View{ClientName: "localhost", ClientAddr: netip.MustParseAddr("127.0.0.1"), ClientNameStatus: 2, ReverseNameStatus: 2, ReverseClientName: "localhost", Protocol: "SMTP", Size: -1}
	return h
}

func (h *harness) run(stage smtpd.Stage) string {
	h.t.Helper()
	h.logs = nil
	v := h.v
	d, err := h.s.Check(context.Background(), stage, &v)
	if err != nil {
		h.t.Fatal(err)
	}
	if d.Refuses() {
		return d.Reply.String()
	}
	return "OK"
}

func (h *harness) client(name, addr string, status int) string {
	h.v.ClientName, h.v.ReverseClientName = name, name
	h.v.ClientAddr = netip.MustParseAddr(addr)
	h.v.ClientNameStatus, h.v.ReverseNameStatus = status, status
	return h.run(smtpd.StageConnect)
}

func (h *harness) helo(name string) string {
	h.v.Helo = name
	return h.run(smtpd.StageHelo)
}

func (h *harness) mail(addr string) string {
	h.v.Sender, h.v.HasSender = addr, true
	return h.run(smtpd.StageMail)
}

func (h *harness) rcpt(addr string) string {
	h.v.Recipient = addr
	out := h.run(smtpd.StageRcpt)
	h.v.Recipient = ""
	return out
}

// decision runs a stage and returns the whole Decision.
func (h *harness) decision(stage smtpd.Stage) *smtpd.Decision {
	h.t.Helper()
	h.logs = nil
	v := h.v
	d, err := h.s.Check(context.Background(), stage, &v)
	if err != nil {
		h.t.Fatal(err)
	}
	return d
}

func (h *harness) wantLog(sub string) {
	h.t.Helper()
	for _, l := range h.logs {
		if strings.Contains(l, sub) {
			return
		}
	}
	h.t.Errorf("no log line contains %q; have %q", sub, h.logs)
}

func expect(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("%s:\n got %q\nwant %q", what, got, want)
	}
}

func optsForTest() maps.Options { return maps.DefaultOptions() }
