package aliases

import "testing"

// Expectations from Debian's postmap 3.7 with compatibility_level = 3.6
// (smtputf8_enable = yes): `postmap -s` of a table with these keys.
func TestFoldKeyUTF8(t *testing.T) {
	for in, want := range map[string]string{
		"ÉCOLE": "école", "Straße": "strasse", "ΣΑΣ": "σασ", "İx": "i\u0307x",
		"ﬁle": "file", "Kelvin\u212a": "kelvink", "µicro": "μicro", "DŽ": "dž", "\u01c4": "\u01c6", "\u01c5": "\u01c6",
		"PLAIN": "plain", "ı": "ı",
	} {
		if got := FoldKeyUTF8(in); got != want {
			t.Errorf("FoldKeyUTF8(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPrintableUTF8(t *testing.T) {
	if got := PrintableUTF8("k \xff\xfe\xfd\xc3 é"); got != "k ???? é" {
		t.Errorf("got %q", got)
	}
}
