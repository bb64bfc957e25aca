package aliases

import "testing"

func TestPrintableUTF8(t *testing.T) {
	if got := PrintableUTF8("k \xff\xfe\xfd\xc3 é"); got != "k ???? é" {
		t.Errorf("got %q", got)
	}
}
