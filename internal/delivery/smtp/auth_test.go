package smtp

import (
	"slices"
	"testing"

	"moat/internal/config"
	"moat/internal/delivery"
	"moat/internal/maps"
	"moat/internal/queue"
)

// The keys smtp_sasl_passwd_lookup() tries, in its order.
func TestAuthLookupKeys(t *testing.T) {
	ca := &clientAuth{senderDep: true}
	got := ca.lookupKeys("Bob@Example.org", "127.0.0.1", "[127.0.0.1]:2525")
	want := []string{"Bob@Example.org", "@Example.org", "127.0.0.1", "[127.0.0.1]:2525", "[127.0.0.1]"}
	if !slices.Equal(got, want) {
		t.Errorf("keys %q, want %q", got, want)
	}
	ca.senderDep = false
	if got := ca.lookupKeys("bob@example.org", "mx1.example.org", "example.org"); !slices.Equal(got, []string{"mx1.example.org", "example.org"}) {
		t.Errorf("keys %q", got)
	}
	ca.senderDep = true
	if got := ca.lookupKeys("", "relay.example", "relay.example"); !slices.Equal(got, []string{"relay.example"}) {
		t.Errorf("null sender keys %q", got)
	}
}

// readAuth with real inline: tables: the first key with an entry wins,
// the sender's own entry before the next hop's.
func TestAuthReadAndLookup(t *testing.T) {
	cfg := config.Empty(t.TempDir()).WithOverrides(map[string]string{
		"smtp_sasl_auth_enable":                "yes",
		"smtp_sender_dependent_authentication": "yes",
		"smtp_sasl_password_maps":              "inline:{ [relay.test]:587=hop:pw1 } inline:{ @sender.test=dom:pw:2, relay.test=host:pw3 }",
		"smtp_sasl_mechanism_filter":           "!login, plain, cram-md5",
	})
	ca, a, err := readAuth(cfg, mapsOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer ca.close()
	if !a.Plain.NoPlaintext || !a.Plain.NoAnonymous || !a.TLS.NoPlaintext || !a.SoftBounce {
		t.Errorf("defaults: %+v", a)
	}
	for _, c := range []struct{ sender, host, nexthop, user, pass string }{
		{"x@sender.test", "relay.test", "[relay.test]:587", "dom", "pw:2"},
		{"x@other.test", "relay.test", "[relay.test]:587", "host", "pw3"},
		{"x@other.test", "10.0.0.1", "[relay.test]:587", "hop", "pw1"},
	} {
		req := &delivery.Request{Envelope: &queue.Envelope{Sender: c.sender}, Nexthop: c.nexthop}
		u, p, found, err := a.Lookup(req, c.host)
		if err != nil || !found || u != c.user || p != c.pass {
			t.Errorf("%+v: %q %q %v %v", c, u, p, found, err)
		}
	}
	req := &delivery.Request{Envelope: &queue.Envelope{Sender: "x@other.test"}, Nexthop: "elsewhere.test"}
	if _, _, found, err := a.Lookup(req, "mx.elsewhere.test"); found || err != nil {
		t.Errorf("elsewhere: %v %v", found, err)
	}
	for m, want := range map[string]bool{"PLAIN": true, "login": false, "CRAM-MD5": true, "SCRAM-SHA-256": false} {
		if a.Filter(m) != want {
			t.Errorf("filter %s = %v", m, !want)
		}
	}
}

// postconf(5)'s example filter: negations first, static:rest for the rest.
func TestAuthMechFilterStatic(t *testing.T) {
	f, err := mechFilter("!gssapi, !login, static:rest")
	if err != nil {
		t.Fatal(err)
	}
	for m, want := range map[string]bool{"GSSAPI": false, "LOGIN": false, "PLAIN": true, "CRAM-MD5": true} {
		if f(m) != want {
			t.Errorf("filter %s = %v", m, !want)
		}
	}
	if f, err := mechFilter(""); f != nil || err != nil {
		t.Errorf("empty filter: %v %v", f != nil, err)
	}
}

// Bad values stop the agent at start.
func TestAuthConfigErrors(t *testing.T) {
	for k, v := range map[string]string{
		"smtp_sasl_security_options":           "noplaintext, nosuch",
		"smtp_sasl_tls_security_options":       "bogus",
		"smtp_sasl_mechanism_filter":           "hash:/etc/postfix/mechs",
		"smtp_sender_dependent_authentication": "maybe",
		"smtp_sasl_password_maps":              "nosuchtype:/x",
	} {
		o := map[string]string{"myhostname": "client.example", "dns_servers": "127.0.0.1:1", "smtp_sasl_auth_enable": "yes", k: v}
		if _, err := New(delivery.Deps{Config: config.Empty(t.TempDir()).WithOverrides(o), Service: "smtp"}); err == nil {
			t.Errorf("%s = %s accepted", k, v)
		}
	}
}

func mapsOptions() maps.Options { return maps.Options{Fold: true} }
