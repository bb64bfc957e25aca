package cleanup

import "testing"

func TestIsHeaderStart(t *testing.T) {
	for line, want := range map[string]bool{"Subject: x\n": true, "Subject : x": true, ": x": false,
		" Subject: x": false, "no colon\n": false, "\n": false, "X\x80: y": false} {
		if got := IsHeaderStart([]byte(line)); got != want {
			t.Errorf("IsHeaderStart(%q) = %v", line, got)
		}
	}
}
