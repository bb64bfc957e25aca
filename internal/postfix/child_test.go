package postfix

import (
	"strings"
	"testing"
)

func TestParseChildArgs(t *testing.T) {
	o, err := parseChildArgs(strings.Fields("-c /etc/moat -d /var -s smtp/inet -g 3 -u y -j n -i 25 -l tcp4 -p anvil=private/anvil -e -r qmgr"))
	if err != nil {
		t.Fatal(err)
	}
	if o.ConfigDir != "/etc/moat" || o.Service != "smtp/inet" || o.Gen != 3 || !o.Unpriv || o.Jail ||
		o.Internal != "25" || len(o.Listen) != 1 || o.Sockets["anvil"] != "private/anvil" || !o.Stderr || o.Role != "qmgr" {
		t.Errorf("parsed %+v", o)
	}
	for _, bad := range []string{"-c", "-c /x", "-s a", "-c /x -s a -g x", "-c /x -s a -p anvil", "-c /x -s a -z 1"} {
		if _, err := parseChildArgs(strings.Fields(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// FuzzChildArgs: any argument list is parsed or refused, never a panic,
// and what is parsed holds the values given.
func FuzzChildArgs(f *testing.F) {
	f.Add("-c\x00/etc/moat\x00-s\x00smtp/inet\x00-g\x001\x00-l\x00tcp4 127.0.0.1:25\x00-p\x00anvil=private/anvil")
	f.Add("-e\x00-c\x00d\x00-s\x00qmgr/unix\x00-r\x00qmgr")
	f.Add("-p\x00=\x00-g")
	f.Fuzz(func(t *testing.T, joined string) {
		args := strings.Split(joined, "\x00")
		o, err := parseChildArgs(args)
		if err != nil {
			return
		}
		if o.ConfigDir == "" || o.Service == "" {
			t.Fatalf("accepted without -c or -s: %q", args)
		}
		for name, p := range o.Sockets {
			if name == "" || p == "" {
				t.Fatalf("empty socket entry from %q", args)
			}
		}
	})
}
