package maps

import (
	"path/filepath"
	"testing"
)

// Expectations from Debian's postmap 3.7 with compatibility_level = 3.6
// (smtputf8_enable = yes): `postmap -s` of a table with these keys.
func TestFoldKeyUTF8(t *testing.T) {
	for in, want := range map[string]string{
		"ÉCOLE": "école", "Straße": "strasse", "ΣΑΣ": "σασ", "İx": "i\u0307x",
		"ﬁle": "file", "Kelvin\u212a": "kelvink", "µicro": "μicro", "DŽ": "dž", "\u01c4": "\u01c6", "\u01c5": "\u01c6",
		"PLAIN": "plain", "ı": "ı",
	} {
		if got := FoldKey(in, true); got != want {
			t.Errorf("FoldKey(%q, true) = %q, want %q", in, got, want)
		}
	}
}

// An index built with UTF-8 folding (postmap with smtputf8_enable = yes)
// answers a daemon's lookup of the same key in another case: both sides
// fold with FoldKey.
func TestUTF8FoldedIndexLookup(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "senders")
	recs := []Record{
		{Key: FoldKey("Straße@Example.COM", true), Value: "REJECT"},
		{Key: FoldKey("école@example.com", true), Value: "REJECT"},
	}
	if err := WriteIndex(IndexPath("hash", name), recs); err != nil {
		t.Fatal(err)
	}
	tbl, err := Open("hash:"+name, Options{Fold: true, UTF8: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Close()
	for _, key := range []string{"STRASSE@example.com", "straße@example.com", "ÉCOLE@example.com"} {
		if v, ok, err := tbl.Lookup(key); err != nil || !ok || v != "REJECT" {
			t.Errorf("Lookup(%q) = %q, %v, %v; want REJECT", key, v, ok, err)
		}
	}
	ascii, err := Open("hash:"+name, Options{Fold: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ascii.Close()
	if _, ok, _ := ascii.Lookup("ÉCOLE@example.com"); ok {
		t.Error("ASCII folding found a key only Unicode folding produces")
	}
}
