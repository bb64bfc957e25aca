package postfix

import (
	"reflect"
	"strings"
	"testing"
)

func TestRestrictionTables(t *testing.T) {
	classes := map[string]bool{"strict": true}
	tables, names := RestrictionTables("permit_mynetworks, check_client_access cidr:/etc/c,"+
		" check_policy_service unix:private/policy check_policy_service inet:127.0.0.1:10023,"+
		" strict, reject_rbl_client zen.example, check_sender_access { inline:{ a=OK } },"+
		" check_recipient_access pcre:/etc/r, 2001:db8::1", classes)
	wantT := []string{"cidr:/etc/c", "inline:{ a=OK }", "pcre:/etc/r"}
	if !reflect.DeepEqual(tables, wantT) || !reflect.DeepEqual(names, []string{"strict"}) {
		t.Errorf("got %q %q, want %q [strict]", tables, names, wantT)
	}
}

func TestMapListTables(t *testing.T) {
	got := MapListTables("hash:/etc/aliases, nis:mail.aliases /etc/plain $x")
	want := []string{"hash:/etc/aliases", "nis:mail.aliases"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestListTables(t *testing.T) {
	got := ListTables("$myhostname, localhost, hash:/etc/postfix/domains [::1]/128 ALL:!aNULL foo:bar")
	if !reflect.DeepEqual(got, []string{"hash:/etc/postfix/domains"}) {
		t.Errorf("got %q", got)
	}
}

func TestLoginShell(t *testing.T) {
	if loginShell("/usr/sbin/nologin") || !loginShell("/bin/sh") || !loginShell("") {
		t.Error("loginShell")
	}
}

func FuzzRestrictionTables(f *testing.F) {
	f.Add("permit_mynetworks, check_client_access cidr:/etc/c, check_policy_service unix:x")
	f.Add("check_sender_access { inline:{ a=OK, b=REJECT } }, strict")
	f.Add("a:b:c, :x, x:, {:}, check_policy_service")
	f.Fuzz(func(t *testing.T, s string) {
		tables, _ := RestrictionTables(s, map[string]bool{"strict": true})
		for _, tb := range tables {
			if !isTableSpec(tb) || !strings.Contains(s, tb[:strings.IndexByte(tb, ':')]) {
				t.Fatalf("%q: bad table %q", s, tb)
			}
		}
		for _, tb := range ListTables(s) {
			if !postfixDictType(tb[:strings.IndexByte(tb, ':')]) {
				t.Fatalf("%q: bad list table %q", s, tb)
			}
		}
		for _, tb := range MapListTables(s) {
			if !isTableSpec(tb) {
				t.Fatalf("%q: bad table %q", s, tb)
			}
		}
	})
}
